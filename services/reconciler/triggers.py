"""When a run happens: at start, periodically, after deferrals, and on request over
``ctl.reconcile.<account>``.

Runs never overlap (one lock). Requests coalesce: every request that arrives while a run is in
progress is answered by the *next* run (which starts after the current one, so it sees everything
the requester saw), and many requests during one run cost one extra run, not many. A request is
answered with the run's ``ReconciliationSummary`` (msgpack) when it carries a reply subject; the
order router's fire-and-forget reconnect signal (no reply subject) just triggers the run.

Periodic runs: an ``orders`` run every ``RECON_ORDERS_INTERVAL_S`` and a ``full`` run (positions,
balance, account) every ``RECON_POSITIONS_INTERVAL_S``. A run that deferred something (changed
within the grace window) schedules one ``follow_up`` run shortly after the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from bus import subjects
from schemas import DecodeError, ReconcileRequest, decode, encode
from services.reconciler.runner import RunOutcome
from services.runtime import Metrics, Problems

log = logging.getLogger("reconciler.triggers")

RunFn = Callable[[str, bool, bool], Awaitable[RunOutcome]]


class Triggers:
    def __init__(
        self,
        run: RunFn,
        *,
        orders_interval: float,
        positions_interval: float,
        grace_s: float,
        run_timeout: float,
        metrics: Metrics,
        problems: Problems,
        on_outcome: Callable[[RunOutcome, str, bool], None],
    ) -> None:
        self._run = run
        self.orders_interval = orders_interval
        self.positions_interval = positions_interval
        self.grace_s = grace_s
        self.run_timeout = run_timeout
        self.metrics = metrics
        self.problems = problems
        self.on_outcome = on_outcome
        self._lock = asyncio.Lock()
        self._next: asyncio.Future[RunOutcome] | None = None
        self._next_reasons: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._sub: object | None = None
        self._follow_up_pending = False
        self.runs = 0

    # -- running --------------------------------------------------------------------------------

    async def run_now(self, trigger: str, *, full: bool, mass_status: bool = False) -> RunOutcome | None:
        """One run under the lock (``None`` if it failed or timed out; counted and logged)."""
        async with self._lock:
            return await self._guarded(trigger, full, mass_status)

    async def _guarded(self, trigger: str, full: bool, mass_status: bool) -> RunOutcome | None:
        self.runs += 1
        try:
            outcome = await asyncio.wait_for(self._run(trigger, full, mass_status), self.run_timeout)
        except TimeoutError:
            self.problems.report("run_timeout", level=logging.ERROR, trigger=trigger, timeout_s=self.run_timeout)
            self.metrics.inc("runs_total", trigger=_kind(trigger), ok="timeout")
            return None
        except Exception as exc:
            self.problems.report("run_failed", level=logging.ERROR, trigger=trigger, error=repr(exc)[:300])
            log.exception("reconciliation run failed (%s)", trigger)
            self.metrics.inc("runs_total", trigger=_kind(trigger), ok="error")
            return None
        self.metrics.inc("runs_total", trigger=_kind(trigger), ok=str(outcome.summary.ok).lower())
        self.on_outcome(outcome, trigger, full)
        if outcome.follow_up and not trigger.startswith("follow_up") and not self._follow_up_pending:
            self._follow_up_pending = True
            self._spawn(self._follow_up())
        return outcome

    async def request(self, reason: str) -> RunOutcome | None:
        """A full run that starts after any run in progress; concurrent requests share it."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next_reasons = []
            self._spawn(self._serve_next())
        self._next_reasons.append(reason)
        fut = self._next
        return await asyncio.shield(fut)

    async def _serve_next(self) -> None:
        async with self._lock:
            fut, self._next = self._next, None
            reasons = sorted(set(self._next_reasons)) or ["request"]
            assert fut is not None
            try:
                outcome = await self._guarded("request:" + ",".join(reasons)[:100], True, False)
            except BaseException as exc:
                if not fut.done():
                    fut.set_exception(exc)
                raise
            if not fut.done():
                fut.set_result(outcome)  # type: ignore[arg-type]

    async def _follow_up(self) -> None:
        try:
            await asyncio.sleep(self.grace_s + 0.25)
        finally:
            self._follow_up_pending = False
        await self.run_now("follow_up", full=False)

    # -- periodic -------------------------------------------------------------------------------

    def start_periodic(self) -> None:
        if self.orders_interval > 0:
            self._loops.append(asyncio.create_task(self._every(self.orders_interval, "periodic_orders", False)))
        if self.positions_interval > 0:
            self._loops.append(asyncio.create_task(self._every(self.positions_interval, "periodic_full", True)))

    async def _every(self, interval: float, trigger: str, full: bool) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.run_now(trigger, full=full)

    # -- ctl.reconcile.<account> ----------------------------------------------------------------

    async def serve(self, nc: NATS, account: str) -> None:
        self._sub = await nc.subscribe(subjects.ctl_reconcile(account), queue="reconciler", cb=self._on_request)

    async def _on_request(self, msg: Msg) -> None:
        reason = "request"
        try:
            req = decode(msg.data)
            if isinstance(req, ReconcileRequest):
                reason = f"{req.requested_by or '?'}:{req.reason or '?'}"
            else:
                self.problems.report("ctl_unexpected_message", type=type(req).__name__)
        except DecodeError as exc:
            self.problems.report("ctl_undecodable_request", error=str(exc)[:200])
        self.metrics.inc("requests_total")
        self._spawn(self._answer(msg, reason))

    async def _answer(self, msg: Msg, reason: str) -> None:
        outcome = await self.request(reason)
        if not msg.reply:
            return
        if outcome is None:
            self.problems.report("ctl_request_failed", reason=reason)
            return  # the requester times out; the run failure is logged and counted
        try:
            await msg.respond(encode(outcome.summary))
        except Exception as exc:  # noqa: BLE001 - requester gone or NATS reconnecting
            self.problems.report("ctl_reply_failed", error=repr(exc)[:200])

    # -- lifecycle ------------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()  # type: ignore[attr-defined]
            self._sub = None
        for t in self._loops:
            t.cancel()
        for t in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._loops = []

    async def drain(self, timeout: float) -> None:
        """Let a run in progress finish (its corrections become durable), then cancel the rest."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                async with self._lock:
                    pass
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


def _kind(trigger: str) -> str:
    return trigger.split(":", 1)[0]
