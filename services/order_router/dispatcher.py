"""The command consumer's dispatcher: concurrency across orders, order within an order, acks.

``PullConsumer`` hands messages over one at a time, in stream order (``auto_ack=False``).
``on_message`` starts a task per command and returns, so a slow venue call for one order never
holds up another; up to ``max_concurrent`` commands run at once (then intake waits).

Ordering rules, from the stream order:

* commands touching the same client order id run one after another (a cancel waits for the submit
  before it: the venue has the order by then);
* ``CancelAllOrders`` for a market waits for every earlier command of that market, and every later
  command of that market waits for it (``ALL.PARADEX``: for every market);

Each command is acked only after its handler returned, i.e. after its outcome events are stored
(the handlers await every publish). A handler failure naks the command with a back-off (handlers
are idempotent, so the redelivery repeats nothing that is already stored). A command redelivered
while it is still being handled (ack wait expired) only refreshes the in-progress mark; long
handlers (an unknown outcome being resolved) send in-progress every ``ack_wait / 3``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import schemas as s
from bus import BusMessage
from schemas.commands import COMMAND_TYPES
from services.order_router.commands import Delivery
from services.order_router.counters import BufferedMetrics
from services.runtime import Metrics, Problems

Handler = Callable[[Any, Delivery], Awaitable[None]]


@dataclass
class Active:
    cmd: Any
    msg: BusMessage
    started: float = field(default_factory=time.monotonic)
    received_ns: int = field(default_factory=time.time_ns)
    progressed: float = field(default_factory=time.monotonic)


def order_keys(cmd: Any) -> list[str]:
    if isinstance(cmd, s.SubmitOrder):
        return [cmd.order.client_order_id]
    if isinstance(cmd, s.BatchCancelOrders):
        return [c.client_order_id for c in cmd.cancels]
    if isinstance(cmd, s.CancelAllOrders):
        return []
    return [cmd.client_order_id]


def market_key(cmd: Any) -> str:
    iid = cmd.order.instrument_id if isinstance(cmd, s.SubmitOrder) else cmd.instrument_id
    return "*" if iid == s.ALL_MARKETS_INSTRUMENT else s.market_of(iid)


class Dispatcher:
    def __init__(
        self,
        handler: Handler,
        *,
        max_concurrent: int,
        ack_wait: float,
        metrics: Metrics | BufferedMetrics,
        problems: Problems,
    ) -> None:
        self.handler = handler
        self.ack_wait = ack_wait
        self.metrics = metrics
        self.problems = problems
        self._sem = asyncio.Semaphore(max_concurrent)
        self.active: dict[str, Active] = {}
        self._by_order: dict[str, asyncio.Task[None]] = {}
        self._by_market: dict[str, set[asyncio.Task[None]]] = {}
        self._barrier: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self.handled = 0
        self.failed = 0

    def start(self) -> None:
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._progress_loop(), name="router-cmd-progress")

    async def stop(self, timeout: float) -> None:
        """Wait (bounded) for running commands, then stop the heartbeat."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None

    async def on_message(self, m: BusMessage) -> None:
        cmd = m.event
        if not isinstance(cmd, COMMAND_TYPES):
            self.problems.report("not_a_command", subject=m.subject, kind=type(cmd).__name__, seq=m.stream_seq)
            await m.term()
            return
        cid = cmd.command_id
        running = self.active.get(cid)
        if running is not None:
            # Redelivered while still being handled: keep the newest delivery for the final ack.
            self.metrics.inc("commands_redelivered_while_active_total")
            running.msg = m
            await m.in_progress()
            return
        await self._sem.acquire()
        rec = self.active[cid] = Active(cmd, m)
        market = market_key(cmd)
        deps: set[asyncio.Task[None]] = set()
        if isinstance(cmd, s.CancelAllOrders):
            if market == "*":
                deps.update(self._tasks)
            else:
                deps.update(self._by_market.get(market, ()))
                if "*" in self._barrier:
                    deps.add(self._barrier["*"])
        else:
            for k in order_keys(cmd):
                prev = self._by_order.get(k)
                if prev is not None:
                    deps.add(prev)
            for b in (self._barrier.get(market), self._barrier.get("*")):
                if b is not None:
                    deps.add(b)
        task = asyncio.create_task(self._run(rec, deps), name=f"cmd-{type(cmd).__name__}-{cid[:8]}")
        self._tasks.add(task)
        self._by_market.setdefault(market, set()).add(task)
        for k in order_keys(cmd):
            self._by_order[k] = task
        if isinstance(cmd, s.CancelAllOrders):
            self._barrier[market] = task
        task.add_done_callback(lambda t, rec=rec, market=market: self._done(t, rec, market))

    async def _run(self, rec: Active, deps: set[asyncio.Task[None]]) -> None:
        try:
            if deps:
                await asyncio.wait(deps)
            await self.handler(rec.cmd, Delivery(rec.msg.num_delivered, rec.msg.timestamp_ns, rec.received_ns))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed command is redelivered, never lost
            self.failed += 1
            self.problems.report(
                "command_failed", kind=type(rec.cmd).__name__, command_id=rec.cmd.command_id, error=repr(exc)
            )
            with contextlib.suppress(Exception):
                await rec.msg.nak(delay=min(5.0, 0.25 * 2 ** rec.msg.num_delivered))
            return
        self.handled += 1
        try:
            await rec.msg.ack()
        except Exception as exc:  # noqa: BLE001 - a lost ack means a redelivery, which is idempotent
            self.problems.report("ack_failed", command_id=rec.cmd.command_id, error=repr(exc))

    def _done(self, task: asyncio.Task[None], rec: Active, market: str) -> None:
        self._sem.release()
        self._tasks.discard(task)
        self.active.pop(rec.cmd.command_id, None)
        tasks = self._by_market.get(market)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._by_market[market]
        for k in order_keys(rec.cmd):
            if self._by_order.get(k) is task:
                del self._by_order[k]
        if self._barrier.get(market) is task:
            del self._barrier[market]

    async def _progress_loop(self) -> None:
        every = max(0.5, self.ack_wait / 3)
        while True:
            await asyncio.sleep(every / 2)
            now = time.monotonic()
            for rec in list(self.active.values()):
                if now - rec.progressed >= every:
                    rec.progressed = now
                    with contextlib.suppress(Exception):
                        await rec.msg.in_progress()
