"""The bus helpers against a real nats-server: dedup, redelivery, retries, replay, KV."""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.js.api import DeliverPolicy

from bus import Bucket, BusMessage, CasConflict, Publisher, PullConsumer, msgid, replay, start_seq_for_last, subjects
from bus.streams import ensure_streams
from schemas import TradeTick, encode

MKT = "BTC-USD-PERP"


def trade(i: int) -> TradeTick:
    return TradeTick(
        instrument_id=f"{MKT}.PARADEX",
        price="65000.1",
        size="0.001",
        aggressor_side="BUYER",
        trade_id=str(i),
        ts_event=i,
        ts_init=i,
    )


async def test_ensure_streams_is_idempotent(js) -> None:
    again = await ensure_streams(js, replicas=1)
    assert set(again.values()) == {"ok"}
    info = await js.stream_info("REF")
    assert info.config.max_msgs_per_subject == 1
    book = await js.stream_info("BOOK")
    assert subjects.book_snapshot(MKT) not in book.config.subjects


async def test_same_msg_id_is_stored_once(nc, js) -> None:
    pub = await Publisher(nc, js).start()
    subject = subjects.md("trades", MKT)
    for _ in range(3):
        pub.publish_event_nowait(subject, trade(1), msgid.trade(MKT, "1"))
    assert await pub.flush(5)
    ack = await pub.publish_acked(subject, encode(trade(1)), msgid.trade(MKT, "1"))
    assert ack.duplicate is True
    info = await js.stream_info("MD")
    assert info.state.messages == 1
    assert pub.stats.stored == 4 and pub.stats.duplicates == 3
    await pub.close()


async def test_consumer_killed_before_ack_gets_redelivery(nc, js, nats_url, spawn) -> None:
    pub = await Publisher(nc, js).start()
    await pub.publish_acked(subjects.md("trades", MKT), encode(trade(7)), msgid.trade(MKT, "7"))
    child = spawn("tests.integration.slow_consumer", {}, args=[nats_url, "MD", "crashy"], name="slow")
    await child.wait_for_log("got 1 delivery=1")
    child.kill()

    got: list[BusMessage] = []
    done = asyncio.Event()

    async def handler(m: BusMessage) -> None:
        got.append(m)
        done.set()

    c = await PullConsumer(nc, js, stream="MD", durable="crashy", handler=handler, ack_wait=2.0).start()
    await asyncio.wait_for(done.wait(), 10)
    await c.stop()
    assert got[0].stream_seq == 1
    assert got[0].num_delivered == 2
    assert got[0].event == trade(7)
    await asyncio.sleep(0.2)
    info = await js.consumer_info("MD", "crashy")
    assert info.num_ack_pending == 0
    await pub.close()


async def test_two_workers_share_a_durable(nc, js) -> None:
    pub = await Publisher(nc, js).start()
    for i in range(400):
        pub.publish_event_nowait(subjects.md("trades", MKT), trade(i), msgid.trade(MKT, str(i)))
    assert await pub.flush(10)
    seen: dict[str, list[int]] = {"a": [], "b": []}
    done = asyncio.Event()

    def make(name: str):
        async def h(m: BusMessage) -> None:
            seen[name].append(m.stream_seq)
            await asyncio.sleep(0.001)
            if len(seen["a"]) + len(seen["b"]) >= 400:
                done.set()

        return h

    a = await PullConsumer(nc, js, stream="MD", durable="group", handler=make("a"), batch=10).start()
    b = await PullConsumer(nc, js, stream="MD", durable="group", handler=make("b"), batch=10).start()
    await asyncio.wait_for(done.wait(), 20)
    await a.stop()
    await b.stop()
    assert sorted(seen["a"] + seen["b"]) == list(range(1, 401))
    assert seen["a"] and seen["b"]
    await pub.close()


async def test_undecodable_message_is_terminated_and_counted(nc, js) -> None:
    await js.publish(subjects.md("trades", MKT), b"\xc1garbage")
    await js.publish(subjects.md("trades", MKT), encode(trade(2)))
    handled: list[int] = []
    done = asyncio.Event()

    async def h(m: BusMessage) -> None:
        handled.append(m.stream_seq)
        done.set()

    c = await PullConsumer(nc, js, stream="MD", durable="strict", handler=h).start()
    await asyncio.wait_for(done.wait(), 10)
    await c.stop()
    assert handled == [2]
    assert c.stats.decode_errors == 1


async def test_handler_failure_is_redelivered(nc, js) -> None:
    await js.publish(subjects.md("trades", MKT), encode(trade(3)))
    calls: list[int] = []
    done = asyncio.Event()

    async def flaky(m: BusMessage) -> None:
        calls.append(m.num_delivered)
        if m.num_delivered == 1:
            raise RuntimeError("transient")
        done.set()

    c = await PullConsumer(nc, js, stream="MD", durable="flaky", handler=flaky).start()
    await asyncio.wait_for(done.wait(), 10)
    await c.stop()
    assert calls == [1, 2]
    assert c.stats.handler_errors == 1


async def test_publisher_rides_through_server_restart(nc, js, nats_server) -> None:
    pub = await Publisher(nc, js, ack_timeout=1.0).start()
    subject = subjects.md("trades", MKT)
    for i in range(200):
        pub.publish_event_nowait(subject, trade(i), msgid.trade(MKT, str(i)))
    nats_server.kill()
    for i in range(200, 400):
        pub.publish_event_nowait(subject, trade(i), msgid.trade(MKT, str(i)))
    await asyncio.sleep(0.5)
    nats_server.start()
    assert await pub.flush(30), pub.stats
    info = await js.stream_info("MD")
    assert info.state.messages == 400
    ids = {m.event.trade_id async for m in replay(js, "md.paradex.trades.>")}
    assert ids == {str(i) for i in range(400)}
    await pub.close()


async def test_publisher_overflow_is_counted(nc, js) -> None:
    pub = Publisher(nc, js, max_buffer=10)  # not started: nothing drains the buffer
    for i in range(25):
        pub.publish_nowait(subjects.md("trades", MKT), encode(trade(i)), msgid.trade(MKT, str(i)))
    assert pub.stats.dropped_overflow == 15
    assert pub.stats.enqueued == 25
    await pub.start()
    assert await pub.flush(10)
    assert pub.stats.stored == 10
    await pub.close()


async def test_replay_from_sequence_time_and_last_n(nc, js) -> None:
    pub = await Publisher(nc, js).start()
    for i in range(50):
        pub.publish_event_nowait(
            subjects.md("trades", MKT if i % 2 else "ETH-USD-PERP"), trade(i), msgid.trade("x", str(i))
        )
    assert await pub.flush(10)
    seqs = [m.stream_seq async for m in replay(js, "md.paradex.trades.>", start_seq=45)]
    assert seqs == [45, 46, 47, 48, 49, 50]
    start = await start_seq_for_last(js, f"md.paradex.trades.{MKT}", 3)
    last3 = [m.event.trade_id async for m in replay(js, f"md.paradex.trades.{MKT}", start_seq=start)]
    assert last3 == ["45", "47", "49"]
    future = [m async for m in replay(js, "md.paradex.trades.>", start_time_ns=time.time_ns() + 10**9)]
    assert future == []
    empty = [m async for m in replay(js, "md.paradex.quotes.>")]
    assert empty == []
    await pub.close()


async def test_kv_cas_and_watch(js) -> None:
    b = await Bucket.open(js, "watermarks")
    rev = await b.create("fills", b"1")
    with pytest.raises(CasConflict):
        await b.create("fills", b"2")
    rev2 = await b.update("fills", b"2", last=rev)
    with pytest.raises(CasConflict):
        await b.update("fills", b"3", last=rev)
    assert await b.get("fills") == (b"2", rev2)
    seen = []
    async for key, value, _rev in b.watch():
        seen.append((key, value))
        break
    assert seen == [("fills", b"2")]
    assert DeliverPolicy.ALL  # the enum import is exercised by replay defaults
