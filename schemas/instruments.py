"""Instrument definitions: ``CryptoPerpetual`` in Nautilus ``to_dict`` form (nautilus-model.md §1.6)."""

from __future__ import annotations

from decimal import Decimal

from schemas.base import (
    CurrencyStr,
    DecimalStr,
    Event,
    InfoDict,
    InstrumentIdStr,
    MoneyStr,
    Precision,
    PriceStr,
    QuantityStr,
    UnixNanos,
)


class CryptoPerpetual(Event, kw_only=True):
    id: InstrumentIdStr
    raw_symbol: str
    base_currency: CurrencyStr
    quote_currency: CurrencyStr
    settlement_currency: CurrencyStr
    is_inverse: bool = False
    price_precision: Precision
    price_increment: PriceStr
    size_precision: Precision
    size_increment: QuantityStr
    multiplier: QuantityStr = "1"
    lot_size: QuantityStr = "1"
    max_quantity: QuantityStr | None = None
    min_quantity: QuantityStr | None = None
    max_notional: MoneyStr | None = None
    min_notional: MoneyStr | None = None
    max_price: PriceStr | None = None
    min_price: PriceStr | None = None
    margin_init: DecimalStr
    margin_maint: DecimalStr
    maker_fee: DecimalStr
    taker_fee: DecimalStr
    ts_event: UnixNanos
    ts_init: UnixNanos
    tick_scheme_name: str | None = None
    info: InfoDict | None = None

    def __post_init__(self) -> None:
        # Nautilus refuses an increment whose precision differs from the declared precision.
        if _decimals(self.price_increment) != self.price_precision:
            raise ValueError(f"price_increment {self.price_increment!r} does not have precision {self.price_precision}")
        if _decimals(self.size_increment) != self.size_precision:
            raise ValueError(f"size_increment {self.size_increment!r} does not have precision {self.size_precision}")
        if Decimal(self.price_increment) <= 0 or Decimal(self.size_increment) <= 0:
            raise ValueError("increments must be positive")


def _decimals(value: str) -> int:
    return len(value.split(".", 1)[1]) if "." in value else 0


INSTRUMENT_TYPES = (CryptoPerpetual,)
