"""Token-bucket rate limits per scope (paradex-api.md §4.10) and the ``x-ratelimit-*`` headers.

Scopes and defaults (limit per window, keyed by):
  public 1500/60 s (IP) · auth 600/60 s (IP; POST /auth, POST /onboarding) ·
  orders 800/1 s and 17250/60 s (account; POST/PUT/DELETE /orders*, WS order.* methods, a batch is 1) ·
  private_get 120/1 s and 600/60 s (account) · private_ip 1500/60 s (IP; private GETs) ·
  ws_connect 20/1 s and 600/60 s (IP).
Buckets refill continuously (600/min = one token every 100 ms). Limits can be changed or switched
off at run time through the admin API (benchmarks run unthrottled).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    limit: int
    window_s: float


DEFAULT_SCOPES: dict[str, tuple[Limit, ...]] = {
    "public": (Limit(1500, 60),),
    "auth": (Limit(600, 60),),
    "orders": (Limit(800, 1), Limit(17250, 60)),
    "private_get": (Limit(120, 1), Limit(600, 60)),
    "private_ip": (Limit(1500, 60),),
    "ws_connect": (Limit(20, 1), Limit(600, 60)),
}


class Bucket:
    __slots__ = ("last", "rate", "size", "tokens")

    def __init__(self, limit: Limit, now: float) -> None:
        self.size = float(limit.limit)
        self.rate = limit.limit / limit.window_s
        self.tokens = self.size
        self.last = now

    def refill(self, now: float) -> None:
        if now > self.last:
            self.tokens = min(self.size, self.tokens + (now - self.last) * self.rate)
            self.last = now


@dataclass
class Decision:
    ok: bool
    limit: int
    remaining: int
    reset: int
    window: int
    retry_after: int

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(self.reset),
            "x-ratelimit-window": str(self.window),
            "retry-after": str(self.retry_after),
        }


class RateLimiter:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.scopes: dict[str, tuple[Limit, ...]] = dict(DEFAULT_SCOPES)
        self.buckets: dict[tuple[str, str, int], Bucket] = {}
        self.rejected = 0

    def configure(self, scope: str, limits: list[tuple[int, float]]) -> None:
        if scope not in self.scopes:
            raise ValueError(f"unknown scope {scope!r}; scopes: {', '.join(self.scopes)}")
        if not limits or any(n < 1 or w <= 0 for n, w in limits):
            raise ValueError("limits are [[limit >= 1, window_s > 0], ...]")
        self.scopes[scope] = tuple(Limit(int(n), float(w)) for n, w in limits)
        for k in [k for k in self.buckets if k[0] == scope]:
            del self.buckets[k]

    def reset(self) -> None:
        self.scopes = dict(DEFAULT_SCOPES)
        self.buckets.clear()

    def describe(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "scopes": {s: [[lim.limit, lim.window_s] for lim in ls] for s, ls in self.scopes.items()},
        }

    def check(self, checks: list[tuple[str, str]], cost: int = 1) -> Decision:
        """Take ``cost`` tokens from every bucket of every (scope, key); all or nothing."""
        now = time.monotonic()
        wall = time.time()
        buckets: list[tuple[Limit, Bucket]] = []
        for scope, key in checks:
            for i, lim in enumerate(self.scopes[scope]):
                b = self.buckets.get((scope, key, i))
                if b is None:
                    b = self.buckets[(scope, key, i)] = Bucket(lim, now)
                b.refill(now)
                buckets.append((lim, b))
        if not self.enabled:
            lim = buckets[0][0]
            return Decision(True, lim.limit, lim.limit, int(wall), int(lim.window_s), 0)
        short = [(lim, b) for lim, b in buckets if b.tokens < cost]
        if short:
            self.rejected += 1
            lim, b = max(short, key=lambda lb: (cost - lb[1].tokens) / lb[1].rate)
            wait = (cost - b.tokens) / b.rate
            return Decision(False, lim.limit, 0, math.ceil(wall + wait), max(1, math.ceil(lim.window_s)),
                            max(1, math.ceil(wait)))
        for _, b in buckets:
            b.tokens -= cost
        lim, b = min(buckets, key=lambda lb: lb[1].tokens / lb[1].size)
        full_in = (b.size - b.tokens) / b.rate
        return Decision(True, lim.limit, int(b.tokens), math.ceil(wall + full_in), max(1, math.ceil(lim.window_s)), 0)
