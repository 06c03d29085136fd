"""Market data events, shaped as Nautilus ``to_dict`` (nautilus-model.md §1.4, §4.4).

Every struct is tagged with its Nautilus class name under ``"type"``; prices and sizes are decimal
strings at the instrument's precision; timestamps are integer nanoseconds.
"""

from __future__ import annotations

import msgspec

from schemas.base import (
    Event,
    InstrumentIdStr,
    PriceStr,
    QuantityStr,
    Sequence,
    SmallUInt,
    TradeIdStr,
    UnixNanos,
)
from schemas.enums import (
    AggressorSide,
    BookAction,
    InstrumentCloseType,
    MarketStatusAction,
    OrderSide,
)


class TradeTick(Event, kw_only=True):
    instrument_id: InstrumentIdStr
    price: PriceStr
    size: QuantityStr
    aggressor_side: AggressorSide
    trade_id: TradeIdStr
    ts_event: UnixNanos
    ts_init: UnixNanos


class QuoteTick(Event, kw_only=True):
    instrument_id: InstrumentIdStr
    bid_price: PriceStr
    ask_price: PriceStr
    bid_size: QuantityStr
    ask_size: QuantityStr
    ts_event: UnixNanos
    ts_init: UnixNanos


class BookOrder(msgspec.Struct, kw_only=True, gc=False):
    """The order inside an ``OrderBookDelta`` (Nautilus writes it without a ``"type"`` key)."""

    side: OrderSide
    price: PriceStr
    size: QuantityStr
    order_id: Sequence = 0


class BookLevel(msgspec.Struct, tag_field="type", tag="BookOrder", kw_only=True, gc=False):
    """A level of ``OrderBookDepth10`` (Nautilus writes these with ``"type": "BookOrder"``)."""

    side: OrderSide
    price: PriceStr
    size: QuantityStr
    order_id: Sequence = 0


class OrderBookDelta(Event, kw_only=True):
    instrument_id: InstrumentIdStr
    action: BookAction
    order: BookOrder
    flags: SmallUInt = 0
    sequence: Sequence = 0
    ts_event: UnixNanos
    ts_init: UnixNanos


class OrderBookDeltas(Event, kw_only=True):
    instrument_id: InstrumentIdStr
    deltas: list[OrderBookDelta] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.deltas:
            raise ValueError("OrderBookDeltas.deltas must not be empty")

    @property
    def sequence(self) -> int:
        return self.deltas[-1].sequence

    @property
    def flags(self) -> int:
        return self.deltas[-1].flags

    @property
    def ts_event(self) -> int:
        return self.deltas[-1].ts_event

    @property
    def ts_init(self) -> int:
        return self.deltas[-1].ts_init


class OrderBookDepth10(Event, kw_only=True):
    instrument_id: InstrumentIdStr
    bids: list[BookLevel]
    asks: list[BookLevel]
    bid_counts: list[int]
    ask_counts: list[int]
    flags: SmallUInt = 0
    sequence: Sequence = 0
    ts_event: UnixNanos
    ts_init: UnixNanos

    def __post_init__(self) -> None:
        if len(self.bids) != len(self.asks):
            raise ValueError("OrderBookDepth10 bids and asks must have the same length")


class MarkPriceUpdate(Event, kw_only=True):
    instrument_id: InstrumentIdStr
    value: PriceStr
    ts_event: UnixNanos
    ts_init: UnixNanos


class IndexPriceUpdate(Event, kw_only=True):
    instrument_id: InstrumentIdStr
    value: PriceStr
    ts_event: UnixNanos
    ts_init: UnixNanos


class FundingRateUpdate(Event, kw_only=True, omit_defaults=True):
    """``interval`` (minutes) and ``next_funding_ns`` are left out when unknown, as Nautilus does."""

    instrument_id: InstrumentIdStr
    rate: PriceStr
    ts_event: UnixNanos
    ts_init: UnixNanos
    interval: int | None = None
    next_funding_ns: UnixNanos | None = None


class InstrumentStatus(Event, kw_only=True):
    instrument_id: InstrumentIdStr
    action: MarketStatusAction
    reason: str | None = None
    trading_event: str | None = None
    is_trading: bool | None = None
    is_quoting: bool | None = None
    is_short_sell_restricted: bool | None = None
    ts_event: UnixNanos
    ts_init: UnixNanos


class InstrumentClose(Event, kw_only=True):
    instrument_id: InstrumentIdStr
    close_price: PriceStr
    close_type: InstrumentCloseType
    ts_event: UnixNanos
    ts_init: UnixNanos


DATA_TYPES: tuple[type[Event], ...] = (
    TradeTick,
    QuoteTick,
    OrderBookDelta,
    OrderBookDeltas,
    OrderBookDepth10,
    MarkPriceUpdate,
    IndexPriceUpdate,
    FundingRateUpdate,
    InstrumentStatus,
    InstrumentClose,
)
