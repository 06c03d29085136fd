"""Converters between the bus schemas (``schemas``) and real nautilus_trader 1.221 objects.

``to_nautilus(event)`` turns any schema struct that has a Nautilus counterpart into that object;
``from_nautilus(obj)`` turns the object back into the (validated) schema struct. Together they are
lossless for every schema type (tests/nautilus/test_convert.py round-trips every sample).

Safety first. Some Nautilus constructors *abort the interpreter* (a Rust panic, SIGABRT) on input
Python cannot catch -- a non-ASCII ``ClientOrderId``/``VenueOrderId``/``TradeId``/``Venue``/
``AccountId``/``StrategyId``/``ClientId``/``OrderListId``/``ExecAlgorithmId``, a ``TraderId``
without a hyphen (nautilus-model.md §4.2, re-verified on 1.221). msgspec does not check constraints
when a struct is built in Python, only when it is decoded, so every struct is re-validated against
its schema here (``check``) before any Nautilus constructor sees it; anything Nautilus would then
still refuse (mismatched precisions, zero trade size ...) is re-raised as ``ConversionError``.
Pass ``checked=True`` only for structs that came straight out of ``schemas.decode``.

Pitfalls handled (nautilus-model.md §4.4, §7):

* ``FundingRateUpdate.rate`` is a ``Decimal`` on the Nautilus side (Cython ``from_dict`` would leave
  it a ``str``); a float rate is refused. 1.221 has ``next_funding_ns`` but no ``interval``: an update
  with an interval becomes ``ParadexFundingRateUpdate``, a subclass carrying it (the DataEngine and
  strategies see a ``FundingRateUpdate``).
* Money: a Money string with more decimals than its currency (USDC 8, USD 2) would be rounded
  silently by Nautilus; it is refused instead. Nautilus writes Money at the currency's precision.
* ``AccountState`` balances: Nautilus writes ``"total": "100.00000000"`` plus ``"currency"``; the bus
  schema writes ``"100.00000000 USDC"``. Both spellings are read; the schema's is written.
* Reports carry int enums; ``OrderStatusReport.expire_time`` is int ns on the bus and a ``datetime``
  in Nautilus (whose ``to_dict`` writes ISO text); report decimals are written without exponent.
* ``ModifyOrder``/``CancelOrder``/... ``to_dict`` drop ``params``; they are carried across here.
* ``CryptoPerpetual.from_dict`` of 1.221 drops ``lot_size``; instruments are built with the constructor.
* ``OrderBookDepth10`` is always 10 levels a side in Nautilus: shorter books are padded with the
  zero order (``NO_ORDER_SIDE`` 0 @ 0, count 0) exactly as the book builder pads.
* Nautilus 1.221's ``UUID4`` accepts version-4 UUIDs only; the router and reconciler derive event
  ids as version-5 UUIDs (deterministic). Such ids are refused by default and re-stamped as version
  4 (``uuid4_of``: same bits, version nibble 4) with ``to_nautilus(..., derive_uuid4=True)``.

Normalisations (values preserved, spelling not): ``CancelOrder``/``QueryOrder`` without a
``client_id`` get ``PARADEX`` (Nautilus fills in the venue); an empty ``params`` dict reads back as
absent; non-string ``params`` values from a Nautilus strategy become strings.

The bus-only types (``ReconciliationSummary``, ``ServiceHealth``, ``ResyncRequest``,
``ReconcileRequest``, ``BookSnapshot``, ``BookStatus``) have no Nautilus class; ``to_nautilus`` raises
``ConversionError`` for them (``book_snapshot_to_deltas`` turns a snapshot into ``OrderBookDeltas``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

import schemas as s
from bus.book_client import LocalBook
from schemas.base import InstrumentIdStr
from schemas.book import BookSnapshot
from schemas.commands import COMMAND_TYPES
from schemas.events import ACCOUNT_TYPES, ORDER_EVENT_TYPES
from schemas.reports import REPORT_TYPES
from services.nautilus.errors import ConversionError, NautilusUnavailable

try:
    import pandas as pd
    from nautilus_trader.core.uuid import UUID4
    from nautilus_trader.execution import messages as nm
    from nautilus_trader.execution import reports as nr
    from nautilus_trader.model import data as nd
    from nautilus_trader.model import events as ne
    from nautilus_trader.model.enums import (
        AccountType,
        ContingencyType,
        LiquiditySide,
        OrderSide,
        OrderStatus,
        OrderType,
        PositionSide,
        TimeInForce,
        TrailingOffsetType,
        TriggerType,
    )
    from nautilus_trader.model.identifiers import (
        AccountId,
        ClientId,
        ClientOrderId,
        InstrumentId,
        OrderListId,
        PositionId,
        Symbol,
        TradeId,
        Venue,
        VenueOrderId,
    )
    from nautilus_trader.model.instruments import CryptoPerpetual
    from nautilus_trader.model.objects import AccountBalance, Currency, MarginBalance, Money, Price, Quantity
    from nautilus_trader.model.orders import Order
    from nautilus_trader.model.orders.unpacker import OrderUnpacker
except ModuleNotFoundError as _exc:  # pragma: no cover - exercised only without the extra
    raise NautilusUnavailable(_exc) from _exc

__all__ = [
    "ConversionError",
    "ParadexFundingRateUpdate",
    "account_id",
    "book_snapshot_to_deltas",
    "check",
    "currency",
    "from_nautilus",
    "instrument_id",
    "money",
    "order_from_init",
    "to_nautilus",
    "uuid4_of",
]

# What Nautilus raises for input it refuses (after our own validation ran).
_REFUSED = (ValueError, TypeError, KeyError, OverflowError, ArithmeticError, AttributeError, IndexError)

_ASCII_ID = re.compile(r"^[!-~]+$")
_ACCOUNT = re.compile(r"^[0-9A-Za-z_]{1,100}$")


class ParadexFundingRateUpdate(nd.FundingRateUpdate):
    """A ``FundingRateUpdate`` that also carries ``interval`` (minutes between payments).

    nautilus_trader 1.222+ has the field; 1.221 does not, so the subclass keeps it without loss.
    Everything that handles a ``FundingRateUpdate`` (DataEngine, cache, ``on_funding_rate``) accepts it.
    """

    interval: int | None

    def __init__(
        self,
        instrument_id: InstrumentId,
        rate: Decimal,
        ts_event: int,
        ts_init: int,
        next_funding_ns: int | None = None,
        interval: int | None = None,
    ) -> None:
        super().__init__(instrument_id, rate, ts_event, ts_init, next_funding_ns)
        self.interval = interval

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, interval={self.interval})"


# -- validation --------------------------------------------------------------------------------


_UUID_KEYS = frozenset({"event_id", "command_id", "report_id"})
_WITH_UUIDS: frozenset[type] = frozenset({*ORDER_EVENT_TYPES, *ACCOUNT_TYPES, *COMMAND_TYPES, *REPORT_TYPES})


def uuid4_of(value: str) -> str:
    """The version-4 form of a UUID: its own bits with the version nibble set to 4 (deterministic).

    nautilus_trader 1.221's ``UUID4`` refuses every other version, while the order router and the
    reconciler derive their event ids as version-5 UUIDs from the Msg-Ids (same fact, same id).
    """
    u = uuid.UUID(value)
    if u.version == 4 and u.variant == uuid.RFC_4122:
        return value
    return str(uuid.UUID(bytes=u.bytes, version=4))


def _v4_ids(node: Any, derive: bool, where: str) -> bool:
    """Make every event/command/report id in a builtins tree version 4 (``derive``) or refuse it."""
    changed = False
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _UUID_KEYS and isinstance(value, str):
                v4 = uuid4_of(value)
                if v4 != value:
                    if not derive:
                        raise ConversionError(
                            f"{where}.{key} {value} is not a version-4 UUID, which Nautilus requires "
                            "(convert with derive_uuid4=True to re-stamp it)"
                        )
                    node[key] = v4
                    changed = True
            elif isinstance(value, dict | list):
                changed |= _v4_ids(value, derive, where)
    elif isinstance(node, list):
        for item in node:
            changed |= _v4_ids(item, derive, where)
    return changed


def check(event: s.Event, *, derive_uuid4: bool = False) -> s.Event:
    """Re-validate a schema struct against its own schema (patterns, lengths, ``__post_init__``).

    msgspec validates while *decoding* only, so a struct built in Python may hold anything; this is
    what stands between a caller's typo and a Rust panic. Ids that are not version-4 UUIDs are
    refused, or re-stamped as version 4 with ``derive_uuid4``.
    """
    cls = type(event)
    try:
        data = msgspec.to_builtins(event)
        if cls in _WITH_UUIDS:
            _v4_ids(data, derive_uuid4, cls.__name__)
        return msgspec.convert(data, cls)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        if isinstance(exc, ConversionError):
            raise
        raise ConversionError(f"{cls.__name__}: {exc}") from None


def instrument_id(value: str) -> InstrumentId:
    """``BTC-USD-PERP.PARADEX`` -> ``InstrumentId``, validated (ASCII, ``SYMBOL.VENUE``) first."""
    try:
        msgspec.convert(value, InstrumentIdStr)
    except msgspec.ValidationError as exc:
        raise ConversionError(f"instrument id {value!r}: {exc}") from None
    return InstrumentId.from_str(value)


def account_id(account: str, issuer: str = "PARADEX") -> AccountId:
    """The Nautilus ``AccountId`` of a Paradex account address: ``PARADEX-0x1234...``."""
    if not account or not _ACCOUNT.match(account) or not _ASCII_ID.match(issuer) or "-" in issuer:
        raise ConversionError(f"account {account!r} / issuer {issuer!r} cannot form an AccountId")
    return AccountId(f"{issuer}-{account}")


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def currency(code: str) -> Currency:
    """A Nautilus ``Currency``; codes Nautilus does not know become 8-decimal crypto currencies."""
    if not re.fullmatch(r"[A-Z0-9]{2,12}", code or ""):
        raise ConversionError(f"currency code {code!r} is not 2-12 of A-Z0-9")
    return Currency.from_str(code)


def money(text: str) -> Money:
    """``"0.09750000 USDC"`` -> ``Money``; refuses more decimals than the currency has (Nautilus
    would round them away silently)."""
    amount, _, code = text.partition(" ")
    ccy = currency(code)
    return _money_amount(amount, ccy)


def _money_amount(amount: str, ccy: Currency) -> Money:
    if _decimals(amount) > ccy.precision:
        raise ConversionError(
            f"money {amount} {ccy.code} has more decimals than {ccy.code} ({ccy.precision}); Nautilus would round it"
        )
    try:
        return Money(Decimal(amount), ccy)
    except InvalidOperation as exc:
        raise ConversionError(f"money amount {amount!r} is not a decimal") from exc


def _dec_str(value: Any) -> str:
    """A Decimal (or decimal string) as plain text without exponent; floats are refused."""
    if isinstance(value, float):
        raise ConversionError(f"float {value!r} where a Decimal is required")
    try:
        return format(Decimal(value), "f")
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise ConversionError(f"{value!r} is not a decimal") from exc


def _opt(value: Any, fn: Callable[[Any], Any]) -> Any:
    return None if value is None else fn(value)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _params_out(params: dict[str, Any] | None) -> dict[str, str] | msgspec.UnsetType:
    """Nautilus command params -> the schema's ``dict[str, str]`` (absent when empty)."""
    if not params:
        return msgspec.UNSET
    out: dict[str, str] = {}
    for k, v in params.items():
        if isinstance(v, float):
            raise ConversionError(f"params[{k!r}] is a float; pass a str or Decimal")
        if isinstance(v, bool):
            out[str(k)] = "true" if v else "false"
        elif isinstance(v, str | int | Decimal):
            out[str(k)] = str(v) if not isinstance(v, Decimal) else _dec_str(v)
        else:
            raise ConversionError(f"params[{k!r}] of type {type(v).__name__} cannot travel on the bus")
    return out


# -- market data -------------------------------------------------------------------------------


def _depth10_in(ev: s.OrderBookDepth10) -> nd.OrderBookDepth10:
    d = s.to_dict(ev)
    if len(ev.bids) > 10 or len(ev.asks) > 10:
        raise ConversionError("OrderBookDepth10 holds at most 10 levels a side")
    if len(ev.bid_counts) != len(ev.bids) or len(ev.ask_counts) != len(ev.asks):
        raise ConversionError("OrderBookDepth10 counts must match the number of levels")
    return nd.OrderBookDepth10.from_dict(d)


def _funding_in(ev: s.FundingRateUpdate) -> nd.FundingRateUpdate:
    iid = InstrumentId.from_str(ev.instrument_id)
    rate = Decimal(ev.rate)
    if ev.interval is not None:
        return ParadexFundingRateUpdate(iid, rate, ev.ts_event, ev.ts_init, ev.next_funding_ns, ev.interval)
    return nd.FundingRateUpdate(iid, rate, ev.ts_event, ev.ts_init, ev.next_funding_ns)


def _funding_out(obj: nd.FundingRateUpdate) -> dict[str, Any]:
    d: dict[str, Any] = {
        "type": "FundingRateUpdate",
        "instrument_id": str(obj.instrument_id),
        "rate": _dec_str(obj.rate),
        "ts_event": obj.ts_event,
        "ts_init": obj.ts_init,
    }
    interval = getattr(obj, "interval", None)
    if interval is not None:
        d["interval"] = interval
    if obj.next_funding_ns is not None:
        d["next_funding_ns"] = obj.next_funding_ns
    return d


def book_snapshot_to_deltas(snap: BookSnapshot, ts_init: int | None = None) -> nd.OrderBookDeltas:
    """A book-builder snapshot as a Nautilus snapshot: CLEAR, ADDs flagged F_SNAPSHOT, F_LAST last."""
    return to_nautilus(LocalBook.from_snapshot(snap).to_deltas(ts_init=ts_init))


# -- instruments -------------------------------------------------------------------------------


def _instrument_in(ev: s.CryptoPerpetual) -> CryptoPerpetual:
    # Built with the constructor: 1.221's CryptoPerpetual.from_dict drops ``lot_size`` (always 1).
    return CryptoPerpetual(
        instrument_id=InstrumentId.from_str(ev.id),
        raw_symbol=Symbol(ev.raw_symbol),
        base_currency=currency(ev.base_currency),
        quote_currency=currency(ev.quote_currency),
        settlement_currency=currency(ev.settlement_currency),
        is_inverse=ev.is_inverse,
        price_precision=ev.price_precision,
        size_precision=ev.size_precision,
        price_increment=Price.from_str(ev.price_increment),
        size_increment=Quantity.from_str(ev.size_increment),
        ts_event=ev.ts_event,
        ts_init=ev.ts_init,
        multiplier=Quantity.from_str(ev.multiplier),
        lot_size=Quantity.from_str(ev.lot_size),
        max_quantity=_opt(ev.max_quantity, Quantity.from_str),
        min_quantity=_opt(ev.min_quantity, Quantity.from_str),
        max_notional=_opt(ev.max_notional, money),
        min_notional=_opt(ev.min_notional, money),
        max_price=_opt(ev.max_price, Price.from_str),
        min_price=_opt(ev.min_price, Price.from_str),
        margin_init=Decimal(ev.margin_init),
        margin_maint=Decimal(ev.margin_maint),
        maker_fee=Decimal(ev.maker_fee),
        taker_fee=Decimal(ev.taker_fee),
        tick_scheme_name=ev.tick_scheme_name,
        info=None if ev.info is None else dict(ev.info),
    )


def _instrument_out(obj: CryptoPerpetual) -> dict[str, Any]:
    d = CryptoPerpetual.to_dict(obj)
    for field in ("margin_init", "margin_maint", "maker_fee", "taker_fee"):
        d[field] = _dec_str(d[field])
    return d


# -- commands ----------------------------------------------------------------------------------


def order_from_init(init: s.OrderInitialized, *, checked: bool = False) -> Order:
    """A Nautilus ``Order`` (LimitOrder, MarketOrder ...) from its ``OrderInitialized`` event."""
    if not checked:
        init = check(init)  # type: ignore[assignment]
    try:
        return OrderUnpacker.unpack(s.to_dict(init))
    except _REFUSED as exc:
        raise ConversionError(f"OrderInitialized {init.client_order_id}: Nautilus refused it: {exc!r}") from exc


def _command_in(cls: Any) -> Callable[[Any], Any]:
    def conv(ev: Any) -> Any:
        obj = cls.from_dict(s.to_dict(ev))
        if isinstance(ev.params, dict) and ev.params:
            obj.params.update(ev.params)
        if isinstance(ev, s.BatchCancelOrders):
            for inner, cancel in zip(ev.cancels, obj.cancels, strict=True):
                if isinstance(inner.params, dict) and inner.params:
                    cancel.params.update(inner.params)
        return obj

    return conv


def _command_out(obj: Any) -> dict[str, Any]:
    d = type(obj).to_dict(obj)
    params = _params_out(obj.params)
    if params is not msgspec.UNSET:
        d["params"] = params
    if isinstance(obj, nm.BatchCancelOrders):
        d["cancels"] = [_command_out(c) for c in obj.cancels]
    return d


# -- events ------------------------------------------------------------------------------------


def _filled_in(ev: s.OrderFilled) -> ne.OrderFilled:
    money(ev.commission)
    return ne.OrderFilled.from_dict(s.to_dict(ev))


def _order_out(order: Order) -> dict[str, Any]:
    return ne.OrderInitialized.to_dict(order.init_event)


def _account_in(ev: s.AccountState) -> ne.AccountState:
    balances = []
    for b in ev.balances:
        ccy = currency(b.currency)
        balances.append(
            AccountBalance(
                _money_amount(b.total, ccy),
                _money_amount(b.locked, ccy),
                _money_amount(b.free, ccy),
            )
        )
    margins = []
    for m in ev.margins:
        ccy = currency(m.currency)
        margins.append(
            MarginBalance(
                _money_amount(m.initial, ccy),
                _money_amount(m.maintenance, ccy),
                InstrumentId.from_str(m.instrument_id),
            )
        )
    return ne.AccountState(
        account_id=AccountId(ev.account_id),
        account_type=AccountType[ev.account_type],
        base_currency=_opt(ev.base_currency, currency),
        reported=ev.reported,
        balances=balances,
        margins=margins,
        info=dict(ev.info),
        event_id=UUID4.from_str(ev.event_id),
        ts_event=ev.ts_event,
        ts_init=ev.ts_init,
    )


def _account_out(obj: ne.AccountState) -> dict[str, Any]:
    return ne.AccountState.to_dict(obj)


# -- reports -----------------------------------------------------------------------------------


def _ns_to_datetime(ns: int) -> datetime:
    return pd.Timestamp(ns, unit="ns", tz="UTC")


def _datetime_to_ns(value: datetime) -> int:
    return int(pd.Timestamp(value).value)


def _order_report_in(r: s.OrderStatusReport) -> nr.OrderStatusReport:
    return nr.OrderStatusReport(
        account_id=AccountId(r.account_id),
        instrument_id=InstrumentId.from_str(r.instrument_id),
        venue_order_id=VenueOrderId(r.venue_order_id),
        order_side=OrderSide(int(r.order_side)),
        order_type=OrderType(int(r.order_type)),
        time_in_force=TimeInForce(int(r.time_in_force)),
        order_status=OrderStatus(int(r.order_status)),
        quantity=Quantity.from_str(r.quantity),
        filled_qty=Quantity.from_str(r.filled_qty),
        report_id=UUID4.from_str(r.report_id),
        ts_accepted=r.ts_accepted,
        ts_last=r.ts_last,
        ts_init=r.ts_init,
        client_order_id=_opt(r.client_order_id, ClientOrderId),
        order_list_id=_opt(r.order_list_id, OrderListId),
        venue_position_id=_opt(r.venue_position_id, PositionId),
        linked_order_ids=_opt(r.linked_order_ids, lambda ids: [ClientOrderId(i) for i in ids]),
        parent_order_id=_opt(r.parent_order_id, ClientOrderId),
        contingency_type=ContingencyType(int(r.contingency_type)),
        expire_time=_opt(r.expire_time, _ns_to_datetime),
        price=_opt(r.price, Price.from_str),
        trigger_price=_opt(r.trigger_price, Price.from_str),
        trigger_type=TriggerType(int(r.trigger_type)),
        limit_offset=_opt(r.limit_offset, Decimal),
        trailing_offset=_opt(r.trailing_offset, Decimal),
        trailing_offset_type=TrailingOffsetType(int(r.trailing_offset_type)),
        avg_px=_opt(r.avg_px, Decimal),
        display_qty=_opt(r.display_qty, Quantity.from_str),
        post_only=r.post_only,
        reduce_only=r.reduce_only,
        cancel_reason=r.cancel_reason,
        ts_triggered=r.ts_triggered,
    )


def _order_report_out(r: nr.OrderStatusReport) -> dict[str, Any]:
    return {
        "type": "OrderStatusReport",
        "account_id": str(r.account_id),
        "instrument_id": str(r.instrument_id),
        "venue_order_id": str(r.venue_order_id),
        "order_side": int(r.order_side),
        "order_type": int(r.order_type),
        "time_in_force": int(r.time_in_force),
        "order_status": int(r.order_status),
        "quantity": str(r.quantity),
        "filled_qty": str(r.filled_qty),
        "report_id": str(r.id),
        "ts_accepted": r.ts_accepted,
        "ts_last": r.ts_last,
        "ts_init": r.ts_init,
        "client_order_id": _str(r.client_order_id),
        "order_list_id": _str(r.order_list_id),
        "venue_position_id": _str(r.venue_position_id),
        "linked_order_ids": _opt(r.linked_order_ids, lambda ids: [str(i) for i in ids]),
        "parent_order_id": _str(r.parent_order_id),
        "contingency_type": int(r.contingency_type),
        "expire_time": _opt(r.expire_time, _datetime_to_ns),
        "price": _str(r.price),
        "trigger_price": _str(r.trigger_price),
        "trigger_type": int(r.trigger_type),
        "limit_offset": _opt(r.limit_offset, _dec_str),
        "trailing_offset": _opt(r.trailing_offset, _dec_str),
        "trailing_offset_type": int(r.trailing_offset_type),
        "avg_px": _opt(r.avg_px, _dec_str),
        "display_qty": _str(r.display_qty),
        "post_only": bool(r.post_only),
        "reduce_only": bool(r.reduce_only),
        "cancel_reason": r.cancel_reason,
        "ts_triggered": r.ts_triggered or 0,
    }


def _fill_report_in(r: s.FillReport) -> nr.FillReport:
    return nr.FillReport(
        account_id=AccountId(r.account_id),
        instrument_id=InstrumentId.from_str(r.instrument_id),
        venue_order_id=VenueOrderId(r.venue_order_id),
        trade_id=TradeId(r.trade_id),
        order_side=OrderSide(int(r.order_side)),
        last_qty=Quantity.from_str(r.last_qty),
        last_px=Price.from_str(r.last_px),
        commission=money(r.commission),
        liquidity_side=LiquiditySide(int(r.liquidity_side)),
        report_id=UUID4.from_str(r.report_id),
        ts_event=r.ts_event,
        ts_init=r.ts_init,
        client_order_id=_opt(r.client_order_id, ClientOrderId),
        venue_position_id=_opt(r.venue_position_id, PositionId),
    )


def _fill_report_out(r: nr.FillReport) -> dict[str, Any]:
    return {
        "type": "FillReport",
        "account_id": str(r.account_id),
        "instrument_id": str(r.instrument_id),
        "venue_order_id": str(r.venue_order_id),
        "trade_id": str(r.trade_id),
        "order_side": int(r.order_side),
        "last_qty": str(r.last_qty),
        "last_px": str(r.last_px),
        "commission": str(r.commission),
        "liquidity_side": int(r.liquidity_side),
        "report_id": str(r.id),
        "ts_event": r.ts_event,
        "ts_init": r.ts_init,
        "client_order_id": _str(r.client_order_id),
        "venue_position_id": _str(r.venue_position_id),
    }


def _position_report_in(r: s.PositionStatusReport) -> nr.PositionStatusReport:
    return nr.PositionStatusReport(
        account_id=AccountId(r.account_id),
        instrument_id=InstrumentId.from_str(r.instrument_id),
        position_side=PositionSide(int(r.position_side)),
        quantity=Quantity.from_str(r.quantity),
        report_id=UUID4.from_str(r.report_id),
        ts_last=r.ts_last,
        ts_init=r.ts_init,
        venue_position_id=_opt(r.venue_position_id, PositionId),
        avg_px_open=_opt(r.avg_px_open, Decimal),
    )


def _position_report_out(r: nr.PositionStatusReport) -> dict[str, Any]:
    return {
        "type": "PositionStatusReport",
        "account_id": str(r.account_id),
        "instrument_id": str(r.instrument_id),
        "position_side": int(r.position_side),
        "quantity": str(r.quantity),
        "report_id": str(r.id),
        "ts_last": r.ts_last,
        "ts_init": r.ts_init,
        "venue_position_id": _str(r.venue_position_id),
        "avg_px_open": _opt(r.avg_px_open, _dec_str),
    }


def _mass_status_in(m: s.ExecutionMassStatus) -> nr.ExecutionMassStatus:
    ms = nr.ExecutionMassStatus(
        client_id=ClientId(m.client_id),
        account_id=AccountId(m.account_id),
        venue=Venue(m.venue),
        report_id=UUID4.from_str(m.report_id),
        ts_init=m.ts_init,
    )
    for key, rep in m.order_reports.items():
        if key != rep.venue_order_id:
            raise ConversionError(f"order_reports key {key!r} is not the report's venue_order_id")
    for key, fills in m.fill_reports.items():
        if any(f.venue_order_id != key for f in fills):
            raise ConversionError(f"fill_reports[{key!r}] holds a fill of another venue order")
    for key, positions in m.position_reports.items():
        if any(p.instrument_id != key for p in positions):
            raise ConversionError(f"position_reports[{key!r}] holds a report of another instrument")
    ms.add_order_reports([_order_report_in(r) for r in m.order_reports.values()])
    ms.add_fill_reports([_fill_report_in(f) for fills in m.fill_reports.values() for f in fills])
    ms.add_position_reports([_position_report_in(p) for ps in m.position_reports.values() for p in ps])
    return ms


def _mass_status_out(m: nr.ExecutionMassStatus) -> dict[str, Any]:
    return {
        "type": "ExecutionMassStatus",
        "client_id": str(m.client_id),
        "account_id": str(m.account_id),
        "venue": str(m.venue),
        "report_id": str(m.id),
        "ts_init": m.ts_init,
        "order_reports": {str(k): _order_report_out(r) for k, r in m.order_reports.items()},
        "fill_reports": {str(k): [_fill_report_out(f) for f in fs] for k, fs in m.fill_reports.items()},
        "position_reports": {str(k): [_position_report_out(p) for p in ps] for k, ps in m.position_reports.items()},
    }


# -- registry ----------------------------------------------------------------------------------


def _via_dict(cls: Any) -> Callable[[Any], Any]:
    return lambda ev: cls.from_dict(s.to_dict(ev))


def _dict_of(cls: Any) -> Callable[[Any], dict[str, Any]]:
    return cls.to_dict


_TO: dict[type, Callable[[Any], Any]] = {
    s.TradeTick: _via_dict(nd.TradeTick),
    s.QuoteTick: _via_dict(nd.QuoteTick),
    s.OrderBookDelta: _via_dict(nd.OrderBookDelta),
    s.OrderBookDeltas: _via_dict(nd.OrderBookDeltas),
    s.OrderBookDepth10: _depth10_in,
    s.MarkPriceUpdate: _via_dict(nd.MarkPriceUpdate),
    s.IndexPriceUpdate: _via_dict(nd.IndexPriceUpdate),
    s.FundingRateUpdate: _funding_in,
    s.InstrumentStatus: _via_dict(nd.InstrumentStatus),
    s.InstrumentClose: _via_dict(nd.InstrumentClose),
    s.CryptoPerpetual: _instrument_in,
    s.SubmitOrder: _command_in(nm.SubmitOrder),
    s.ModifyOrder: _command_in(nm.ModifyOrder),
    s.CancelOrder: _command_in(nm.CancelOrder),
    s.CancelAllOrders: _command_in(nm.CancelAllOrders),
    s.BatchCancelOrders: _command_in(nm.BatchCancelOrders),
    s.QueryOrder: _command_in(nm.QueryOrder),
    s.OrderFilled: _filled_in,
    s.AccountState: _account_in,
    s.OrderStatusReport: _order_report_in,
    s.FillReport: _fill_report_in,
    s.PositionStatusReport: _position_report_in,
    s.ExecutionMassStatus: _mass_status_in,
}
for _name in (
    "OrderInitialized",
    "OrderDenied",
    "OrderSubmitted",
    "OrderAccepted",
    "OrderRejected",
    "OrderCanceled",
    "OrderCancelRejected",
    "OrderModifyRejected",
    "OrderPendingUpdate",
    "OrderPendingCancel",
    "OrderUpdated",
    "OrderTriggered",
    "OrderExpired",
):
    _TO[getattr(s, _name)] = _via_dict(getattr(ne, _name))

_FROM: dict[type, Callable[[Any], dict[str, Any]]] = {
    nd.TradeTick: _dict_of(nd.TradeTick),
    nd.QuoteTick: _dict_of(nd.QuoteTick),
    nd.OrderBookDelta: _dict_of(nd.OrderBookDelta),
    nd.OrderBookDeltas: _dict_of(nd.OrderBookDeltas),
    nd.OrderBookDepth10: _dict_of(nd.OrderBookDepth10),
    nd.MarkPriceUpdate: _dict_of(nd.MarkPriceUpdate),
    nd.IndexPriceUpdate: _dict_of(nd.IndexPriceUpdate),
    nd.FundingRateUpdate: _funding_out,
    nd.InstrumentStatus: _dict_of(nd.InstrumentStatus),
    nd.InstrumentClose: _dict_of(nd.InstrumentClose),
    CryptoPerpetual: _instrument_out,
    nm.SubmitOrder: _command_out,
    nm.ModifyOrder: _command_out,
    nm.CancelOrder: _command_out,
    nm.CancelAllOrders: _command_out,
    nm.BatchCancelOrders: _command_out,
    nm.QueryOrder: _command_out,
    ne.AccountState: _account_out,
    Order: _order_out,
    nr.OrderStatusReport: _order_report_out,
    nr.FillReport: _fill_report_out,
    nr.PositionStatusReport: _position_report_out,
    nr.ExecutionMassStatus: _mass_status_out,
}
for _name in (
    "OrderInitialized",
    "OrderDenied",
    "OrderSubmitted",
    "OrderAccepted",
    "OrderRejected",
    "OrderCanceled",
    "OrderCancelRejected",
    "OrderModifyRejected",
    "OrderPendingUpdate",
    "OrderPendingCancel",
    "OrderUpdated",
    "OrderTriggered",
    "OrderExpired",
    "OrderFilled",
):
    _FROM[getattr(ne, _name)] = _dict_of(getattr(ne, _name))

SCHEMA_TYPES: frozenset[type] = frozenset(_TO)
"""The schema types that have a Nautilus counterpart."""


def to_nautilus(event: s.Event, *, checked: bool = False, derive_uuid4: bool = False) -> Any:
    """The Nautilus object of a schema struct; raises ``ConversionError`` (never aborts).

    ``checked=True`` skips re-validation -- only for structs fresh from ``schemas.decode``.
    ``derive_uuid4=True`` accepts event/command/report ids of any UUID version and gives Nautilus
    their version-4 form (``uuid4_of``); by default such ids are refused, so a round trip is exact.
    """
    conv = _TO.get(type(event))
    if conv is None:
        raise ConversionError(f"{type(event).__name__} has no Nautilus counterpart")
    if not checked or (derive_uuid4 and type(event) in _WITH_UUIDS):
        event = check(event, derive_uuid4=derive_uuid4)
    try:
        return conv(event)
    except ConversionError:
        raise
    except _REFUSED as exc:
        raise ConversionError(f"{type(event).__name__}: Nautilus refused it: {exc!r}") from exc


def from_nautilus(obj: Any) -> Any:
    """The validated schema struct of a Nautilus object (an ``Order`` gives its ``OrderInitialized``)."""
    for klass in type(obj).__mro__:
        conv = _FROM.get(klass)
        if conv is not None:
            break
    else:
        raise ConversionError(f"no bus schema for Nautilus {type(obj).__name__}")
    try:
        d = conv(obj)
    except ConversionError:
        raise
    except _REFUSED as exc:
        raise ConversionError(f"{type(obj).__name__}: cannot read it: {exc!r}") from exc
    try:
        return msgspec.convert(d, s.TYPES_BY_NAME[d["type"]])
    except msgspec.ValidationError as exc:
        raise ConversionError(f"{type(obj).__name__} does not fit the bus schema: {exc}") from None
