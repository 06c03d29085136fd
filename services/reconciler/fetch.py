"""Reading venue truth over REST: a rate-limited private client, and typed reads whose failures
are *unknown*, never "missing".

* ``ReconRestClient`` is ``PrivateRestClient`` with a client-side token bucket in front of every
  request (``RECON_REST_RATE``/``RECON_REST_BURST``, below the venue's 10/s sustained private-GET
  limit, which the order router shares) and a request counter; 429s are still honoured by the
  base client's retry (``Retry-After`` / ``x-ratelimit-reset``).
* ``Fetcher`` turns pages into ``VenueOrder``/``VenueFill``/``VenuePosition`` records. A malformed
  row is skipped and counted. A timeout, transport error, 5xx, 429 after retries, an unexpected
  4xx, or no JWT from the signer raises ``Unknown``; the caller treats that read as missing
  information. Only a definite 404 / ``ORDER_ID_NOT_FOUND`` answer makes a single order "not found".
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from services.paradex.private_rest import ForceableTokenProvider, PrivateRestClient
from services.paradex.rest import ParadexError
from services.reconciler.venue import (
    VenueFill,
    VenueFunding,
    VenueOrder,
    VenuePosition,
    VenueRowError,
    parse_rows,
    usdc_balance,
)
from services.runtime import Problems

NOT_FOUND_CODES = frozenset({"ORDER_ID_NOT_FOUND", "NOT_FOUND", "CLIENT_ORDER_ID_NOT_FOUND"})


class Unknown(Exception):
    """A venue read that gave no definite answer."""

    def __init__(self, what: str, cause: BaseException) -> None:
        super().__init__(f"{what}: {type(cause).__name__}: {cause}")
        self.what = what
        self.cause = cause


class TokenBucket:
    """Continuous-refill token bucket; ``acquire`` waits for a token."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.size = float(burst)
        self.tokens = float(burst)
        self.last = time.monotonic()
        self.waited_s = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.size, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.rate
                self.waited_s += wait
                await asyncio.sleep(wait)


class ReconRestClient(PrivateRestClient):
    def __init__(self, base_url: str, token: ForceableTokenProvider, bucket: TokenBucket, **kwargs: Any) -> None:
        super().__init__(base_url, token, **kwargs)
        self.bucket = bucket

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        await self.bucket.acquire()
        return await super().request(method, path, **kwargs)


def _unknown(what: str, exc: BaseException) -> Unknown:
    return Unknown(what, exc)


class Fetcher:
    def __init__(self, client: PrivateRestClient, page_size: int, problems: Problems) -> None:
        self.client = client
        self.page_size = page_size
        self.problems = problems
        self.malformed: list[str] = []

    @property
    def calls(self) -> int:
        return self.client.stats.requests

    def _rows(self, rows: Any, cls: Any, what: str) -> list[Any]:
        if not isinstance(rows, list):
            raise Unknown(what, ValueError(f"not a list of rows: {str(rows)[:100]}"))
        out, errors = parse_rows(rows, cls)
        for rid, err in errors:
            self.malformed.append(f"{what} row {rid}: {err}")
            self.problems.report("malformed_venue_row", what=what, id=rid, error=err)
        return out

    async def _guard(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except Exception as exc:
            # Whatever went wrong, nothing definite was learnt about the venue.
            raise _unknown(what, exc) from exc

    async def _pages(self, what: str, pages: Any, cls: Any) -> list[Any]:
        out: list[Any] = []

        async def collect() -> None:
            async for page in pages:
                out.extend(self._rows(page, cls, what))

        await self._guard(what, collect())
        return out

    async def open_orders(self) -> list[VenueOrder]:
        rows = await self._guard("GET /orders", self.client.open_orders())
        return self._rows(rows, VenueOrder, "order")

    async def history(self, since_ms: int | None, **filters: str) -> list[VenueOrder]:
        params: dict[str, Any] = {"start_at": since_ms, **filters}
        return await self._pages(
            "GET /orders-history", self.client.orders_history(params, page_size=self.page_size), VenueOrder
        )

    async def fills(
        self, since_ms: int | None, market: str | None = None, end_ms: int | None = None
    ) -> list[VenueFill]:
        params = {"start_at": since_ms, "end_at": end_ms, "market": market}
        return await self._pages("GET /fills", self.client.fills(params, page_size=self.page_size), VenueFill)

    async def funding(self, market: str, since_ms: int | None) -> list[VenueFunding]:
        return await self._pages(
            "GET /funding/payments",
            self.client.funding_payments(market, {"start_at": since_ms}, page_size=self.page_size),
            VenueFunding,
        )

    async def positions(self) -> list[VenuePosition]:
        rows = await self._guard("GET /positions", self.client.positions())
        return self._rows(rows, VenuePosition, "position")

    async def balance(self) -> Decimal | None:
        rows = await self._guard("GET /balance", self.client.balances())
        try:
            return usdc_balance(rows)
        except VenueRowError as exc:
            raise _unknown("GET /balance", exc) from exc

    async def account(self) -> dict[str, Any]:
        body = await self._guard("GET /account", self.client.account())
        if not isinstance(body, dict):
            raise _unknown("GET /account", ValueError(f"not an object: {str(body)[:100]}"))
        return body

    async def order(self, venue_order_id: str) -> VenueOrder | None:
        """One order by venue id; None only when the venue definitely answers "no such order"."""
        try:
            row = await self.client.order(venue_order_id)
        except ParadexError as exc:
            if exc.status == 404 or exc.code in NOT_FOUND_CODES:
                return None
            raise _unknown(f"GET /orders/{venue_order_id}", exc) from exc
        except Exception as exc:
            raise _unknown(f"GET /orders/{venue_order_id}", exc) from exc
        got = self._rows([row], VenueOrder, "order")
        if not got:
            raise _unknown(f"GET /orders/{venue_order_id}", ValueError("malformed order row"))
        return got[0]

    async def order_by_client_id(self, client_id: str) -> VenueOrder | None:
        """Search the whole order history (open orders included) by client id; newest wins."""
        rows = await self._pages(
            "GET /orders-history?client_id",
            self.client.orders_history({"client_id": client_id}, page_size=50, max_pages=2),
            VenueOrder,
        )
        found = [o for o in rows if o.client_id == client_id]
        if not found:
            return None
        return max(found, key=lambda o: (o.created_at, o.last_updated_at))
