"""Venue REST rows (paradex-api.md §4.6-4.8) as typed records with ``Decimal`` values.

``parse_rows`` turns a page of JSON rows into frozen msgspec records in one C-level conversion
(falling back to row by row to find a malformed one); ``parse_order`` / ``parse_fill`` / ... read
one row or raise ``VenueRowError``. The caller counts and skips a malformed row (it is never guessed
at).
A few venue facts the comparison relies on live here too: which statuses are open, which
``fill_type`` rows are trades (funding payments come from their own endpoint and are never fills),
and how a CLOSED order's ``cancel_reason`` reads.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeVar

import msgspec

ZERO = Decimal(0)

NEW, UNTRIGGERED, OPEN, CLOSED = "NEW", "UNTRIGGERED", "OPEN", "CLOSED"
OPEN_STATUSES = frozenset({NEW, UNTRIGGERED, OPEN})
STATUSES = frozenset({NEW, UNTRIGGERED, OPEN, CLOSED})

# Every /fills row type that moves a position (paradex-api.md §4.8). Funding is not a fill type on
# Paradex; a row of any other type is skipped and counted rather than taken as a trade.
TRADE_FILL_TYPES = frozenset({"FILL", "LIQUIDATION", "UNWIND_TRANSFER", "SETTLE_MARKET", "RPI", "BLOCK_TRADE"})

TRIGGER_ORDER_TYPES = frozenset(
    {"STOP_LIMIT", "STOP_MARKET", "TAKE_PROFIT_LIMIT", "TAKE_PROFIT_MARKET", "STOP_LOSS_LIMIT", "STOP_LOSS_MARKET"}
)
MARKET_ORDER_TYPES = frozenset({"MARKET", "STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP_LOSS_MARKET"})

USER_CANCELED = "USER_CANCELED"
EXPIRED_REASON = "EXPIRED"


class VenueRowError(ValueError):
    """A venue row that cannot be read (missing field, bad decimal, unknown status)."""


def _opt_dec(raw: str) -> Decimal | None:
    """Optional venue decimals come as ``""`` (absent) or ``"0"`` (e.g. no trigger price)."""
    if not raw:
        return None
    try:
        d = Decimal(raw)
    except InvalidOperation:
        return None
    return d if d.is_finite() and d != 0 else None


def _finite(*values: Decimal) -> None:
    for v in values:
        if not v.is_finite():
            raise ValueError(f"not a finite decimal: {v}")


class VenueOrder(msgspec.Struct, frozen=True, gc=False):
    """``OrderResp`` (§4.7.5). Optional decimals stay as sent; the properties read them."""

    id: str
    market: str
    side: Literal["BUY", "SELL"]
    type: str
    size: Decimal
    status: Literal["NEW", "UNTRIGGERED", "OPEN", "CLOSED"]
    remaining_size: Decimal | None = None
    price_raw: str = msgspec.field(name="price", default="")
    trigger_raw: str = msgspec.field(name="trigger_price", default="")
    avg_raw: str = msgspec.field(name="avg_fill_price", default="")
    client_id: str = ""
    cancel_reason: str = ""
    instruction: str = "GTC"
    flags: list[str] = msgspec.field(default_factory=list)
    created_at: int = 0
    last_updated_at: int = 0
    seq_no: int = 0

    def __post_init__(self) -> None:
        _finite(self.size, self.remaining)
        if not self.id or not self.market:
            raise ValueError("id and market are required")

    @property
    def remaining(self) -> Decimal:
        return self.size if self.remaining_size is None else self.remaining_size

    @property
    def price(self) -> Decimal | None:
        return _opt_dec(self.price_raw)

    @property
    def trigger_price(self) -> Decimal | None:
        return _opt_dec(self.trigger_raw)

    @property
    def avg_fill_price(self) -> Decimal | None:
        return _opt_dec(self.avg_raw)

    @property
    def filled(self) -> Decimal:
        return max(self.size - self.remaining, ZERO)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def is_closed(self) -> bool:
        return self.status == CLOSED

    @property
    def fully_filled(self) -> bool:
        return self.status == CLOSED and self.remaining == 0 and self.filled > 0

    @property
    def reduce_only(self) -> bool:
        return "REDUCE_ONLY" in self.flags

    @property
    def updated_at(self) -> int:
        return self.last_updated_at or self.created_at

    def newer_than(self, other: VenueOrder) -> bool:
        """Which of two reads of the same order is the later state (CLOSED is terminal)."""
        if self.is_closed != other.is_closed:
            return self.is_closed
        if self.updated_at != other.updated_at:
            return self.updated_at > other.updated_at
        return self.filled > other.filled


class VenueFill(msgspec.Struct, frozen=True, gc=False):
    """``FillResult`` (§4.8)."""

    id: str
    order_id: str
    market: str
    side: Literal["BUY", "SELL"]
    price: Decimal
    size: Decimal
    client_id: str = ""
    liquidity: str = "TAKER"
    fee: Decimal = ZERO
    fee_currency: str = "USDC"
    fill_type: str = "FILL"
    created_at: int = 0

    def __post_init__(self) -> None:
        _finite(self.price, self.size, self.fee)
        if self.size <= 0:
            raise ValueError(f"fill size {self.size} is not positive")
        if not self.id or not self.order_id:
            raise ValueError("id and order_id are required")


class VenuePosition(msgspec.Struct, frozen=True, gc=False):
    """``PositionResp`` (§4.6); ``size`` is signed (negative = short). A CLOSED position reads as 0."""

    market: str
    size_raw: Decimal = msgspec.field(name="size", default=ZERO)
    entry_raw: str = msgspec.field(name="average_entry_price", default="")
    status: str = ""
    seq_no: int = 0
    last_updated_at: int = 0
    last_fill_id: str = ""
    id: str = ""

    def __post_init__(self) -> None:
        _finite(self.size_raw)

    @property
    def size(self) -> Decimal:
        return ZERO if self.status == "CLOSED" else self.size_raw

    @property
    def average_entry_price(self) -> Decimal | None:
        return _opt_dec(self.entry_raw)


class VenueFunding(msgspec.Struct, frozen=True, gc=False):
    id: str
    market: str
    payment: Decimal
    created_at: int = 0


T = TypeVar("T")


def parse_rows(rows: list[Any], cls: type[T]) -> tuple[list[T], list[tuple[Any, str]]]:
    """A page of rows in one C-level conversion; on a bad row, row by row to keep the good ones.
    Returns (records, [(row id, error)])."""
    try:
        return msgspec.convert(rows, list[cls]), []  # type: ignore[valid-type]
    except msgspec.ValidationError:
        pass  # some row is bad: convert one by one below, keeping and reporting each bad row
    out: list[T] = []
    errors: list[tuple[Any, str]] = []
    for r in rows:
        try:
            out.append(msgspec.convert(r, cls))
        except msgspec.ValidationError as exc:
            errors.append((r.get("id") if isinstance(r, dict) else None, str(exc)))
    return out, errors


def _one(row: Any, cls: type[T]) -> T:
    try:
        return msgspec.convert(row, cls)
    except msgspec.ValidationError as exc:
        raise VenueRowError(str(exc)) from None


def parse_order(row: Any) -> VenueOrder:
    return _one(row, VenueOrder)


def parse_fill(row: Any) -> VenueFill:
    return _one(row, VenueFill)


def parse_position(row: Any) -> VenuePosition:
    return _one(row, VenuePosition)


def parse_funding(row: Any) -> VenueFunding:
    return _one(row, VenueFunding)


def usdc_balance(rows: list[Any]) -> Decimal | None:
    """The settlement balance (``token == "USDC"``) of ``GET /balance``, or None if absent."""
    for r in rows:
        if isinstance(r, dict) and r.get("token") == "USDC":
            try:
                d = Decimal(str(r.get("size")))
            except InvalidOperation:
                raise VenueRowError(f"USDC balance is not a decimal: {r.get('size')!r}") from None
            if not d.is_finite():
                raise VenueRowError(f"USDC balance is not finite: {d}")
            return d
    return None
