"""Venue truth -> Nautilus order events: the one place that decides which events a venue order
snapshot or fill implies for an order, whatever delivered it (WS, a REST reply, an in-flight query).

The decision is a function of the order's projected state and the snapshot, so applying the same
snapshot twice, or an older one after a newer one, emits nothing. Rules (issue #7):

* ``NEW``: nothing (``OrderSubmitted`` was stored before the venue was called).
* ``OPEN`` / ``UNTRIGGERED``, or any snapshot/fill showing a filled quantity: ``OrderAccepted`` with
  the venue order id, once. A trigger order seen ``OPEN`` (or filling) after it was accepted
  untriggered: ``OrderTriggered``, once.
* ``CLOSED`` with a cancel reason and never accepted: ``OrderRejected`` (``due_post_only`` for
  ``POST_ONLY_WOULD_CROSS``) -- except ``USER_CANCELED`` (cancelled while ``NEW``) which is
  ``OrderCanceled``; ``EXPIRED`` is ``OrderExpired``; after acceptance: ``OrderCanceled``;
  without a reason: filled (the fills carry it). If the snapshot shows more filled than the fills
  we have, the terminal event waits for the missing fills (WS, or fetched by the resolver).
* A pending modify is settled by ``request_info`` (``SUCCESS`` -> ``OrderUpdated``, ``REJECTED`` ->
  ``OrderModifyRejected``) or, without it, by the snapshot showing the requested values.
* A fill: ``OrderFilled`` with ``trade_id`` = venue fill id, ``last_qty``/``last_px`` at the
  instrument's precision, ``commission`` = fee as Money with 8 decimals, liquidity side; a fill id
  the order already has is a duplicate and is dropped (counted). Non-trade fills are not fills.

Venue updates for orders we do not know (placed outside the pipeline) are counted and left to the
reconciler.
"""

from __future__ import annotations

import time
from decimal import Decimal

import schemas as s
from bus.msgid import event_uuid
from schemas.enums import LiquiditySide, OrderType
from services.execution import projection as P
from services.execution.projection import OrderView
from services.order_router.counters import BufferedMetrics
from services.order_router.mapping import (
    EXPIRED,
    MARKET_TYPES,
    POST_ONLY_WOULD_CROSS,
    TRADE_FILL_TYPES,
    TRIGGER_TYPES,
    USER_CANCELED,
    VenueFill,
    VenueOrder,
    fmt,
    is_zero,
    money,
)
from services.order_router.market_data import MarketData
from services.order_router.orders import OrderStore, base_fields
from services.runtime import Metrics, Problems

_MODIFY_DONE = ("SUCCESS", "PROCESSED", "REJECTED")
# Reasons a trigger order can only get once it triggered and tried to execute.
EXECUTION_REASONS = frozenset(
    {"EMPTY_MARKET", "EXCEEDS_MAX_SLIPPAGE", "REMAINING_IOC_CANCEL", "POST_ONLY_WOULD_CROSS", "SELF_TRADE"}
)
_LIQUIDITY = {"MAKER": LiquiditySide.MAKER, "TAKER": LiquiditySide.TAKER}


def ns(ms: int) -> int:
    return ms * 1_000_000 if ms > 0 else time.time_ns()


class Transitions:
    def __init__(
        self, store: OrderStore, md: MarketData, metrics: Metrics | BufferedMetrics, problems: Problems
    ) -> None:
        self.store = store
        self.md = md
        self.metrics = metrics
        self.problems = problems

    # -- entry points (take the order's lock) --------------------------------------------------------

    async def on_order_update(self, v: VenueOrder, source: str, received_ns: int = 0) -> None:
        coid = self.store.coid_for(v.client_id, v.id)
        if coid is None:
            self.metrics.inc("external_updates_total", source=source)
            return
        if received_ns and v.status == "OPEN":
            self.store.latency.mark(coid, "ws_in", received_ns)
        async with self.store.locked(coid):
            await self.apply_order(coid, v, source)

    async def on_fill(self, f: VenueFill, source: str) -> None:
        coid = self.store.coid_for(f.client_id, f.order_id)
        if coid is None:
            self.metrics.inc("external_fills_total", source=source)
            return
        async with self.store.locked(coid):
            await self.apply_fill(coid, f, source)

    # -- under the order's lock ----------------------------------------------------------------------

    async def apply_order(self, coid: str, v: VenueOrder, source: str) -> None:
        o = self.store.order(coid)
        if o is None:
            return
        t = self.store.track(coid, v.market)
        if source == "ws":
            if v.seq_no and v.seq_no <= t.last_ws_seq:
                self.problems.report("duplicate_order_update", coid=coid, seq_no=v.seq_no, status=v.status)
                return
            t.last_ws_seq = max(t.last_ws_seq, v.seq_no)
        if v.last_updated_at and v.last_updated_at < t.last_venue_ts:
            self.metrics.inc("stale_order_updates_total", source=source)
            return
        t.last_venue_ts = max(t.last_venue_ts, v.last_updated_at)
        t.venue_type = v.type
        if v.created_at and not t.venue_created_at:
            t.venue_created_at = v.created_at
        filled = v.filled
        t.venue_filled = max(t.venue_filled, filled)
        if filled > o.filled_qty and not t.fills_missing_since:
            t.fills_missing_since = time.monotonic()
        if o.is_closed:
            return
        if (v.status in ("OPEN", "UNTRIGGERED") or filled > 0) and "OrderAccepted" not in o.history:
            await self._accept(o, v.id, v.last_updated_at or v.created_at)
        if v.type in TRIGGER_TYPES and (v.status == "OPEN" or filled > 0):
            await self._trigger(o, v.id, v.last_updated_at)
        if o.status == P.PENDING_UPDATE or t.pending_modify is not None:
            await self._settle_modify(o, v)
        if v.request_info is not None and v.request_info.id:
            t.last_request_id = v.request_info.id
        if v.status == "CLOSED":
            if filled > o.filled_qty:
                t.deferred_close = v  # terminal event after the missing fills
                return
            await self._close(o, v)

    async def apply_fill(self, coid: str, f: VenueFill, source: str) -> bool:
        o = self.store.order(coid)
        if o is None:
            return False
        if f.fill_type not in TRADE_FILL_TYPES:
            self.problems.report("non_trade_fill_ignored", coid=coid, fill_id=f.id, fill_type=f.fill_type)
            return False
        if f.id in o.trade_ids:
            self.problems.report("duplicate_fill", coid=coid, fill_id=f.id, source=source)
            return False
        if o.status in (P.DENIED, P.REJECTED, P.EXPIRED, P.FILLED):
            self.problems.report("fill_on_closed_order", coid=coid, fill_id=f.id, status=o.status)
            return False
        if len(f.id) > 36:
            self.problems.report("fill_id_too_long", coid=coid, fill_id=f.id)
            return False
        if "OrderAccepted" not in o.history and o.status != P.CANCELED:
            await self._accept(o, f.order_id, f.created_at)
        if self.store.track(coid).venue_type in TRIGGER_TYPES:
            await self._trigger(o, f.order_id, f.created_at)  # a trigger order fills only once triggered
        pp, sp = self.md.precisions(f.market or s.market_of(o.instrument_id))
        ntype = OrderType(o.order_type) if o.order_type else OrderType.LIMIT
        ev = s.OrderFilled(
            **base_fields(o),
            venue_order_id=f.order_id,
            account_id=self.store.account_id,
            trade_id=f.id,
            position_id=None,
            order_side=o.side or f.side,
            order_type=ntype,
            last_qty=fmt(f.size, sp),
            last_px=fmt(f.price, pp),
            currency=self.md.quote_currency(s.market_of(o.instrument_id)),
            commission=money(f.fee, f.fee_currency),
            liquidity_side=_LIQUIDITY.get(f.liquidity, LiquiditySide.NO_LIQUIDITY_SIDE),
            event_id=event_uuid(self.store.fill_mid(f.id)),
            ts_event=ns(f.created_at),
            ts_init=time.time_ns(),
        )
        await self.store.emit(ev)
        t = self.store.track(coid)
        if o.filled_qty >= t.venue_filled:
            t.fills_missing_since = 0.0
        if t.deferred_close is not None and o.filled_qty >= t.deferred_close.filled:
            deferred, t.deferred_close = t.deferred_close, None
            if not o.is_closed:
                await self._close(o, deferred)
        return True

    # -- single transitions --------------------------------------------------------------------------

    async def _accept(self, o: OrderView, venue_order_id: str, ts_ms: int) -> None:
        if "OrderAccepted" in o.history or not allowed_or_late(o.status, P.ACCEPTED):
            return
        self.store.latency.mark(o.client_order_id, "built")
        ev = s.OrderAccepted(
            **base_fields(o),
            venue_order_id=venue_order_id,
            account_id=self.store.account_id,
            event_id=self._eid(o, "OrderAccepted"),
            ts_event=ns(ts_ms),
            ts_init=time.time_ns(),
        )
        await self.store.emit(ev)
        self.store.latency.accepted(o.client_order_id, time.time_ns())

    async def _trigger(self, o: OrderView, venue_order_id: str, ts_ms: int) -> None:
        if "OrderTriggered" in o.history or not legal(o.status, P.TRIGGERED):
            return
        ev = s.OrderTriggered(
            **base_fields(o),
            venue_order_id=venue_order_id,
            account_id=self.store.account_id,
            event_id=self._eid(o, "OrderTriggered"),
            ts_event=ns(ts_ms),
            ts_init=time.time_ns(),
        )
        await self.store.emit(ev)

    async def _close(self, o: OrderView, v: VenueOrder) -> None:
        reason = v.cancel_reason
        ts = ns(v.last_updated_at)
        common = {
            **base_fields(o),
            "venue_order_id": v.id,
            "account_id": self.store.account_id,
            "ts_event": ts,
            "ts_init": time.time_ns(),
        }
        if not reason:
            if o.filled_qty < o.quantity and o.status != P.FILLED:
                # The venue says filled but our fills do not add up to the order quantity: the size
                # changed at the venue without us (reconciler territory) -- report, do not invent.
                self.problems.report(
                    "closed_filled_quantity_mismatch", coid=o.client_order_id, ours=str(o.filled_qty), size=v.size
                )
            return
        if reason == EXPIRED and legal(o.status, P.EXPIRED):
            await self.store.emit(s.OrderExpired(**common, event_id=self._eid(o, "OrderExpired")))
            return
        if v.type in TRIGGER_TYPES and reason in EXECUTION_REASONS and "OrderAccepted" in o.history:
            await self._trigger(o, v.id, v.last_updated_at)  # it triggered, then could not execute
        never_accepted = "OrderAccepted" not in o.history and o.filled_qty == 0
        if never_accepted and reason != USER_CANCELED and legal(o.status, P.REJECTED):
            common.pop("venue_order_id")
            await self.store.emit(
                s.OrderRejected(
                    **common,
                    reason=reason,
                    due_post_only=reason == POST_ONLY_WOULD_CROSS,
                    event_id=self._eid(o, "OrderRejected"),
                )
            )
            return
        if legal(o.status, P.CANCELED):
            await self.store.emit(s.OrderCanceled(**common, event_id=self._eid(o, "OrderCanceled")))
        else:
            self.problems.report("cannot_cancel_in_state", coid=o.client_order_id, status=o.status, reason=reason)

    async def _settle_modify(self, o: OrderView, v: VenueOrder) -> None:
        t = self.store.track(o.client_order_id)
        pm = t.pending_modify
        ri = v.request_info
        outcome: str | None = None
        message = ""
        # The venue repeats the last request's outcome on later updates: an outcome is this
        # modify's only if it is not an earlier one's, and matches the PUT reply's id when known.
        ours = ri is not None and (
            pm is None or (ri.id != pm.previous_request_id and (not pm.request_id or ri.id == pm.request_id))
        )
        if ri is not None and ours and ri.request_type == "MODIFY_ORDER" and ri.status in _MODIFY_DONE:
            outcome = "rejected" if ri.status == "REJECTED" else "updated"
            message = ri.message
        elif pm is not None and _matches(pm.quantity, v.size) and _matches(pm.price, v.price) and _matches(
            pm.trigger_price, v.trigger_price
        ):
            outcome = "updated"
        if outcome is None:
            return
        if outcome == "updated":
            await self.emit_updated(o, v)
        else:
            await self.emit_modify_rejected(o, pm.command_id if pm else "venue", message or "modify rejected by venue")

    async def emit_updated(self, o: OrderView, v: VenueOrder) -> None:
        pp, sp = self.md.precisions(v.market)
        disc = v.last_updated_at
        mid = self.store.mid(o.client_order_id, "OrderUpdated", disc)
        ev = s.OrderUpdated(
            **base_fields(o),
            venue_order_id=v.id,
            account_id=self.store.account_id,
            quantity=fmt(v.size, sp),
            price=None if v.type in MARKET_TYPES or is_zero(v.price) else fmt(v.price, pp),
            trigger_price=None if v.type not in TRIGGER_TYPES or is_zero(v.trigger_price) else fmt(v.trigger_price, pp),
            event_id=event_uuid(mid),
            ts_event=ns(v.last_updated_at),
            ts_init=time.time_ns(),
        )
        await self.store.emit(ev, disc)

    async def emit_modify_rejected(self, o: OrderView, command_id: str, reason: str) -> None:
        mid = self.store.mid(o.client_order_id, "OrderModifyRejected", command_id)
        ev = s.OrderModifyRejected(
            **base_fields(o),
            venue_order_id=o.venue_order_id,
            account_id=self.store.account_id,
            reason=reason,
            event_id=event_uuid(mid),
            ts_event=time.time_ns(),
            ts_init=time.time_ns(),
        )
        await self.store.emit(ev, command_id)

    async def emit_cancel_rejected(self, o: OrderView, command_id: str, reason: str) -> None:
        mid = self.store.mid(o.client_order_id, "OrderCancelRejected", command_id)
        ev = s.OrderCancelRejected(
            **base_fields(o),
            venue_order_id=o.venue_order_id,
            account_id=self.store.account_id,
            reason=reason,
            event_id=event_uuid(mid),
            ts_event=time.time_ns(),
            ts_init=time.time_ns(),
        )
        await self.store.emit(ev, command_id)

    async def emit_rejected(self, o: OrderView, reason: str, *, due_post_only: bool = False) -> None:
        if "OrderRejected" in o.history or not legal(o.status, P.REJECTED):
            return
        ev = s.OrderRejected(
            **base_fields(o),
            account_id=self.store.account_id,
            reason=reason,
            due_post_only=due_post_only,
            event_id=self._eid(o, "OrderRejected"),
            ts_event=time.time_ns(),
            ts_init=time.time_ns(),
        )
        await self.store.emit(ev)

    def _eid(self, o: OrderView, kind: str) -> str:
        return self.store.eid(o.client_order_id, kind)


def legal(status: str, target: str) -> bool:
    """Whether Nautilus's state machine (the projection's shared table) allows ``status -> target``."""
    return (status, target) in P.ALLOWED_TRANSITIONS


def allowed_or_late(status: str, target: str) -> bool:
    """ACCEPTED also arrives late (after a pending request or fills) and is then a no-op."""
    return legal(status, target) or status in (P.PENDING_UPDATE, P.PENDING_CANCEL, P.PARTIALLY_FILLED)


def _matches(wanted: str | None, have: str) -> bool:
    if wanted is None:
        return True
    try:
        return Decimal(wanted) == Decimal(have or "0")
    except ArithmeticError:
        return False
