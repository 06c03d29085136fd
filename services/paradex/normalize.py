"""Venue market data → Nautilus-shaped bus events (schemas.data).

Pure functions, no I/O. Each takes a decoded venue payload (``services.paradex.venue_types``), the
market's ``MarketSpec`` (instrument id and precisions) and ``ts_init``, and returns schema structs:

* ``trade_tick``      trades → ``TradeTick`` (aggressor from the taker side, venue trade id)
* ``quote_tick``      bbo → ``QuoteTick`` (``None`` while a side of the book is empty)
* ``book_deltas``     deltas feed ``"s"`` → CLEAR + ADDs (``F_SNAPSHOT``; last ``F_SNAPSHOT|F_LAST``),
                      ``"d"`` → ADD/UPDATE/DELETE (last ``F_LAST``); ``sequence`` = venue ``seq_no``
* ``summary_updates`` markets_summary → MarkPriceUpdate / IndexPriceUpdate / FundingRateUpdate
* ``funding_update``  funding_data → FundingRateUpdate

Prices and sizes come out as decimal strings at the instrument's precision (padded; a value with
more decimals is rounded half away from zero, as Nautilus does); rates keep the venue's digits (at
most 16 decimals). ``ts_event`` is the venue's millisecond timestamp x 1e6. Anything that would not
survive the bus schema's validation raises ``NormalizeError`` so the caller counts it; nothing here
ever emits a float.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from schemas import (
    BookOrder,
    FundingRateUpdate,
    IndexPriceUpdate,
    MarkPriceUpdate,
    OrderBookDelta,
    OrderBookDeltas,
    QuoteTick,
    TradeTick,
)
from schemas.enums import AggressorSide, BookAction, OrderSide, RecordFlag
from services.paradex.venue_types import BboMsg, BookMsg, FundingDataMsg, SummaryMsg, TradeMsg

F_SNAPSHOT = RecordFlag.F_SNAPSHOT
F_LAST = RecordFlag.F_LAST

MAX_MS = (2**63 - 1) // 1_000_000
_DECIMAL = re.compile(r"-?\d{1,20}(?:\.\d{1,40})?")
_TRADE_ID = re.compile(r"[!-~]{1,36}")
_AGGRESSOR = {"BUY": AggressorSide.BUYER, "SELL": AggressorSide.SELLER}
_SIDE = {"BUY": OrderSide.BUY, "SELL": OrderSide.SELL}


class NormalizeError(ValueError):
    """A venue payload that cannot become a valid bus event (bad decimal, side, id, timestamp)."""


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """What normalisation needs to know about one market."""

    market: str
    instrument_id: str
    price_precision: int
    size_precision: int
    funding_interval_min: int | None = None
    zero_price: str = field(init=False, compare=False, repr=False)
    zero_size: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # "0" at the market's precisions, used by every CLEAR and DELETE (computed once).
        object.__setattr__(self, "zero_price", "0." + "0" * self.price_precision if self.price_precision else "0")
        object.__setattr__(self, "zero_size", "0." + "0" * self.size_precision if self.size_precision else "0")


# -- decimals ----------------------------------------------------------------------------------


def fixed(value: str, precision: int, *, signed: bool = True) -> str:
    """``value`` as a decimal string with exactly ``precision`` decimals (no float involved)."""
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise NormalizeError(f"not a decimal: {value!r}")
    if not signed and value[0] == "-":
        raise NormalizeError(f"negative value: {value!r}")
    dot = value.find(".")
    if dot < 0:
        return value + "." + "0" * precision if precision else value
    decimals = len(value) - dot - 1
    if decimals == precision:
        return value
    if decimals < precision:
        return value + "0" * (precision - decimals)
    cut = dot + 1 + precision
    if value[cut:].strip("0") == "":
        return value[:cut] if precision else value[:dot]
    return _round(value, precision)


def _round(value: str, precision: int) -> str:
    try:
        q = Decimal(value).quantize(Decimal(1).scaleb(-precision), rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise NormalizeError(f"cannot round {value!r} to {precision} decimals") from exc
    out = f"{q:f}"
    if out.startswith("-") and out.lstrip("-").strip("0.") == "":
        out = out[1:]
    return out


def rate(value: str, max_decimals: int = 16) -> str:
    """A free decimal (funding rate) kept as sent, rounded only beyond ``max_decimals``."""
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise NormalizeError(f"not a decimal: {value!r}")
    dot = value.find(".")
    if dot >= 0 and len(value) - dot - 1 > max_decimals:
        return _round(value, max_decimals)
    return value


def is_zero(value: str) -> bool:
    return value.lstrip("-").replace(".", "").strip("0") == ""


def ts_ns(ms: int) -> int:
    """Venue milliseconds → nanoseconds (validated)."""
    if not isinstance(ms, int) or ms <= 0 or ms > MAX_MS:
        raise NormalizeError(f"bad venue timestamp: {ms!r}")
    return ms * 1_000_000


# -- trades, quotes ----------------------------------------------------------------------------


def trade_tick(msg: TradeMsg, spec: MarketSpec, ts_init: int) -> TradeTick:
    aggressor = _AGGRESSOR.get(msg.side)
    if aggressor is None:
        raise NormalizeError(f"trade {msg.id!r}: unknown side {msg.side!r}")
    if not _TRADE_ID.fullmatch(msg.id):
        raise NormalizeError(f"trade id {msg.id!r} is not 1..36 printable ASCII characters")
    size = fixed(msg.size, spec.size_precision, signed=False)
    if is_zero(size):
        raise NormalizeError(f"trade {msg.id!r}: zero size")
    return TradeTick(
        instrument_id=spec.instrument_id,
        price=fixed(msg.price, spec.price_precision),
        size=size,
        aggressor_side=aggressor,
        trade_id=msg.id,
        ts_event=ts_ns(msg.created_at),
        ts_init=ts_init,
    )


def quote_tick(msg: BboMsg, spec: MarketSpec, ts_init: int) -> QuoteTick | None:
    """``None`` when a side is empty (a QuoteTick cannot express a one-sided book)."""
    if not (msg.bid and msg.ask and msg.bid_size and msg.ask_size):
        return None
    pp, sp = spec.price_precision, spec.size_precision
    return QuoteTick(
        instrument_id=spec.instrument_id,
        bid_price=fixed(msg.bid, pp),
        ask_price=fixed(msg.ask, pp),
        bid_size=fixed(msg.bid_size, sp, signed=False),
        ask_size=fixed(msg.ask_size, sp, signed=False),
        ts_event=ts_ns(msg.last_updated_at),
        ts_init=ts_init,
    )


# -- book --------------------------------------------------------------------------------------


def book_deltas(msg: BookMsg, spec: MarketSpec, ts_init: int) -> OrderBookDeltas | None:
    """A deltas-feed message as ``OrderBookDeltas``; ``None`` for a ``"d"`` without levels."""
    if msg.update_type == "s":
        return _snapshot(msg, spec, ts_init)
    if msg.update_type == "d":
        return _delta(msg, spec, ts_init)
    raise NormalizeError(f"unknown update_type {msg.update_type!r}")


def _snapshot(msg: BookMsg, spec: MarketSpec, ts_init: int) -> OrderBookDeltas:
    iid, seq = spec.instrument_id, msg.seq_no
    ts_event = ts_ns(msg.last_updated_at)
    pp, sp = spec.price_precision, spec.size_precision
    levels = [*msg.inserts, *msg.updates]
    deltas = [
        OrderBookDelta(
            instrument_id=iid,
            action=BookAction.CLEAR,
            order=BookOrder(side=OrderSide.NO_ORDER_SIDE, price=spec.zero_price, size=spec.zero_size),
            flags=F_SNAPSHOT,
            sequence=seq,
            ts_event=ts_event,
            ts_init=ts_init,
        )
    ]
    for lv in levels:
        side = _SIDE.get(lv.side)
        if side is None:
            raise NormalizeError(f"book {msg.market} seq {seq}: unknown side {lv.side!r}")
        size = fixed(lv.size, sp, signed=False)
        if is_zero(size):
            continue  # an empty level in a snapshot carries no information
        deltas.append(
            OrderBookDelta(
                instrument_id=iid,
                action=BookAction.ADD,
                order=BookOrder(side=side, price=fixed(lv.price, pp), size=size),
                flags=F_SNAPSHOT,
                sequence=seq,
                ts_event=ts_event,
                ts_init=ts_init,
            )
        )
    deltas[-1].flags = F_SNAPSHOT | F_LAST
    return OrderBookDeltas(instrument_id=iid, deltas=deltas)


def _delta(msg: BookMsg, spec: MarketSpec, ts_init: int) -> OrderBookDeltas | None:
    if not (msg.inserts or msg.updates or msg.deletes):
        return None
    iid, seq = spec.instrument_id, msg.seq_no
    ts_event = ts_ns(msg.last_updated_at)
    pp, sp = spec.price_precision, spec.size_precision
    zero = spec.zero_size
    deltas: list[OrderBookDelta] = []
    # Deletes first so a level removed and re-added in one message ends up present.
    for action, levels in (
        (BookAction.DELETE, msg.deletes),
        (BookAction.UPDATE, msg.updates),
        (BookAction.ADD, msg.inserts),
    ):
        for lv in levels:
            side = _SIDE.get(lv.side)
            if side is None:
                raise NormalizeError(f"book {msg.market} seq {seq}: unknown side {lv.side!r}")
            price = fixed(lv.price, pp)
            if action is BookAction.DELETE:
                size = zero
                act = action
            else:
                size = fixed(lv.size, sp, signed=False)
                # ADD/UPDATE need size > 0; the venue's "size 0" on an insert/update means remove.
                act = BookAction.DELETE if is_zero(size) else action
            deltas.append(
                OrderBookDelta(
                    instrument_id=iid,
                    action=act,
                    order=BookOrder(side=side, price=price, size=size),
                    flags=0,
                    sequence=seq,
                    ts_event=ts_event,
                    ts_init=ts_init,
                )
            )
    deltas[-1].flags = F_LAST
    return OrderBookDeltas(instrument_id=iid, deltas=deltas)


# -- tickers -----------------------------------------------------------------------------------


def summary_updates(
    msg: SummaryMsg, spec: MarketSpec, ts_init: int
) -> tuple[MarkPriceUpdate | None, IndexPriceUpdate | None, FundingRateUpdate | None]:
    """``(mark, index, funding)``; an element is ``None`` when the venue left the field empty."""
    ts_event = ts_ns(msg.created_at)
    iid, pp = spec.instrument_id, spec.price_precision
    mark = (
        MarkPriceUpdate(instrument_id=iid, value=fixed(msg.mark_price, pp), ts_event=ts_event, ts_init=ts_init)
        if msg.mark_price
        else None
    )
    index = (
        IndexPriceUpdate(instrument_id=iid, value=fixed(msg.underlying_price, pp), ts_event=ts_event, ts_init=ts_init)
        if msg.underlying_price
        else None
    )
    funding = (
        FundingRateUpdate(
            instrument_id=iid,
            rate=rate(msg.funding_rate),
            ts_event=ts_event,
            ts_init=ts_init,
            interval=spec.funding_interval_min,
        )
        if msg.funding_rate
        else None
    )
    return mark, index, funding


def funding_update(msg: FundingDataMsg, spec: MarketSpec, ts_init: int) -> FundingRateUpdate | None:
    if not msg.funding_rate:
        return None
    interval = spec.funding_interval_min
    if msg.funding_period_hours not in (None, ""):
        interval = _hours_to_minutes(msg.funding_period_hours)
    return FundingRateUpdate(
        instrument_id=spec.instrument_id,
        rate=rate(msg.funding_rate),
        ts_event=ts_ns(msg.created_at),
        ts_init=ts_init,
        interval=interval,
    )


def _hours_to_minutes(hours: float | int | str | None) -> int | None:
    if hours is None or hours == "":
        return None
    try:
        minutes = Decimal(str(hours)) * 60
    except InvalidOperation as exc:
        raise NormalizeError(f"bad funding_period_hours {hours!r}") from exc
    if minutes <= 0 or minutes != minutes.to_integral_value() or minutes > 65535:
        raise NormalizeError(f"funding_period_hours {hours!r} is not a whole number of minutes (u16)")
    return int(minutes)


def funding_interval_minutes(hours: float | int | str | None) -> int | None:
    """``funding_period_hours`` from ``/markets`` → Nautilus ``interval`` (minutes) or None."""
    try:
        return _hours_to_minutes(hours)
    except NormalizeError:
        return None
