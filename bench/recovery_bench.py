"""Recovery: time to a consistent state after ``kill -9`` of each process with a large stream behind it.

``python bench/recovery_bench.py [--quick] [--json PATH]``

One stack, every service a real OS process on a throwaway ``nats-server``: the simulator (in this
process, seed 11, 3 majors + 5 synthetic markets, background flow), the signer, 3 feed handlers in
shard mode (2 with ``--quick``), the book builder, the order router and the reconciler. Before the
kills the streams are filled:

* ``MD``: 1,000,000 book messages (``--quick``: 30,000) of 20 extra synthetic markets
  (``services.book_builder.synthetic``, seed 7), published straight to JetStream, plus the live
  flow of the simulator's markets;
* ``EXEC``: the order history of 10,000 filled orders and 500 resting ones (``--quick``: 500 and
  50) seeded through the simulator's engine as in ``bench/recon_bench.py``: the router's events
  for every order, then the reconciler's start-up run publishes the fills and their reports.

Then, one at a time, each process is killed with SIGKILL and started again at once (as supervisord
would, minus its back-off); the time from the kill to a consistent state is measured:

============== ===================================================================================
signer         answers ``whoami`` and signs an order again
reconciler     has published the ``ReconciliationSummary`` of its start-up run (full reconciliation
               over the overlap window: every seeded fill is read again), which must be ``ok`` and
               re-emit nothing
order router   a SubmitOrder published right after the kill is ``OrderAccepted`` (the router folded
               ``EXEC``, resumed its durable ``CMD`` consumer, signed, and placed it); its projection
               holds every order it held before
book builder   (killed during flow) every market's snapshot reply is live and at or past the end of
               ``MD`` at the restart; afterwards every synthetic book equals its generator and every
               simulator book equals the simulator's own book
feed handler   (failover, no restart) every market the killed instance owned has a lease held by a
               surviving instance and a fresh book snapshot from it on ``md.paradex.deltas.<MKT>``
============== ===================================================================================

Baseline in the same run: the bare start cost of each service -- a fresh interpreter importing its
module (``python -c "import services.<x>.service"``) -- so the ratio shows what recovery adds to
merely starting Python. Goals from the component issues: signer serving again < 2 s, book
consistent < 2 s with 1,000,000 messages, reconciliation < 5 s, feed-handler takeover "within a
few seconds".
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import schemas as s  # noqa: E402
from bench.book_bench import caught_up, check_books, publish  # noqa: E402
from bench.common import (  # noqa: E402
    HealthWatch,
    Service,
    base_env,
    guarded,
    machine,
    parser,
    print_rows,
    row,
    run_main,
    stop_all,
)
from bench.recon_bench import Seeder  # noqa: E402
from bus import NatsSettings, Publisher, connect, ensure_streams, jetstream, subjects  # noqa: E402
from bus.book_client import BookUnavailable, fetch_snapshot  # noqa: E402
from bus.embedded import EmbeddedNats  # noqa: E402
from bus.trading import Trader  # noqa: E402
from schemas.enums import BookAction  # noqa: E402
from services.book_builder.synthetic import SyntheticFlow  # noqa: E402
from services.paradex_sim import Simulator  # noqa: E402
from services.paradex_sim.admin_client import AdminClient  # noqa: E402
from services.reconciler.state import read_startup_marker  # noqa: E402
from services.signer.client import SignerClient, SignerClientError, whoami  # noqa: E402

SIM_SEED = 11
MD_SEED = 7
SIM_MARKETS = ("BTC-USD-PERP", "ETH-USD-PERP", "SOL-USD-PERP")
SYNTHETIC = 5
FLOW_RATE = 100.0
GOALS = {"signer": 2.0, "book-builder": 2.0, "reconciler": 5.0, "feed-handler": 5.0}
MODULES = {
    "signer": "services.signer.service",
    "reconciler": "services.reconciler.service",
    "order-router": "services.order_router.service",
    "book-builder": "services.book_builder.service",
    "feed-handler": "services.feed_handler.service",
}


def import_times(modules: dict[str, str]) -> dict[str, float]:
    """Seconds for a fresh interpreter to import each module (the floor of any restart)."""
    out: dict[str, float] = {}
    for name, module in modules.items():
        t = time.monotonic()
        subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, env=base_env(), check=True)
        out[name] = round(time.monotonic() - t, 3)
    return out


class Stack:
    def __init__(self, tmp: Path, quick: bool) -> None:
        self.tmp = tmp
        self.quick = quick
        self.srv = EmbeddedNats(store_dir=tmp / "nats", log_file=tmp / "nats.log").start()
        self.sim = Simulator(rest_port=0, ws_port=0, admin_port=0, flow_enabled=False, flow_rate=FLOW_RATE,
                             synthetic_markets=SYNTHETIC, seed=SIM_SEED)
        self.services: list[Service] = []
        self.account = ""
        self.nc: Any = None
        self.js: Any = None
        self.health: HealthWatch | None = None

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(NATS_URL=self.srv.url, PARADEX_ENV="sim", PARADEX_REST_URL=self.sim.rest_url,
                        PARADEX_WS_URL=self.sim.ws_url, **extra)

    def add(self, name: str, module: str, **extra: str) -> Service:
        svc = Service(name, module, self.env(INSTANCE_ID=name, **extra), self.tmp / f"{name}.log")
        self.services.append(svc)
        return svc.start()

    async def start(self) -> None:
        await self.sim.start()
        self.nc = await connect("recovery-bench", NatsSettings(servers=(self.srv.url,)))
        self.js = jetstream(self.nc)
        await ensure_streams(self.js, replicas=1)
        self.health = await HealthWatch(self.nc).start()

    async def stop(self) -> None:
        stop_all(self.services, timeout=5.0)
        if self.health is not None:
            await self.health.stop()
        with contextlib.suppress(Exception):
            await self.nc.close()
        await self.sim.stop()
        self.srv.kill()


async def signer_account(nc: Any, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return (await whoami(nc, timeout=1.0)).account.lower()
        except SignerClientError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def order_for(sim: Simulator, market: str) -> tuple[str, str]:
    """(size, price) of a passive limit buy at 90% of the mark, 1.5x the minimum notional."""
    spec = sim.exchange.markets[market]
    mark = sim.exchange.pricing.mark(market)
    price = ((mark * Decimal("0.9")) / spec.price_tick_size).to_integral_value(ROUND_FLOOR) * spec.price_tick_size
    notional = Decimal(str(getattr(spec, "min_notional", 10))) * Decimal("1.5")
    size = (notional / price / spec.order_size_increment).to_integral_value(ROUND_CEILING) * spec.order_size_increment
    return f"{size.normalize():f}", f"{price.normalize():f}"


async def prefill_md(nc: Any, js: Any, flow: SyntheticFlow, n: int) -> int:
    """``n`` generated MD messages through ``bus.Publisher`` (the feed handler's publisher: about 6x
    the rate of awaiting ``js.publish_async`` futures); returns the stream's last sequence."""
    pub = await Publisher(nc, js, name="prefill", window=8000).start()
    try:
        for i in range(n):
            m = flow.step()
            await pub.publish(m.subject, m.payload, m.msg_id, m.headers)
            if i % 1000 == 999:
                await asyncio.sleep(0)  # let the sender and the ack handler run
        if not await pub.flush(300):
            raise RuntimeError(f"MD prefill not confirmed: {pub.stats}")
    finally:
        await pub.close()
    return int((await js.stream_info("MD")).state.last_seq)


# -- the measurements -------------------------------------------------------------------------------


async def recover_signer(st: Stack, signer: Service) -> dict[str, Any]:
    client = SignerClient(st.nc, st.account, requester="bench", timeout=0.5)
    await client.sign_order("BTC-USD-PERP", "BUY", "LIMIT", "0.01", "60000", int(time.time() * 1000))
    t0 = time.monotonic()
    signer.kill()
    signer.start()
    t_who = t_sign = None
    deadline = t0 + 30
    while time.monotonic() < deadline:
        try:
            if t_who is None:
                await whoami(st.nc, timeout=0.3)
                t_who = time.monotonic() - t0
            await client.sign_order("BTC-USD-PERP", "BUY", "LIMIT", "0.01", "60000", int(time.time() * 1000),
                                    timeout=0.3)
            t_sign = time.monotonic() - t0
            break
        except SignerClientError:
            await asyncio.sleep(0.01)
    await client.close()
    return {"consistent_s": t_sign, "whoami_s": t_who, "definition": "answers whoami and signs an order again"}


async def recover_reconciler(st: Stack, recon: Service) -> dict[str, Any]:
    got: asyncio.Queue[s.ReconciliationSummary] = asyncio.Queue()

    async def cb(msg: Any) -> None:
        with contextlib.suppress(Exception):
            ev = s.decode(msg.data)
            if isinstance(ev, s.ReconciliationSummary):
                await got.put(ev)

    sub = await st.nc.subscribe(subjects.exec_report(st.account, "reconciliation"), cb=cb)
    try:
        exec_msgs = (await st.js.stream_info("EXEC")).state.messages
        kill_ns = time.time_ns()
        t0 = time.monotonic()
        recon.kill()
        recon.start()
        deadline = t0 + 120
        while True:
            sm = await guarded(asyncio.wait_for(got.get(), max(0.1, deadline - time.monotonic())), [recon],
                               "the start-up summary")
            if sm.trigger == "startup" and sm.ts_init > kill_ns:
                break
        took = time.monotonic() - t0
    finally:
        await sub.unsubscribe()
    return {
        "consistent_s": took,
        "definition": "start-up ReconciliationSummary published (ok, nothing re-emitted)",
        "exec_messages": exec_msgs,
        "summary_ok": sm.ok,
        "run_s": sm.duration_ns / 1e9,
        "rest_calls": sm.rest_calls,
        "fills_matched": sm.counts.get("fills_matched", 0),
        "events_published": sm.counts.get("events_published", 0),
        "reports_published": sm.counts.get("reports_published", 0),
        "unresolved": len(sm.unresolved),
    }


async def recover_router(st: Stack, router: Service) -> dict[str, Any]:
    assert st.health is not None
    before = await st.health.wait("order-router", lambda h: h.state == "Running", 30)
    orders_before = int(before.details.get("orders", "0"))
    exec_msgs = (await st.js.stream_info("EXEC")).state.messages
    trader = Trader(st.nc, st.account, js=st.js, trader_id="BENCH-001", strategy_id="BENCH-001")
    size, price = order_for(st.sim, "ETH-USD-PERP")
    cmd = trader.limit("ETH-USD-PERP", "BUY", size, price, client_order_id=f"REC-{time.time_ns() % 10**12}")
    t0 = time.monotonic()
    router.kill()
    router.start()
    async with trader.watch(cmd.order.client_order_id) as w:
        await trader.send(cmd)
        events = await guarded(w.wait("accepted", timeout=120), [router], "the command")
    took = time.monotonic() - t0
    names = [type(e).__name__ for e in events]
    with contextlib.suppress(TimeoutError):
        await st.health.wait("order-router", lambda h: int(h.details.get("orders", "0")) > orders_before, 10)
    after = st.health.latest[("order-router", router.name)]
    return {
        "consistent_s": took,
        "definition": "a SubmitOrder sent at the kill is OrderAccepted by the restarted router",
        "exec_messages": exec_msgs,
        "events": names,
        "accepted": "OrderAccepted" in names,
        "orders_before": orders_before,
        "orders_after": int(after.details.get("orders", "0")),
    }


async def recover_book(st: Stack, builder: Service, flows: list[SyntheticFlow], admin: AdminClient) -> dict[str, Any]:
    stop = asyncio.Event()
    flow = flows[0]

    async def flowing() -> None:
        while not stop.is_set():
            await publish(st.js, [flow.step() for _ in range(20)])
            await asyncio.sleep(0.01)

    pub = asyncio.create_task(flowing())
    await asyncio.sleep(1.5)
    md_before = (await st.js.stream_info("MD")).state.messages
    builder.kill()
    t0 = time.monotonic()
    restart_seq = await last_deltas_seq(st.js)
    builder.start()
    markets = [*flow.markets, *SIM_MARKETS]
    await guarded(caught_up(st.nc, markets, restart_seq, 120), [builder], "recovery")
    took = time.monotonic() - t0
    stop.set()
    await pub
    await admin.pause_flow()
    await asyncio.sleep(0.5)
    await caught_up(st.nc, markets, await last_deltas_seq(st.js), 60)
    synthetic_mismatch = await check_books(st.nc, flows)
    sim_mismatch = await sim_books_mismatch(st.nc, admin)
    await admin.resume_flow(FLOW_RATE)
    details = {}
    if st.health is not None:
        h = await st.health.wait("book-builder", lambda h: h.details.get("live") == "1", 30)
        details = {k: h.details.get(k, "") for k in ("recovery_s", "setup_s", "load_checkpoints_s", "replay_s",
                                                     "replayed_messages", "checkpoints_loaded")}
    return {
        "consistent_s": took,
        "definition": "every market's snapshot live and at the end of MD at restart; books equal the truth",
        "md_messages": md_before,
        "synthetic_books_mismatched": synthetic_mismatch,
        "sim_books_mismatched": sim_mismatch,
        "process": details,
    }


async def last_deltas_seq(js: Any) -> int:
    """The MD sequence of the newest book message (what the builder consumes; the stream's own last
    sequence may be a mark price or a trade, which the builder's position never reaches)."""
    return int((await js.get_last_msg("MD", "md.paradex.deltas.>")).seq)


async def sim_books_mismatch(nc: Any, admin: AdminClient, timeout: float = 20.0) -> int:
    """Markets whose built book differs from the simulator's (flow paused), after ``timeout``."""
    bad = 0
    for market in SIM_MARKETS:
        truth = await admin.book(market)
        want = ([(Decimal(p), Decimal(q)) for p, q in truth["bids"]],
                [(Decimal(p), Decimal(q)) for p, q in truth["asks"]])
        deadline = time.monotonic() + timeout
        while True:
            got = None
            with contextlib.suppress(BookUnavailable):
                snap = await fetch_snapshot(nc, market, timeout=1.0, attempts=1)
                got = ([(Decimal(lv.price), Decimal(lv.size)) for lv in snap.bids],
                       [(Decimal(lv.price), Decimal(lv.size)) for lv in snap.asks])
                if snap.state == "VALID" and got == want:
                    break
            if time.monotonic() > deadline:
                bad += 1
                break
            await asyncio.sleep(0.1)
    return bad


async def failover(st: Stack, handlers: list[Service]) -> dict[str, Any]:
    assert st.health is not None
    owned: dict[str, list[str]] = {}
    for h in handlers:
        hh = await st.health.wait("feed-handler", lambda x: x.state == "Connected", 30, instance=h.name,
                                  after=time.monotonic())
        owned[h.name] = [m for m in hh.details.get("owned_markets", "").split(",") if m]
    victim = max(handlers, key=lambda h: len(owned[h.name]))
    markets = set(owned[victim.name])
    kv = await st.js.key_value("leases")
    leased: dict[str, float] = {}
    snap: dict[str, float] = {}
    t0 = 0.0

    async def on_md(msg: Any) -> None:
        m = subjects.market_from_subject(msg.subject)
        if t0 and m in markets and m not in snap:
            with contextlib.suppress(Exception):
                ev = s.decode(msg.data)
                if ev.deltas and ev.deltas[0].action == BookAction.CLEAR:
                    snap[m] = time.monotonic() - t0

    watcher = await kv.watch("feed.m.>", include_history=False)

    async def watch() -> None:
        from services.feed_handler.leases import _dec

        async for e in watcher:
            if e is None or not t0 or e.value is None or not e.value:
                continue
            m = e.key.removeprefix("feed.m.")
            with contextlib.suppress(Exception):
                owner = _dec.decode(e.value).owner
                if m in markets and m not in leased and owner != victim.name:
                    leased[m] = time.monotonic() - t0

    sub = await st.nc.subscribe("md.paradex.deltas.>", cb=on_md)
    wt = asyncio.create_task(watch())
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    victim.kill()
    deadline = t0 + 30
    while (len(leased) < len(markets) or len(snap) < len(markets)) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    took = time.monotonic() - t0
    wt.cancel()
    with contextlib.suppress(BaseException):
        await wt
    with contextlib.suppress(Exception):
        await watcher.stop()
    await sub.unsubscribe()
    victim.start()
    complete = len(leased) == len(markets) and len(snap) == len(markets)
    return {
        "consistent_s": took if complete else None,
        "definition": "every market of the killed instance leased by a survivor and its book snapshot republished",
        "instances": len(handlers),
        "victim": victim.name,
        "markets_moved": sorted(markets),
        "lease_taken_s": {m: round(v, 3) for m, v in sorted(leased.items())},
        "snapshot_republished_s": {m: round(v, 3) for m, v in sorted(snap.items())},
        "last_lease_s": max(leased.values(), default=None),
        "complete": complete,
    }


# -- the run ---------------------------------------------------------------------------------------


async def main_async(args: Any) -> dict[str, Any]:
    quick = bool(args.quick)
    n_md = 30_000 if quick else 1_000_000
    n_fills, n_open = (500, 50) if quick else (10_000, 500)
    n_fh = 2 if quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="recovery-bench-"))
    st = Stack(tmp, quick)
    res: dict[str, Any] = {"bench": "recovery", "quick": quick, "machine": machine()}
    timings: dict[str, float] = {}
    t_run = time.monotonic()
    try:
        t = time.monotonic()
        await st.start()
        signer = st.add("signer", "services.signer", SIGNER_KEY_DIR=str(tmp / "signer"),
                        SIGNER_MAX_ORDERS_PER_S="100000", SIGNER_ORDER_BURST="100000")
        builder = st.add("book-builder", "services.book_builder", BOOK_BUILDER_MAX_REPLAY="2000000")
        st.account = await guarded(signer_account(st.nc), [signer], "the signer")
        client = SignerClient(st.nc, st.account, requester="bench")
        await client.get_jwt()  # onboards the account at the venue
        await client.close()
        seed_account = hex(int(st.account, 16))
        # EXEC history: filled and resting orders through the venue's engine, the router's events.
        pub = await Publisher(st.nc, st.js, name="bench").start()
        seeder = Seeder(st.sim, seed_account, pub)
        await seeder.filled_rounds(n_fills)
        await seeder.resting(n_open)
        assert await pub.flush(120)
        await pub.close()
        timings["seed_exec_s"] = time.monotonic() - t
        # MD history: synthetic markets straight into JetStream while the builder follows.
        t = time.monotonic()
        flows = [SyntheticFlow([f"R{i:02d}-USD-PERP" for i in range(20)], seed=MD_SEED, levels=50)]
        await publish(st.js, flows[0].snapshots())
        last = await prefill_md(st.nc, st.js, flows[0], n_md)
        timings["seed_md_s"] = time.monotonic() - t
        await guarded(caught_up(st.nc, list(flows[0].markets), last, 600), [builder], "the first catch-up")
        timings["builder_caught_up_s"] = time.monotonic() - t
        recon = st.add("reconciler", "services.reconciler", PARADEX_ACCOUNT=seed_account,
                       RECON_STATE_DIR=str(tmp / "recon"), RECON_RUN_TIMEOUT_S="300")
        t = time.monotonic()
        deadline = t + 300
        while await read_startup_marker(st.js, seed_account) is None:
            if time.monotonic() > deadline or not recon.alive():
                raise RuntimeError(f"reconciler start-up run did not finish: {recon.log_tail()}")
            await asyncio.sleep(0.2)
        timings["recon_first_run_s"] = time.monotonic() - t
        router = st.add("order-router", "services.order_router", PARADEX_ACCOUNT=st.account, LOG_LEVEL="INFO",
                        ROUTER_RATE_ORDERS_PER_S="100000", ROUTER_RATE_ORDERS_PER_MIN="10000000")
        handlers = [st.add(f"feed-handler-{i}", "services.feed_handler", FEED_MODE="shard",
                           FEED_CACHE_DIR=str(tmp / f"fh{i}-cache"), FEED_STATUS_INTERVAL_S="5")
                    for i in range(n_fh)]
        assert st.health is not None
        await guarded(st.health.wait("order-router", lambda h: h.state == "Running", 60), [router], "the router")
        n_markets = len(SIM_MARKETS) + SYNTHETIC
        for h in handlers:
            await guarded(st.health.wait("feed-handler", lambda x: x.state == "Connected", 60, instance=h.name), [h],
                          h.name)
        t = time.monotonic()
        while time.monotonic() - t < 30:
            owned = sum(int(x.details.get("owned_count", "0")) for (svc, _), x in st.health.latest.items()
                        if svc == "feed-handler")
            if owned == n_markets:
                break
            await asyncio.sleep(0.2)
        admin = AdminClient(st.sim.admin_url)
        await admin.resume_flow(FLOW_RATE)
        await asyncio.sleep(1.0)
        res["stream_sizes"] = {name: (await st.js.stream_info(name)).state.messages for name in ("MD", "EXEC")}
        res["setup"] = {k: round(v, 2) for k, v in timings.items()}
        print(f"[{time.monotonic() - t_run:.1f} s] stack up; streams {res['stream_sizes']}; setup {res['setup']}",
              flush=True)

        out: dict[str, dict[str, Any]] = {}
        out["signer"] = await recover_signer(st, signer)
        print(f"[{time.monotonic() - t_run:.1f} s] signer", out["signer"], flush=True)
        out["reconciler"] = await recover_reconciler(st, recon)
        print(f"[{time.monotonic() - t_run:.1f} s] reconciler", out["reconciler"], flush=True)
        out["order-router"] = await recover_router(st, router)
        print(f"[{time.monotonic() - t_run:.1f} s] order-router", out["order-router"], flush=True)
        out["book-builder"] = await recover_book(st, builder, flows, admin)
        print(f"[{time.monotonic() - t_run:.1f} s] book-builder", out["book-builder"], flush=True)
        out["feed-handler"] = await failover(st, handlers)
        print(f"[{time.monotonic() - t_run:.1f} s] feed-handler", out["feed-handler"], flush=True)
        await admin.close()
        res["recovery"] = out
        res["import_s"] = import_times(MODULES)
    finally:
        await st.stop()
    res["table"] = table_rows(res)
    res["series"] = {
        "time to consistent after kill -9": {
            "kind": "line",
            "x": list(range(len(res["recovery"]))),
            "y": [v["consistent_s"] or 0 for v in res["recovery"].values()],
            "xlabel": "process (" + ", ".join(f"{i}={k}" for i, k in enumerate(res["recovery"])) + ")",
            "ylabel": "seconds",
        }
    }
    return res


def table_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    rec = res["recovery"]
    imp = res["import_s"]
    sizes = res["stream_sizes"]
    rows = []
    sig = rec["signer"]
    rows.append(row("signer: kill -9 -> signs again", "s", sig["consistent_s"], "python import of the service",
                    imp["signer"], f"< {GOALS['signer']:.0f} s", lower_is_better=True))
    r = rec["reconciler"]
    rows.append(row(f"reconciler: kill -9 -> start-up summary ({r['fills_matched']} fills re-read, "
                    f"{r['events_published']} re-emitted)", "s", r["consistent_s"], "python import of the service",
                    imp["reconciler"], f"< {GOALS['reconciler']:.0f} s (reconciliation), ok={r['summary_ok']}",
                    lower_is_better=True))
    o = rec["order-router"]
    rows.append(row(f"order router: kill -9 -> command accepted ({sizes['EXEC']:,} msgs in EXEC)", "s",
                    o["consistent_s"], "python import of the service", imp["order-router"],
                    f"orders {o['orders_before']} -> {o['orders_after']}", lower_is_better=True))
    b = rec["book-builder"]
    rows.append(row(f"book builder: kill -9 -> consistent ({b['md_messages']:,} msgs in MD)", "s", b["consistent_s"],
                    "python import of the service", imp["book-builder"],
                    f"< {GOALS['book-builder']:.0f} s; books differing: {b['synthetic_books_mismatched']} synthetic, "
                    f"{b['sim_books_mismatched']} simulator", lower_is_better=True))
    f = rec["feed-handler"]
    rows.append(row(f"feed handler failover: {len(f['markets_moved'])} markets re-owned + snapshot "
                    f"({f['instances']} instances)", "s", f["consistent_s"], "python import of the service",
                    imp["feed-handler"], "within a few seconds (lease TTL 4 s)", lower_is_better=True))
    return rows


def print_table(res: dict[str, Any]) -> None:
    print()
    print_rows(f"recovery after kill -9{' (quick)' if res['quick'] else ''}: streams {res.get('stream_sizes')}",
               res["table"])


def main() -> None:
    a = parser(__doc__).parse_args()
    run_main(a, main_async(a), print_table)


if __name__ == "__main__":
    main()
