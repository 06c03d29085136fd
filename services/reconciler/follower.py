"""What the bus says, kept current: the ``EXEC`` projection of the account's order events, and the
``SubmitOrder`` commands of ours in ``CMD`` (to recognise an order whose events never reached
``EXEC`` because the router died mid-submit).

Both follow their subjects with an ordered push consumer (JetStream's fastest replay, recreated on
gaps) that applies each message in its callback. ``wait_caught_up()`` returns once everything
stored when it was called has been applied: the consumer has nothing pending and the last message
it delivered (by consumer sequence) is the last one applied -- the reconciler calls it after publishing corrections so
its next comparison sees them, and at start before the first run.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

import schemas as s
from bus import subjects
from bus.consumer import BusMessage
from services.execution.projection import ExecProjection
from services.runtime import Problems

log = logging.getLogger("reconciler.follower")


class Followed:
    """One subject filter followed from a start point; ``handle(bus_message)`` runs per message."""

    def __init__(
        self,
        js: JetStreamContext,
        subject: str,
        stream: str,
        handle: Callable[[BusMessage], None],
        problems: Problems,
        *,
        start_time_ns: int | None = None,
    ) -> None:
        self.js = js
        self.subject = subject
        self.stream = stream
        self.handle = handle
        self.problems = problems
        self.start_time_ns = start_time_ns
        self.applied_seq = 0
        self.applied_cseq = 0  # consumer sequence of the last message applied (the current consumer's)
        self.applied = 0
        self._sub: Any = None

    async def start(self) -> None:
        cfg = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL)
        if self.start_time_ns is not None:
            cfg.deliver_policy = DeliverPolicy.BY_START_TIME
            cfg.opt_start_time = dt.datetime.fromtimestamp(self.start_time_ns / 1e9, tz=dt.UTC).isoformat()
        self._sub = await self.js.subscribe(
            self.subject, stream=self.stream, ordered_consumer=True, cb=self._on_msg, config=cfg
        )

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _on_msg(self, msg: Msg) -> None:
        m = BusMessage(msg)
        try:
            self.handle(m)
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop the follower
            self.problems.report("follower_handler_failed", subject=m.subject, seq=m.stream_seq, error=repr(exc))
        self.applied_seq = max(self.applied_seq, m.stream_seq)
        self.applied_cseq = m.consumer_seq
        self.applied += 1

    async def caught_up(self) -> bool:
        if self._sub is None:
            return False
        try:
            info = await self._sub.consumer_info()
        except Exception:  # noqa: BLE001 - ordered consumer being recreated; not caught up yet
            return False
        # The consumer sequence, not the stream sequence: a filtered consumer's delivered stream
        # sequence moves past messages of other subjects that it never delivers.
        delivered = int(info.delivered.consumer_seq or 0) if info.delivered else 0
        return int(info.num_pending or 0) == 0 and self.applied_cseq >= delivered

    async def wait_caught_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if await self.caught_up():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)


class ExecFollower:
    """The account's ``EXEC`` order events folded into an ``ExecProjection``."""

    def __init__(self, js: JetStreamContext, account: str, problems: Problems) -> None:
        self.proj = ExecProjection()
        self.problems = problems
        self.stored_ns: dict[str, int] = {}  # client order id -> store time of its latest event
        self.refused: dict[str, int] = {}
        self.followed = Followed(js, subjects.exec_orders(account), "EXEC", self._apply, problems)

    async def start(self) -> None:
        await self.followed.start()

    async def stop(self) -> None:
        await self.followed.stop()

    async def wait_caught_up(self, timeout: float) -> bool:
        return await self.followed.wait_caught_up(timeout)

    def recently_active(self, client_order_id: str, window_ns: int) -> bool:
        ts = self.stored_ns.get(client_order_id)
        return ts is not None and time.time_ns() - ts < window_ns

    def _apply(self, m: BusMessage) -> None:
        try:
            ev = m.event
        except s.DecodeError as exc:
            self.problems.report("undecodable_exec_event", seq=m.stream_seq, error=str(exc)[:200])
            return
        res = self.proj.apply(ev, m.stream_seq)
        coid = getattr(ev, "client_order_id", None)
        if coid:
            self.stored_ns[coid] = max(self.stored_ns.get(coid, 0), m.timestamp_ns)
        if not res.ok:
            kind = res.problem or "refused"
            self.refused[kind] = self.refused.get(kind, 0) + 1
            self.problems.report(f"exec_{kind}", seq=m.stream_seq, event=type(ev).__name__, client_order_id=coid)


class CommandIndex:
    """``client_order_id -> OrderInitialized`` of every ``SubmitOrder`` for the account in ``CMD``."""

    def __init__(self, js: JetStreamContext, account: str, problems: Problems, lookback_s: float) -> None:
        self.orders: dict[str, s.OrderInitialized] = {}
        self.problems = problems
        start = time.time_ns() - int(lookback_s * 1e9) if lookback_s > 0 else None
        self.followed = Followed(js, subjects.cmd_all(account), "CMD", self._apply, problems, start_time_ns=start)

    async def start(self) -> None:
        await self.followed.start()

    async def stop(self) -> None:
        await self.followed.stop()

    async def wait_caught_up(self, timeout: float) -> bool:
        return await self.followed.wait_caught_up(timeout)

    def get(self, client_order_id: str) -> s.OrderInitialized | None:
        return self.orders.get(client_order_id)

    def prune(self, known: Callable[[str], bool]) -> int:
        """Forget commands whose orders the projection has (it is the record from then on)."""
        gone = [c for c in self.orders if known(c)]
        for c in gone:
            del self.orders[c]
        return len(gone)

    def _apply(self, m: BusMessage) -> None:
        try:
            ev = m.event
        except s.DecodeError as exc:
            # Nothing to learn from it here (the router terminates it), but it is counted.
            self.problems.report("undecodable_command", seq=m.stream_seq, error=str(exc)[:200])
            return
        if isinstance(ev, s.SubmitOrder):
            self.orders.setdefault(ev.order.client_order_id, ev.order)
