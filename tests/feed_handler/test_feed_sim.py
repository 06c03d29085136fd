"""The feed handler as a real process, against the real simulator (in-process) and a real NATS.

A module-wide stack (NATS, simulator with BTC/ETH/SOL and background flow, one feed-handler
process) serves the first tests, which compare the bus with the simulator's own ground truth and
drive faults through its admin API. The later tests start their own processes (and, where they
need it, their own NATS or simulator): subscription failure, malformed frames, NATS restart, three
instances with one killed, replicas, the instrument cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bus import NatsSettings, connect, ensure_streams, jetstream
from bus.book_client import PREV_SEQ_HEADER
from bus.embedded import EmbeddedNats, free_port
from schemas import CryptoPerpetual, InstrumentStatus, ResyncRequest, encode
from schemas.enums import AggressorSide, MarketStatusAction
from services.paradex.normalize import fixed, rate
from services.paradex_sim.admin_client import AdminClient
from services.paradex_sim.simulator import Simulator
from tests.feed_handler.harness import (
    HealthWatch,
    book_from_bus,
    book_levels,
    bus_last,
    bus_messages,
    eventually,
    feed_env,
    truth_levels,
)
from tests.feed_handler.ws_relay import WsRelay
from tests.fixtures.procs import ServiceProcess

MARKETS = ("BTC-USD-PERP", "ETH-USD-PERP", "SOL-USD-PERP")
MODULE = "services.feed_handler"
CHANNELS = ("trades.{m}", "bbo.{m}", "order_book.{m}.deltas", "markets_summary.{m}", "funding_data.{m}")


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[ServiceProcess] = []

    def spawn(self, env: dict[str, str], name: str, args: list[str] | None = None) -> ServiceProcess:
        p = ServiceProcess(MODULE, env, self.tmp / "logs" / f"{name}-{len(self.procs)}.log", args).start()
        self.procs.append(p)
        return p


@pytest_asyncio.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    tmp = tmp_path_factory.mktemp("feed_sim")
    srv = EmbeddedNats(store_dir=tmp / "nats", log_file=tmp / "nats.log").start()
    nc = await connect("pytest-feed", NatsSettings(servers=(srv.url,)))
    js = jetstream(nc)
    await ensure_streams(js, replicas=1)
    sim = await Simulator(
        rest_port=0, ws_port=0, admin_port=0, markets=MARKETS, flow_rate=80, seed=7, price_interval_s=0.5
    ).start()
    admin = AdminClient(sim.admin_url)
    health = await HealthWatch(nc).start()
    st = Stack(tmp)
    st.srv, st.nc, st.js, st.sim, st.admin, st.health = srv, nc, js, sim, admin, health  # type: ignore[attr-defined]
    st.fh = st.spawn(feed_env(srv.url, sim.rest_url, sim.ws_url, tmp, "fh-a"), "fh-a")  # type: ignore[attr-defined]
    try:
        yield st
    finally:
        for p in st.procs:
            p.kill()
        await health.stop()
        await admin.close()
        await sim.stop()
        await nc.close()
        srv.kill()


def all_active(h: Any, markets: tuple[str, ...] = MARKETS) -> bool:
    want = {c.format(m=m) for m in markets for c in CHANNELS}
    return want <= {k for k, v in h.subscriptions.items() if v == "Active"}


async def instrument(js: Any, market: str) -> CryptoPerpetual:
    inst = await eventually(lambda: bus_last(js, "REF", f"ref.paradex.instrument.{market}"), 5, "instrument")
    assert isinstance(inst, CryptoPerpetual)
    return inst


async def quiet(admin: AdminClient, settle: float = 1.0) -> None:
    """Pause the background flow and give the handler time to publish the tail."""
    await admin.pause_flow()
    await asyncio.sleep(settle)


async def check_trades(js: Any, admin: AdminClient, market: str, inst: CryptoPerpetual) -> list[str]:
    """Every trade on the bus, once, in venue order, equal to the simulator's tape from the first one."""
    msgs = await bus_messages(js, f"md.paradex.trades.{market}")
    ids = [m.event.trade_id for m in msgs]
    assert ids, f"no trades on the bus for {market}"
    assert len(ids) == len(set(ids)), "duplicate trades on the bus"
    truth = await admin.trades(market)
    truth_ids = [t["id"] for t in truth]
    start = truth_ids.index(ids[0])
    assert ids == truth_ids[start:], f"{market}: bus trades differ from the simulator's tape"
    last, t = msgs[-1].event, truth[-1]
    assert (last.price, last.size) == (fixed(t["price"], inst.price_precision), fixed(t["size"], inst.size_precision))
    assert last.aggressor_side == (AggressorSide.BUYER if t["side"] == "BUY" else AggressorSide.SELLER)
    assert last.ts_event == t["created_at"] * 1_000_000
    return ids


async def check_book_and_quote(js: Any, admin: AdminClient, market: str, inst: CryptoPerpetual) -> None:
    pp, sp = inst.price_precision, inst.size_precision
    truth = await admin.book(market)
    book, outcomes = await book_from_bus(js, market)
    assert book.valid, f"{market}: book from the bus is {book.state} ({book.reason}); outcomes {outcomes}"
    assert book.sequence == truth["seq_no"]
    assert book_levels(book, pp, sp) == truth_levels(truth, pp, sp)
    quote = await bus_last(js, "MD", f"md.paradex.quotes.{market}")
    tb, ta = truth["bids"][0], truth["asks"][0]
    assert (quote.bid_price, quote.bid_size, quote.ask_price, quote.ask_size) == (
        fixed(tb[0], pp),
        fixed(tb[1], sp),
        fixed(ta[0], pp),
        fixed(ta[1], sp),
    )


async def snapshots(js: Any, market: str) -> list[Any]:
    return [
        m for m in await bus_messages(js, f"md.paradex.deltas.{market}") if PREV_SEQ_HEADER not in (m.headers or {})
    ]


# -- module stack ---------------------------------------------------------------------------------


async def test_every_channel_matches_the_simulator(stack: Any) -> None:
    js, admin, health = stack.js, stack.admin, stack.health
    h = await health.wait("fh-a", lambda h: h.state == "Connected" and all_active(h), 20, "all channels Active")
    assert set(h.details["owned_markets"].split(",")) == set(MARKETS)
    assert h.subscriptions.get("markets") == "Active"
    await asyncio.sleep(2.0)  # background flow: trades, quotes, book changes
    await quiet(admin)
    try:
        for m in MARKETS:
            inst = await instrument(js, m)
            await check_trades(js, admin, m, inst)
            await check_book_and_quote(js, admin, m, inst)
            # Prices keep ticking on their own: compare the bus with the truth until one read agrees.
            await eventually(lambda m=m, inst=inst: _tickers_match(js, admin, m, inst), 5, f"{m} mark/index/funding")
            status = await bus_last(js, "MD", f"md.paradex.status.{m}")
            assert isinstance(status, InstrumentStatus) and status.action is MarketStatusAction.TRADING
        # Instrument definitions equal /markets.
        rows = {r["symbol"]: r for r in (await _rest_markets(stack.sim.rest_url))}
        btc = await instrument(js, "BTC-USD-PERP")
        assert (btc.price_increment, btc.size_increment) == (
            rows["BTC-USD-PERP"]["price_tick_size"],
            rows["BTC-USD-PERP"]["order_size_increment"],
        )
        assert btc.min_notional == "10.00 USD" and (btc.margin_init, btc.margin_maint) == ("0.02", "0.01")
        h = health.get("fh-a")
        assert h.counters.get("feed_malformed", 0) == 0 and h.counters.get("feed_book_gaps", 0) == 0
        assert h.counters.get("publish_dropped_overflow", 0) == 0
        assert h.details["instruments_source"] == "rest"
    finally:
        await admin.resume_flow()


async def _tickers_match(js: Any, admin: AdminClient, market: str, inst: CryptoPerpetual) -> bool:
    mark = await bus_last(js, "MD", f"md.paradex.mark.{market}")
    index = await bus_last(js, "MD", f"md.paradex.index.{market}")
    funding = await bus_last(js, "MD", f"md.paradex.funding.{market}")
    p = {r["market"]: r for r in await admin.prices()}[market]
    return (
        mark is not None
        and index is not None
        and funding is not None
        and mark.value == fixed(p["mark"], inst.price_precision)
        and index.value == fixed(p["index"], inst.price_precision)
        and funding.rate == rate(p["funding_rate"])
        and funding.interval == 480
    )


async def _rest_markets(rest_url: str) -> list[dict[str, Any]]:
    import httpx

    async with httpx.AsyncClient() as c:
        return (await c.get(f"{rest_url}/markets")).json()["results"]


async def test_status_and_instrument_updates(stack: Any) -> None:
    js, admin = stack.js, stack.admin
    subj = "md.paradex.status.BTC-USD-PERP"
    await admin.set_state("cancel_only")
    try:
        st = await eventually(lambda: _status_is(js, subj, MarketStatusAction.PAUSE), 5, "PAUSE status")
        assert st.is_trading is False and st.trading_event == "cancel_only"
    finally:
        await admin.set_state("ok")
    await eventually(lambda: _status_is(js, subj, MarketStatusAction.TRADING), 5, "TRADING again")
    # A spec change announced on the markets channel: a new definition replaces the old one on REF.
    await admin.patch_market("ETH-USD-PERP", max_order_size="2000")
    inst = await eventually(lambda: _instrument_with(js, "ETH-USD-PERP", "2000.0000"), 5, "updated instrument")
    assert inst.info["max_order_size"] == "2000"


async def _status_is(js: Any, subj: str, action: MarketStatusAction) -> Any:
    st = await bus_last(js, "MD", subj)
    return st if st is not None and st.action is action else None


async def _instrument_with(js: Any, market: str, max_qty: str) -> Any:
    inst = await bus_last(js, "REF", f"ref.paradex.instrument.{market}")
    return inst if inst is not None and inst.max_quantity == max_qty else None


async def test_seq_gap_resubscribes_and_duplicates_are_dropped(stack: Any) -> None:
    js, admin, health = stack.js, stack.admin, stack.health
    m = "BTC-USD-PERP"
    gaps0 = health.counter("fh-a", "feed_book_gaps")
    dups0 = health.counter("fh-a", "feed_book_duplicates")
    snaps0 = len(await snapshots(js, m))
    await admin.add_fault("book_seq_skip", market=m, count=1)
    await health.wait("fh-a", lambda h: h.counters.get("feed_book_gaps", 0) > gaps0, 10, "a counted gap")
    await eventually(lambda: _more_snapshots(js, m, snaps0), 5, "a fresh snapshot after the gap")
    await admin.add_fault("book_seq_dup", market=m, count=2)
    await health.wait("fh-a", lambda h: h.counters.get("feed_book_duplicates", 0) >= dups0 + 2, 10, "dups dropped")
    h = health.get("fh-a")
    assert h.counters.get("feed_book_resyncs", 0) >= 1
    await quiet(admin)
    try:
        await check_book_and_quote(js, admin, m, await instrument(js, m))
        # Deltas on the bus: each venue seq_no at most once.
        seqs = [
            x.event.deltas[-1].sequence
            for x in await bus_messages(js, f"md.paradex.deltas.{m}")
            if PREV_SEQ_HEADER in (x.headers or {})
        ]
        assert len(seqs) == len(set(seqs))
    finally:
        await admin.resume_flow()


async def _more_snapshots(js: Any, market: str, before: int) -> bool:
    return len(await snapshots(js, market)) > before


async def test_resync_request_publishes_a_fresh_snapshot(stack: Any) -> None:
    js, nc, admin, health = stack.js, stack.nc, stack.admin, stack.health
    m = "ETH-USD-PERP"
    await quiet(admin, 0.5)  # even with nothing changing, a requested snapshot must reach the bus
    try:
        before = len(await snapshots(js, m))
        req = ResyncRequest(
            instrument_id=f"{m}.PARADEX", reason="test", requested_by="book-builder-x", ts_init=time.time_ns()
        )
        await nc.publish(f"ctl.resync.{m}", encode(req))
        await nc.publish(f"ctl.resync.{m}", b"\x00not msgpack")
        await eventually(lambda: _more_snapshots(js, m, before), 5, "requested snapshot")
        await health.wait("fh-a", lambda h: h.counters.get("feed_book_resync_requests", 0) >= 1, 5, "counted")
        await check_book_and_quote(js, admin, m, await instrument(js, m))
    finally:
        await admin.resume_flow()


async def test_reconnect_after_the_simulator_drops_connections(stack: Any) -> None:
    js, admin, health = stack.js, stack.admin, stack.health
    await health.wait("fh-a", lambda h: h.state == "Connected" and all_active(h), 10, "steady state")
    disc0 = health.counter("fh-a", "ws_disconnects")
    snaps0 = {m: len(await snapshots(js, m)) for m in MARKETS}
    await asyncio.sleep(0.5)
    assert await admin.drop_ws() >= 1
    await health.wait("fh-a", lambda h: h.counters.get("ws_disconnects", 0) > disc0, 10, "disconnect seen")
    await health.wait("fh-a", lambda h: h.state == "Connected" and all_active(h), 10, "resubscribed")
    await asyncio.sleep(1.5)
    await quiet(admin)
    try:
        for m in MARKETS:
            inst = await instrument(js, m)
            assert len(await snapshots(js, m)) > snaps0[m], f"{m}: no snapshot after the reconnect"
            await check_trades(js, admin, m, inst)  # no trade lost or doubled across the drop
            await check_book_and_quote(js, admin, m, inst)
            bbo = [x.event.ts_event for x in await bus_messages(js, f"md.paradex.quotes.{m}")]
            assert bbo == sorted(bbo)
    finally:
        await admin.resume_flow()
    assert stack.fh.alive


# -- own processes --------------------------------------------------------------------------------


async def test_stale_stream_is_detected_and_resubscribed(stack: Any, nats_url: str, nc, tmp_path: Path, spawn) -> None:
    admin = stack.admin
    health = await HealthWatch(nc).start()
    m = "SOL-USD-PERP"
    try:
        env = feed_env(
            nats_url,
            stack.sim.rest_url,
            stack.sim.ws_url,
            tmp_path,
            "fh-stale",
            FEED_MARKETS=m,
            FEED_IDLE_TIMEOUT_S="1.0",
        )
        spawn(MODULE, env, name="fh-stale")
        await health.wait("fh-stale", lambda h: all_active(h, (m,)), 20, "active")
        await admin.add_fault("ws_stale", channel=f"bbo.{m}", duration_s=2.5)
        h = await health.wait("fh-stale", lambda h: h.counters.get("ws_stale_resubscribes", 0) >= 1, 10, "stale")
        assert h.counters.get("problems_total{kind=ws_stale_stream}", 0) >= 1
        await asyncio.sleep(2.0)  # fault over: the resubscribed stream flows again
        await health.wait("fh-stale", lambda h: h.subscriptions.get(f"bbo.{m}") == "Active", 10, "active again")
        js = jetstream(nc)
        n_quotes = len(await bus_messages(js, f"md.paradex.quotes.{m}"))
        await eventually(lambda: _count_more(js, f"md.paradex.quotes.{m}", n_quotes), 10, "quotes after the fault")
    finally:
        await health.stop()


async def _count_more(js: Any, subject: str, before: int) -> bool:
    return len(await bus_messages(js, subject)) > before


async def test_malformed_frames_are_counted_never_fatal(stack: Any, nats_url: str, nc, tmp_path: Path, spawn) -> None:
    relay = await WsRelay(stack.sim.ws_url).start()
    health = await HealthWatch(nc).start()
    m = "BTC-USD-PERP"
    try:
        env = feed_env(nats_url, stack.sim.rest_url, relay.url, tmp_path, "fh-mal", FEED_MARKETS=m)
        proc = spawn(MODULE, env, name="fh-mal")
        await health.wait("fh-mal", lambda h: all_active(h, (m,)), 20, "active")
        snaps0 = len(await snapshots(jetstream(nc), m))

        def note(channel: str, data: Any) -> str:
            return json.dumps(
                {"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": data}}
            )

        frames: list[str | bytes] = [
            "{not json",
            "[1, 2, 3]",
            b"\x00\x01 binary frame",
            note("trades.BTC-USD-PERP", {"id": 5}),  # missing fields
            note(
                "trades.BTC-USD-PERP",
                {"id": "9", "market": m, "side": "UP", "size": "1", "price": "1", "created_at": 1},
            ),  # bad side
            note("bbo.BTC-USD-PERP", {"market": m, "bid": 1.5, "seq_no": "x"}),  # wrong types
            note("order_book.BTC-USD-PERP.deltas", {"market": m, "update_type": "d", "inserts": []}),  # no seq_no
            note("no.such.channel", {}),
            note("markets_summary.BTC-USD-PERP", {"symbol": m, "created_at": 5, "mark_price": "abc"}),
        ]
        for f in frames:
            await relay.inject(f)
        h = await health.wait("fh-mal", lambda h: h.counters.get("feed_malformed", 0) >= 5, 10, "malformed counted")
        assert h.counters.get("ws_malformed", 0) >= 2
        assert h.counters.get("ws_unknown_channel", 0) >= 1
        assert proc.alive
        # Still serving: the state is unchanged and the book was resynced after the bad book frame.
        await health.wait("fh-mal", lambda h: h.state == "Connected" and all_active(h, (m,)), 10, "still connected")
        await eventually(lambda: _more_snapshots(jetstream(nc), m, snaps0), 5, "resync after a bad book frame")
        n = len(await bus_messages(jetstream(nc), f"md.paradex.trades.{m}"))
        await eventually(lambda: _count_more(jetstream(nc), f"md.paradex.trades.{m}", n), 10, "trades still flow")
    finally:
        await health.stop()
        await relay.stop()


async def test_nats_restart_loses_nothing_within_the_buffer(
    stack: Any, nats_server: EmbeddedNats, nc, tmp_path: Path, spawn
) -> None:
    admin = stack.admin
    health = await HealthWatch(nc).start()
    markets = ("BTC-USD-PERP", "ETH-USD-PERP")
    try:
        env = feed_env(
            nats_server.url, stack.sim.rest_url, stack.sim.ws_url, tmp_path, "fh-nats", FEED_MARKETS=",".join(markets)
        )
        spawn(MODULE, env, name="fh-nats")
        await health.wait("fh-nats", lambda h: all_active(h, markets), 20, "active")
        await admin.resume_flow(rate=200)
        await asyncio.sleep(1.0)
        down_ns = time.time_ns()
        # A restart with a real outage (stop, 1.5 s down, start): the sim keeps producing meanwhile.
        await asyncio.to_thread(nats_server.stop)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(nats_server.start)
        up_ns = time.time_ns()
        await asyncio.sleep(2.0)
        await quiet(admin, 2.0)
        js = jetstream(nc)
        h = await health.wait("fh-nats", lambda h: h.counters.get("publish_pending", 1) == 0, 15, "buffer drained")
        assert h.counters.get("publish_dropped_overflow", 0) == 0
        during = 0
        for m in markets:
            inst = await instrument(js, m)
            await check_trades(js, admin, m, inst)
            await check_book_and_quote(js, admin, m, inst)
            msgs = await bus_messages(js, f"md.paradex.deltas.{m}")
            during += sum(1 for x in msgs if down_ns < x.event.deltas[-1].ts_init < up_ns)
        print(
            f"\nNATS restart took {(up_ns - down_ns) / 1e9:.2f}s; {during} book messages created meanwhile "
            "were buffered and stored"
        )
        assert during > 0, "nothing was published while NATS was down: the test did not test buffering"
    finally:
        await admin.resume_flow(rate=80)
        await health.stop()


async def test_takeover_fills_the_hole_a_dead_owner_left_behind_its_last_trade(
    nats_url: str, nc, tmp_path: Path, spawn, sim_factory
) -> None:
    """A trades channel goes silent, comes back, and the owner dies before its audit fills the hole:
    the next owner's takeover backfill must reach behind the last trade on the bus."""
    m = "ETH-USD-PERP"
    sim = await sim_factory(markets=(m,), flow_enabled=True, flow_rate=40, seed=13)
    health = await HealthWatch(nc).start()
    js = jetstream(nc)
    subject = f"md.paradex.trades.{m}"
    try:
        async with AdminClient(sim.admin_url) as admin:
            # No audit in either instance: only the takeover backfill can fill the hole.
            env = dict(FEED_MARKETS=m, FEED_TRADE_AUDIT_S=0)
            first = spawn(MODULE, feed_env(nats_url, sim.rest_url, sim.ws_url, tmp_path, "fh-h1", **env), name="fh-h1")
            await health.wait("fh-h1", lambda h: all_active(h, (m,)), 20, "active")
            await eventually(lambda: _count_more(js, subject, 3), 10, "trades flow")
            await admin.stale_channel(f"trades.{m}", duration_s=2.0)
            await asyncio.sleep(2.2)
            on_bus = [x.event.trade_id for x in await bus_messages(js, subject)]
            venue = [t["id"] for t in await admin.trades(m)]
            hole = set(venue[venue.index(on_bus[0]) :]) - set(on_bus)
            assert hole, "the stale channel left no hole: the test did not test anything"
            n = len(await bus_messages(js, subject))
            await eventually(lambda: _count_more(js, subject, n + 2), 10, "trades after the hole")
            first.kill()
            stored = {x.event.trade_id for x in await bus_messages(js, subject)}
            assert hole - stored, "the dead owner filled the hole itself"
            spawn(MODULE, feed_env(nats_url, sim.rest_url, sim.ws_url, tmp_path, "fh-h2", **env), name="fh-h2")
            await health.wait("fh-h2", lambda h: all_active(h, (m,)), 20, "active")
            await eventually(lambda: _count_more(js, subject, len(stored) + 2), 10, "the new owner publishes")
            await quiet(admin, 1.5)
            msgs = await bus_messages(js, subject)
            ids = [x.event.trade_id for x in msgs]
            assert len(ids) == len(set(ids)), "a trade stored twice"
            truth_ids = [t["id"] for t in await admin.trades(m)]
            start = truth_ids.index(ids[0])
            assert sorted(ids) == sorted(truth_ids[start:]), "trades missing after the takeover"
            assert hole <= set(ids)
            print(f"\ntakeover filled a hole of {len(hole)} trades behind the last trade on the bus")
    finally:
        await health.stop()


async def test_replicas_publish_each_event_once(stack: Any, nats_url: str, nc, tmp_path: Path, spawn) -> None:
    admin = stack.admin
    health = await HealthWatch(nc).start()
    m = "ETH-USD-PERP"
    try:
        for name, args in (("fh-r1", ["--standby"]), ("fh-r2", ["--mode", "replica"])):
            env = feed_env(nats_url, stack.sim.rest_url, stack.sim.ws_url, tmp_path, name, FEED_MARKETS=m)
            spawn(MODULE, env, args=args, name=name)
        for name in ("fh-r1", "fh-r2"):
            h = await health.wait(name, lambda h: all_active(h, (m,)), 20, "active")
            assert h.details["mode"] == "replica" and h.details["owned_markets"] == m
        await asyncio.sleep(2.0)
        await quiet(admin)
        js = jetstream(nc)
        inst = await instrument(js, m)
        await check_trades(js, admin, m, inst)
        await check_book_and_quote(js, admin, m, inst)
        for subj, key in ((f"md.paradex.quotes.{m}", lambda e: e.ts_event),):
            msgs = await bus_messages(js, subj)
            ids = [(m_.headers or {}).get("Nats-Msg-Id") for m_ in msgs]
            assert len(ids) == len(set(ids)), "a quote stored twice"
            assert [key(x.event) for x in msgs] == sorted(key(x.event) for x in msgs)
        dups = sum(health.counter(n, "publish_duplicates") for n in ("fh-r1", "fh-r2"))
        assert dups > 0, "both replicas should have published (and the server dropped the copies)"
    finally:
        await admin.resume_flow()
        await health.stop()


async def test_instruments_from_the_cache_while_rest_is_down(
    stack: Any, nats_url: str, nc, tmp_path: Path, spawn
) -> None:
    admin = stack.admin
    health = await HealthWatch(nc).start()
    js = jetstream(nc)
    m = "SOL-USD-PERP"
    cache = tmp_path / "shared-cache"
    try:
        # A first run against another NATS fills the disk copy of /markets.
        other = EmbeddedNats(store_dir=tmp_path / "other-nats").start()
        try:
            env = feed_env(
                other.url,
                stack.sim.rest_url,
                stack.sim.ws_url,
                tmp_path,
                "fh-c1",
                FEED_MARKETS=m,
                FEED_CACHE_DIR=str(cache),
            )
            first = spawn(MODULE, env, name="fh-c1")
            await first.wait_for_log("serving SOL-USD-PERP", 20)
            assert await asyncio.to_thread(first.term) == 0
        finally:
            other.kill()
        env = {**env, "NATS_URL": nats_url}
        await admin.add_fault("rest_error", path="/markets*", status=503, duration_s=8)
        env2 = {**env, "INSTANCE_ID": "fh-c2", "FEED_INSTRUMENT_REFRESH_S": "300"}
        spawn(MODULE, env2, name="fh-c2")
        h = await health.wait("fh-c2", lambda h: all_active(h, (m,)), 20, "active on cached definitions")
        assert h.details["instruments_source"] == "cache"
        inst = await instrument(js, m)
        assert inst.raw_symbol == m and inst.price_increment == "0.001"
        await health.wait("fh-c2", lambda h: h.details.get("instruments_source") == "rest", 15, "back on REST")
    finally:
        await admin.clear_faults()
        await health.stop()


async def test_subscription_failure_retries_degraded_then_recovery(
    nats_url: str, nc, tmp_path: Path, spawn, sim_factory
) -> None:
    """The venue refuses some channels (here: a restarted venue that no longer lists a market):
    fast retries, then Degraded with the channels Failed, and recovery once the venue accepts them."""
    ports = {"rest_port": free_port(), "ws_port": free_port(), "admin_port": free_port()}
    four = (*MARKETS, "DOGE-USD-PERP")
    sim = await sim_factory(markets=four, flow_enabled=True, flow_rate=40, seed=3, **ports)
    health = await HealthWatch(nc).start()
    try:
        env = feed_env(
            nats_url,
            sim.rest_url,
            sim.ws_url,
            tmp_path,
            "fh-sub",
            FEED_SUB_MAX_RETRIES="2",
            FEED_SUB_RETRY_MAX_S="0.2",
            FEED_SUB_DEGRADED_RETRY_S="0.5",
            FEED_TRADE_BACKFILL_S="0",
        )
        spawn(MODULE, env, name="fh-sub")
        await health.wait("fh-sub", lambda h: h.state == "Connected" and all_active(h, four), 20, "active")
        await sim.stop()
        sim = await sim_factory(markets=MARKETS, flow_enabled=True, flow_rate=40, seed=4, **ports)
        h = await health.wait("fh-sub", lambda h: h.state == "Degraded", 20, "Degraded")
        doge = {c.format(m="DOGE-USD-PERP") for c in CHANNELS}
        assert all(h.subscriptions[c] == "Failed" for c in doge), h.subscriptions
        assert all_active(h, MARKETS)  # the other markets are served meanwhile
        assert h.counters.get("ws_sub_failures", 0) >= 3 * len(doge)
        n = h.counters.get("ws_sub_failures", 0)
        await health.wait("fh-sub", lambda h: h.counters.get("ws_sub_failures", 0) > n, 5, "still retrying")
        await sim.stop()
        sim = await sim_factory(markets=four, flow_enabled=True, flow_rate=40, seed=5, **ports)
        await health.wait("fh-sub", lambda h: h.state == "Connected" and all_active(h, four), 20, "recovered")
    finally:
        await health.stop()


async def test_three_instances_kill_one_takeover_within_5s(
    nats_url: str, nc, tmp_path: Path, spawn, sim_factory
) -> None:
    sim = await sim_factory(markets=(), synthetic_markets=30, flow_enabled=True, flow_rate=30, seed=11)
    health = await HealthWatch(nc).start()
    js = jetstream(nc)
    kv = await js.key_value("leases")
    owners: dict[str, str] = {}
    changed_at: dict[str, float] = {}

    async def watch() -> None:
        w = await kv.watch("feed.m.>")
        while True:
            e = await w.updates(timeout=None)
            if e is None:
                continue
            market = e.key.removeprefix("feed.m.")
            if e.operation in ("DEL", "PURGE") or not e.value:
                owners.pop(market, None)
            else:
                import msgspec

                owners[market] = msgspec.msgpack.decode(e.value)["owner"]
            changed_at[market] = time.monotonic()

    watcher = asyncio.create_task(watch())
    names = ["fh-1", "fh-2", "fh-3"]
    try:
        procs = {}
        for n in names:
            procs[n] = spawn(MODULE, feed_env(nats_url, sim.rest_url, sim.ws_url, tmp_path, n), name=n)
        markets = {f"SYN{i:03d}-USD-PERP" for i in range(1, 31)}

        def split() -> bool:
            per = {n: [m for m, o in owners.items() if o == n] for n in names}
            return set(owners) == markets and all(len(v) == 10 for v in per.values())

        await eventually(split, 30, "an even 10/10/10 split", interval=0.1)
        victim = "fh-2"
        theirs = {m for m, o in owners.items() if o == victim}
        t0 = time.monotonic()
        procs[victim].kill()  # SIGKILL: no lease is released
        await eventually(
            lambda: all(owners.get(m) not in (None, victim) for m in theirs), 10, "takeover", interval=0.02
        )
        took = max(changed_at[m] for m in theirs) - t0
        print(f"\nfeed-handler takeover after SIGKILL: {len(theirs)} markets moved in {took:.2f}s")
        assert took <= 5.0
        survivors = [n for n in names if n != victim]
        assert set(owners) == markets and set(owners.values()) <= set(survivors)

        # The survivors' own view agrees: every market served by exactly one of them.
        def served() -> bool:
            sets = [
                set(filter(None, (health.get(n).details.get("owned_markets") or "").split(",")))
                for n in survivors
                if health.get(n)
            ]
            return len(sets) == 2 and not (sets[0] & sets[1]) and (sets[0] | sets[1]) == markets

        await eventually(served, 10, "survivors serve all 30 markets, none twice")
        for n in survivors:
            await health.wait(n, lambda h: h.state == "Connected", 10, "connected")
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
        await health.stop()
