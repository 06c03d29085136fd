"""Validated scalar types shared by every schema: identifiers, decimal strings, money, timestamps.

Each alias is a msgspec ``Annotated`` constraint, so a malformed value is rejected while decoding,
before any consumer (or a Nautilus constructor that would abort the process on non-ASCII input)
sees it. The constraints mirror Nautilus's own rules (nautilus-model.md §1.1, §1.3).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

# Printable ASCII without spaces: Nautilus identifiers abort the interpreter on anything else.
_ASCII_TOKEN = r"^[!-~]+$"
_HYPHENATED = r"^[!-~]+-[!-~]+$"

Identifier = Annotated[str, msgspec.Meta(pattern=_ASCII_TOKEN, min_length=1, max_length=128)]
"""A generic ASCII identifier (ClientOrderId, VenueOrderId, ClientId, PositionId, Venue ...)."""

InstrumentIdStr = Annotated[str, msgspec.Meta(pattern=r"^[!-~]+\.[A-Z0-9_]+$", min_length=3, max_length=96)]
"""``SYMBOL.VENUE``, split at the last dot, e.g. ``BTC-USD-PERP.PARADEX``."""

TradeIdStr = Annotated[str, msgspec.Meta(pattern=_ASCII_TOKEN, min_length=1, max_length=36)]
"""Nautilus TradeId: ASCII, 1..36 characters."""

AccountIdStr = Annotated[str, msgspec.Meta(pattern=_HYPHENATED, min_length=3, max_length=128)]
"""``ISSUER-ID``, e.g. ``PARADEX-0x1234``."""

TraderIdStr = Annotated[str, msgspec.Meta(pattern=_HYPHENATED, min_length=3, max_length=64)]
"""``NAME-TAG``; a TraderId without a hyphen aborts Nautilus."""

StrategyIdStr = Annotated[str, msgspec.Meta(pattern=r"^([!-~]+-[!-~]+|EXTERNAL)$", max_length=64)]

UUIDStr = Annotated[
    str,
    msgspec.Meta(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]

PriceStr = Annotated[str, msgspec.Meta(pattern=r"^-?\d{1,20}(\.\d{1,16})?$")]
"""A decimal string (may be negative); at most 16 decimals as Nautilus's high-precision mode."""

QuantityStr = Annotated[str, msgspec.Meta(pattern=r"^\d{1,20}(\.\d{1,16})?$")]
"""A non-negative decimal string."""

DecimalStr = Annotated[str, msgspec.Meta(pattern=r"^-?\d{1,30}(\.\d{1,30})?$")]
"""A free decimal (fees, rates, margins) kept as a string so no float ever appears."""

MoneyStr = Annotated[str, msgspec.Meta(pattern=r"^-?\d{1,20}(\.\d{1,16})? [A-Z0-9]{2,12}$")]
"""``"<amount> <CCY>"`` as Nautilus serializes Money, e.g. ``"0.09750000 USDC"``."""

CurrencyStr = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{2,12}$")]

UnixNanos = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
"""Integer nanoseconds since the Unix epoch."""

SmallUInt = Annotated[int, msgspec.Meta(ge=0, le=255)]
Sequence = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Precision = Annotated[int, msgspec.Meta(ge=0, le=16)]

# Free-form string maps (params, tags, info) stay JSON-able and never carry floats.
InfoValue = str | int | bool | None | list[str] | dict[str, str]
InfoDict = dict[str, InfoValue]

VENUE = "PARADEX"


class Event(msgspec.Struct, tag_field="type", tag=True, kw_only=True, gc=False):
    """Root of every bus message: tagged with its (Nautilus) class name under ``"type"``."""


def instrument_id(market: str, venue: str = VENUE) -> str:
    """``BTC-USD-PERP`` -> ``BTC-USD-PERP.PARADEX``."""
    return f"{market}.{venue}"


def market_of(instrument: str) -> str:
    """``BTC-USD-PERP.PARADEX`` -> ``BTC-USD-PERP`` (split at the last dot, as Nautilus does)."""
    return instrument.rsplit(".", 1)[0]
