"""The reconciler process: wiring, the start-up run, health.

Start-up: find the account (``PARADEX_ACCOUNT``, else ask the signer), fold the account's ``EXEC``
order events and our ``CMD`` submits, then run a full reconciliation that publishes an
ExecutionMassStatus on ``exec.paradex.<acct>.report.mass_status`` and writes the start-up marker in
KV ``watermarks`` (``recon.<acct>.startup``; ``services.reconciler.state.read_startup_marker``).
Health ``details["startup"]`` says ``done`` / ``done-unresolved`` from then on. Then periodic runs
and ``ctl.reconcile.<acct>`` requests (``services.reconciler.triggers``).

Health state: ``Reconciling`` during the start-up run, then ``Connected`` while the last run was
clean, ``Degraded`` while a position mismatch from the last full run or any unresolved item of
the last run remains (``details`` lists the counts and the first unresolved item).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from services.paradex.private_rest import ForceableTokenProvider
from services.reconciler.emit import Emitter
from services.reconciler.fetch import Fetcher, ReconRestClient, TokenBucket
from services.reconciler.follower import CommandIndex, ExecFollower
from services.reconciler.instruments import Instruments
from services.reconciler.runner import Runner, RunOutcome
from services.reconciler.settings import ReconSettings
from services.reconciler.signer_link import SignerLink
from services.reconciler.state import LocalState, StartupMarker, Watermarks
from services.reconciler.triggers import Triggers
from services.runtime import Service

CATCH_UP_TIMEOUT_S = 120.0


class Reconciler(Service):
    name = "reconciler"

    def __init__(self, settings: ReconSettings) -> None:
        super().__init__(settings)
        self.s = settings
        self.account = settings.account
        self.follower: ExecFollower | None = None
        self.commands: CommandIndex | None = None
        self.local: LocalState | None = None
        self.client: ReconRestClient | None = None
        self.runner: Runner | None = None
        self.triggers: Triggers | None = None
        self.signer: SignerLink | None = None
        self.position_mismatch = 0
        self.startup_done = asyncio.Event()

    async def setup(self) -> None:
        self.signer = SignerLink(self.nc, self.s.account, self.problems)
        self.account = await self.signer.resolve_account()
        self.details["account"] = self.account
        self.log.info("reconciling account", extra={"ctx": {"account": self.account}})
        self.follower = ExecFollower(self.js, self.account, self.problems)
        self.commands = CommandIndex(self.js, self.account, self.problems, self.s.cmd_lookback_s)
        await self.follower.start()
        await self.commands.start()
        if not await self.follower.wait_caught_up(CATCH_UP_TIMEOUT_S):
            self.problems.report("projection_slow_start", timeout_s=CATCH_UP_TIMEOUT_S)
        await self.commands.wait_caught_up(CATCH_UP_TIMEOUT_S)
        self.commands.prune(lambda coid: coid in self.follower.proj.orders)  # type: ignore[union-attr]
        self.details["orders_on_bus"] = str(len(self.follower.proj.orders))
        self.local = LocalState(self.s.state_dir, self.account)
        instruments = Instruments()
        with contextlib.suppress(Exception):
            await instruments.load_from_bus(self.js)
        token: ForceableTokenProvider = self.signer.jwt
        self.client = ReconRestClient(
            self.s.rest_url,
            token,
            TokenBucket(self.s.rest_rate, self.s.rest_burst),
            timeout=self.s.rest_timeout,
            get_retries=self.s.rest_retries,
        )
        fetcher = Fetcher(self.client, self.s.page_size, self.problems)
        emitter = Emitter(self.publisher, self.account, self.local, self.follower, self.s.publish_timeout)
        self.runner = Runner(
            self.s,
            self.account,
            fetcher,
            self.follower,
            self.commands,
            await Watermarks.open(self.js, self.account),
            self.local,
            instruments,
            emitter,
            self.js,
            self.metrics,
            self.problems,
        )
        self.triggers = Triggers(
            self._run,
            orders_interval=self.s.orders_interval,
            positions_interval=self.s.positions_interval,
            grace_s=self.s.grace_ms / 1000,
            run_timeout=self.s.run_timeout,
            metrics=self.metrics,
            problems=self.problems,
            on_outcome=self._on_outcome,
        )
        self.counter_sources.append(self._counters)

    async def _run(self, trigger: str, full: bool, mass_status: bool) -> RunOutcome:
        assert self.runner is not None
        return await self.runner.run(trigger, full=full, mass_status=mass_status)

    async def run(self) -> None:
        assert self.triggers is not None and self.runner is not None
        self.set_state("Reconciling")
        self.details["startup"] = "running"
        await self.triggers.serve(self.nc, self.account)
        outcome = None
        while outcome is None and not self.stopping.is_set():
            outcome = await self.triggers.run_now("startup", full=True, mass_status=True)
            if outcome is None:
                await asyncio.sleep(2.0)  # the failure is reported; try the start-up run again
        if outcome is None:
            return
        assert self.runner.watermarks is not None
        await self.runner.watermarks.mark_startup(
            StartupMarker(
                account=self.account,
                run_id=outcome.summary.run_id,
                ok=outcome.summary.ok,
                ts_ns=time.time_ns(),
                mass_status_seq=outcome.mass_status_seq,
                unresolved=len(outcome.summary.unresolved),
                instance=self.s.instance,
            )
        )
        self.details["startup"] = "done" if outcome.summary.ok else "done-unresolved"
        self.details["mass_status_seq"] = str(outcome.mass_status_seq)
        self.startup_done.set()
        self.triggers.start_periodic()
        await self.stopping.wait()

    def _on_outcome(self, outcome: RunOutcome, trigger: str, full: bool) -> None:
        sm = outcome.summary
        if self.commands is not None and self.follower is not None:
            self.commands.prune(lambda coid: coid in self.follower.proj.orders)  # type: ignore[union-attr]
        if full and outcome.positions is not None:
            self.position_mismatch = len(outcome.positions.mismatched)
        self.details.update(
            {
                "last_run": trigger,
                "last_ok": str(sm.ok).lower(),
                "last_unresolved": str(len(sm.unresolved)),
                "last_corrected": str(sm.counts.get("orders_corrected", 0)),
                "last_rest_calls": str(sm.rest_calls),
                "last_duration_ms": str(sm.duration_ns // 1_000_000),
                "position_mismatch": str(self.position_mismatch),
            }
        )
        if sm.unresolved:
            self.details["first_unresolved"] = sm.unresolved[0][:120]
        else:
            self.details.pop("first_unresolved", None)
        self.metrics.set("unresolved", len(sm.unresolved))
        self.metrics.set("last_run_duration_seconds", sm.duration_ns / 1e9)
        self.set_state("Degraded" if (self.position_mismatch or sm.unresolved) else "Connected")
        self.log.info(
            "reconciliation %s: %s",
            trigger,
            "ok" if sm.ok else f"{len(sm.unresolved)} unresolved",
            extra={
                "ctx": {
                    "run_id": sm.run_id,
                    "counts": sm.counts,
                    "rest_calls": sm.rest_calls,
                    "duration_ms": sm.duration_ns // 1_000_000,
                    "unresolved": sm.unresolved[:5],
                }
            },
        )

    def _counters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if self.client is not None:
            out.update(self.client.stats.as_counters("rest_"))
        if self.follower is not None:
            out["exec_orders_on_bus"] = len(self.follower.proj.orders)
            out["exec_events_applied"] = self.follower.followed.applied
        if self.triggers is not None:
            out["runs"] = self.triggers.runs
        return out

    async def stop_intake(self) -> None:
        if self.triggers is not None:
            await self.triggers.stop()

    async def drain(self) -> None:
        if self.triggers is not None:
            await self.triggers.drain(self.s.drain_timeout / 2)
        for part in (self.follower, self.commands):
            if part is not None:
                await part.stop()
        if self.client is not None:
            await self.client.close()
        if self.local is not None:
            self.local.close()
        if self.signer is not None:
            await self.signer.close()
