"""msgspec structs of Paradex public payloads (paradex-api.md §4.3-4.5, §5.6-5.7).

Decoded straight from the ``params.data`` raw JSON of a WebSocket notification (or a REST list
item). Fields the venue documents as decimals are ``str`` (never float); fields we do not use are
not declared, so unknown or newly added venue fields never break decoding. A missing required
field or a wrong type raises ``msgspec.ValidationError``, which callers count as malformed.
"""

from __future__ import annotations

import msgspec


class TradeMsg(msgspec.Struct, gc=False):
    """``trades.{market}`` / ``GET /trades`` item. ``side`` is the taker side."""

    id: str
    market: str
    side: str
    size: str
    price: str
    created_at: int
    trade_type: str = ""


class BboMsg(msgspec.Struct, gc=False):
    """``bbo.{market}`` / ``GET /bbo/{market}``. Sides may be empty strings when a side is empty."""

    market: str
    bid: str | None = None
    bid_size: str | None = None
    ask: str | None = None
    ask_size: str | None = None
    last_updated_at: int = 0
    seq_no: int = 0


class BookLevelMsg(msgspec.Struct, gc=False, array_like=False):
    side: str
    price: str
    size: str


class BookMsg(msgspec.Struct, gc=False):
    """``order_book.{market}.deltas`` / ``.snapshot@…`` (``PriceBookUpdate``)."""

    market: str
    seq_no: int
    update_type: str
    last_updated_at: int = 0
    inserts: list[BookLevelMsg] = msgspec.field(default_factory=list)
    updates: list[BookLevelMsg] = msgspec.field(default_factory=list)
    deletes: list[BookLevelMsg] = msgspec.field(default_factory=list)


class SummaryMsg(msgspec.Struct, gc=False):
    """``markets_summary`` item (``MarketSummaryResp``); only the fields we publish."""

    symbol: str
    created_at: int = 0
    mark_price: str | None = None
    underlying_price: str | None = None
    funding_rate: str | None = None
    last_traded_price: str | None = None


class FundingDataMsg(msgspec.Struct, gc=False):
    """``funding_data.{market}`` / ``GET /funding/data`` item."""

    market: str
    created_at: int
    funding_rate: str | None = None
    funding_rate_8h: str | None = None
    funding_period_hours: float | int | str | None = None
    funding_index: str | None = None
    funding_premium: str | None = None


class MarketsEventMsg(msgspec.Struct, gc=False):
    """``markets`` channel: a market spec changed (``CREATED|DELETED|SETTLED|UPDATED``)."""

    symbol: str
    event_type: str = ""
    updated_at: int = 0


trade_decoder = msgspec.json.Decoder(TradeMsg)
bbo_decoder = msgspec.json.Decoder(BboMsg)
book_decoder = msgspec.json.Decoder(BookMsg)
summary_decoder = msgspec.json.Decoder(SummaryMsg)
summary_list_decoder = msgspec.json.Decoder(list[SummaryMsg])
funding_decoder = msgspec.json.Decoder(FundingDataMsg)
markets_event_decoder = msgspec.json.Decoder(MarketsEventMsg)
