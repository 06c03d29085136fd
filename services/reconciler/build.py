"""Venue records → Nautilus order events and execution reports (pure; no I/O).

The mapping is the one the order router uses for the same venue facts (paradex-api.md §4.7.5,
nautilus-model.md §2.1, §2.3):

* venue ``type`` → ``OrderType``: MARKET, LIMIT, STOP_LIMIT, STOP_MARKET as named;
  TAKE_PROFIT_LIMIT → LIMIT_IF_TOUCHED, TAKE_PROFIT_MARKET → MARKET_IF_TOUCHED,
  STOP_LOSS_LIMIT → STOP_LIMIT, STOP_LOSS_MARKET → STOP_MARKET;
* ``instruction`` → ``TimeInForce``: IOC → IOC, GTC/POST_ONLY/RPI → GTC (POST_ONLY sets
  ``post_only``); market-style orders are IOC;
* a CLOSED order reads as FILLED (nothing remaining), EXPIRED (``cancel_reason`` EXPIRED),
  REJECTED (nothing filled, never accepted on the bus, any reason but USER_CANCELED: the venue
  closed it in its risk checks before it rested) or CANCELED (everything else);
* ``OrderFilled.trade_id`` is the venue fill id; commission is the venue ``fee`` (positive = paid)
  in ``fee_currency``; an inferred fill carries ``inferred_trade_id``, zero commission and
  ``NO_LIQUIDITY_SIDE``.

External orders (placed outside the pipeline) get strategy ``EXTERNAL``, tag ``VENUE`` and, when
the venue order has no usable client id, the deterministic client order id ``EXT-<venue order id>``.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

import schemas as s
from schemas.enums import (
    LiquiditySideCode,
    OrderSideCode,
    OrderStatusCode,
    OrderTypeCode,
    PositionSideCode,
    TimeInForceCode,
    TriggerTypeCode,
)
from services.reconciler.instruments import Instruments, plain
from services.reconciler.venue import (
    EXPIRED_REASON,
    MARKET_ORDER_TYPES,
    TRIGGER_ORDER_TYPES,
    USER_CANCELED,
    VenueFill,
    VenueOrder,
    VenuePosition,
)

_Fact = TypeVar("_Fact", s.OrderCanceled, s.OrderExpired, s.OrderTriggered)

EXTERNAL_STRATEGY = "EXTERNAL"
EXTERNAL_PREFIX = "EXT-"
_COID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")

ORDER_TYPES = {
    "MARKET": "MARKET",
    "LIMIT": "LIMIT",
    "STOP_LIMIT": "STOP_LIMIT",
    "STOP_MARKET": "STOP_MARKET",
    "TAKE_PROFIT_LIMIT": "LIMIT_IF_TOUCHED",
    "TAKE_PROFIT_MARKET": "MARKET_IF_TOUCHED",
    "STOP_LOSS_LIMIT": "STOP_LIMIT",
    "STOP_LOSS_MARKET": "STOP_MARKET",
}

FILLED, REJECTED, CANCELED, EXPIRED = "FILLED", "REJECTED", "CANCELED", "EXPIRED"


def account_id(account: str) -> str:
    return f"PARADEX-{account}"


def valid_client_order_id(value: str) -> bool:
    return bool(value) and bool(_COID.match(value))


def external_client_order_id(venue_order_id: str) -> str:
    """The deterministic client order id of an external order without a usable venue client id."""
    return f"{EXTERNAL_PREFIX}{venue_order_id}"[:64]


def closed_kind(order: VenueOrder, accepted_on_bus: bool) -> str:
    """How a CLOSED venue order reads as a Nautilus terminal status."""
    if order.fully_filled:
        return FILLED
    if order.cancel_reason == EXPIRED_REASON:
        return EXPIRED
    if order.filled == 0 and not accepted_on_bus and order.cancel_reason not in ("", USER_CANCELED):
        return REJECTED
    return CANCELED


def nautilus_type(venue_type: str) -> str:
    return ORDER_TYPES.get(venue_type, "LIMIT")


def time_in_force(order: VenueOrder) -> str:
    if order.type in MARKET_ORDER_TYPES or order.instruction == "IOC":
        return "IOC"
    return "GTC"


def ns(ms: int, fallback: int) -> int:
    return ms * 1_000_000 if ms > 0 else fallback


def new_uuid() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class OrderIdentity:
    """What every event of one order repeats: taken from the bus when the order is known there."""

    trader_id: str
    strategy_id: str
    instrument_id: str
    client_order_id: str
    side: str
    order_type: str

    def head(self) -> dict[str, str]:
        return {
            "trader_id": self.trader_id,
            "strategy_id": self.strategy_id,
            "instrument_id": self.instrument_id,
            "client_order_id": self.client_order_id,
        }


class EventBuilder:
    def __init__(self, account: str, trader_id: str, instruments: Instruments) -> None:
        self.account = account
        self.account_id = account_id(account)
        self.trader_id = trader_id
        self.instruments = instruments

    @staticmethod
    def now() -> int:
        return time.time_ns()

    # -- identities -----------------------------------------------------------------------------

    def external_identity(self, order: VenueOrder, client_order_id: str) -> OrderIdentity:
        return OrderIdentity(
            trader_id=self.trader_id,
            strategy_id=EXTERNAL_STRATEGY,
            instrument_id=s.instrument_id(order.market),
            client_order_id=client_order_id,
            side=order.side,
            order_type=nautilus_type(order.type),
        )

    # -- order events ---------------------------------------------------------------------------

    def initialized_external(self, ident: OrderIdentity, order: VenueOrder, event_id: str) -> s.OrderInitialized:
        now = self.now()
        m = order.market
        options = s.OrderOptions()
        if order.price is not None and order.type not in MARKET_ORDER_TYPES:
            options.price = self.instruments.price(m, order.price)
        if order.type in TRIGGER_ORDER_TYPES:
            options.trigger_price = self.instruments.price(m, order.trigger_price) if order.trigger_price else None
            options.trigger_type = "MARK_PRICE"
        return s.OrderInitialized(
            **ident.head(),
            order_side=order.side,
            order_type=ident.order_type,
            quantity=self.instruments.size(m, order.size),
            time_in_force=time_in_force(order),
            post_only=order.instruction == "POST_ONLY",
            reduce_only=order.reduce_only,
            options=options,
            tags=["VENUE"],
            event_id=event_id,
            ts_init=now,
            ts_event=ns(order.created_at, now),
            reconciliation=True,
        )

    def submitted(self, ident: OrderIdentity, order: VenueOrder, event_id: str) -> s.OrderSubmitted:
        now = self.now()
        return s.OrderSubmitted(
            **ident.head(),
            account_id=self.account_id,
            event_id=event_id,
            ts_event=ns(order.created_at, now),
            ts_init=now,
        )

    def accepted(self, ident: OrderIdentity, order: VenueOrder, event_id: str) -> s.OrderAccepted:
        now = self.now()
        return s.OrderAccepted(
            **ident.head(),
            venue_order_id=order.id,
            account_id=self.account_id,
            event_id=event_id,
            ts_event=ns(order.created_at, now),
            ts_init=now,
            reconciliation=True,
        )

    def rejected(self, ident: OrderIdentity, order: VenueOrder, event_id: str) -> s.OrderRejected:
        now = self.now()
        return s.OrderRejected(
            **ident.head(),
            account_id=self.account_id,
            reason=order.cancel_reason or "UNKNOWN",
            event_id=event_id,
            ts_event=ns(order.last_updated_at, now),
            ts_init=now,
            reconciliation=True,
            due_post_only=order.cancel_reason == "POST_ONLY_WOULD_CROSS",
        )

    def _venue_fact(self, cls: type[_Fact], ident: OrderIdentity, order: VenueOrder, event_id: str) -> _Fact:
        """An event that only says "the venue did this to the order", stamped with the venue's time."""
        now = self.now()
        return cls(
            **ident.head(),
            venue_order_id=order.id,
            account_id=self.account_id,
            event_id=event_id,
            ts_event=ns(order.last_updated_at, now),
            ts_init=now,
            reconciliation=True,
        )

    def canceled(self, ident: OrderIdentity, order: VenueOrder, event_id: str) -> s.OrderCanceled:
        return self._venue_fact(s.OrderCanceled, ident, order, event_id)

    def expired(self, ident: OrderIdentity, order: VenueOrder, event_id: str) -> s.OrderExpired:
        return self._venue_fact(s.OrderExpired, ident, order, event_id)

    def triggered(self, ident: OrderIdentity, order: VenueOrder, event_id: str) -> s.OrderTriggered:
        return self._venue_fact(s.OrderTriggered, ident, order, event_id)

    def updated(self, ident: OrderIdentity, order: VenueOrder, event_id: str) -> s.OrderUpdated:
        now = self.now()
        m = order.market
        return s.OrderUpdated(
            **ident.head(),
            venue_order_id=order.id,
            account_id=self.account_id,
            quantity=self.instruments.size(m, order.size),
            price=self.instruments.price(m, order.price)
            if order.price is not None and order.type not in MARKET_ORDER_TYPES
            else None,
            trigger_price=self.instruments.price(m, order.trigger_price) if order.trigger_price else None,
            event_id=event_id,
            ts_event=ns(order.last_updated_at, now),
            ts_init=now,
            reconciliation=True,
        )

    def filled(self, ident: OrderIdentity, fill: VenueFill, event_id: str) -> s.OrderFilled:
        now = self.now()
        m = fill.market
        return s.OrderFilled(
            **ident.head(),
            venue_order_id=fill.order_id,
            account_id=self.account_id,
            trade_id=fill.id,
            order_side=ident.side or fill.side,
            order_type=ident.order_type or "LIMIT",
            last_qty=self.instruments.size(m, fill.size),
            last_px=self.instruments.price(m, fill.price),
            currency=self.instruments.quote(m),
            commission=self.instruments.money(fill.fee, fill.fee_currency),
            liquidity_side=fill.liquidity if fill.liquidity in ("MAKER", "TAKER") else "NO_LIQUIDITY_SIDE",
            event_id=event_id,
            ts_event=ns(fill.created_at, now),
            ts_init=now,
            info={"fill_type": fill.fill_type},
            reconciliation=True,
        )

    def inferred_fill(
        self, ident: OrderIdentity, order: VenueOrder, trade_id: str, qty: Decimal, px: Decimal, event_id: str
    ) -> s.OrderFilled:
        now = self.now()
        m = order.market
        return s.OrderFilled(
            **ident.head(),
            venue_order_id=order.id,
            account_id=self.account_id,
            trade_id=trade_id,
            order_side=ident.side or order.side,
            order_type=ident.order_type or nautilus_type(order.type),
            last_qty=self.instruments.size(m, qty),
            last_px=self.instruments.price(m, px),
            currency=self.instruments.quote(m),
            commission=self.instruments.money(Decimal(0), "USDC"),
            liquidity_side="NO_LIQUIDITY_SIDE",
            event_id=event_id,
            ts_event=ns(order.last_updated_at, now),
            ts_init=now,
            info={"inferred": True, "venue_filled_qty": self.instruments.size(m, order.filled)},
            reconciliation=True,
        )

    # -- reports --------------------------------------------------------------------------------

    def order_report(self, order: VenueOrder, client_order_id: str | None, kind: str | None) -> s.OrderStatusReport:
        """``kind`` is the closed reading (``closed_kind``) for a CLOSED order, else ignored."""
        now = self.now()
        m = order.market
        if order.is_closed:
            status = {
                FILLED: OrderStatusCode.FILLED,
                REJECTED: OrderStatusCode.REJECTED,
                EXPIRED: OrderStatusCode.EXPIRED,
            }.get(kind or CANCELED, OrderStatusCode.CANCELED)
        elif order.status == "NEW":
            status = OrderStatusCode.SUBMITTED
        elif order.filled > 0:
            status = OrderStatusCode.PARTIALLY_FILLED
        elif order.status == "OPEN" and order.type in TRIGGER_ORDER_TYPES:
            status = OrderStatusCode.TRIGGERED
        else:
            status = OrderStatusCode.ACCEPTED
        limit_like = order.price is not None and order.type not in MARKET_ORDER_TYPES
        return s.OrderStatusReport(
            account_id=self.account_id,
            instrument_id=s.instrument_id(m),
            client_order_id=client_order_id,
            venue_order_id=order.id,
            order_side=OrderSideCode[order.side],
            order_type=OrderTypeCode[nautilus_type(order.type)],
            time_in_force=TimeInForceCode[time_in_force(order)],
            order_status=status,
            quantity=self.instruments.size(m, order.size),
            filled_qty=self.instruments.size(m, order.filled),
            report_id=new_uuid(),
            ts_accepted=ns(order.created_at, now),
            ts_last=ns(order.last_updated_at, now),
            ts_init=now,
            price=self.instruments.price(m, order.price) if limit_like and order.price is not None else None,
            trigger_price=self.instruments.price(m, order.trigger_price) if order.trigger_price else None,
            trigger_type=TriggerTypeCode.MARK_PRICE
            if order.type in TRIGGER_ORDER_TYPES
            else TriggerTypeCode.NO_TRIGGER,
            avg_px=plain(order.avg_fill_price) if order.avg_fill_price else None,
            post_only=order.instruction == "POST_ONLY",
            reduce_only=order.reduce_only,
            cancel_reason=order.cancel_reason or None,
        )

    def fill_report(self, fill: VenueFill, client_order_id: str | None) -> s.FillReport:
        now = self.now()
        m = fill.market
        liq = LiquiditySideCode[fill.liquidity] if fill.liquidity in ("MAKER", "TAKER") else LiquiditySideCode(0)
        return s.FillReport(
            account_id=self.account_id,
            instrument_id=s.instrument_id(m),
            venue_order_id=fill.order_id,
            trade_id=fill.id,
            order_side=OrderSideCode[fill.side],
            last_qty=self.instruments.size(m, fill.size),
            last_px=self.instruments.price(m, fill.price),
            commission=self.instruments.money(fill.fee, fill.fee_currency),
            liquidity_side=liq,
            report_id=new_uuid(),
            ts_event=ns(fill.created_at, now),
            ts_init=now,
            client_order_id=client_order_id,
        )

    def inferred_fill_report(self, ev: s.OrderFilled) -> s.FillReport:
        return s.FillReport(
            account_id=self.account_id,
            instrument_id=ev.instrument_id,
            venue_order_id=ev.venue_order_id,
            trade_id=ev.trade_id,
            order_side=OrderSideCode[ev.order_side],
            last_qty=ev.last_qty,
            last_px=ev.last_px,
            commission=ev.commission,
            liquidity_side=LiquiditySideCode.NO_LIQUIDITY_SIDE,
            report_id=new_uuid(),
            ts_event=ev.ts_event,
            ts_init=self.now(),
            client_order_id=ev.client_order_id,
        )

    def position_report(self, pos: VenuePosition) -> s.PositionStatusReport:
        now = self.now()
        side = (
            PositionSideCode.FLAT
            if pos.size == 0
            else PositionSideCode.LONG
            if pos.size > 0
            else PositionSideCode.SHORT
        )
        return s.PositionStatusReport(
            account_id=self.account_id,
            instrument_id=s.instrument_id(pos.market),
            position_side=side,
            quantity=self.instruments.size(pos.market, abs(pos.size)),
            report_id=new_uuid(),
            ts_last=ns(pos.last_updated_at, now),
            ts_init=now,
            venue_position_id=pos.id or None,
            avg_px_open=self.instruments.price(pos.market, pos.average_entry_price)
            if pos.size != 0 and pos.average_entry_price
            else None,
        )

    def flat_position_report(self, market: str) -> s.PositionStatusReport:
        now = self.now()
        return s.PositionStatusReport(
            account_id=self.account_id,
            instrument_id=s.instrument_id(market),
            position_side=PositionSideCode.FLAT,
            quantity=self.instruments.size(market, Decimal(0)),
            report_id=new_uuid(),
            ts_last=now,
            ts_init=now,
        )
