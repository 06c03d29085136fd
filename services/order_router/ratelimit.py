"""Client-side rate limiting per venue scope (paradex-api.md §4.10).

Each scope has one token bucket per window (orders: 800/s and 17,250/min per account; private GETs:
120/s and 600/min), refilled continuously as the venue does. ``acquire`` waits until every bucket
of the scope has a token, so the router never sends what the venue would refuse. The venue's own
answer wins over our model: a 429 (``Retry-After`` / ``x-ratelimit-reset``) or a response saying
``x-ratelimit-remaining: 0`` blocks the scope until the venue's reset time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from services.paradex.rest import RateLimitState


class TokenBucket:
    """``capacity`` tokens, refilled at ``capacity / window`` per second."""

    __slots__ = ("capacity", "last", "rate", "tokens")

    def __init__(self, capacity: int, window: float) -> None:
        self.capacity = float(max(1, capacity))
        self.rate = self.capacity / window
        self.tokens = self.capacity
        self.last = time.monotonic()

    def _refill(self, now: float) -> None:
        if now > self.last:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now

    def wait_time(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` tokens are available (0 when they are now)."""
        self._refill(now)
        missing = cost - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, cost: float) -> None:
        self.tokens -= cost


@dataclass
class ScopeStats:
    acquired: int = 0
    waited: int = 0
    wait_s: float = 0.0
    blocked_by_venue: int = 0


@dataclass
class Scope:
    name: str
    buckets: list[TokenBucket]
    blocked_until: float = 0.0  # monotonic
    stats: ScopeStats = field(default_factory=ScopeStats)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def acquire(self, cost: float = 1.0) -> float:
        """Wait for ``cost`` tokens in every bucket; returns the seconds waited."""
        waited = 0.0
        async with self.lock:  # FIFO: earlier callers are served first
            while True:
                now = time.monotonic()
                wait = max(self.blocked_until - now, 0.0)
                for b in self.buckets:
                    wait = max(wait, b.wait_time(cost, now))
                if wait <= 0:
                    for b in self.buckets:
                        b.take(cost)
                    break
                waited += wait
                await asyncio.sleep(wait)
        self.stats.acquired += 1
        if waited:
            self.stats.waited += 1
            self.stats.wait_s += waited
        return waited

    def block_for(self, seconds: float) -> None:
        until = time.monotonic() + max(0.0, seconds)
        if until > self.blocked_until:
            self.blocked_until = until
            self.stats.blocked_by_venue += 1


class RateLimiter:
    """The router's scopes: ``orders`` (writes) and ``private_get`` (reads)."""

    def __init__(self, orders_per_s: int, orders_per_min: int, gets_per_s: int, gets_per_min: int) -> None:
        self.scopes = {
            "orders": Scope("orders", [TokenBucket(orders_per_s, 1.0), TokenBucket(orders_per_min, 60.0)]),
            "private_get": Scope("private_get", [TokenBucket(gets_per_s, 1.0), TokenBucket(gets_per_min, 60.0)]),
        }

    def scope(self, name: str) -> Scope:
        return self.scopes[name]

    async def acquire(self, name: str, cost: float = 1.0) -> float:
        return await self.scopes[name].acquire(cost)

    def observe(self, name: str, state: RateLimitState, *, rate_limited: bool, retry_after: float | None) -> None:
        """Apply what the venue said about ``name`` in the response just received."""
        scope = self.scopes[name]
        if rate_limited:
            wait = retry_after if retry_after is not None else _until_reset(state)
            scope.block_for(wait if wait is not None else 1.0)
            return
        if state.remaining is not None and state.remaining <= 0:
            wait = _until_reset(state)
            if wait is not None:
                scope.block_for(wait)

    def counters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, s in self.scopes.items():
            out[f"ratelimit_{name}_acquired"] = s.stats.acquired
            out[f"ratelimit_{name}_waited"] = s.stats.waited
            out[f"ratelimit_{name}_wait_ms"] = int(s.stats.wait_s * 1000)
            out[f"ratelimit_{name}_blocked_by_venue"] = s.stats.blocked_by_venue
        return out


def _until_reset(state: RateLimitState) -> float | None:
    if state.reset is None:
        return None
    # The reset is Unix seconds at the venue; never block longer than a window.
    return min(max(0.0, state.reset - time.time()), state.window or 60.0)
