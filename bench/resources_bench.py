"""Resource use: RSS and CPU of every process of the stack, idle and under load.

``python bench/resources_bench.py [--quick] [--json PATH] [--profile DIR]``

The stack is started the way ``make up`` starts it -- the very commands and environments of
``services.stack.programs.programs()`` with per-service NATS users (``bus.auth``) -- but in a
temporary run directory on free ports and without supervisord (so this benchmark owns the
processes): NATS, the simulator, the signer, two feed handlers, the book builder, the order router
and the reconciler. Each process is sampled with psutil every 0.5 s (CPU % of one core, RSS):

* ``idle``: the simulator's background flow paused, no orders;
* ``make-up flow``: the flow at ``make up``'s default 20 book events/s;
* ``load``: the flow at 1,000 book events/s over the 3 markets plus an order workload from this
  process: 50 passive limit orders/s through ``CMD`` (signer + router + venue), each cancelled
  about 0.2 s later.

Baselines in the same run: each service's bare interpreter with its module imported (RSS), and the
process's own idle CPU. The table gives RSS under load (ratio to the bare import) and CPU under
load (ratio to idle); per-process CPU and RSS over time are plotted. With ``--profile DIR`` every
service runs under pyinstrument and leaves a text profile of the whole run in DIR.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench.common import (  # noqa: E402
    HealthWatch,
    ProcSampler,
    budget,
    machine,
    parser,
    print_rows,
    render_profiles,
    row,
    run_main,
)
from bench.order_bench import Markets  # noqa: E402
from bus import NatsSettings, auth, connect, ensure_streams, jetstream, subjects  # noqa: E402
from bus.embedded import free_port, wait_port  # noqa: E402
from bus.trading import Trader  # noqa: E402
from services.paradex.rest import RestClient  # noqa: E402
from services.paradex_sim.admin_client import AdminClient  # noqa: E402
from services.signer.client import SignerClientError, whoami  # noqa: E402
from services.stack.layout import StackLayout  # noqa: E402
from services.stack.programs import Program, programs  # noqa: E402

LOAD_FLOW = 1000.0
LOAD_ORDERS = 50.0
MAKE_UP_FLOW = 20.0
READY = {
    "signer": ("Serving",),
    "feed-handler": ("Connected",),
    "book-builder": ("Running",),
    "order-router": ("Running",),
    "reconciler": ("Connected", "Degraded"),
}
SERVICE_MODULES = {
    "signer": "services.signer.service",
    "feed-handler": "services.feed_handler.service",
    "book-builder": "services.book_builder.service",
    "order-router": "services.order_router.service",
    "reconciler": "services.reconciler.service",
    "paradex-sim": "services.paradex_sim.simulator",
}


class StackProcs:
    """The ``make up`` programs as plain child processes."""

    def __init__(self, tmp: Path, profile: Path | None) -> None:
        ports = [free_port() for _ in range(5)]
        self.layout = StackLayout(
            run_dir=tmp,
            nats_port=ports[0],
            nats_http_port=ports[1],
            sim_rest_port=ports[2],
            sim_ws_port=ports[3],
            sim_admin_port=ports[4],
            metrics_base_port=free_port(),
            feed_handlers=2,
            sim_flow_rate=MAKE_UP_FLOW,
        )
        for d in (self.layout.run_dir, self.layout.logs, self.layout.nats_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.creds, _ = auth.prepare_stack_auth(self.layout.nats_dir)
        self.programs = programs(self.layout, self.creds)
        self.profile = profile
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, prog: Program) -> None:
        for name in prog.process_names:
            env = {**os.environ, **prog.env, "INSTANCE_ID": name}
            cmd = list(prog.command)
            if self.profile is not None and prog.name != "nats":
                cmd = [cmd[0], "-m", "pyinstrument", "-r", "session", "-o",
                       str(self.profile / f"resources-{name}.pyisession"), *cmd[1:]]
            log = open(self.layout.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
            self.procs[name] = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            log.close()

    def stop(self) -> None:
        """SIGTERM the services, then the simulator, then NATS (each group waited for: a service
        draining its commands needs the venue and the bus; under pyinstrument it must also exit on
        its own to write its profile, hence the longer wait)."""
        wait = 60.0 if self.profile is not None else 20.0
        groups = [[n for n in self.procs if n not in ("nats", "paradex-sim")], ["paradex-sim"], ["nats"]]
        for group in groups:
            live = [self.procs[n] for n in group if n in self.procs]
            for p in live:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
            deadline = time.monotonic() + wait
            for p in live:
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)


def import_rss() -> dict[str, float]:
    """RSS (MiB) of a bare interpreter that imported each service module (all at once)."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", f"import sys, {mod}; print('ready', flush=True); sys.stdin.read()"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for name, mod in SERVICE_MODULES.items()
    }
    out: dict[str, float] = {}
    for name, p in procs.items():
        assert p.stdout is not None and p.stdin is not None
        p.stdout.readline()
        with contextlib.suppress(psutil.Error):
            out[name] = round(psutil.Process(p.pid).memory_info().rss / 2**20, 1)
        p.stdin.close()
        p.wait(10)
    return out


class OrderLoad:
    """Passive limit buys at ``rate``/s over the simulator's markets, each cancelled ~0.2 s later."""

    def __init__(self, nc: Any, js: Any, account: str, markets: dict[str, tuple[str, str]]) -> None:
        self.trader = Trader(nc, account, js=js, trader_id="BENCH-001", strategy_id="BENCH-001")
        self.nc = nc
        self.account = account
        self.markets = markets
        self.counts: dict[str, int] = {}
        self._sub: Any = None

    async def start(self) -> None:
        async def cb(msg: Any) -> None:
            name = msg.data[:40]
            for kind in (b"OrderAccepted", b"OrderCanceled", b"OrderRejected", b"OrderDenied", b"OrderFilled"):
                if kind in name:
                    self.counts[kind.decode()] = self.counts.get(kind.decode(), 0) + 1

        self._sub = await self.nc.subscribe(subjects.exec_orders(self.account), cb=cb)

    async def run(self, rate: float, seconds: float) -> int:
        names = sorted(self.markets)
        pending: list[tuple[float, str, str]] = []
        t0 = time.monotonic()
        n = 0
        tasks: set[asyncio.Task[Any]] = set()
        while time.monotonic() - t0 < seconds:
            due = int((time.monotonic() - t0) * rate) + 1
            while n < due:
                market = names[n % len(names)]
                size, price = self.markets[market]
                cmd = self.trader.limit(market, "BUY", size, price, client_order_id=f"RES-{n}-{time.time_ns() % 10**9}")
                t = asyncio.ensure_future(self.trader.send(cmd))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                pending.append((time.monotonic() + 0.2, cmd.order.client_order_id, market))
                n += 1
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                _, coid, market = pending.pop(0)
                t = asyncio.ensure_future(self.trader.send(self.trader.cancel_cmd(coid, market)))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            await asyncio.sleep(0.01)
        for _, coid, market in pending:
            await self.trader.send(self.trader.cancel_cmd(coid, market))
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return n

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()


async def main_async(args: Any) -> dict[str, Any]:
    quick = bool(args.quick)
    limit = budget(20.0 if quick else 120.0)
    idle_s = 2.0 if quick else 10.0
    makeup_s = 0.0 if quick else 10.0
    load_s = args.load_seconds or (3.0 if quick else 20.0)
    tmp = Path(tempfile.mkdtemp(prefix="resources-bench-"))
    profile = Path(args.profile) if args.profile else None
    if profile:
        profile.mkdir(parents=True, exist_ok=True)
    stack = StackProcs(tmp, profile)
    baseline_rss = import_rss()
    t_start = time.monotonic()
    res: dict[str, Any] = {"bench": "resources", "quick": quick, "machine": machine()}
    nc: Any = None
    sampler: ProcSampler | None = None
    try:
        nats_prog = next(p for p in stack.programs if p.name == "nats")
        stack.start(nats_prog)
        wait_port("127.0.0.1", stack.layout.nats_port, 30)
        user, password = stack.creds["admin"]
        nc = await connect("resources-bench", NatsSettings(servers=(stack.layout.nats_url,), user=user,
                                                            password=password,
                                                            inbox_prefix=auth.user_inbox_prefix(user)))
        js = jetstream(nc)
        await ensure_streams(js, replicas=1)
        health = await HealthWatch(nc).start()
        for prog in stack.programs:
            if prog.name != "nats":
                stack.start(prog)
        account = ""
        deadline = time.monotonic() + 60
        while not account:
            try:
                account = (await whoami(nc, timeout=1.0, reply_prefix=auth.private_inbox(user))).account.lower()
            except SignerClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        for name in stack.procs:
            svc = next((k for k in READY if name == k or name.startswith(k + "-")), None)
            if svc is not None:
                await health.wait(svc, lambda h, svc=svc: h.state in READY[svc], 90, instance=name)
        res["startup_s"] = round(time.monotonic() - t_start, 2)
        print(f"stack up in {res['startup_s']} s", flush=True)
        pids = {name: p.pid for name, p in stack.procs.items()}
        sampler = ProcSampler({**pids, "bench (load generator)": os.getpid()}).start()
        admin = AdminClient(stack.layout.admin_url)
        await admin.pause_flow()
        await asyncio.sleep(0.5)
        sampler.mark("idle")
        await asyncio.sleep(idle_s)
        if makeup_s:
            await admin.resume_flow(MAKE_UP_FLOW)
            sampler.mark("make-up flow")
            await asyncio.sleep(makeup_s)
        load_s = max(2.0, min(load_s, limit - (time.monotonic() - t_start) - 3))
        await admin.resume_flow(args.flow_rate)
        markets = await passive_orders(stack.layout.rest_url)
        load = OrderLoad(nc, js, account, markets)
        await load.start()
        md0 = (await js.stream_info("MD")).state.last_seq
        sampler.mark("load")
        t = time.monotonic()
        sent = await load.run(args.orders_per_s, load_s)
        load_wall = time.monotonic() - t
        sampler.mark("after")
        md_rate = ((await js.stream_info("MD")).state.last_seq - md0) / load_wall
        await asyncio.sleep(1.0)
        await load.stop()
        await admin.pause_flow()
        await admin.close()
        res["load"] = {
            "flow_events_per_s": args.flow_rate,
            "md_msgs_per_s": round(md_rate),
            "orders_sent": sent,
            "orders_per_s": round(sent / load_wall, 1),
            "events": load.counts,
        }
        await health.stop()
    finally:
        if sampler is not None:
            sampler.stop()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        stack.stop()
    assert sampler is not None
    summary = sampler.summary()
    res["phases"] = summary
    res["baseline_import_rss_mib"] = baseline_rss
    res["table"] = table_rows(summary, baseline_rss, res["load"])
    res["series"] = series(sampler.samples)
    res["work_dir"] = str(tmp)
    if profile:
        res["profiles"] = render_profiles(profile)
    return res


async def passive_orders(rest_url: str) -> dict[str, tuple[str, str]]:
    """(size, price) per market of a limit buy 10% under the mark, 1.5x the minimum notional
    (``bench/order_bench.py``'s ``Markets``)."""
    public = RestClient(rest_url)
    try:
        raw = await public.markets()
        marks = {r["symbol"]: Decimal(r["mark_price"]) for r in await public.markets_summary("ALL")
                 if r.get("mark_price")}
    finally:
        await public.close()
    return {sym: (size, price) for sym, size, price in Markets(raw, marks).items}


def _service_of(proc: str) -> str:
    for k in SERVICE_MODULES:
        if proc == k or proc.startswith(k + "-"):
            return k
    return proc


def table_rows(summary: dict[str, dict[str, dict[str, float]]], base_rss: dict[str, float],
               load: dict[str, Any]) -> list[dict[str, Any]]:
    idle = summary.get("idle", {})
    busy = summary.get("load", {})
    rows = []
    tot_rss = sum(v["rss_peak_mib"] for k, v in busy.items() if not k.startswith("bench"))
    tot_cpu = sum(v["cpu_mean"] for k, v in busy.items() if not k.startswith("bench"))
    tot_idle = sum(v["cpu_mean"] for k, v in idle.items() if not k.startswith("bench"))
    rows.append(row(f"whole stack under load ({load['md_msgs_per_s']} MD msgs/s + {load['orders_per_s']} orders/s): "
                    "CPU", "% core", round(tot_cpu), "idle", round(tot_idle, 1), "", lower_is_better=True))
    rows.append(row("whole stack under load: RSS (sum of peaks)", "MiB", round(tot_rss), "", None, "",
                    lower_is_better=True))
    for proc, v in busy.items():
        if proc.startswith("bench"):
            continue
        svc = _service_of(proc)
        i = idle.get(proc, {})
        rows.append(row(f"{proc}: RSS peak under load (idle {i.get('rss_mean_mib', '-')})", "MiB",
                        v["rss_peak_mib"], "bare import" if svc in base_rss else "", base_rss.get(svc), "",
                        lower_is_better=True))
        rows.append(row(f"{proc}: CPU mean under load (peak {v['cpu_peak']})", "% core", v["cpu_mean"], "idle",
                        i.get("cpu_mean"), "", lower_is_better=True))
    return rows


def series(samples: list[dict[str, Any]]) -> dict[str, Any]:
    procs = sorted({s_["proc"] for s_ in samples})
    out: dict[str, Any] = {}
    for metric, label in (("cpu", "CPU % of one core"), ("rss_mib", "RSS MiB")):
        ys: dict[str, list[float]] = {}
        xs: dict[str, list[float]] = {}
        for p in procs:
            pts = [x for x in samples if x["proc"] == p]
            xs[p] = [x["t"] for x in pts]
            ys[p] = [round(x[metric], 1) for x in pts]
        out[f"per-process {metric.split('_')[0].upper()} over time"] = {
            "kind": "lines", "xs": xs, "ys": ys, "xlabel": "seconds (phases: idle, make-up flow, load)",
            "ylabel": label,
        }
    return out


def print_table(res: dict[str, Any]) -> None:
    print()
    print(f"load: {res['load']}")
    for phase, procs in res["phases"].items():
        cells = (f"{k} {v['cpu_mean']:.0f}%/{v['rss_peak_mib']:.0f}MiB" for k, v in procs.items())
        print(f"{phase:14} " + "  ".join(cells))
    print_rows(f"resources per process{' (quick)' if res['quick'] else ''}", res["table"])


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--orders-per-s", type=float, default=LOAD_ORDERS, help="order workload under load")
    p.add_argument("--flow-rate", type=float, default=LOAD_FLOW, help="simulator book events/s under load")
    p.add_argument("--load-seconds", type=float, default=None, help="length of the load phase")
    a = p.parse_args()
    if a.profile:
        a.profile = os.path.abspath(a.profile)  # the services run with cwd = the project root
    run_main(a, main_async(a), print_table)


if __name__ == "__main__":
    main()

