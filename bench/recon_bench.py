"""Reconciler: a full reconciliation with 500 open orders and 10,000 fills since the watermark.

``python bench/recon_bench.py [--quick] [--json PATH]`` starts a throwaway nats-server, the
simulator (in-process, venue rate limits on), the signer and the reconciler as real processes, and
seeds the account through the simulator's engine:

* 10,000 orders, each filled once by the simulator's taker (``--quick``: 1,000), then 500 resting
  orders over four markets (``--quick``: 100);
* on the bus, the router's events for every order (OrderInitialized, OrderSubmitted, OrderAccepted)
  but none of the fills -- the private stream "dropped" them all.

Measured (from the runs' own ``ReconciliationSummary``: ``duration_ns`` and ``rest_calls``):

1. ``behind``: the reconciler's start-up run, which reads everything and publishes the 10,000
   missing OrderFilled events (plus their FillReports/OrderStatusReports) and the mass status;
2. ``in sync``: a full run requested over ``ctl.reconcile`` right after, which reads the same
   10,000 fills since the watermark (the overlap window covers them) and finds nothing to correct.

Goal: each under 5 s, REST calls within the venue's private-GET limits (600/min per account) and the
reconciler's own token bucket. A table is printed; ``--json`` writes the harness document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import psutil
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import schemas as s  # noqa: E402
from bus import NatsSettings, Publisher, connect, ensure_streams, jetstream, msgid, subjects  # noqa: E402
from bus.embedded import EmbeddedNats  # noqa: E402
from bus.replay import last_message  # noqa: E402
from services.paradex_sim import Simulator  # noqa: E402
from services.reconciler.state import read_startup_marker  # noqa: E402
from services.signer.client import SignerClient, SignerClientError, whoami  # noqa: E402

GOAL_S = 5.0
MARKETS = ("BTC-USD-PERP", "ETH-USD-PERP", "SOL-USD-PERP", "SYN001-USD-PERP")
ORDERS_PER_ROUND = 100
TRADER, STRATEGY = "TRADER-001", "BENCH-001"


def _spawn(module: str, env: dict[str, str], log: Path, profile: str | None = None) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - owned by the child
    prefix = ["-m", "pyinstrument", "-r", "text", "-o", profile] if profile else []
    proc = subprocess.Popen(
        [sys.executable, *prefix, "-m", module],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()
    return proc


class Seeder:
    """Orders and fills straight through the simulator's engine; the router's events onto EXEC."""

    def __init__(self, sim: Simulator, account: str, pub: Publisher) -> None:
        self.sim = sim
        self.ex = sim.exchange
        self.acct = self.ex.accounts[account]
        self.taker = sim.admin.mm_taker
        self.account = account
        self.pub = pub
        self.n = 0

    def _submit(
        self, acct: Any, market: str, side: str, size: Decimal, price: Decimal, cid: str = "", instruction: str = "GTC"
    ) -> Any:
        return self.ex.submit(
            acct,
            market=market,
            side=side,
            type="LIMIT",
            size=size,
            price=price,
            instruction=instruction,
            client_id=cid,
            process_now=True,
        )

    async def _router_events(self, coid: str, market: str, side: str, size: str, price: str, venue_id: str) -> None:
        head = {
            "trader_id": TRADER,
            "strategy_id": STRATEGY,
            "instrument_id": f"{market}.PARADEX",
            "client_order_id": coid,
        }
        now = time.time_ns()
        aid = f"PARADEX-{self.account}"
        subj = subjects.exec_order(self.account, coid)
        events = [
            s.OrderInitialized(
                **head,
                order_side=side,
                order_type="LIMIT",
                quantity=size,
                time_in_force="GTC",
                options=s.OrderOptions(price=price),
                event_id=str(uuid.uuid4()),
                ts_init=now,
                ts_event=now,
            ),
            s.OrderSubmitted(**head, account_id=aid, event_id=str(uuid.uuid4()), ts_event=now, ts_init=now),
            s.OrderAccepted(
                **head, venue_order_id=venue_id, account_id=aid, event_id=str(uuid.uuid4()), ts_event=now, ts_init=now
            ),
        ]
        for ev in events:
            await self.pub.publish_event(subj, ev, msgid.order_event(self.account, coid, type(ev).__name__, 0))

    async def filled_rounds(self, fills: int) -> None:
        market = "BTC-USD-PERP"
        size = Decimal("0.002")
        for r in range(fills // ORDERS_PER_ROUND):
            side = "BUY" if r % 2 == 0 else "SELL"
            price = Decimal("64000") if side == "BUY" else Decimal("66000")
            for _ in range(ORDERS_PER_ROUND):
                self.n += 1
                coid = f"b{self.n}"
                o = self._submit(self.acct, market, side, size, price, coid)
                await self._router_events(coid, market, side, str(size), str(price), o.id)
            self._submit(
                self.taker,
                market,
                "SELL" if side == "BUY" else "BUY",
                size * ORDERS_PER_ROUND,
                price,
                instruction="IOC",
            )
            await asyncio.sleep(0)

    async def resting(self, count: int) -> None:
        per_market = count // len(MARKETS)
        for market in MARKETS:
            spec = self.ex.markets[market]
            mark = self.ex.pricing.mark(market)
            price = ((mark * Decimal("0.9")) / spec.price_tick_size).to_integral_value(ROUND_FLOOR)
            price *= spec.price_tick_size
            size = (Decimal(20) / price / spec.order_size_increment).to_integral_value(ROUND_CEILING)
            size *= spec.order_size_increment
            for _ in range(per_market):
                self.n += 1
                coid = f"r{self.n}"
                o = self._submit(self.acct, market, "BUY", size, price, coid)
                await self._router_events(coid, market, "BUY", str(size), str(price), o.id)


async def _summary_after(js: Any, account: str, run_id: str | None = None) -> s.ReconciliationSummary:
    sm = await last_message(js, "EXEC", subjects.exec_report(account, "reconciliation"))
    assert isinstance(sm, s.ReconciliationSummary)
    return sm


def _row(name: str, sm: s.ReconciliationSummary) -> dict[str, Any]:
    secs = sm.duration_ns / 1e9
    return {
        "run": name,
        "seconds": round(secs, 3),
        "rest_calls": sm.rest_calls,
        "ok": sm.ok,
        "fills_emitted": sm.counts.get("fills_emitted", 0),
        "fills_matched": sm.counts.get("fills_matched", 0),
        "orders_checked": sm.counts.get("orders_checked", 0),
        "events_published": sm.counts.get("events_published", 0),
        "reports_published": sm.counts.get("reports_published", 0),
        "phases_ms": {k[3:]: v for k, v in sm.counts.items() if k.startswith("ms_")},
        "counts": sm.counts,
    }


async def run(quick: bool, profile: str | None = None) -> dict[str, Any]:
    n_fills, n_open = (1000, 100) if quick else (10_000, 500)
    tmp = Path(tempfile.mkdtemp(prefix="recon-bench-"))
    nats_srv = EmbeddedNats(store_dir=tmp / "nats", log_file=tmp / "nats.log").start()
    sim = Simulator(rest_port=0, ws_port=0, admin_port=0, flow_enabled=False, synthetic_markets=1)
    await sim.start()
    procs: list[subprocess.Popen[bytes]] = []
    nc = await connect("recon-bench", NatsSettings(servers=(nats_srv.url,)))
    try:
        js = jetstream(nc)
        await ensure_streams(js, replicas=1)
        base = {
            "NATS_URL": nats_srv.url,
            "PARADEX_ENV": "sim",
            "PARADEX_REST_URL": sim.rest_url,
            "LOG_LEVEL": "WARNING",
            "HEALTH_INTERVAL": "1",
        }
        procs.append(_spawn("services.signer", {**base, "SIGNER_KEY_DIR": str(tmp / "signer")}, tmp / "signer.log"))
        deadline = time.monotonic() + 60
        while True:
            try:
                account = (await whoami(nc, timeout=1.0)).account.lower()
                break
            except SignerClientError:
                if time.monotonic() > deadline:
                    raise RuntimeError((tmp / "signer.log").read_text()[-2000:]) from None
                await asyncio.sleep(0.2)
        signer = SignerClient(nc, account, requester="bench")
        await signer.get_jwt()  # onboards the account
        await signer.close()
        account = hex(int(account, 16))
        pub = await Publisher(nc, js, name="bench").start()
        seeder = Seeder(sim, account, pub)
        t0 = time.perf_counter()
        await seeder.filled_rounds(n_fills)
        await seeder.resting(n_open)
        assert await pub.flush(120)
        seed_s = time.perf_counter() - t0
        venue_fills = len(seeder.acct.fills)
        open_orders = len(seeder.acct.open_orders)
        procs.append(
            _spawn(
                "services.reconciler",
                {
                    **base,
                    "PARADEX_ACCOUNT": account,
                    "RECON_STATE_DIR": str(tmp / "recon"),
                    "RECON_ORDERS_INTERVAL_S": "0",
                    "RECON_POSITIONS_INTERVAL_S": "0",
                    "RECON_GRACE_MS": "0",
                    "RECON_RUN_TIMEOUT_S": "300",
                    "RECON_OVERLAP_S": "600",  # the in-sync run re-reads every seeded fill
                },
                tmp / "reconciler.log",
                profile,
            )
        )
        deadline = time.monotonic() + 300
        while (marker := await read_startup_marker(js, account)) is None:
            if time.monotonic() > deadline or procs[-1].poll() is not None:
                raise RuntimeError((tmp / "reconciler.log").read_text()[-3000:])
            await asyncio.sleep(0.1)
        behind = await _summary_after(js, account)
        recon_proc = psutil.Process(procs[-1].pid)
        cpu0 = sum(recon_proc.cpu_times()[:2])
        req = s.ReconcileRequest(account=account, reason="bench", requested_by="bench", ts_init=time.time_ns())
        reply = await nc.request(subjects.ctl_reconcile(account), s.encode(req), timeout=300)
        in_sync_cpu = sum(recon_proc.cpu_times()[:2]) - cpu0
        in_sync = s.decode(reply.data)
        assert isinstance(in_sync, s.ReconciliationSummary)
        await pub.close()
        rows = [
            _row("behind: start-up run, all fills missing", behind),
            _row("in sync: full run, nothing to correct", in_sync),
        ]
        rows[1]["reconciler_cpu_s"] = round(in_sync_cpu, 3)
        return {
            "benchmark": "recon",
            "quick": quick,
            "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count()},
            "seed": {
                "venue_fills": venue_fills,
                "venue_open_orders": open_orders,
                "orders": seeder.n,
                "seconds": round(seed_s, 2),
            },
            "startup_ok": marker.ok,
            "runs": rows,
            "table": [
                {
                    "measurement": f"full reconciliation, {open_orders} open orders + {venue_fills} fills, "
                    f"{r['run'].split(':')[0]}",
                    "unit": "s",
                    "value": r["seconds"],
                    "baseline_name": "goal",
                    "baseline": GOAL_S,
                    "ratio": r["seconds"] / GOAL_S,
                    "goal": f"< {GOAL_S:.0f} s; REST calls {r['rest_calls']}",
                }
                for r in rows
            ],
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        await nc.close()
        await sim.stop()
        nats_srv.kill()


def table(res: dict[str, Any]) -> str:
    seed = res["seed"]
    out = [
        f"reconciler: {seed['venue_open_orders']} open orders, {seed['venue_fills']} fills since the watermark "
        f"(seeded in {seed['seconds']} s)",
        f"{'run':42} {'seconds':>8} {'REST calls':>10} {'fills emitted':>13} {'fills matched':>13} "
        f"{'events out':>10} {'ok':>4}",
    ]
    for r in res["runs"]:
        out.append(
            f"{r['run']:42} {r['seconds']:8.3f} {r['rest_calls']:10d} {r['fills_emitted']:13d} "
            f"{r['fills_matched']:13d} {r['events_published'] + r['reports_published']:10d} "
            f"{'yes' if r['ok'] else 'NO':>4}"
        )
    cpu = res["runs"][1].get("reconciler_cpu_s")
    out.append(f"  in sync: reconciler process CPU {cpu} s (wall time above includes waiting on the venue and NATS)")
    for r in res["runs"]:
        phases = ", ".join(f"{k} {v}" for k, v in r["phases_ms"].items())
        out.append(f"  {r['run'].split(':')[0]:8} ms per phase: {phases}")
    out.append(f"goal: each run < {GOAL_S:.0f} s (load average at the end: {os.getloadavg()[0]:.1f})")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="100 open orders and 1,000 fills")
    p.add_argument("--json", dest="json_path", default=None, help="write the results here")
    p.add_argument("--profile", default=None, help="run the reconciler under pyinstrument; text report here")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bus").setLevel(logging.ERROR)
    res = uvloop.run(run(a.quick, a.profile))
    print(table(res))
    if a.json_path:
        Path(a.json_path).write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
