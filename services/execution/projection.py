"""The order state derived from the ``EXEC`` stream: one fold shared by the order router (to rebuild
its open orders after a crash), the reconciler (to compare with venue truth), ``pdx order list``
and the chaos invariant checker.

``ExecProjection.apply(event)`` follows Nautilus's order state machine (``_ORDER_STATE_TABLE`` in
nautilus_trader ``model/orders/base.pyx``): pending states remember the status they came from, so
``OrderUpdated`` / ``OrderModifyRejected`` / ``OrderCancelRejected`` return to it; fills move an order
to PARTIALLY_FILLED or FILLED by quantity; a fill whose ``trade_id`` the order already has is a
duplicate and is refused. Everything refused is reported in the returned ``Applied`` so callers
count it -- the projection itself never raises on bad input.

Msg-Id convention for order events (``bus.msgid.order_event(account, client_order_id, kind, disc)``),
so the router and the reconciler store a fact once whoever publishes it:

* one-per-order facts (OrderInitialized, OrderSubmitted, OrderDenied, OrderAccepted, OrderRejected,
  OrderCanceled, OrderExpired, OrderTriggered): ``disc = 0``;
* OrderPendingCancel / OrderPendingUpdate / OrderCancelRejected / OrderModifyRejected: ``disc`` = the
  command id that caused them;
* OrderUpdated: ``disc`` = the venue order's ``last_updated_at`` (ms) of the state it reflects;
* OrderFilled: ``bus.msgid.fill(account, fill_id)`` with the venue fill id, which is also the event's
  ``trade_id``; an inferred fill (venue ``filled_qty`` without a fill record) uses the trade id
  ``inferred_trade_id(venue_order_id, filled_qty)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from nats.js import JetStreamContext

import schemas as s
from bus import subjects
from bus.replay import replay
from schemas.events import OrderEvent

INITIALIZED = "INITIALIZED"
DENIED = "DENIED"
SUBMITTED = "SUBMITTED"
ACCEPTED = "ACCEPTED"
REJECTED = "REJECTED"
CANCELED = "CANCELED"
EXPIRED = "EXPIRED"
TRIGGERED = "TRIGGERED"
PENDING_UPDATE = "PENDING_UPDATE"
PENDING_CANCEL = "PENDING_CANCEL"
PARTIALLY_FILLED = "PARTIALLY_FILLED"
FILLED = "FILLED"

CLOSED_STATUSES = frozenset({DENIED, REJECTED, CANCELED, EXPIRED, FILLED})
IN_FLIGHT_STATUSES = frozenset({SUBMITTED, PENDING_UPDATE, PENDING_CANCEL})

# (from, to) pairs Nautilus allows; the target of a fill depends on quantity and is checked separately.
ALLOWED_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        (INITIALIZED, DENIED),
        (INITIALIZED, SUBMITTED),
        (INITIALIZED, REJECTED),
        (INITIALIZED, ACCEPTED),
        (INITIALIZED, CANCELED),
        (INITIALIZED, EXPIRED),
        (INITIALIZED, TRIGGERED),
        (SUBMITTED, PENDING_UPDATE),
        (SUBMITTED, PENDING_CANCEL),
        (SUBMITTED, REJECTED),
        (SUBMITTED, CANCELED),
        (SUBMITTED, ACCEPTED),
        (SUBMITTED, PARTIALLY_FILLED),
        (SUBMITTED, FILLED),
        (ACCEPTED, REJECTED),
        (ACCEPTED, PENDING_UPDATE),
        (ACCEPTED, PENDING_CANCEL),
        (ACCEPTED, CANCELED),
        (ACCEPTED, TRIGGERED),
        (ACCEPTED, EXPIRED),
        (ACCEPTED, PARTIALLY_FILLED),
        (ACCEPTED, FILLED),
        (CANCELED, PARTIALLY_FILLED),
        (CANCELED, FILLED),
        (PENDING_UPDATE, REJECTED),
        (PENDING_UPDATE, ACCEPTED),
        (PENDING_UPDATE, CANCELED),
        (PENDING_UPDATE, EXPIRED),
        (PENDING_UPDATE, TRIGGERED),
        (PENDING_UPDATE, SUBMITTED),
        (PENDING_UPDATE, PENDING_UPDATE),
        (PENDING_UPDATE, PENDING_CANCEL),
        (PENDING_UPDATE, PARTIALLY_FILLED),
        (PENDING_UPDATE, FILLED),
        (PENDING_CANCEL, REJECTED),
        (PENDING_CANCEL, PENDING_CANCEL),
        (PENDING_CANCEL, CANCELED),
        (PENDING_CANCEL, EXPIRED),
        (PENDING_CANCEL, ACCEPTED),
        (PENDING_CANCEL, PARTIALLY_FILLED),
        (PENDING_CANCEL, FILLED),
        (TRIGGERED, REJECTED),
        (TRIGGERED, PENDING_UPDATE),
        (TRIGGERED, PENDING_CANCEL),
        (TRIGGERED, CANCELED),
        (TRIGGERED, EXPIRED),
        (TRIGGERED, PARTIALLY_FILLED),
        (TRIGGERED, FILLED),
        (PARTIALLY_FILLED, PENDING_UPDATE),
        (PARTIALLY_FILLED, PENDING_CANCEL),
        (PARTIALLY_FILLED, CANCELED),
        (PARTIALLY_FILLED, EXPIRED),
        (PARTIALLY_FILLED, PARTIALLY_FILLED),
        (PARTIALLY_FILLED, FILLED),
    }
)

_TARGET: dict[type, str] = {
    s.OrderDenied: DENIED,
    s.OrderSubmitted: SUBMITTED,
    s.OrderAccepted: ACCEPTED,
    s.OrderRejected: REJECTED,
    s.OrderCanceled: CANCELED,
    s.OrderExpired: EXPIRED,
    s.OrderTriggered: TRIGGERED,
    s.OrderPendingUpdate: PENDING_UPDATE,
    s.OrderPendingCancel: PENDING_CANCEL,
}


def inferred_trade_id(venue_order_id: str, filled_qty: str) -> str:
    """A deterministic trade id for a fill inferred from ``filled_qty`` (<= 36 chars for Nautilus)."""
    digest = hashlib.sha1(f"{venue_order_id}:{Decimal(filled_qty).normalize()}".encode()).hexdigest()
    return f"INF-{digest[:32]}"


@dataclass
class OrderView:
    client_order_id: str
    instrument_id: str = ""
    trader_id: str = ""
    strategy_id: str = ""
    account_id: str | None = None
    venue_order_id: str | None = None
    side: str = ""
    order_type: str = ""
    time_in_force: str = ""
    quantity: Decimal = Decimal(0)
    price: str | None = None
    trigger_price: str | None = None
    post_only: bool = False
    reduce_only: bool = False
    status: str = INITIALIZED
    previous_status: str | None = None
    filled_qty: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    commissions: list[str] = field(default_factory=list)
    trade_ids: set[str] = field(default_factory=set)
    history: list[str] = field(default_factory=list)
    reason: str | None = None
    ts_last: int = 0
    external: bool = False
    # Stream sequence up to which every fact on this order's subject is folded in (kept by writers
    # that fence their publishes on it; 0 = not tracked).
    last_seq: int = 0

    @property
    def is_closed(self) -> bool:
        return self.status in CLOSED_STATUSES

    @property
    def is_open(self) -> bool:
        return not self.is_closed and self.status != INITIALIZED

    @property
    def leaves_qty(self) -> Decimal:
        return max(self.quantity - self.filled_qty, Decimal(0))

    @property
    def avg_px(self) -> Decimal | None:
        return self.notional / self.filled_qty if self.filled_qty else None


@dataclass
class PositionView:
    instrument_id: str
    net_qty: Decimal = Decimal(0)
    avg_px_open: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)

    def apply_fill(self, side: str, qty: Decimal, px: Decimal) -> None:
        signed = qty if side == "BUY" else -qty
        if self.net_qty == 0 or (self.net_qty > 0) == (signed > 0):
            total = abs(self.net_qty) + qty
            self.avg_px_open = (self.avg_px_open * abs(self.net_qty) + px * qty) / total
            self.net_qty += signed
            return
        closing = min(qty, abs(self.net_qty))
        direction = 1 if self.net_qty > 0 else -1
        self.realized_pnl += (px - self.avg_px_open) * closing * direction
        self.net_qty += signed
        if self.net_qty == 0:
            self.avg_px_open = Decimal(0)
        elif (self.net_qty > 0) != (direction > 0):
            self.avg_px_open = px  # flipped: the remainder opened at this fill's price


@dataclass(frozen=True)
class Applied:
    ok: bool
    problem: str | None = None  # "duplicate_fill" | "illegal_transition" | "unknown_order" | "not_an_order_event"
    order: OrderView | None = None


class ExecProjection:
    def __init__(self) -> None:
        self.orders: dict[str, OrderView] = {}
        self.by_venue_id: dict[str, str] = {}
        self.positions: dict[str, PositionView] = {}
        self.last_stream_seq = 0
        self.problems: dict[str, int] = {}

    def order(self, client_order_id: str) -> OrderView | None:
        return self.orders.get(client_order_id)

    def by_venue(self, venue_order_id: str) -> OrderView | None:
        coid = self.by_venue_id.get(venue_order_id)
        return self.orders.get(coid) if coid else None

    def open_orders(self) -> list[OrderView]:
        return [o for o in self.orders.values() if o.is_open]

    def in_flight(self) -> list[OrderView]:
        return [o for o in self.orders.values() if o.status in IN_FLIGHT_STATUSES]

    def apply(self, ev: Any, stream_seq: int = 0) -> Applied:
        if stream_seq:
            self.last_stream_seq = max(self.last_stream_seq, stream_seq)
        if isinstance(ev, s.OrderInitialized):
            return self._initialized(ev)
        if not isinstance(ev, OrderEvent):
            return Applied(False, "not_an_order_event")
        o = self.orders.get(ev.client_order_id)
        if o is None:
            # History without an OrderInitialized (e.g. an external order first seen accepted).
            o = self.orders[ev.client_order_id] = OrderView(
                client_order_id=ev.client_order_id,
                instrument_id=ev.instrument_id,
                trader_id=ev.trader_id,
                strategy_id=ev.strategy_id,
                external=ev.strategy_id == "EXTERNAL",
            )
        venue_id = getattr(ev, "venue_order_id", None)
        if venue_id:
            o.venue_order_id = venue_id
            self.by_venue_id[venue_id] = o.client_order_id
        account = getattr(ev, "account_id", None)
        if account:
            o.account_id = account
        ts = getattr(ev, "ts_event", 0) or getattr(ev, "ts_init", 0)
        o.ts_last = max(o.ts_last, ts)
        if isinstance(ev, s.OrderFilled):
            return self._filled(o, ev)
        if isinstance(ev, s.OrderUpdated):
            o.quantity = Decimal(ev.quantity)
            o.price = ev.price if ev.price is not None else o.price
            o.trigger_price = ev.trigger_price if ev.trigger_price is not None else o.trigger_price
            if o.status == PENDING_UPDATE:
                o.status, o.previous_status = o.previous_status or ACCEPTED, None
            o.history.append("OrderUpdated")
            return Applied(True, order=o)
        if isinstance(ev, s.OrderModifyRejected | s.OrderCancelRejected):
            if o.status in (PENDING_UPDATE, PENDING_CANCEL):
                o.status, o.previous_status = o.previous_status or ACCEPTED, None
            o.reason = ev.reason
            o.history.append(type(ev).__name__)
            return Applied(True, order=o)
        target = _TARGET.get(type(ev))
        if target is None:
            return self._problem("not_an_order_event", o)
        if target in (PENDING_UPDATE, PENDING_CANCEL):
            if (o.status, target) not in ALLOWED_TRANSITIONS:
                return self._problem("illegal_transition", o)
            if o.status not in (PENDING_UPDATE, PENDING_CANCEL):
                o.previous_status = o.status
            o.status = target
        elif target == ACCEPTED and o.status in (PENDING_UPDATE, PENDING_CANCEL, PARTIALLY_FILLED, TRIGGERED):
            pass  # an accept that arrives late (after fills or a pending request) changes nothing
        elif (o.status, target) in ALLOWED_TRANSITIONS:
            o.status = target
            o.previous_status = None
        else:
            return self._problem("illegal_transition", o)
        if isinstance(ev, s.OrderRejected | s.OrderDenied):
            o.reason = ev.reason
        o.history.append(type(ev).__name__)
        return Applied(True, order=o)

    def _initialized(self, ev: s.OrderInitialized) -> Applied:
        o = self.orders.get(ev.client_order_id)
        if o is None:
            o = self.orders[ev.client_order_id] = OrderView(client_order_id=ev.client_order_id)
        elif "OrderInitialized" in o.history:
            return self._problem("duplicate_initialized", o)
        o.instrument_id, o.trader_id, o.strategy_id = ev.instrument_id, ev.trader_id, ev.strategy_id
        o.side, o.order_type, o.time_in_force = ev.order_side, ev.order_type, ev.time_in_force
        o.quantity = Decimal(ev.quantity)
        o.price = ev.options.price if isinstance(ev.options.price, str) else None
        o.trigger_price = ev.options.trigger_price if isinstance(ev.options.trigger_price, str) else None
        o.post_only, o.reduce_only = ev.post_only, ev.reduce_only
        o.external = ev.strategy_id == "EXTERNAL"
        o.ts_last = max(o.ts_last, ev.ts_init)
        o.history.append("OrderInitialized")
        return Applied(True, order=o)

    def _filled(self, o: OrderView, ev: s.OrderFilled) -> Applied:
        if ev.trade_id in o.trade_ids:
            return self._problem("duplicate_fill", o)
        if o.status in (DENIED, REJECTED, EXPIRED, FILLED):
            return self._problem("illegal_transition", o)
        qty, px = Decimal(ev.last_qty), Decimal(ev.last_px)
        o.trade_ids.add(ev.trade_id)
        o.filled_qty += qty
        o.notional += qty * px
        o.commissions.append(ev.commission)
        if not o.side:
            o.side = ev.order_side
        if not o.order_type:
            o.order_type = ev.order_type
        if o.quantity == 0:
            o.quantity = o.filled_qty  # external order first seen through its fill
        o.status = FILLED if o.filled_qty >= o.quantity else PARTIALLY_FILLED
        o.previous_status = None
        o.history.append("OrderFilled")
        pos = self.positions.setdefault(ev.instrument_id, PositionView(ev.instrument_id))
        pos.apply_fill(ev.order_side, qty, px)
        return Applied(True, order=o)

    def _problem(self, kind: str, o: OrderView | None) -> Applied:
        self.problems[kind] = self.problems.get(kind, 0) + 1
        return Applied(False, kind, o)


async def load(
    js: JetStreamContext, account: str, projection: ExecProjection | None = None, start_seq: int | None = None
) -> ExecProjection:
    """Fold every stored order event of ``account`` (``exec.paradex.<account>.order.>``)."""
    proj = projection or ExecProjection()
    async for seq, ev in iter_order_events(js, account, start_seq=start_seq):
        if ev is None:
            proj.problems["undecodable"] = proj.problems.get("undecodable", 0) + 1
            continue
        proj.apply(ev, seq)
    return proj


async def iter_order_events(
    js: JetStreamContext, account: str, start_seq: int | None = None
) -> AsyncIterator[tuple[int, Any]]:
    """``(stream_seq, event)`` for every stored order event; ``event`` is None if undecodable."""
    async for m in replay(js, subjects.exec_orders(account), stream="EXEC", start_seq=start_seq):
        try:
            ev = m.event
        except s.DecodeError:
            ev = None
        yield m.stream_seq, ev
