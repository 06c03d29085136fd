"""One chaos run, start to verdict.

1. **Start** the stack (``services.chaos.stack``) in a temporary directory, a health monitor on
   ``svc.*.*.health`` and the publish-stall probe; wait until every service is ready and the feed
   handlers cover every market. Venue trades from then on form the run window of the trade check.
2. **Fault phase** (``duration`` seconds): the workload trades while the seeded schedule
   (``services.chaos.faults``) is applied. A watchdog restarts any process that exits on its own
   and records it: an unexpected exit fails the run.
3. **Quiet period**: faults cleared (simulator faults, rate limits, venue state), recoveries awaited,
   the workload stopped; the background flow runs for half of the quiet period, then it is paused
   and the reconciler is asked for a full run (``ctl.reconcile.<acct>``, as ``pdx reconcile``).
4. **Convergence**: the invariant checker runs until it passes or ``converge_timeout`` passes (it
   retries because the system is eventually consistent: a run that is still repairing is not
   failed; a duplicate never goes away, so nothing is hidden by retrying).
5. **Verdict**: invariants, unexpected exits, SIGTERM exit codes (must be 0), faults that could not be
   applied, the probe stream (exactly 1..N). Everything is returned in a ``ChaosResult``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus import subjects
from bus.replay import replay
from schemas import ReconcileRequest, encode
from services.chaos.faults import ALL_KINDS, FaultEvent, FaultInjector, build_schedule
from services.chaos.health import HealthMonitor, Ownership
from services.chaos.invariants import InvariantChecker, InvariantReport
from services.chaos.probe import PublishProbe
from services.chaos.stack import DEFAULT_MARKETS, ChaosStack, StackOptions
from services.chaos.workload import Workload
from services.paradex_sim.admin_client import AdminClient

Progress = Callable[[str], None]


@dataclass
class ChaosConfig:
    duration: float = 60.0
    seed: int = 1
    cluster: bool = False
    faults: tuple[str, ...] = ALL_KINDS
    quiet: float = 16.0
    converge_timeout: float = 60.0
    flow_rate: float = 20.0
    workload_rate: float = 3.0
    markets: tuple[str, ...] = DEFAULT_MARKETS
    base_dir: Path | None = None
    keep: bool = False
    auth: bool = True


@dataclass
class ChaosResult:
    config: ChaosConfig
    base_dir: Path
    schedule: list[FaultEvent] = field(default_factory=list)
    invariants: InvariantReport | None = None
    converged_after_s: float | None = None
    check_attempts: int = 0
    unexpected_exits: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)
    probe: dict[str, Any] = field(default_factory=dict)
    stream_stalls: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    account: str = ""
    error: str = ""

    @property
    def problems(self) -> list[str]:
        """Everything that fails the run besides the invariant violations."""
        out: list[str] = []
        if self.error:
            out.append(f"run error: {self.error}")
        for ex in self.unexpected_exits:
            out.append(f"{ex['instance']} exited on its own (pid {ex['pid']}, code {ex['returncode']})")
        for ev in self.schedule:
            if ev.error:
                out.append(f"fault {ev.describe()} could not be applied: {ev.error}")
            if ev.kind == "term" and ev.params.get("exit_code") not in (0, None):
                out.append(f"{ev.target} exited with code {ev.params['exit_code']} after SIGTERM (must drain, exit 0)")
        out += [f"probe: {p}" for p in self.probe.get("problems", [])]
        return out

    @property
    def ok(self) -> bool:
        return self.invariants is not None and self.invariants.ok and not self.problems

    def to_dict(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "ok": self.ok,
            "config": {
                "duration": cfg.duration,
                "seed": cfg.seed,
                "cluster": cfg.cluster,
                "faults": list(cfg.faults),
                "quiet": cfg.quiet,
                "flow_rate": cfg.flow_rate,
                "workload_rate": cfg.workload_rate,
            },
            "base_dir": str(self.base_dir),
            "account": self.account,
            "schedule": [e.to_dict() for e in self.schedule],
            "invariants": self.invariants.to_dict() if self.invariants else None,
            "converged_after_s": self.converged_after_s,
            "check_attempts": self.check_attempts,
            "problems": self.problems,
            "unexpected_exits": self.unexpected_exits,
            "counters": self.counters,
            "workload": self.workload,
            "probe": self.probe,
            "stream_stalls": self.stream_stalls,
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }


class ChaosRun:
    def __init__(self, cfg: ChaosConfig, progress: Progress | None = None) -> None:
        self.cfg = cfg
        self.say: Progress = progress or (lambda _msg: None)
        self.rng = random.Random(cfg.seed)
        base = cfg.base_dir or Path(tempfile.mkdtemp(prefix="pdx-chaos-"))
        self.result = ChaosResult(cfg, Path(base))
        self.stack = ChaosStack(
            Path(base),
            StackOptions(
                cluster=cfg.cluster, seed=cfg.seed, flow_rate=cfg.flow_rate, markets=cfg.markets, auth=cfg.auth
            ),
        )
        self.health = HealthMonitor()
        self.t0 = time.monotonic()

    def _log(self, msg: str) -> None:
        self.say(f"[{time.monotonic() - self.t0:7.1f}s] {msg}")

    async def run(self) -> ChaosResult:
        res = self.result
        nc = None
        admin: AdminClient | None = None
        workload: Workload | None = None
        probe: PublishProbe | None = None
        watchdog: asyncio.Task[None] | None = None
        try:
            kind = "3-node cluster, R3" if self.cfg.cluster else "single NATS"
            self._log(f"starting the stack in {res.base_dir} ({kind})")
            await self.stack.start_bus()
            nc, js = await self.stack.connect("chaos-runner")
            await self.health.start(nc)
            await self.stack.start_services(self.health)
            res.account = self.stack.account
            admin = AdminClient(self.stack.sim.admin_url)  # type: ignore[union-attr]
            feed = [i for i, p in self.stack.procs.items() if p.service == "feed-handler"]
            covered = await self.health.wait(
                lambda: set(self.cfg.markets) <= Ownership.of(self.health, feed).covered(), 30.0
            )
            if not covered:
                raise RuntimeError("the feed handlers do not cover every market 30 s after start")
            res.timings["startup"] = time.monotonic() - self.t0
            self._log(f"stack ready in {res.timings['startup']:.1f} s; account {res.account}")
            trades_from_ms = int(time.time() * 1000) + 2000
            probe = PublishProbe(nc, js, replicas=self.stack.replicas)
            await probe.ensure_stream()
            probe.start()
            # The workload is a strategy process: it connects as the ``trader`` user (commands in,
            # market data and its executions out; no signer, no publishing of facts).
            trader_nc, trader_js = await self.stack.connect("chaos-workload", user="trader")
            workload = await Workload(
                trader_nc,
                trader_js,
                res.account,
                self.cfg.markets,
                random.Random(self.cfg.seed + 1),
                rate=self.cfg.workload_rate,
            ).start()
            stop_workload = asyncio.Event()
            workload_task = asyncio.create_task(workload.run(stop_workload))
            watchdog = asyncio.create_task(self._watchdog())

            # -- fault phase --
            instances = list(self.stack.procs)
            res.schedule = build_schedule(
                self.rng, self.cfg.duration, self.cfg.faults, instances, self.cfg.markets, self.cfg.cluster
            )
            self._log(f"fault phase: {self.cfg.duration:.0f} s, {len(res.schedule)} faults (seed {self.cfg.seed})")
            injector = FaultInjector(self.stack, admin, self.health, js, nc, probe, self.rng, self.cfg.markets)
            phase0 = time.monotonic()
            for ev in res.schedule:
                delay = phase0 + ev.at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await injector.apply(ev)
                self._log(
                    f"fault {ev.describe()}{' -- ' + ev.detail if ev.detail else ''}"
                    f"{' ERROR ' + ev.error if ev.error else ''}"
                )
            rest = phase0 + self.cfg.duration - time.monotonic()
            if rest > 0:
                await asyncio.sleep(rest)

            # -- quiet period --
            self._log("faults over: clearing venue faults, waiting for recoveries, stopping the workload")
            await self._clear_venue_faults(admin)
            stop_workload.set()
            await workload_task
            await workload.stop()
            res.workload = workload.stats.as_dict()
            await injector.wait_recoveries(90.0)
            await self._all_ready(60.0)
            await asyncio.sleep(self.cfg.quiet / 2)
            await admin.pause_flow()
            trades_to_ms = int(time.time() * 1000)
            self._log("background flow paused; asking the reconciler for a full run")
            await self._request_reconcile(nc, res.account)
            await asyncio.sleep(self.cfg.quiet / 2)
            await probe.stop()
            res.probe = {
                "acked": probe.stats.acked,
                "errors": probe.stats.errors,
                "duplicates": probe.stats.duplicates,
                "error_kinds": probe.stats.error_kinds,
                "problems": await probe.verify(),
            }
            res.stream_stalls = await self._stream_stalls(js, injector.nats_events)

            # -- convergence --
            checker = InvariantChecker(
                nc, js, admin, res.account, self.cfg.markets, trades_from_ms=trades_from_ms, trades_to_ms=trades_to_ms
            )
            c0 = time.monotonic()
            seen: list[str] = []
            while True:
                res.check_attempts += 1
                report = await checker.check()
                res.invariants = report
                if report.ok:
                    res.converged_after_s = time.monotonic() - c0
                    break
                seen.append(report.render(1000))
                if time.monotonic() - c0 > self.cfg.converge_timeout:
                    break
                if len(seen) >= 4 and len(set(seen[-4:])) == 1:
                    self._log("the same violations four checks in a row (no repair in progress): stopping")
                    break
                self._log(f"invariants not met yet ({report.violation_count} violation(s)); checking again")
                if res.check_attempts % 3 == 0:
                    await self._request_reconcile(nc, res.account)
                await asyncio.sleep(4.0)
            self._log(f"invariants {'PASS' if report.ok else 'FAIL'} after {res.check_attempts} check(s)")
        except Exception as exc:  # noqa: BLE001 - the run reports its own failure with the logs kept
            res.error = f"{type(exc).__name__}: {exc}"
            self._log(f"run aborted: {res.error}")
        finally:
            res.counters = self.health.counters_by_service()
            res.timings["total"] = time.monotonic() - self.t0
            if watchdog is not None:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
            self._collect_exits()
            if probe is not None:
                with contextlib.suppress(Exception):
                    await probe.stop()
            if workload is not None:
                with contextlib.suppress(Exception):
                    await workload.stop()
                with contextlib.suppress(Exception):
                    await workload.nc.close()
            await self.health.stop()
            if admin is not None:
                await admin.close()
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
            await self.stack.stop()
            if res.ok and not self.cfg.keep and self.cfg.base_dir is None:
                shutil.rmtree(res.base_dir, ignore_errors=True)
        return res

    # -- helpers --------------------------------------------------------------------------------

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for p, ex in self.stack.check_exits():
                self._log(f"UNEXPECTED EXIT: {p.instance} pid {ex.pid} code {ex.returncode}; restarting")
                self.result.unexpected_exits.append(
                    {"instance": p.instance, "pid": ex.pid, "returncode": ex.returncode, "log_tail": ex.log_tail}
                )
                await asyncio.to_thread(p.start)

    def _collect_exits(self) -> None:
        for p, ex in self.stack.check_exits():
            self.result.unexpected_exits.append(
                {"instance": p.instance, "pid": ex.pid, "returncode": ex.returncode, "log_tail": ex.log_tail}
            )

    async def _clear_venue_faults(self, admin: AdminClient) -> None:
        await admin.clear_faults()
        await admin.set_rate_limits(reset=True)
        await admin.set_state("ok")

    async def _all_ready(self, timeout: float) -> None:
        procs = list(self.stack.procs.values())

        def ready() -> bool:
            for p in procs:
                h = self.health.current(p.instance, p.pid)
                if h is None or h.state not in p.ready_states:
                    return False
            return True

        if not await self.health.wait(ready, timeout):
            states = {p.instance: self.health.state(p.instance) for p in procs}
            self._log(f"not every service ready after the faults: {states}")

    async def _request_reconcile(self, nc: Any, account: str) -> None:
        req = ReconcileRequest(account=account, reason="chaos-converge", requested_by="chaos", ts_init=time.time_ns())
        try:
            await nc.request(subjects.ctl_reconcile(account), encode(req), timeout=30)
        except Exception as exc:  # noqa: BLE001 - a missing answer is visible in the checker's result
            self._log(f"reconcile request not answered: {exc!r}")

    async def _stream_stalls(self, js: Any, events: list[FaultEvent]) -> list[dict[str, Any]]:
        """Per NATS fault: the longest gap between stored messages of MD and of EXEC from just before
        it until it was recovered (or the next NATS fault), as the real producers experienced it."""
        timed = sorted((int(e.params["wall_ns"]), e) for e in events if e.params.get("wall_ns"))
        out = []
        for k, (wall, ev) in enumerate(timed):
            span = max(ev.recovery.get("services_ready", 0.0), ev.recovery.get("node_down", 0.0)) + 2.0
            end = wall + int(span * 1e9)
            if k + 1 < len(timed):
                end = min(end, timed[k + 1][0])
            row: dict[str, Any] = {"fault": f"{ev.kind} {ev.target}", "target": ev.target}
            for stream, subject in (("MD", "md.>"), ("EXEC", "exec.>")):
                row[stream] = await self._max_gap(js, stream, subject, wall - 500_000_000, end)
            out.append(row)
        return out

    @staticmethod
    async def _max_gap(js: Any, stream: str, subject: str, t0_ns: int, t1_ns: int) -> float | None:
        last: int | None = None
        worst = 0.0
        try:
            async for m in replay(js, subject, stream=stream, start_time_ns=t0_ns):
                ts = m.timestamp_ns
                if last is not None:
                    worst = max(worst, (min(ts, t1_ns) - last) / 1e9)
                last = ts
                if ts > t1_ns:
                    break
        except Exception:  # noqa: BLE001 - the measurement is informative only
            return None
        return round(worst, 3) if last is not None else None


async def run_chaos(cfg: ChaosConfig, progress: Progress | None = None) -> ChaosResult:
    return await ChaosRun(cfg, progress).run()
