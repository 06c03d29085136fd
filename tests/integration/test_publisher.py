"""``bus.Publisher`` against a real NATS server: stored once, duplicates, retries, rejects, overflow."""

from __future__ import annotations

import asyncio

from nats.js.api import StreamConfig

from bus import NatsSettings, connect, ensure_streams, jetstream
from bus.publisher import Publisher
from schemas import QuoteTick
from tests.feed_handler.harness import bus_messages

Q = QuoteTick(
    instrument_id="X-USD-PERP.PARADEX",
    bid_price="1.0",
    ask_price="1.1",
    bid_size="1",
    ask_size="1",
    ts_event=1,
    ts_init=1,
)


async def test_stores_in_order_with_headers_and_counts_duplicates(nc, js) -> None:
    pub = await Publisher(nc, window=50).start()
    for i in range(500):
        pub.publish_event_nowait("md.paradex.quotes.X", Q, f"q:{i}", headers={"Pdx-Prev-Seq": str(i)})
    pub.publish_event_nowait("md.paradex.quotes.X", Q, "q:7")  # same fact again
    assert await pub.flush(10)
    assert (pub.stats.enqueued, pub.stats.stored, pub.stats.duplicates) == (501, 501, 1)
    msgs = await bus_messages(js, "md.paradex.quotes.X")
    assert [m.headers["Pdx-Prev-Seq"] for m in msgs] == [str(i) for i in range(500)]
    assert msgs[3].headers["Nats-Msg-Id"] == "q:3"
    await pub.close()


async def test_no_stream_yet_is_retried_with_the_same_msg_id(nats_url: str) -> None:
    """No responders (no stream on the subject, as during a restart or leader change) → retried."""
    nc = await connect("t", NatsSettings(servers=(nats_url,)))
    js = jetstream(nc)
    pub = await Publisher(nc, max_backoff=0.1).start()
    try:
        for i in range(300):
            pub.publish_event_nowait("md.paradex.quotes.Y", Q, f"y:{i}")
        await asyncio.sleep(0.2)
        in_flight = []
        for _ in range(100):
            await asyncio.sleep(0.003)
            in_flight.append(len(pub._in_flight))
        assert pub.stats.retries >= 1 and pub.stats.stored == 0
        assert max(in_flight) <= 1  # probing one at a time while the stream is missing
        await ensure_streams(js, replicas=1)
        assert await pub.flush(10)
        assert pub.stats.stored == 300
        ids = [m.headers["Nats-Msg-Id"] for m in await bus_messages(js, "md.paradex.quotes.Y")]
        assert ids == [f"y:{i}" for i in range(300)]  # the stream appearing mid-burst leaves no holes
    finally:
        await pub.close()
        await nc.close()


async def test_rejections_are_counted_and_reported(nc, js) -> None:
    reports: list[tuple[str, dict]] = []
    pub = await Publisher(nc, report=lambda kind, **ctx: reports.append((kind, ctx))).start()
    pub.publish_nowait("md.paradex.quotes.Z", b"\x00", "z:1", {"Nats-Expected-Last-Sequence": "999999"})
    assert await pub.flush(5)
    assert pub.stats.rejected == 1 and pub.stats.stored == 0
    assert reports and reports[0][0] == "publish_rejected"
    await pub.close()


async def test_overflow_drops_oldest_and_counts(nats_server, nc) -> None:
    reports: list[str] = []
    pub = await Publisher(nc, max_buffer=100, report=lambda kind, **ctx: reports.append(kind)).start()
    await asyncio.to_thread(nats_server.stop)  # nothing can leave: the buffer fills up
    try:
        for i in range(150):
            pub.publish_event_nowait("md.paradex.quotes.W", Q, f"w:{i}")
        assert pub.stats.dropped_overflow == 50
        assert reports.count("publish_buffer_overflow") == 50
    finally:
        await asyncio.to_thread(nats_server.start)
    assert await pub.flush(20)
    js = jetstream(nc)
    ids = [m.headers["Nats-Msg-Id"] for m in await bus_messages(js, "md.paradex.quotes.W")]
    assert ids == [f"w:{i}" for i in range(50, 150)]  # the newest 100, in order
    await pub.close()


async def test_unacked_after_reconnect_are_resent(nats_server, nc) -> None:
    js = jetstream(nc)
    await js.add_stream(StreamConfig(name="T", subjects=["t.>"], duplicate_window=60))
    pub = await Publisher(nc, ack_timeout=1.0, max_backoff=0.1).start()
    for i in range(2000):
        pub.publish_nowait("t.a", b"x", f"t:{i}")
        if i == 1000:
            await asyncio.sleep(0)
            await asyncio.to_thread(nats_server.restart)
    assert await pub.flush(30)
    info = await js.stream_info("T")
    assert info.state.messages == 2000  # every message once, whatever was in flight at the restart
    ids = [m.headers["Nats-Msg-Id"] for m in await bus_messages(js, "t.a")]
    assert ids == [f"t:{i}" for i in range(2000)]  # and in publish order
    await pub.close()
