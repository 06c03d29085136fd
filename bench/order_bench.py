"""Order path benchmark: command publish -> OrderAccepted through signer + router + simulator.

    python bench/order_bench.py [--quick] [--json PATH]

Starts a nats-server, the simulator (own process: no background flow, no venue rate limits, no
signature verification -- the venue's own ~1 ms of STARK verification is the venue's time), the
signer and the order router, then runs:

* ``baseline``  -- direct REST submission: sign in-process (the same ``services.paradex.signing``
  the signer uses), ``POST /orders`` with the same HTTP client, wait for the WS ``OPEN``; no bus.
* ``latency``   -- the pipeline at a low rate (open loop): latency publish -> OrderAccepted seen.
* ``sustained`` -- the pipeline at ``--rate`` commands/s (goal 300) for ``--duration`` s: achieved
  rate, and latency under that load.
* ``burst``     -- ``--burst`` commands published as fast as possible: capacity in commands/s.

For each pipeline phase the router's own per-hop split (``ctl.router.<acct>.latency``: bus in,
submit events, sign wait, REST, venue->WS, WS handling, publish out, and ``own`` = total minus
the venue's REST and WS time) is printed next to the end-to-end numbers. The pipeline's added
latency is reported both as the router's ``own`` and as pipeline e2e minus baseline e2e.
Orders are passive limit buys spread over many markets (each market caps open orders at 150).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from decimal import ROUND_UP, Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
from nats.aio.client import Client as NATS  # noqa: E402

import schemas as s  # noqa: E402
from bus import NatsSettings, connect, ensure_streams, jetstream, msgid, subjects  # noqa: E402
from bus.embedded import EmbeddedNats  # noqa: E402
from bus.publisher import MSG_ID  # noqa: E402
from bus.trading import Trader  # noqa: E402
from services.paradex.private_rest import PrivateRestClient  # noqa: E402
from services.paradex.rest import RestClient  # noqa: E402
from services.paradex.ws import WsClient  # noqa: E402
from services.paradex_sim.testclient import SimTrader  # noqa: E402
from services.signer.client import whoami  # noqa: E402

GOAL_RATE = 300.0
GOAL_OWN_P50_MS = 2.0
GOAL_OWN_P99_MS = 10.0


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU per order of each process over a phase: a load-independent measure of capacity."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start: dict[str, float] = {}

    def begin(self) -> None:
        self.start = {k: proc_cpu(p) for k, p in self.pids.items()}

    def per_order_ms(self, orders: int) -> dict[str, float]:
        out = {k: round((proc_cpu(p) - self.start[k]) * 1000 / max(orders, 1), 3) for k, p in self.pids.items()}
        out["pipeline_total"] = round(sum(v for k, v in out.items() if k != "bench"), 3)
        return out


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def stats_ms(values_s: list[float]) -> dict[str, float]:
    v = [x * 1000 for x in values_s]
    return {"n": len(v), "p50": round(pct(v, 0.5), 3), "p90": round(pct(v, 0.9), 3), "p99": round(pct(v, 0.99), 3),
            "max": round(max(v), 3) if v else float("nan")}


class Proc:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        out = open(log, "ab")  # noqa: SIM115 - owned by the child
        self.p = subprocess.Popen([sys.executable, *args], env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                                  cwd=ROOT, stdout=subprocess.PIPE if name == "sim" else out, stderr=out)
        out.close()

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()


async def wait_health(nc: NATS, service: str, state: str, timeout: float = 40.0) -> None:
    q: asyncio.Queue[Any] = asyncio.Queue()

    async def cb(msg: Any) -> None:
        with contextlib.suppress(Exception):
            await q.put(s.decode(msg.data))

    sub = await nc.subscribe(f"svc.{service}.*.health", cb=cb)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                h = await asyncio.wait_for(q.get(), 0.5)
                if h.state == state:
                    return
        raise TimeoutError(f"{service} not {state} after {timeout}s")
    finally:
        await sub.unsubscribe()


class Markets:
    """Round-robin passive limit buys (90 % of mark, min notional x 1.5) over many markets."""

    def __init__(self, markets: list[dict[str, Any]], marks: dict[str, Decimal]) -> None:
        self.items: list[tuple[str, str, str]] = []
        for m in markets:
            sym = m["symbol"]
            if sym not in marks:
                continue
            tick, step = Decimal(m["price_tick_size"]), Decimal(m["order_size_increment"])
            price = (marks[sym] * Decimal("0.9") / tick).to_integral_value() * tick
            size = (Decimal(m["min_notional"]) * Decimal("1.5") / price / step).to_integral_value(ROUND_UP) * step
            self.items.append((sym, f"{size.normalize():f}", f"{price.normalize():f}"))
        self.i = 0

    def next(self) -> tuple[str, str, str]:
        item = self.items[self.i % len(self.items)]
        self.i += 1
        return item


class Pipeline:
    """Publishes SubmitOrders and times command publish -> OrderAccepted seen on EXEC."""

    def __init__(self, nc: NATS, account: str) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.account = account
        self.trader = Trader(nc, account, js=self.js, trader_id="BENCH-001", strategy_id="BENCH-001")
        self.sent: dict[str, float] = {}
        self.accepted: dict[str, float] = {}
        self.other: dict[str, int] = {}
        self.done = asyncio.Event()
        self.expect = 0
        self._sub: Any = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(subjects.exec_orders(self.account), cb=self._on_event)

    async def _on_event(self, msg: Any) -> None:
        now = time.perf_counter()
        name = msg.data[:60]
        coid = msg.subject.rsplit(".", 1)[1]
        if b"OrderAccepted" in name:
            if coid in self.sent and coid not in self.accepted:
                self.accepted[coid] = now
                if len(self.accepted) >= self.expect:
                    self.done.set()
        elif b"OrderDenied" in name or b"OrderRejected" in name:
            ev = s.decode(msg.data)
            key = f"{type(ev).__name__}: {ev.reason[:60]}"
            self.other[key] = self.other.get(key, 0) + 1

    async def send(self, market: str, size: str, price: str, tag: str) -> None:
        cmd = self.trader.limit(market, "BUY", size, price, client_order_id=f"{tag}-{uuid.uuid4().hex[:12]}")
        coid = cmd.order.client_order_id
        self.sent[coid] = time.perf_counter()
        await self.js.publish(self.trader.subject_for(cmd), s.encode(cmd),
                              headers={MSG_ID: msgid.command(cmd.command_id)})

    async def run(self, markets: Markets, n: int, rate: float | None, tag: str, timeout: float) -> dict[str, Any]:
        self.sent.clear()
        self.accepted.clear()
        self.other.clear()
        self.done.clear()
        self.expect = n
        t0 = time.perf_counter()
        pending: set[asyncio.Task[None]] = set()
        for i in range(n):
            if rate:
                wait = t0 + i / rate - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
            market, size, price = markets.next()
            task = asyncio.ensure_future(self.send(market, size, price, tag))
            pending.add(task)
            task.add_done_callback(pending.discard)
            if len(pending) > 512:
                await asyncio.wait(set(pending), return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.gather(*pending)
        t_sent = time.perf_counter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), timeout)
        t_end = max(self.accepted.values(), default=time.perf_counter())
        lat = [self.accepted[c] - self.sent[c] for c in self.accepted]
        return {
            "orders": n,
            "accepted": len(self.accepted),
            "not_accepted": dict(self.other),
            "target_rate": rate,
            "publish_rate": round(n / max(t_sent - t0, 1e-9), 1),
            "accepted_rate": round(len(self.accepted) / max(t_end - t0, 1e-9), 1),
            "e2e_ms": stats_ms(lat),
        }


async def router_hops(nc: NATS, account: str, reset: bool) -> dict[str, float]:
    subject = f"ctl.router.{account}.latency"
    msg = await nc.request(subject, msgspec.json.encode({"reset": reset}), timeout=5)
    raw = msgspec.json.decode(msg.data)
    return {
        k.removeprefix("lat_").replace("_us", "_ms"): int(v) / 1000
        for k, v in raw.items()
        if k.startswith("lat_") and "_p" in k
    }


async def baseline(rest_url: str, ws_url: str, chain: str, markets: Markets, n: int, rate: float) -> dict[str, Any]:
    trader = await SimTrader(rest_url, chain_id=chain).login()
    jwt = trader.jwt or ""

    async def token(force: bool) -> str:
        return jwt

    rest = PrivateRestClient(rest_url, token=token)
    waiters: dict[str, asyncio.Future[float]] = {}
    dec = msgspec.json.Decoder(dict)

    def on_order(channel: str, raw: msgspec.Raw) -> None:
        now = time.perf_counter()
        o = dec.decode(raw)
        if o.get("status") == "OPEN":
            fut = waiters.get(o.get("client_id", ""))
            if fut is not None and not fut.done():
                fut.set_result(now)

    async def provider() -> str:
        return jwt

    ws = WsClient(ws_url, name="bench-baseline", jwt_provider=provider)
    ws.subscribe("orders.ALL", on_order)
    await ws.start()
    await ws.wait_active("orders.ALL", 10)
    sign_s, rest_s, ws_s, e2e = [], [], [], []
    loop = asyncio.get_running_loop()
    try:
        t0 = time.perf_counter()
        for i in range(n):
            wait = t0 + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            market, size, price = markets.next()
            cid = f"BASE-{uuid.uuid4().hex[:12]}"
            fut: asyncio.Future[float] = loop.create_future()
            waiters[cid] = fut
            a = time.perf_counter()
            body = trader.order_body(market, "BUY", size, price, client_id=cid)
            b = time.perf_counter()
            await rest.submit_order(body)
            c = time.perf_counter()
            done = await asyncio.wait_for(fut, 10)
            sign_s.append(b - a)
            rest_s.append(c - b)
            ws_s.append(max(0.0, done - c))
            e2e.append(done - a)
            del waiters[cid]
    finally:
        await ws.close()
        await rest.close()
        await trader.close()
    return {"orders": n, "rate": rate, "e2e_ms": stats_ms(e2e), "sign_ms": stats_ms(sign_s),
            "rest_ms": stats_ms(rest_s), "venue_ws_ms": stats_ms(ws_s)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    lat_n = 150 if quick else 500
    lat_rate = 50.0
    duration = args.duration or (5.0 if quick else 15.0)
    burst_n = args.burst or (600 if quick else 2000)
    sustained_n = int(args.rate * duration)
    total_orders = 2 * lat_n + sustained_n + burst_n + 200
    n_markets = int(total_orders / 120) + 3
    tmp = Path(tempfile.mkdtemp(prefix="order-bench-"))
    logs = tmp / "logs"
    logs.mkdir()
    srv = EmbeddedNats(store_dir=tmp / "nats", log_file=logs / "nats.log").start()
    procs: list[Proc] = []
    results: dict[str, Any] = {}
    try:
        sim_args = ["-m", "services.paradex_sim", "--rest-port", "0", "--ws-port", "0", "--admin-port", "0",
                    "--no-flow", "--no-rate-limits", "--synthetic-markets", str(max(0, n_markets - 3)),
                    "--no-ws-compression", "--log-level", "WARNING"]
        if not args.verify_signatures:
            sim_args.append("--no-verify-signatures")
        sim = Proc("sim", sim_args, {}, logs / "sim.log")
        procs.append(sim)
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(sim.p.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(30)
        if not line or not line[0]:
            raise RuntimeError(f"simulator did not start; see {logs / 'sim.log'}")
        ports = json.loads(line[0])
        rest_url, ws_url = ports["rest_url"], ports["ws_url"]
        base = {"NATS_URL": srv.url, "PARADEX_ENV": "sim", "PARADEX_REST_URL": rest_url, "PARADEX_WS_URL": ws_url,
                "HEALTH_INTERVAL": "0.5", "LOG_LEVEL": "WARNING"}
        nc = await connect("order-bench", NatsSettings(servers=(srv.url,)))
        await ensure_streams(jetstream(nc), replicas=1)
        procs.append(Proc("signer", ["-m", "services.signer"], {
            **base, "SIGNER_KEY_DIR": str(tmp / "signer"), "SIGNER_MAX_ORDERS_PER_S": "100000",
            "SIGNER_ORDER_BURST": "100000"}, logs / "signer.log"))
        await wait_health(nc, "signer", "Serving")
        account = (await whoami(nc, timeout=5)).account.lower()
        procs.append(Proc("router", ["-m", "services.order_router"], {
            **base, "PARADEX_ACCOUNT": account, "ROUTER_RATE_ORDERS_PER_S": "100000",
            "ROUTER_RATE_ORDERS_PER_MIN": "10000000", "ROUTER_RATE_GETS_PER_S": "1000",
            "ROUTER_RATE_GETS_PER_MIN": "60000", "ROUTER_OPEN_CHECK_INTERVAL_S": "60"}, logs / "router.log"))
        await wait_health(nc, "order-router", "Running")
        public = RestClient(rest_url)
        markets_raw = await public.markets()
        summary = await public.markets_summary("ALL")
        await public.close()
        marks = {r["symbol"]: Decimal(r["mark_price"]) for r in summary if r.get("mark_price")}
        markets = Markets(markets_raw, marks)
        chain = next((m.get("chain_details", {}) or {}).get("starknet_chain_id") for m in markets_raw) or ""
        cfg = await RestClient(rest_url).system_config()
        chain = cfg.get("starknet_chain_id") or chain

        pids = {"router": procs[2].p.pid, "signer": procs[1].p.pid, "sim": procs[0].p.pid, "nats": srv.pid or 0,
                "bench": os.getpid()}
        meter = CpuMeter(pids)
        results["load_before"] = os.getloadavg()
        pipe = Pipeline(nc, account)
        await pipe.start()
        # Warm-up: one order per market (instrument and mark caches, connections), not measured.
        await pipe.run(markets, len(markets.items), 100.0, "WARM", 30)
        await router_hops(nc, account, reset=True)

        results["baseline"] = await baseline(rest_url, ws_url, chain, markets, lat_n, lat_rate)

        for phase, n, rate, tag, timeout in (
            ("latency", lat_n, lat_rate, "LAT", 30),
            ("sustained", sustained_n, args.rate, "SUS", 60),
            ("burst", burst_n, None, "BURST", 120),
        ):
            meter.begin()
            results[phase] = await pipe.run(markets, n, rate, tag, timeout)
            results[phase]["cpu_ms_per_order"] = meter.per_order_ms(n)
            results[phase]["router_hops_ms"] = await router_hops(nc, account, reset=True)
        results["load_after"] = os.getloadavg()
        await nc.close()
    finally:
        for p in reversed(procs):
            p.stop()
        srv.kill()
    lat = results["latency"]
    base_e2e = results["baseline"]["e2e_ms"]
    own = lat["router_hops_ms"]
    sus = results["sustained"]
    cpu = results["burst"]["cpu_ms_per_order"]
    results["summary"] = {
        "sustained_rate": sus["accepted_rate"],
        "cpu_ms_per_order": cpu,
        "capacity_2_idle_cores_per_s": round(2000 / cpu["pipeline_total"], 0) if cpu["pipeline_total"] else None,
        "burst_rate": results["burst"]["accepted_rate"],
        "own_p50_ms": own.get("own_p50_ms"),
        "own_p99_ms": own.get("own_p99_ms"),
        "signer_p50_ms": own.get("sign_p50_ms"),
        "signer_p99_ms": own.get("sign_p99_ms"),
        "router_only_p50_ms": own.get("router_p50_ms"),
        "router_only_p99_ms": own.get("router_p99_ms"),
        "added_vs_baseline_p50_ms": round(lat["e2e_ms"]["p50"] - base_e2e["p50"], 3),
        "added_vs_baseline_p99_ms": round(lat["e2e_ms"]["p99"] - base_e2e["p99"], 3),
        "goals": {
            "sustained_rate>=300": sus["accepted_rate"] >= GOAL_RATE * 0.97 and sus["accepted"] == sus["orders"],
            "own_p50<2ms": (own.get("own_p50_ms") or 99) < GOAL_OWN_P50_MS,
            "own_p99<10ms": (own.get("own_p99_ms") or 99) < GOAL_OWN_P99_MS,
        },
    }
    results["env"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "quick": quick,
                      "sim_verify_signatures": args.verify_signatures, "markets": len(markets.items),
                      "logs": str(logs)}
    return results


def table(r: dict[str, Any]) -> str:
    hops = ("bus_in", "submit_events", "sign", "sign_wait", "rest", "venue_ws", "ws_handle", "publish_out", "own",
            "router")
    lines = []
    b = r["baseline"]
    lines.append("order path: command publish -> OrderAccepted (ms)")
    lines.append(f"{'phase':<10} {'orders':>6} {'rate/s':>8} {'e2e p50':>8} {'e2e p99':>8}   "
                 + " ".join(f"{h:>13}" for h in hops))
    lines.append(f"{'baseline':<10} {b['orders']:>6} {b['rate']:>8.0f} {b['e2e_ms']['p50']:>8.2f} "
                 f"{b['e2e_ms']['p99']:>8.2f}   sign {b['sign_ms']['p50']:.2f}/{b['sign_ms']['p99']:.2f}  "
                 f"rest {b['rest_ms']['p50']:.2f}/{b['rest_ms']['p99']:.2f}  "
                 f"venue_ws {b['venue_ws_ms']['p50']:.2f}/{b['venue_ws_ms']['p99']:.2f}  (p50/p99, no bus)")
    for phase in ("latency", "sustained", "burst"):
        p = r[phase]
        h = p["router_hops_ms"]
        cells = " ".join(f"{h.get(f'{x}_p50_ms', float('nan')):>6.2f}/{h.get(f'{x}_p99_ms', float('nan')):<6.2f}"
                         for x in hops)
        lines.append(f"{phase:<10} {p['accepted']:>6} {p['accepted_rate']:>8.1f} {p['e2e_ms']['p50']:>8.2f} "
                     f"{p['e2e_ms']['p99']:>8.2f}   {cells}")
        if p["not_accepted"]:
            lines.append(f"{'':<10} not accepted: {p['not_accepted']}")
    s_ = r["summary"]
    lines.append("")
    lines.append(f"sustained {s_['sustained_rate']} orders/s (goal >= 300), burst capacity {s_['burst_rate']} orders/s")
    lines.append(f"pipeline's own latency (router 'own' = total - REST - venue->WS): p50 {s_['own_p50_ms']} ms "
                 f"(goal < 2), p99 {s_['own_p99_ms']} ms (goal < 10)")
    lines.append(f"  of which waiting for the signer: signer round trip p50 {s_['signer_p50_ms']} ms "
                 f"(p99 {s_['signer_p99_ms']}); the router itself: p50 {s_['router_only_p50_ms']} ms "
                 f"(p99 {s_['router_only_p99_ms']})")
    lines.append(f"pipeline e2e - direct REST baseline: p50 {s_['added_vs_baseline_p50_ms']} ms, "
                 f"p99 {s_['added_vs_baseline_p99_ms']} ms")
    c = s_["cpu_ms_per_order"]
    lines.append(f"CPU per order (ms, burst): router {c['router']}, signer {c['signer']}, simulator {c['sim']}, "
                 f"nats {c['nats']} -> {c['pipeline_total']} in all: about {s_['capacity_2_idle_cores_per_s']} "
                 "orders/s on 2 otherwise idle cores")
    lines.append(f"machine load average before/after: {r['load_before']} / {r['load_after']} "
                 f"({r['env']['cpus']} CPUs, shared)")
    lines.append(f"goals: {s_['goals']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short phases (about a minute in all)")
    ap.add_argument("--json", dest="json_path", default=None, help="write the results as JSON here")
    ap.add_argument("--rate", type=float, default=GOAL_RATE, help="sustained phase rate (commands/s)")
    ap.add_argument("--duration", type=float, default=None, help="sustained phase length (s)")
    ap.add_argument("--burst", type=int, default=None, help="orders in the burst phase")
    ap.add_argument("--verify-signatures", action="store_true", help="let the simulator verify signatures")
    args = ap.parse_args()
    try:
        import uvloop

        results = uvloop.run(main_async(args))
    except ImportError:
        results = asyncio.run(main_async(args))
    print(table(results))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2, default=str))
        print(f"wrote {args.json_path}")


if __name__ == "__main__":
    main()
