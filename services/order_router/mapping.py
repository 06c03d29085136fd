"""Venue mapping: Nautilus orders <-> Paradex requests, and Paradex payloads as typed structs.

* ``venue_order_spec(order, params)`` turns an ``OrderInitialized`` (+ the command's ``params``)
  into what is signed and sent (paradex-api.md §4.7.1). Type mapping:

  =====================  ==========================================  =====================================
  Nautilus order_type    Paradex type                                ``params["paradex_type"]`` may choose
  =====================  ==========================================  =====================================
  MARKET                 MARKET
  LIMIT                  LIMIT
  STOP_MARKET            STOP_MARKET                                 STOP_LOSS_MARKET, TAKE_PROFIT_MARKET
  STOP_LIMIT             STOP_LIMIT                                  STOP_LOSS_LIMIT, TAKE_PROFIT_LIMIT
  MARKET_IF_TOUCHED      TAKE_PROFIT_MARKET                          STOP_LOSS_MARKET, STOP_MARKET
  LIMIT_IF_TOUCHED       TAKE_PROFIT_LIMIT                           STOP_LOSS_LIMIT, STOP_LIMIT
  =====================  ==========================================  =====================================

  ``time_in_force`` GTC/IOC map to the instruction of the same name, ``post_only=True`` to
  ``POST_ONLY``; ``reduce_only`` to the ``REDUCE_ONLY`` flag; ``client_order_id`` is the venue
  ``client_id``. Other ``params``: ``stp`` (EXPIRE_TAKER|EXPIRE_MAKER|EXPIRE_BOTH) and
  ``trigger_condition`` (ABOVE|BELOW -> ``STOP_CONDITION_*_TRIGGER``). Anything the venue cannot do
  (FOK, GTD, quote quantity, display quantity, emulation, contingencies) raises ``Unsupported``,
  which the router turns into ``OrderDenied``.
* Venue payloads (orders, fills, account, positions) decode into the msgspec structs below; only
  the fields we use are declared and decimals stay strings.
* ``order_status_report`` builds a Nautilus ``OrderStatusReport`` from a venue order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from schemas import OrderInitialized, OrderStatusReport
from schemas.enums import (
    OrderSide,
    OrderStatusCode,
    OrderType,
    OrderTypeCode,
    TimeInForce,
    TimeInForceCode,
    TriggerType,
    TriggerTypeCode,
)
from services.paradex.instruments import dec_str
from services.paradex.normalize import NormalizeError, fixed

Q8 = Decimal("0.00000001")

MARKET_TYPES = frozenset({"MARKET", "STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP_LOSS_MARKET"})
TRIGGER_TYPES = frozenset(
    {"STOP_MARKET", "STOP_LIMIT", "TAKE_PROFIT_MARKET", "TAKE_PROFIT_LIMIT", "STOP_LOSS_MARKET", "STOP_LOSS_LIMIT"}
)
VENUE_TYPES = MARKET_TYPES | TRIGGER_TYPES | {"LIMIT"}

_DEFAULT_TYPE: dict[str, str] = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP_MARKET: "STOP_MARKET",
    OrderType.STOP_LIMIT: "STOP_LIMIT",
    OrderType.MARKET_IF_TOUCHED: "TAKE_PROFIT_MARKET",
    OrderType.LIMIT_IF_TOUCHED: "TAKE_PROFIT_LIMIT",
}
_ALLOWED_OVERRIDES: dict[str, frozenset[str]] = {
    OrderType.MARKET: frozenset({"MARKET"}),
    OrderType.LIMIT: frozenset({"LIMIT"}),
    OrderType.STOP_MARKET: frozenset({"STOP_MARKET", "STOP_LOSS_MARKET", "TAKE_PROFIT_MARKET"}),
    OrderType.STOP_LIMIT: frozenset({"STOP_LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"}),
    OrderType.MARKET_IF_TOUCHED: frozenset({"TAKE_PROFIT_MARKET", "STOP_LOSS_MARKET", "STOP_MARKET"}),
    OrderType.LIMIT_IF_TOUCHED: frozenset({"TAKE_PROFIT_LIMIT", "STOP_LOSS_LIMIT", "STOP_LIMIT"}),
}
# Venue type -> Nautilus type (for events and reports of orders the venue describes).
NAUTILUS_TYPE: dict[str, OrderType] = {
    "MARKET": OrderType.MARKET,
    "LIMIT": OrderType.LIMIT,
    "STOP_MARKET": OrderType.STOP_MARKET,
    "STOP_LIMIT": OrderType.STOP_LIMIT,
    "STOP_LOSS_MARKET": OrderType.STOP_MARKET,
    "STOP_LOSS_LIMIT": OrderType.STOP_LIMIT,
    "TAKE_PROFIT_MARKET": OrderType.MARKET_IF_TOUCHED,
    "TAKE_PROFIT_LIMIT": OrderType.LIMIT_IF_TOUCHED,
}
STP_MODES = frozenset({"EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"})
TRIGGER_CONDITIONS = {"ABOVE": "STOP_CONDITION_ABOVE_TRIGGER", "BELOW": "STOP_CONDITION_BELOW_TRIGGER"}

# Fills that belong to an order's execution (funding payments are a different feed; liquidation
# and settlement fills belong to venue-generated orders the reconciler tracks as external).
TRADE_FILL_TYPES = frozenset({"FILL", "RPI", "BLOCK_TRADE", ""})

# cancel_reason values that close an order before it ever rested because the venue refused it.
POST_ONLY_WOULD_CROSS = "POST_ONLY_WOULD_CROSS"
USER_CANCELED = "USER_CANCELED"
EXPIRED = "EXPIRED"


class Unsupported(ValueError):
    """The order cannot be expressed on Paradex (becomes ``OrderDenied`` with this message)."""


# -- venue payloads -----------------------------------------------------------------------------


class RequestInfo(msgspec.Struct, gc=False):
    id: str = ""
    request_type: str = ""
    status: str = ""
    message: str = ""


class VenueOrder(msgspec.Struct, gc=False):
    """``OrderResp`` (REST and WS ``orders.*``, paradex-api.md §4.7.5)."""

    id: str
    market: str
    side: str
    type: str
    size: str
    status: str
    remaining_size: str = "0"
    price: str = "0"
    avg_fill_price: str = ""
    cancel_reason: str = ""
    client_id: str = ""
    instruction: str = "GTC"
    flags: list[str] = msgspec.field(default_factory=list)
    trigger_price: str = "0"
    created_at: int = 0
    last_updated_at: int = 0
    seq_no: int = 0
    request_info: RequestInfo | None = None

    @property
    def filled(self) -> Decimal:
        try:
            return max(Decimal(self.size) - Decimal(self.remaining_size or "0"), Decimal(0))
        except InvalidOperation:
            return Decimal(0)


class VenueFill(msgspec.Struct, gc=False):
    """``FillResult`` (REST ``/fills`` and WS ``fills.*``, §4.8)."""

    id: str
    market: str
    order_id: str
    side: str
    price: str
    size: str
    created_at: int
    client_id: str = ""
    liquidity: str = ""
    fee: str = "0"
    fee_currency: str = "USDC"
    fill_type: str = "FILL"
    remaining_size: str = ""


class VenueAccount(msgspec.Struct, gc=False):
    """``AccountSummary`` (REST ``/account`` and WS ``account``, §4.6)."""

    account: str = ""
    account_value: str = "0"
    free_collateral: str = "0"
    initial_margin_requirement: str = "0"
    maintenance_margin_requirement: str = "0"
    margin_cushion: str = "0"
    total_collateral: str = "0"
    settlement_asset: str = "USDC"
    status: str = ""
    seq_no: int = 0
    updated_at: int = 0


class VenuePosition(msgspec.Struct, gc=False):
    """``PositionResp`` (REST ``/positions`` and WS ``positions``, §4.6); ``size`` is signed."""

    market: str
    size: str
    side: str = ""
    status: str = ""
    id: str = ""
    average_entry_price: str = ""
    seq_no: int = 0
    last_updated_at: int = 0


order_decoder = msgspec.json.Decoder(VenueOrder)
fill_decoder = msgspec.json.Decoder(VenueFill)
account_decoder = msgspec.json.Decoder(VenueAccount)
position_decoder = msgspec.json.Decoder(VenuePosition)


def venue_order(obj: Any) -> VenueOrder:
    """A REST JSON order (dict) as ``VenueOrder``; raises ``msgspec.ValidationError``."""
    return msgspec.convert(obj, VenueOrder)


def venue_fill(obj: Any) -> VenueFill:
    return msgspec.convert(obj, VenueFill)


# -- Nautilus -> venue ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VenueOrderSpec:
    """Everything signed and sent for one order (the signature is added per attempt)."""

    market: str
    side: str
    type: str
    size: str
    price: str | None
    instruction: str
    client_id: str
    flags: tuple[str, ...] = ()
    trigger_price: str | None = None
    stp: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_market(self) -> bool:
        return self.type in MARKET_TYPES

    @property
    def is_trigger(self) -> bool:
        return self.type in TRIGGER_TYPES

    @property
    def signed_price(self) -> str:
        """The price that goes into the signature: ``"0"`` for market types."""
        return self.price if self.price is not None else "0"

    def body(self, signature: str, signature_timestamp: int, recv_window_ms: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "market": self.market,
            "side": self.side,
            "type": self.type,
            "size": self.size,
            "instruction": self.instruction,
            "client_id": self.client_id,
            "flags": list(self.flags),
            "signature": signature,
            "signature_timestamp": signature_timestamp,
            "recv_window": recv_window_ms,
        }
        if self.price is not None:
            out["price"] = self.price
        if self.trigger_price is not None:
            out["trigger_price"] = self.trigger_price
        if self.stp:
            out["stp"] = self.stp
        return out


def plain(value: str) -> str:
    """A decimal string without exponent or trailing zeros (what we sign and send)."""
    try:
        d = Decimal(value)
    except InvalidOperation as exc:
        raise Unsupported(f"not a decimal: {value!r}") from exc
    if not d.is_finite():
        raise Unsupported(f"not a finite decimal: {value!r}")
    return dec_str(d)


def venue_order_spec(order: OrderInitialized, params: dict[str, str] | None = None) -> VenueOrderSpec:
    """Map a Nautilus order to a Paradex order request; raises ``Unsupported`` with the reason."""
    p = params or {}
    default = _DEFAULT_TYPE.get(order.order_type)
    if default is None:
        raise Unsupported(f"order type {order.order_type} is not supported by Paradex")
    vtype = p.get("paradex_type", default).upper()
    if vtype not in _ALLOWED_OVERRIDES[order.order_type]:
        raise Unsupported(f"paradex_type {vtype} does not fit a Nautilus {order.order_type} order")
    if order.order_side not in (OrderSide.BUY, OrderSide.SELL):
        raise Unsupported(f"order side {order.order_side} is not BUY or SELL")
    if order.quote_quantity:
        raise Unsupported("quote quantity orders are not supported by Paradex")
    if order.emulation_trigger not in (TriggerType.NO_TRIGGER,):
        raise Unsupported("emulated orders must be released by the client before they reach the router")
    if order.contingency_type != "NO_CONTINGENCY" or order.linked_order_ids or order.parent_order_id:
        raise Unsupported("contingent orders (OCO/OTO/OUO) are not supported by Paradex")
    opts = order.options
    if isinstance(opts.display_qty, str):
        raise Unsupported("display quantity (iceberg) orders are not supported by Paradex")
    if order.time_in_force == TimeInForce.GTC:
        instruction = "GTC"
    elif order.time_in_force == TimeInForce.IOC:
        instruction = "IOC"
    else:
        raise Unsupported(f"time in force {order.time_in_force} is not supported (GTC, IOC, post-only)")
    if order.post_only:
        if vtype in MARKET_TYPES:
            raise Unsupported("post-only is only valid for limit order types")
        if instruction == "IOC":
            raise Unsupported("post-only orders cannot be IOC")
        instruction = "POST_ONLY"
    if instruction == "IOC" and vtype not in ("LIMIT", "MARKET"):
        raise Unsupported(f"IOC is only valid for LIMIT and MARKET orders, not {vtype}")
    trigger_type = opts.trigger_type if isinstance(opts.trigger_type, str) else TriggerType.DEFAULT
    if vtype in TRIGGER_TYPES and trigger_type not in (TriggerType.DEFAULT, TriggerType.MARK_PRICE):
        raise Unsupported(f"trigger type {trigger_type}: Paradex triggers on the mark price only")
    price: str | None = None
    if vtype not in MARKET_TYPES:
        if not isinstance(opts.price, str):
            raise Unsupported(f"{vtype} order needs a price")
        price = plain(opts.price)
        if Decimal(price) <= 0:
            raise Unsupported("price must be positive")
    trigger: str | None = None
    if vtype in TRIGGER_TYPES:
        if not isinstance(opts.trigger_price, str):
            raise Unsupported(f"{vtype} order needs a trigger price")
        trigger = plain(opts.trigger_price)
        if Decimal(trigger) <= 0:
            raise Unsupported("trigger price must be positive")
    size = plain(order.quantity)
    if Decimal(size) <= 0:
        raise Unsupported("quantity must be positive")
    flags: list[str] = []
    if order.reduce_only:
        flags.append("REDUCE_ONLY")
    cond = p.get("trigger_condition", "").upper()
    if cond:
        if cond not in TRIGGER_CONDITIONS or vtype not in TRIGGER_TYPES:
            raise Unsupported(f"trigger_condition {cond!r} (ABOVE|BELOW) applies to trigger orders only")
        flags.append(TRIGGER_CONDITIONS[cond])
    stp = p.get("stp", "").upper() or None
    if stp is not None and stp not in STP_MODES:
        raise Unsupported(f"stp {stp!r} is not one of {', '.join(sorted(STP_MODES))}")
    return VenueOrderSpec(
        market=order.instrument_id.rsplit(".", 1)[0],
        side=str(order.order_side),
        type=vtype,
        size=size,
        price=price,
        instruction=instruction,
        client_id=order.client_order_id,
        flags=tuple(flags),
        trigger_price=trigger,
        stp=stp,
    )


# -- venue -> Nautilus ----------------------------------------------------------------------------


def amount(value: str) -> str:
    """A venue amount at USDC's 8 decimals, ``"0.09750000"`` (unreadable input counts as 0)."""
    try:
        d = Decimal(value or "0").quantize(Q8)
    except InvalidOperation:
        d = Decimal(0).quantize(Q8)
    return f"{d:f}"


def money(fee: str, currency: str = "USDC") -> str:
    """A venue fee as Nautilus Money: 8 decimals and the currency, ``"0.09750000 USDC"``."""
    return f"{amount(fee)} {(currency or 'USDC').upper()}"


def fmt(value: str, precision: int | None) -> str:
    """A venue decimal at the instrument's precision (or as sent when the precision is unknown)."""
    if precision is None:
        return plain(value)
    try:
        return fixed(value, precision)
    except NormalizeError:
        return plain(value)


def is_zero(value: str) -> bool:
    try:
        return Decimal(value or "0") == 0
    except InvalidOperation:
        return True


def nautilus_tif(instruction: str) -> tuple[TimeInForce, bool]:
    """``(time_in_force, post_only)`` of a venue instruction."""
    if instruction == "IOC":
        return TimeInForce.IOC, False
    return TimeInForce.GTC, instruction == "POST_ONLY"


def order_status_report(
    v: VenueOrder,
    *,
    account_id: str,
    instrument_id: str,
    client_order_id: str | None,
    price_precision: int | None,
    size_precision: int | None,
    ts_init: int,
    report_id: str | None = None,
) -> OrderStatusReport:
    """A venue order as Nautilus ``OrderStatusReport`` (enums as ints, as Nautilus writes them)."""
    filled = v.filled
    size = Decimal(v.size)
    status = _report_status(v, filled, size)
    tif, post_only = nautilus_tif(v.instruction)
    ntype = NAUTILUS_TYPE.get(v.type, OrderType.LIMIT)
    price = None if v.type in MARKET_TYPES or is_zero(v.price) else fmt(v.price, price_precision)
    trigger = None if v.type not in TRIGGER_TYPES or is_zero(v.trigger_price) else fmt(v.trigger_price, price_precision)
    return OrderStatusReport(
        account_id=account_id,
        instrument_id=instrument_id,
        venue_order_id=v.id,
        order_side=1 if v.side == "BUY" else 2,
        order_type=OrderTypeCode[ntype],
        time_in_force=TimeInForceCode[tif],
        order_status=status,
        quantity=fmt(v.size, size_precision),
        filled_qty=fmt(dec_str(filled), size_precision),
        report_id=report_id or str(uuid.uuid4()),
        ts_accepted=v.created_at * 1_000_000,
        ts_last=(v.last_updated_at or v.created_at) * 1_000_000,
        ts_init=ts_init,
        client_order_id=client_order_id,
        price=price,
        trigger_price=trigger,
        trigger_type=TriggerTypeCode.MARK_PRICE if trigger is not None else TriggerTypeCode.NO_TRIGGER,
        avg_px=plain(v.avg_fill_price) if v.avg_fill_price and not is_zero(v.avg_fill_price) else None,
        post_only=post_only,
        reduce_only="REDUCE_ONLY" in v.flags,
        cancel_reason=v.cancel_reason or None,
    )


def _report_status(v: VenueOrder, filled: Decimal, size: Decimal) -> OrderStatusCode:
    if v.status == "NEW":
        return OrderStatusCode.SUBMITTED
    if v.status == "UNTRIGGERED":
        return OrderStatusCode.ACCEPTED
    if v.status == "OPEN":
        if filled > 0:
            return OrderStatusCode.PARTIALLY_FILLED
        return OrderStatusCode.TRIGGERED if v.type in TRIGGER_TYPES else OrderStatusCode.ACCEPTED
    # CLOSED
    if not v.cancel_reason or filled >= size:
        return OrderStatusCode.FILLED
    if v.cancel_reason == EXPIRED:
        return OrderStatusCode.EXPIRED
    if filled == 0 and v.cancel_reason != USER_CANCELED:
        return OrderStatusCode.REJECTED
    return OrderStatusCode.CANCELED
