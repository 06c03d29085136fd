"""Instrument precisions for the events and reports the reconciler writes.

Prices and sizes on the bus are decimal strings at the instrument's precision (DESIGN.md "Events"),
the same strings the order router writes. Precisions come from the ``REF`` stream (the feed
handler's ``CryptoPerpetual`` per market) and, for a market not there yet, from the venue's public
``GET /markets``. A market known to neither is written in plain venue notation and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from nats.js import JetStreamContext

from bus.replay import last_per_subject
from schemas import CryptoPerpetual
from services.paradex.instruments import crypto_perpetual, dec_str
from services.paradex.normalize import NormalizeError

log = logging.getLogger("reconciler.instruments")

MAX_DECIMALS = 16
MONEY_DECIMALS = 8  # USDC, as Nautilus writes it


@dataclass(frozen=True, slots=True)
class Precision:
    price: int
    size: int
    quote: str


def _fmt(value: Decimal, decimals: int) -> str:
    q = value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    out = f"{q:f}"
    if out.startswith("-") and q == 0:
        out = out[1:]
    return out


def plain(value: Decimal) -> str:
    """A venue decimal with no precision known: plain notation, at most 16 decimals."""
    exp = value.normalize().as_tuple().exponent
    if isinstance(exp, int) and -exp > MAX_DECIMALS:
        return _fmt(value, MAX_DECIMALS)
    return dec_str(value)


class Instruments:
    def __init__(self) -> None:
        self.by_market: dict[str, Precision] = {}
        self.unknown_used: set[str] = set()

    def add(self, inst: CryptoPerpetual) -> None:
        self.by_market[inst.raw_symbol] = Precision(inst.price_precision, inst.size_precision, inst.quote_currency)

    async def load_from_bus(self, js: JetStreamContext) -> int:
        found = await last_per_subject(js, "ref.paradex.instrument.>", stream="REF")
        for ev in found.values():
            if isinstance(ev, CryptoPerpetual):
                self.add(ev)
        return len(self.by_market)

    async def load_from_rest(self, markets: Callable[[], Awaitable[list[dict[str, Any]]]], ts_init: int) -> int:
        added = 0
        for m in await markets():
            try:
                inst = crypto_perpetual(m, ts_init)
            except NormalizeError as exc:
                log.debug("market skipped: %s", exc)
                continue
            if inst.raw_symbol not in self.by_market:
                self.add(inst)
                added += 1
        return added

    def missing(self, markets: set[str]) -> set[str]:
        return {m for m in markets if m not in self.by_market}

    def quote(self, market: str) -> str:
        p = self.by_market.get(market)
        if p is not None:
            return p.quote
        parts = market.split("-")
        return parts[1] if len(parts) >= 2 and parts[1] else "USD"

    def price(self, market: str, value: Decimal) -> str:
        p = self.by_market.get(market)
        if p is None:
            self.unknown_used.add(market)
            return plain(value)
        return _fmt(value, p.price)

    def size(self, market: str, value: Decimal) -> str:
        p = self.by_market.get(market)
        if p is None:
            self.unknown_used.add(market)
            return plain(abs(value))
        return _fmt(abs(value), p.size)

    @staticmethod
    def money(value: Decimal, currency: str) -> str:
        return f"{_fmt(value, MONEY_DECIMALS)} {currency}"

    @staticmethod
    def amount(value: Decimal) -> str:
        """A balance amount as Nautilus writes it: the currency's 8 decimals, no currency code."""
        return _fmt(value, MONEY_DECIMALS)
