"""Policy limits checked after validation and before signing: allowed markets, maximum order
notional, and a token bucket on order/modify signatures per second.

Refusals raise ``validation.Refusal`` with a ``POLICY_*`` (or ``NO_REFERENCE_PRICE``) code; the
handler counts and logs each one. Limits are per signer instance (several instances in one queue
group each apply their own bucket).

Notional is ``size x price`` for priced orders. Priceless (market-variant) orders use the venue's
mark price from ``GET /markets/summary``, cached per market (``MarkCache``); a mark older than
``SIGNER_MARK_MAX_AGE_S`` is refreshed before the order is signed, and an order whose notional
cannot be established is refused rather than signed blind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

from services.signer.validation import Refusal, ValidOrder


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored; ``rate <= 0`` means unlimited."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self.tokens = float(self.burst)
        self.stamp = clock()

    def take(self) -> bool:
        if self.rate <= 0:
            return True
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class MarkCache:
    """Venue mark prices per market, fetched on demand and refreshed while in use."""

    def __init__(self, fetch: Callable[[str], Awaitable[Decimal | None]], max_age_s: float) -> None:
        self.fetch = fetch
        self.max_age_s = max_age_s
        self.marks: dict[str, tuple[Decimal, float]] = {}
        self.last_used: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Future[Decimal | None]] = {}

    def fresh(self, market: str) -> Decimal | None:
        self.last_used[market] = time.monotonic()
        got = self.marks.get(market)
        if got is not None and time.monotonic() - got[1] <= self.max_age_s:
            return got[0]
        return None

    def put(self, market: str, mark: Decimal) -> None:
        self.marks[market] = (mark, time.monotonic())

    async def get(self, market: str) -> Decimal | None:
        """A fresh mark, fetching it if needed (one fetch per market at a time)."""
        mark = self.fresh(market)
        if mark is not None:
            return mark
        fut = self._inflight.get(market)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._inflight[market] = fut
            try:
                value = await self.fetch(market)
                if value is not None:
                    self.put(market, value)
                fut.set_result(value)
            except Exception as exc:  # noqa: BLE001 - surfaced to every waiter below
                fut.set_exception(exc)
                fut.exception()  # mark retrieved so an unawaited future does not warn
            finally:
                self._inflight.pop(market, None)
        return await asyncio.shield(fut)

    def recently_used(self, within_s: float = 300.0) -> list[str]:
        cutoff = time.monotonic() - within_s
        return [m for m, t in self.last_used.items() if t >= cutoff]


class Policy:
    def __init__(
        self,
        *,
        allowed_markets: tuple[str, ...],
        max_order_notional: Decimal,
        max_orders_per_s: float,
        order_burst: int,
    ) -> None:
        self.allowed = frozenset(allowed_markets)
        self.max_notional = max_order_notional
        self.bucket = TokenBucket(max_orders_per_s, order_burst)

    def check_market(self, market: str) -> None:
        if self.allowed and market not in self.allowed:
            raise Refusal("POLICY_MARKET_NOT_ALLOWED", f"market {market} is not in SIGNER_ALLOWED_MARKETS")

    def needs_mark(self, order: ValidOrder) -> bool:
        return self.max_notional > 0 and order.price is None

    def check_notional(self, order: ValidOrder, mark: Decimal | None) -> None:
        if self.max_notional <= 0:
            return
        reference = order.price if order.price is not None else mark
        if reference is None:
            raise Refusal(
                "NO_REFERENCE_PRICE",
                f"no mark price for {order.fields.market}: cannot check the notional of a priceless order",
            )
        notional = order.size * reference
        if notional > self.max_notional:
            raise Refusal(
                "POLICY_MAX_NOTIONAL",
                f"notional {notional.normalize():f} exceeds SIGNER_MAX_ORDER_NOTIONAL {self.max_notional}",
            )

    def take_rate(self) -> None:
        if not self.bucket.take():
            raise Refusal(
                "POLICY_RATE_LIMIT",
                f"more than {self.bucket.rate:g} order signatures/s (burst {self.bucket.burst})",
            )
