"""Index (oracle), mark price and funding per market (paradex-api.md §4.4, §4.8).

* index: a seeded random walk in whole ticks, moving only while the background flow runs (so tests
  with the flow paused see fixed prices unless they set them through the admin API);
* mark: index plus an EWMA of the book's basis (mid - index), clamped to ±0.5 % of index;
* funding: rate = clamp((mark - index) / index, ±max_funding_rate) per funding period (or an admin
  override), accrued continuously into ``funding_index`` (USD per unit of base; longs pay when it
  rises). Settlement into balances is the engine's job.
"""

from __future__ import annotations

import math
import random
from decimal import Decimal

from services.paradex_sim.markets import MarketSpec
from services.paradex_sim.util import dstr

ZERO = Decimal(0)
Q8 = Decimal("0.00000001")
Q12 = Decimal("0.000000000001")
BASIS_CLAMP = Decimal("0.005")
ANNUAL_VOL = 0.6  # drives the random walk's step size
SECONDS_PER_YEAR = 365 * 24 * 3600


class MarketPrice:
    __slots__ = (
        "basis", "funding_index", "funding_premium", "funding_rate", "index", "mark", "rate_override",
        "spec", "updated_at",
    )

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.index = spec.initial_price
        self.mark = spec.initial_price
        self.basis = ZERO  # EWMA of (mid - index), in price units
        self.funding_index = ZERO
        self.funding_rate = ZERO
        self.funding_premium = ZERO
        self.rate_override: Decimal | None = None
        self.updated_at = 0

    def recompute_mark(self) -> None:
        cap = self.index * BASIS_CLAMP
        basis = max(-cap, min(cap, self.basis))
        self.mark = (self.index + basis).quantize(Q8)

    def recompute_rate(self) -> None:
        premium = (self.mark - self.index) / self.index if self.index else ZERO
        self.funding_premium = premium.quantize(Q12)
        if self.rate_override is not None:
            self.funding_rate = self.rate_override
        else:
            cap = self.spec.max_funding_rate
            self.funding_rate = max(-cap, min(cap, premium)).quantize(Q12)

    def accrue(self, seconds: Decimal) -> None:
        period = Decimal(self.spec.funding_period_hours * 3600)
        self.funding_index = (self.funding_index + self.funding_rate * self.index * seconds / period).quantize(Q12)

    def funding_json(self, now_ms: int) -> dict[str, object]:
        hours = self.spec.funding_period_hours
        return {
            "market": self.spec.symbol,
            "funding_index": dstr(self.funding_index),
            "funding_premium": dstr(self.funding_premium),
            "funding_rate": dstr(self.funding_rate),
            "funding_rate_8h": dstr(self.funding_rate * Decimal(8) / Decimal(hours)),
            "funding_period_hours": hours,
            "impact_premium_rate": dstr(self.funding_premium),
            "created_at": now_ms,
        }


class Pricing:
    def __init__(self, specs: dict[str, MarketSpec], seed: int) -> None:
        self.rng = random.Random(seed * 7919 + 17)
        self.prices: dict[str, MarketPrice] = {m: MarketPrice(s) for m, s in specs.items()}
        # (sequence, funding_data row) per market, ascending, for GET /funding/data pagination
        self.funding_history: dict[str, list[tuple[int, dict[str, object]]]] = {m: [] for m in specs}
        self._row_seq = 0

    def add_market(self, spec: MarketSpec) -> None:
        self.prices[spec.symbol] = MarketPrice(spec)
        self.funding_history[spec.symbol] = []

    def mark(self, market: str) -> Decimal:
        return self.prices[market].mark

    def index(self, market: str) -> Decimal:
        return self.prices[market].index

    def funding_index(self, market: str) -> Decimal:
        return self.prices[market].funding_index

    def walk(self, market: str, dt: float) -> None:
        """One random-walk step of the index, in whole ticks."""
        p = self.prices[market]
        tick = p.spec.price_tick_size
        sigma_ticks = float(p.index / tick) * ANNUAL_VOL * math.sqrt(max(dt, 0.0) / SECONDS_PER_YEAR)
        steps = round(self.rng.gauss(0.0, max(sigma_ticks, 0.5)))
        new = p.index + tick * steps
        if new > tick * 10:
            p.index = new

    def observe_mid(self, market: str, mid: Decimal | None) -> None:
        p = self.prices[market]
        if mid is not None:
            w = p.spec.oracle_ewma_factor
            p.basis = (p.basis * (1 - w) + (mid - p.index) * w).quantize(Q8)
        p.recompute_mark()

    def set_price(self, market: str, index: Decimal | None, mark: Decimal | None) -> None:
        p = self.prices[market]
        if index is not None:
            p.index = index
        p.basis = (mark - p.index) if mark is not None else ZERO
        p.mark = mark if mark is not None else p.index
        p.recompute_rate()

    def tick_funding(self, market: str, seconds: Decimal, now_ms: int) -> dict[str, object]:
        p = self.prices[market]
        p.recompute_rate()
        p.accrue(seconds)
        p.updated_at = now_ms
        row = p.funding_json(now_ms)
        hist = self.funding_history[market]
        self._row_seq += 1
        hist.append((self._row_seq, row))
        if len(hist) > 20_000:
            del hist[:5_000]
        return row
