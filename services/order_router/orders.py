"""The router's order book-keeping: the shared ``ExecProjection`` (the Nautilus state machine and
fill dedupe), the router's own per-order venue facts, per-order locks, and the one way events
leave the router (``OrderStore.emit``).

Writing an event is: publish it to ``exec.paradex.<acct>.order.<coid>`` with its deterministic
Msg-Id (``services.execution.projection`` docstring), wait until JetStream stored it, *then* apply
it to the projection. Everything that derives events for an order (a command, a WS update, a REST
reply, the in-flight resolver) does so while holding that order's lock, so the projection a
decision is made on is exactly what is on the stream, and per-order event order is the stream order.

Other writers store facts on the same subjects (the reconciler's corrections, a standby router).
Every ``emit`` is therefore fenced with ``Nats-Expected-Last-Subject-Sequence`` = the order's
``last_seq`` (everything up to it is folded in): if someone stored a fact first, the publish is
refused, the newer facts are folded in, and the event is sent again -- or, for a command's pending
event that no longer applies (a modify racing a fill), dropped so the command is answered anew.

Rebuilding after a crash (``load``) replays the stream through the same projection and also reads
the Msg-Ids, which carry the command ids of pending cancels/modifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import nats.errors
from nats.js import JetStreamContext

import schemas as s
from bus import Publisher, msgid, subjects
from bus.msgid import event_uuid
from bus.publisher import EXPECTED_LAST_SUBJECT_SEQ, MSG_ID, PublishError, WrongLastSequence
from bus.replay import replay, subject_after
from services.execution import projection as P
from services.execution.projection import ExecProjection, OrderView
from services.order_router.counters import BufferedMetrics
from services.order_router.latency import LatencyTracker
from services.runtime import Metrics, Problems

ONE_PER_ORDER = frozenset(
    {
        "OrderInitialized",
        "OrderSubmitted",
        "OrderDenied",
        "OrderAccepted",
        "OrderRejected",
        "OrderCanceled",
        "OrderExpired",
        "OrderTriggered",
    }
)
BY_COMMAND = frozenset({"OrderPendingCancel", "OrderPendingUpdate", "OrderCancelRejected", "OrderModifyRejected"})
# A fenced publish refused this often in a row (each time after folding in the newer facts) means
# a writer is racing us on one order continuously; something is wrong, so stop and say so.
FENCE_ATTEMPTS = 5


@dataclass
class PendingModify:
    command_id: str
    quantity: str | None
    price: str | None
    trigger_price: str | None
    request_id: str = ""  # the venue's request_info.id from the PUT reply
    previous_request_id: str = ""  # an earlier modify's outcome the venue may still repeat
    since: float = field(default_factory=time.monotonic)


@dataclass
class Tracked:
    """What the router knows about one order beyond the projection."""

    coid: str
    market: str = ""
    last_ws_seq: int = 0
    last_venue_ts: int = 0
    venue_created_at: int = 0  # ms, from the first venue snapshot
    venue_type: str = ""  # the Paradex order type (TP/SL variants differ from the Nautilus type)
    last_request_id: str = ""  # request_info.id of the newest venue snapshot that had one
    venue_filled: Decimal = Decimal(0)
    deferred_close: Any = None  # a CLOSED VenueOrder waiting for its fills
    fills_missing_since: float = 0.0  # monotonic; 0 = none missing
    pending_cancel_cmd: str | None = None
    cancel_resent: bool = False
    pending_modify: PendingModify | None = None
    not_placed_after: float = 0.0  # wall clock s; absent at the venue after this = never placed
    last_change: float = field(default_factory=time.monotonic)
    last_check: float = 0.0
    checks: int = 0
    owner: int = 0  # >0 while a command handler is resolving it


class OrderStore:
    def __init__(
        self,
        js: JetStreamContext,
        publisher: Publisher,
        account: str,
        metrics: Metrics | BufferedMetrics,
        problems: Problems,
    ) -> None:
        self.js = js
        self.publisher = publisher
        self.account = account
        self.account_id = f"PARADEX-{account}"
        self.metrics = metrics
        self.problems = problems
        self.proj = ExecProjection()
        self.tracked: dict[str, Tracked] = {}
        self.open_by_market: dict[str, set[str]] = {}
        self.in_flight_coids: set[str] = set()
        self.init_event_ids: dict[str, str] = {}
        self.seen_commands = SeenCommands()
        self.applied = SeenCommands(limit=500_000)  # Msg-Ids of facts already folded in
        self.latency = LatencyTracker()
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: dict[str, int] = {}

    # -- lookups --------------------------------------------------------------------------------

    def order(self, coid: str) -> OrderView | None:
        return self.proj.order(coid)

    def coid_for(self, client_id: str, venue_order_id: str) -> str | None:
        """Our client order id of a venue order (by its client_id, else the venue-id index)."""
        if client_id and client_id in self.proj.orders:
            return client_id
        return self.proj.by_venue_id.get(venue_order_id)

    def track(self, coid: str, market: str = "") -> Tracked:
        t = self.tracked.get(coid)
        if t is None:
            t = self.tracked[coid] = Tracked(coid, market)
        elif market and not t.market:
            t.market = market
        return t

    def open_count(self, market: str) -> int:
        return len(self.open_by_market.get(market, ()))

    def in_flight(self) -> list[OrderView]:
        """Orders in SUBMITTED / PENDING_UPDATE / PENDING_CANCEL (an index, not a scan)."""
        return [self.proj.orders[c] for c in self.in_flight_coids]

    # -- locking --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def locked(self, coid: str) -> AsyncIterator[None]:
        """Serialize everything that derives events for ``coid`` (FIFO, so arrival order holds)."""
        lock = self._locks.get(coid)
        if lock is None:
            lock = self._locks[coid] = asyncio.Lock()
        self._lock_users[coid] = self._lock_users.get(coid, 0) + 1
        try:
            async with lock:
                yield
        finally:
            left = self._lock_users[coid] - 1
            if left:
                self._lock_users[coid] = left
            else:
                del self._lock_users[coid]
                del self._locks[coid]

    @contextlib.contextmanager
    def owning(self, coids: list[str]) -> Iterator[None]:
        """Mark orders as being settled by a command handler: the in-flight checks leave them alone."""
        ts = [self.track(c) for c in coids]
        for t in ts:
            t.owner += 1
        try:
            yield
        finally:
            for t in ts:
                t.owner -= 1
                self._maybe_forget(t.coid)

    def _maybe_forget(self, coid: str) -> None:
        """Drop the venue facts of a closed order once nothing about it is pending (a late fill
        re-creates the entry)."""
        t = self.tracked.get(coid)
        o = self.proj.order(coid)
        if (
            t is not None
            and o is not None
            and o.is_closed
            and t.deferred_close is None
            and not t.fills_missing_since
            and not t.owner
        ):
            del self.tracked[coid]

    # -- writing --------------------------------------------------------------------------------

    def mid(self, coid: str, kind: str, disc: str | int = 0) -> str:
        """The Msg-Id of an order fact (projection docstring); fills use ``fill_mid``."""
        return msgid.order_event(self.account, coid, kind, disc)

    def fill_mid(self, trade_id: str) -> str:
        return msgid.fill(self.account, trade_id)

    def eid(self, coid: str, kind: str, disc: str | int = 0) -> str:
        """Deterministic ``event_id`` of an order fact."""
        return event_uuid(self.mid(coid, kind, disc))

    async def emit(
        self, event: Any, disc: str | int = 0, *, still_valid: Callable[[OrderView], bool] | None = None
    ) -> P.Applied:
        """Store ``event`` on EXEC (awaited, fenced) and fold it into the projection. Call under the lock.

        If another writer stored a fact on the order first, the newer facts are folded in and the
        event is sent again, unless ``still_valid`` (given for a command's pending event) says it
        no longer applies: then nothing is stored and ``Applied(ok=False, "superseded")`` is returned."""
        coid = event.client_order_id
        kind = type(event).__name__
        mid = self.fill_mid(event.trade_id) if isinstance(event, s.OrderFilled) else self.mid(coid, kind, disc)
        subject = subjects.exec_order(self.account, coid)
        for _ in range(FENCE_ATTEMPTS):
            o = self.proj.order(coid)
            fence = {EXPECTED_LAST_SUBJECT_SEQ: str(o.last_seq if o is not None else 0)}
            try:
                ack = await self.publisher.publish_event_acked(subject, event, mid, headers=fence)
            except WrongLastSequence as exc:
                await self.catch_up(coid, exc.last_seq)
                if mid in self.applied:
                    # Stored after all: an earlier attempt whose ack was lost (the server checks
                    # the fence before the Msg-Id), or the same fact from another writer.
                    return P.Applied(True, order=self.proj.order(coid))
                o = self.proj.order(coid)
                if still_valid is not None and o is not None and not still_valid(o):
                    self.metrics.inc("events_superseded_total", kind=kind)
                    self.problems.report("event_superseded", kind=kind, coid=coid, status=o.status)
                    return P.Applied(False, "superseded", o)
                continue
            return self._apply(event, mid, subject_seq=ack.seq)
        raise PublishError(f"{subject}: {kind} refused {FENCE_ATTEMPTS} times by the order's fence")

    async def catch_up(self, coid: str, reported_last: int | None) -> None:
        """Fold in the facts stored on ``coid``'s subject after its ``last_seq`` (up to the last
        sequence the server reported). Call under the lock."""
        o = self.proj.order(coid)
        after = o.last_seq if o is not None else 0
        if o is not None and reported_last is not None and reported_last <= after:
            o.last_seq = reported_last  # older facts expired from the stream: nothing newer to fold
            return
        subject = subjects.exec_order(self.account, coid)
        try:
            stored = await subject_after(self.js, "EXEC", subject, after, upto=reported_last)
        except (nats.errors.Error, TimeoutError) as exc:
            self.problems.report("exec_catch_up_failed", coid=coid, error=repr(exc))
            await asyncio.sleep(0.2)  # the caller's next fenced attempt tells whether it recovered
            return
        for raw in stored:
            mid = (raw.headers or {}).get(MSG_ID, "")
            if not (mid and mid in self.applied):
                try:
                    ev = s.decode(raw.data or b"")
                except s.DecodeError:
                    self.problems.report("undecodable_exec_event", seq=raw.seq)
                else:
                    self._apply(ev, mid, subject_seq=raw.seq or 0)
                    self.metrics.inc("foreign_events_total", kind=type(ev).__name__)
            o = self.proj.order(coid)
            if o is not None and raw.seq:
                o.last_seq = max(o.last_seq, raw.seq)

    def needs_init(self, coid: str) -> bool:
        """Whether the order's OrderInitialized is not stored yet."""
        o = self.proj.order(coid)
        return o is None or "OrderInitialized" not in o.history

    async def emit_pipelined(self, events: list[tuple[Any, str | int]], timeout: float = 5.0) -> None:
        """Several events of one order sent back to back and then all awaited (one round trip
        instead of one per event). They leave this connection in order, so the stream stores them
        in order. Anything not confirmed is sent again, in order, with the same Msg-Id (stored
        once) before any of them is folded into the projection. Call under the lock."""
        js = self.publisher.js
        sent: list[tuple[Any, str, str, asyncio.Future[Any] | None]] = []
        for ev, disc in events:
            coid = ev.client_order_id
            if isinstance(ev, s.OrderFilled):
                mid = self.fill_mid(ev.trade_id)
            else:
                mid = self.mid(coid, type(ev).__name__, disc)
            subject = subjects.exec_order(self.account, coid)
            try:
                fut = await js.publish_async(subject, s.encode(ev), headers={MSG_ID: mid})
            except Exception:  # noqa: BLE001 - retried below through the awaited path
                fut = None
            sent.append((ev, subject, mid, fut))
        futures = [f for *_, f in sent if f is not None]
        if futures:
            await asyncio.wait(futures, timeout=timeout)
        confirmed = True
        for ev, subject, mid, fut in sent:
            ok = confirmed and fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None
            if not ok:
                confirmed = False  # from here on, resend in order (earlier ones were stored)
                if fut is not None and not fut.done():
                    fut.cancel()
                await self.publisher.publish_event_acked(subject, ev, mid)
        for ev, _, mid, _ in sent:
            self._apply(ev, mid)

    def _apply(self, event: Any, mid: str, stream_seq: int = 0, subject_seq: int = 0) -> P.Applied:
        """Fold one stored fact in. ``stream_seq`` comes from reading the stream in order (load,
        follow); ``subject_seq`` from a fenced publish or a catch-up -- either advances the order's
        ``last_seq``, which only a fact known to be the subject's newest may do."""
        kind = type(event).__name__
        if mid:
            self.applied.add(mid)
        res = self.proj.apply(event, stream_seq)
        coid = event.client_order_id
        seq = subject_seq or stream_seq
        if seq:
            folded = self.proj.order(coid)
            if folded is not None:
                folded.last_seq = max(folded.last_seq, seq)
        if not res.ok:
            self.problems.report("projection_refused", kind=kind, coid=coid, problem=res.problem)
        else:
            self.metrics.inc("events_total", kind=kind)
        if kind in BY_COMMAND and mid:
            self.seen_commands.add(mid.rsplit(":", 1)[1])
        if isinstance(event, s.OrderInitialized):
            self.init_event_ids[coid] = event.event_id
        o = res.order
        if o is not None:
            market = s.market_of(o.instrument_id) if o.instrument_id else ""
            t = self.track(coid, market)
            t.last_change = time.monotonic()
            if o.status in P.IN_FLIGHT_STATUSES:
                self.in_flight_coids.add(coid)
            else:
                self.in_flight_coids.discard(coid)
            if market:
                opened = self.open_by_market.setdefault(market, set())
                if o.is_open:
                    opened.add(coid)
                else:
                    opened.discard(coid)
            if kind in ("OrderPendingCancel", "OrderPendingUpdate"):
                t.checks = 0  # the in-flight check counts queries per pending request
            if kind == "OrderPendingCancel" and mid:
                t.pending_cancel_cmd = mid.rsplit(":", 1)[1]
            # A pending request is settled by its own outcome event (a fill in between does not
            # settle a modify: the venue may still report the new size after it).
            if kind in ("OrderCanceled", "OrderCancelRejected") or o.is_closed:
                t.pending_cancel_cmd = None
                t.cancel_resent = False
            if kind in ("OrderUpdated", "OrderModifyRejected") or o.is_closed:
                t.pending_modify = None
            self._maybe_forget(coid)
        return res

    # -- rebuilding -----------------------------------------------------------------------------

    async def load(self) -> int:
        """Fold every stored order event of the account (and harvest command ids from Msg-Ids)."""
        n = 0
        async for m in replay(self.js, subjects.exec_orders(self.account), stream="EXEC"):
            # Every stored message counts as seen, decodable or not, so following EXEC afterwards
            # starts after it (and reports it once, here).
            self.proj.last_stream_seq = max(self.proj.last_stream_seq, m.stream_seq)
            try:
                ev = m.event
            except s.DecodeError:
                self.problems.report("undecodable_exec_event", seq=m.stream_seq)
                continue
            if not isinstance(ev, s.OrderInitialized) and not hasattr(ev, "client_order_id"):
                continue
            mid = m.msg_id or ""
            res = self._apply(ev, mid, m.stream_seq)
            n += 1
            o = res.order
            if o is None:
                continue
            kind = type(ev).__name__
            if kind == "OrderPendingUpdate" and o.status == P.PENDING_UPDATE and mid:
                t = self.track(o.client_order_id)
                t.pending_modify = PendingModify(mid.rsplit(":", 1)[1], None, None, None)
        return n


    async def follow(self, start_seq: int) -> None:
        """Fold in order facts stored by others (the reconciler's corrections, a previous or
        standby instance) as they arrive, so this process's view never goes stale. Facts this
        process stored itself are recognised by Msg-Id; the per-order lock makes sure the writer
        has folded its own event before the follower looks."""
        while True:
            try:
                async for m in replay(self.js, subjects.exec_orders(self.account), stream="EXEC",
                                      start_seq=start_seq, follow=True):
                    start_seq = m.stream_seq + 1
                    await self._fold_foreign(m)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a NATS hiccup: follow again from where we were
                self.problems.report("exec_follow_failed", error=repr(exc), resume_at=start_seq)
                await asyncio.sleep(1.0)

    def _folded(self, m: Any, mid: str) -> bool:
        """Whether this stored fact is already folded in (advancing its order's ``last_seq`` if so:
        the follower reads in stream order, so everything before it on the subject is folded too)."""
        o = self.proj.order(m.subject.rsplit(".", 1)[-1])
        if o is not None and m.stream_seq <= o.last_seq:
            return True
        if mid and mid in self.applied:
            if o is not None:
                o.last_seq = max(o.last_seq, m.stream_seq)
            return True
        return False

    async def _fold_foreign(self, m: Any) -> None:
        mid = m.msg_id or ""
        if self._folded(m, mid):
            return
        try:
            ev = m.event
        except s.DecodeError:
            self.problems.report("undecodable_exec_event", seq=m.stream_seq)
            return
        coid = getattr(ev, "client_order_id", None)
        if coid is None:
            return
        async with self.locked(coid):
            if self._folded(m, mid):
                return  # a fenced writer's catch-up folded it meanwhile
            self._apply(ev, mid, m.stream_seq)
            self.metrics.inc("foreign_events_total", kind=type(ev).__name__)


class SeenCommands:
    """Command ids that already produced a pending event (bounded: the oldest are forgotten; a
    redelivery that old finds its order settled anyway)."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._ids: dict[str, None] = {}

    def add(self, command_id: str) -> None:
        self._ids[command_id] = None
        if len(self._ids) > self.limit:
            del self._ids[next(iter(self._ids))]

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)


def base_fields(o: OrderView) -> dict[str, str]:
    """The identity fields every order event of ``o`` starts with."""
    return {
        "trader_id": o.trader_id,
        "strategy_id": o.strategy_id,
        "instrument_id": o.instrument_id,
        "client_order_id": o.client_order_id,
    }
