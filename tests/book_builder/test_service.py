"""The book-builder as a real process on a real nats-server: deltas published as the feed handler
does end in exact books, quotes, depth10 and snapshot replies; a late joiner (``book_stream``)
stays consistent with no gap and no overlap; a gap invalidates, asks for a resync and a snapshot
heals; shards split the markets; ``kill -9`` and restart give the same books with no QuoteTick
sequence going back."""

from __future__ import annotations

import asyncio
import time

from bus import replay, subjects
from bus.book_client import SEQ_HEADER, Applied, BookState, book_stream, fetch_snapshot
from schemas import decode_as
from schemas.book import BookSnapshot
from services.book_builder.synthetic import FlowMessage, SyntheticFlow
from tests.book_builder.helpers import (
    Outputs,
    builder_env,
    caught_up_snapshot,
    depth_levels,
    expected_depth,
    levels_of,
    publish,
    top_of,
    wait_for,
)

MARKETS = ["BTC-USD-PERP", "ETH-USD-PERP", "SOL-USD-PERP"]
SERVICE = "book-builder"


async def test_books_quotes_depth_snapshot_and_late_joiner(nc, js, nats_url, spawn) -> None:
    out = await Outputs().start(nc)
    builder = spawn("services.book_builder", builder_env(nats_url, INSTANCE_ID="e2e"), name="builder")
    await builder.wait_healthy(nc, SERVICE, timeout=20)
    flow = SyntheticFlow(MARKETS, seed=11, levels=40)
    last = await publish(js, flow.snapshots() + [flow.step() for _ in range(600)])

    for market, gen in flow.markets.items():
        snap = await caught_up_snapshot(nc, market, last)
        assert snap.state == "VALID" and snap.sequence == gen.last_published
        assert levels_of(snap) == gen.expected()
    await wait_for(
        lambda: all(
            (q := out.last_quote(m)) is not None and top_of(q) == flow.markets[m].expected_top() for m in MARKETS
        ),
        5,
        "last quotes",
    )
    await wait_for(
        lambda: all(
            (d := out.last_depth(m)) is not None and depth_levels(d) == expected_depth(flow.markets[m]) for m in MARKETS
        ),
        5,
        "last depth10",
    )
    for seqs in out.quote_seqs().values():
        assert seqs == sorted(seqs) and len(seqs) > 10
    assert {m for m, st in out.statuses if st.state == "VALID"} == set(MARKETS)

    # A late joiner while deltas keep flowing: snapshot + MD from md_stream_seq + 1.
    market = "ETH-USD-PERP"
    gen = flow.markets[market]
    updates = []
    ready = asyncio.Event()

    async def join() -> None:
        async for u in book_stream(nc, js, market):
            updates.append((u.result, u.md_stream_seq))
            ready.set()
            if done.is_set() and u.book.sequence == gen.last_published:
                assert u.book.levels() == gen.expected()
                return

    done = asyncio.Event()
    joiner = asyncio.create_task(join())
    more: list[FlowMessage] = []
    for i in range(30):
        batch = [flow.step() for _ in range(20)]
        more += batch
        await publish(js, batch)
        if i == 3:
            await asyncio.wait_for(ready.wait(), 10)
    # one last ETH message so the joiner sees the end after ``done`` is set
    done.set()
    await publish(js, [gen.step()])
    await asyncio.wait_for(joiner, 20)
    assert updates[0][0] is Applied.SNAPSHOT
    rest = [r for r, _ in updates[1:]]
    assert rest and all(r is Applied.APPLIED for r in rest)
    md_seqs = [s for _, s in updates]
    assert md_seqs == sorted(set(md_seqs))  # strictly increasing: no overlap
    # no gap: every stored ETH message after the snapshot reached the joiner
    stored = [m.stream_seq async for m in replay(js, "md.paradex.deltas.ETH-USD-PERP", start_seq=md_seqs[0] + 1)]
    assert stored == md_seqs[1:]
    assert builder.alive


async def test_gap_invalidates_requests_resync_and_snapshot_heals(nc, js, nats_url, spawn) -> None:
    out = await Outputs().start(nc)
    builder = spawn("services.book_builder", builder_env(nats_url, INSTANCE_ID="gap"), name="builder")
    await builder.wait_healthy(nc, SERVICE, timeout=20)
    flow = SyntheticFlow(["BTC-USD-PERP"], seed=3, levels=10)
    gen = flow.markets["BTC-USD-PERP"]
    await publish(js, [gen.snapshot()] + [gen.step() for _ in range(20)])
    gen.lose()
    last = await publish(js, [gen.step() for _ in range(5)])
    await wait_for(lambda: any(st.state == "INVALID" for _, st in out.statuses), 10, "INVALID status")
    await wait_for(lambda: bool(out.resyncs), 10, "a resync request")
    req = out.resyncs[0]
    assert req.instrument_id == "BTC-USD-PERP.PARADEX" and "gap" in req.reason
    snap = await fetch_snapshot(nc, "BTC-USD-PERP")
    assert snap.state == BookState.INVALID.value
    n_quotes = len(out.quotes)
    # the feed handler answers the resync with a fresh snapshot
    last = await publish(js, [gen.snapshot()] + [gen.step() for _ in range(5)])
    snap = await caught_up_snapshot(nc, "BTC-USD-PERP", last)
    assert snap.state == "VALID" and levels_of(snap) == gen.expected()
    await wait_for(lambda: out.statuses[-1][1].state == "VALID", 5, "VALID status")
    assert len(out.quotes) > n_quotes
    health = await builder.wait_healthy(nc, SERVICE)
    assert health.counters.get("book_gaps") == 1


async def test_shards_split_markets(nc, js, nats_url, spawn) -> None:
    markets = [f"M{i}-USD-PERP" for i in range(6)]
    a = spawn("services.book_builder", builder_env(nats_url, BOOK_BUILDER_SHARD="0/2", INSTANCE_ID="s0"), name="s0")
    b = spawn("services.book_builder", builder_env(nats_url, BOOK_BUILDER_SHARD="1/2", INSTANCE_ID="s1"), name="s1")
    await a.wait_healthy(nc, SERVICE, timeout=20)
    await b.wait_healthy(nc, SERVICE, timeout=20)
    flow = SyntheticFlow(markets, seed=4, levels=8)
    last = await publish(js, flow.snapshots() + [flow.step() for _ in range(120)])
    builders = set()
    for m, gen in flow.markets.items():
        snap = await caught_up_snapshot(nc, m, last)
        assert levels_of(snap) == gen.expected()
        builders.add(snap.builder)
    assert builders == {"book-builder/s0", "book-builder/s1"}
    # only the owner answers: exactly one reply per request
    replies: list[str] = []
    inbox = nc.new_inbox()

    async def on_reply(msg) -> None:
        replies.append(decode_as(msg.data, BookSnapshot).builder)

    sub = await nc.subscribe(inbox, cb=on_reply)
    for m in markets:
        await nc.publish(subjects.book_snapshot(m), b"3", reply=inbox)
    await asyncio.sleep(0.5)
    await sub.unsubscribe()
    assert len(replies) == len(markets)
    top3 = await fetch_snapshot(nc, markets[0], depth=3)
    assert levels_of(top3) == tuple(side[:3] for side in flow.markets[markets[0]].expected())
    ha = await a.wait_healthy(nc, SERVICE)
    hb = await b.wait_healthy(nc, SERVICE)
    assert int(ha.details["markets"]) + int(hb.details["markets"]) == len(markets)


async def test_kill_9_restart_recovers_books_without_quote_regression(nc, js, nats_url, spawn) -> None:
    out = await Outputs().start(nc)
    env = builder_env(nats_url, INSTANCE_ID="crash")
    builder = spawn("services.book_builder", env, name="builder-1")
    await builder.wait_healthy(nc, SERVICE, timeout=20)
    flow = SyntheticFlow(MARKETS, seed=21, levels=30)
    await publish(js, flow.snapshots())

    stop = asyncio.Event()

    async def flowing() -> None:
        while not stop.is_set():
            await publish(js, [flow.step() for _ in range(25)])
            await asyncio.sleep(0.01)

    pub = asyncio.create_task(flowing())
    await asyncio.sleep(1.5)
    builder.kill()  # kill -9 in the middle of the flow
    killed_at = (await js.stream_info("MD")).state.last_seq
    await asyncio.sleep(0.7)
    restart_seq = (await js.stream_info("MD")).state.last_seq
    t0 = time.monotonic()
    builder2 = spawn("services.book_builder", env, name="builder-2")
    snap = await caught_up_snapshot(nc, MARKETS[0], restart_seq, timeout=30)
    recovery = time.monotonic() - t0
    await asyncio.sleep(0.5)
    stop.set()
    await pub
    last = (await js.stream_info("MD")).state.last_seq
    for market, gen in flow.markets.items():
        snap = await caught_up_snapshot(nc, market, last)
        assert snap.state == "VALID" and levels_of(snap) == gen.expected(), market
    await wait_for(
        lambda: all(top_of(out.last_quote(m)) == flow.markets[m].expected_top() for m in MARKETS), 5, "final quotes"
    )
    # no QuoteTick sequence ever went back: as seen live, and as stored in BOOK
    for m, seqs in out.quote_seqs().items():
        assert seqs == sorted(seqs), m
    stored: dict[str, list[int]] = {}
    async for msg in replay(js, "book.paradex.quotes.>"):
        stored.setdefault(msg.subject, []).append(int(msg.headers[SEQ_HEADER]))
    for subject, seqs in stored.items():
        assert seqs == sorted(seqs), subject
    health = await builder2.wait_healthy(nc, SERVICE)
    replayed = int(health.details["replayed_messages"])
    d = health.details
    print(
        f"\nbook-builder recovery after kill -9: {recovery:.3f} s to a caught-up snapshot "
        f"(process reports {d['recovery_s']} s = start-up/imports {d['startup_s']} + connect, checkpoints, "
        f"floors {d['setup_s']} + replay {d['replay_s']}; replayed {replayed} MD "
        f"messages; killed at MD {killed_at}, restarted at MD {restart_seq})"
    )
    # started from the checkpoints, not from the stream's start
    assert int(d["checkpoints_loaded"]) == len(MARKETS) and int(d["replay_from"]) > len(MARKETS) + 1, d

    # graceful stop writes a final checkpoint: the next start replays nothing old
    assert builder2.term() == 0
    builder3 = spawn("services.book_builder", env, name="builder-3")
    await caught_up_snapshot(nc, MARKETS[0], last)
    h3 = await builder3.wait_healthy(nc, SERVICE)
    assert int(h3.details["replayed_messages"]) == 0


async def test_lost_delivery_below_the_consumer_restarts_it_from_the_position(nc, js, nats_url) -> None:
    """In-process: a consumer-sequence jump (a message nats-py dropped from its queue) makes the
    builder recreate the MD consumer after the last handled message; the book stays exact."""
    from nats.aio.msg import Msg

    from services.book_builder.config import BookBuilderSettings
    from services.book_builder.service import BookBuilder

    settings = BookBuilderSettings.from_env(env=builder_env(nats_url, INSTANCE_ID="inproc"))
    svc = BookBuilder(settings)
    svc.nc, svc.js = nc, js
    flow = SyntheticFlow(["BTC-USD-PERP"], seed=8, levels=10)
    gen = flow.markets["BTC-USD-PERP"]
    last = await publish(js, [gen.snapshot()] + [gen.step() for _ in range(20)])
    await svc.setup()
    try:
        await wait_for(lambda: svc.engine.live and svc.engine.position == last, 10, "caught up")
        fake = Msg(
            _client=nc,
            subject="md.paradex.deltas.BTC-USD-PERP",
            reply=f"$JS.ACK.MD.c.1.{last + 5}.{svc._dseq + 5}.1.0",
            data=b"",
        )
        await svc._on_md(fake)
        assert svc.problems.counts["md_delivery_gap"] == 1
        last = await publish(js, [gen.step() for _ in range(20)])
        await wait_for(lambda: svc.engine.position == last, 10, "caught up after the consumer was recreated")
        book = svc.engine.markets["BTC-USD-PERP"].book
        assert book.valid and book.levels() == gen.expected()
        assert svc.engine.stats.gaps == 0 and svc.engine.stats.malformed == 0
    finally:
        await svc.stop_intake()
        await svc.drain()
