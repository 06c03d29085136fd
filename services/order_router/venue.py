"""The venue gateway: every call the router makes to Paradex, through the rate limiter, with the
signer supplying signatures and JWTs.

Outcomes stay as ``services.paradex.rest`` defines them -- ``ParadexError`` (a definite 4xx),
``RateLimited`` (429), ``UnknownOutcome`` (timeout, transport error, 5xx) -- plus one refinement:
``NotSent`` (a subclass of ``UnknownOutcome``) when the connection could not even be opened, so
the request provably never reached the venue. Every response's ``x-ratelimit-*`` headers and every
429's ``Retry-After`` feed the limiter of the call's scope.

The test crash points (``ROUTER_TEST_CRASH_AT``) live on this path: ``after_sign`` fires once the
signature is in hand and ``OrderSubmitted`` is stored, right before the POST; ``after_submit``
fires when the venue has answered the POST, before the answer is looked at -- a kill -9 between
"sign" and "submit" and between "submit" and "reply".
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import httpx

from services.order_router.counters import BufferedMetrics
from services.order_router.mapping import VenueFill, VenueOrder, VenueOrderSpec, venue_fill, venue_order
from services.order_router.ratelimit import RateLimiter
from services.paradex.private_rest import PrivateRestClient
from services.paradex.rest import ParadexError, RateLimited, UnknownOutcome
from services.runtime import Metrics

log = logging.getLogger("order_router.venue")

T = TypeVar("T")

_NOT_SENT_CAUSES = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class NotSent(UnknownOutcome):
    """The request never left this process (connection refused / could not connect)."""


class SignerFailed(Exception):
    """The signer refused or did not answer; nothing was sent to the venue. ``retryable`` when a
    new request may succeed (no answer, signer rate limit, not ready)."""

    def __init__(self, code: str, reason: str, *, retryable: bool = False) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.retryable = retryable


class Fenced(Exception):
    """This instance no longer holds the account's router lease: no venue write may leave it."""


class Signer(Protocol):
    """What the router needs from the signer process (``services.signer.client.SignerClient``)."""

    async def sign_order(
        self, *, market: str, side: str, order_type: str, size: str, price: str | None, timestamp_ms: int,
        client_ref: str,
    ) -> str: ...

    async def sign_modify(
        self, *, market: str, side: str, order_type: str, size: str, price: str | None, timestamp_ms: int,
        order_id: str, client_ref: str,
    ) -> str: ...

    async def jwt(self, force: bool) -> str: ...


class CrashHooks:
    """``ROUTER_TEST_CRASH_AT=after_sign|after_submit`` (optionally only for client order ids
    starting with ``ROUTER_TEST_CRASH_COID``): ``os._exit(137)`` at that point, like a kill -9."""

    def __init__(self, point: str, coid_prefix: str) -> None:
        self.point = point
        self.coid_prefix = coid_prefix

    def at(self, point: str, coid: str) -> None:
        if self.point == point and coid.startswith(self.coid_prefix):
            sys.stderr.write(f'{{"msg": "test crash point {point} reached for {coid}: exiting 137"}}\n')
            sys.stderr.flush()
            os._exit(137)


class Venue:
    def __init__(
        self,
        rest: PrivateRestClient,
        signer: Signer,
        limiter: RateLimiter,
        metrics: Metrics | BufferedMetrics,
        *,
        recv_window_ms: int,
        hooks: CrashHooks,
        fence: Callable[[], bool] | None = None,
        max_in_flight: int = 32,
    ) -> None:
        self.rest = rest
        self.signer = signer
        self.limiter = limiter
        self.metrics = metrics
        self.recv_window_ms = recv_window_ms
        self.hooks = hooks
        self.fence = fence
        # httpcore's pool scans every queued request on every change (quadratic with a long
        # queue): keep the queue at the pool's size and let the rest wait here, in FIFO order.
        self._slots = asyncio.Semaphore(max_in_flight)

    async def _call(self, scope: str, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        await self.limiter.acquire(scope)
        if scope == "orders" and self.fence is not None and not self.fence():
            self.metrics.inc("venue_calls_total", op=op, outcome="fenced")
            raise Fenced(f"{op}: router lease not held")
        try:
            async with self._slots:
                out = await fn()
        except RateLimited as exc:
            self.limiter.observe(scope, self.rest.rate_limit, rate_limited=True, retry_after=exc.retry_after)
            self.metrics.inc("venue_calls_total", op=op, outcome="rate_limited")
            raise
        except ParadexError:
            self.limiter.observe(scope, self.rest.rate_limit, rate_limited=False, retry_after=None)
            self.metrics.inc("venue_calls_total", op=op, outcome="rejected")
            raise
        except SignerFailed as exc:
            # The JWT could not be had: the request was never sent.
            self.metrics.inc("venue_calls_total", op=op, outcome="no_jwt")
            raise NotSent(f"no JWT from the signer: {exc}", method=op) from exc
        except UnknownOutcome as exc:
            self.metrics.inc("venue_calls_total", op=op, outcome="unknown")
            if isinstance(exc.__cause__, _NOT_SENT_CAUSES):
                raise NotSent(exc.reason, status=exc.status, method=exc.method, path=exc.path) from exc
            raise
        self.limiter.observe(scope, self.rest.rate_limit, rate_limited=False, retry_after=None)
        self.metrics.inc("venue_calls_total", op=op, outcome="ok")
        return out

    # -- signing ----------------------------------------------------------------------------------

    async def sign(self, spec: VenueOrderSpec) -> tuple[str, int]:
        """``(signature, signature_timestamp_ms)`` for one attempt of ``spec``."""
        ts = int(time.time() * 1000)
        sig = await self.signer.sign_order(
            market=spec.market,
            side=spec.side,
            order_type=spec.type,
            size=spec.size,
            price=spec.price,
            timestamp_ms=ts,
            client_ref=spec.client_id,
        )
        return sig, ts

    # -- writes (never retried here) --------------------------------------------------------------

    async def submit(self, spec: VenueOrderSpec, signature: str, ts_ms: int) -> VenueOrder:
        body = spec.body(signature, ts_ms, self.recv_window_ms)
        self.hooks.at("after_sign", spec.client_id)
        raw = await self._call("orders", "submit", lambda: self.rest.submit_order(body))
        self.hooks.at("after_submit", spec.client_id)
        return venue_order(raw)

    async def submit_batch(self, items: list[tuple[VenueOrderSpec, str, int]]) -> dict[str, Any]:
        bodies = [spec.body(sig, ts, self.recv_window_ms) for spec, sig, ts in items]
        for spec, _, _ in items:
            self.hooks.at("after_sign", spec.client_id)
        out = await self._call("orders", "submit_batch", lambda: self.rest.submit_orders_batch(bodies))
        for spec, _, _ in items:
            self.hooks.at("after_submit", spec.client_id)
        return out

    async def modify(self, venue_order_id: str, spec: VenueOrderSpec) -> VenueOrder:
        ts = int(time.time() * 1000)
        sig = await self.signer.sign_modify(
            market=spec.market,
            side=spec.side,
            order_type=spec.type,
            size=spec.size,
            price=spec.price,
            timestamp_ms=ts,
            order_id=venue_order_id,
            client_ref=spec.client_id,
        )
        body: dict[str, Any] = {
            "id": venue_order_id,
            "market": spec.market,
            "side": spec.side,
            "type": spec.type,
            "size": spec.size,
            "price": spec.signed_price,
            "signature": sig,
            "signature_timestamp": ts,
            "recv_window": self.recv_window_ms,
        }
        if spec.trigger_price is not None:
            body["trigger_price"] = spec.trigger_price
        raw = await self._call("orders", "modify", lambda: self.rest.modify_order(venue_order_id, body))
        return venue_order(raw)

    async def cancel(self, venue_order_id: str) -> None:
        await self._call("orders", "cancel", lambda: self.rest.cancel_order(venue_order_id))

    async def cancel_by_client_id(self, client_id: str, market: str | None) -> None:
        await self._call("orders", "cancel", lambda: self.rest.cancel_order_by_client_id(client_id, market))

    async def cancel_all(self, market: str | None) -> None:
        await self._call("orders", "cancel_all", lambda: self.rest.cancel_all_orders(market))

    async def cancel_batch(self, order_ids: list[str], client_ids: list[str]) -> list[dict[str, Any]]:
        return await self._call(
            "orders", "cancel_batch", lambda: self.rest.cancel_orders_batch(order_ids or None, client_ids or None)
        )

    # -- reads --------------------------------------------------------------------------------------

    async def order(self, venue_order_id: str) -> VenueOrder | None:
        """The order by venue id (open or closed), or None when the venue has none."""
        try:
            raw = await self._call("private_get", "get_order", lambda: self.rest.order(venue_order_id))
        except ParadexError as exc:
            if isinstance(exc, RateLimited) or exc.status not in (404,):
                raise
            return None
        return venue_order(raw)

    async def find_by_client_id(self, client_id: str, market: str | None) -> VenueOrder | None:
        """Open orders first, then history (the lookup before any decision on an unknown submit)."""
        try:
            raw = await self._call(
                "private_get", "get_order_by_client_id", lambda: self.rest.order_by_client_id(client_id)
            )
        except ParadexError as exc:
            if isinstance(exc, RateLimited) or exc.status != 404:
                raise
            raw = None
        if raw is not None:
            return venue_order(raw)

        async def history() -> dict[str, Any] | None:
            async for page in self.rest.orders_history(
                {"client_id": client_id, "market": market}, page_size=50, max_pages=2
            ):
                for o in page:
                    if o.get("client_id") == client_id:
                        return o
            return None

        found = await self._call("private_get", "orders_history", history)
        return venue_order(found) if found is not None else None

    async def open_orders(self) -> list[VenueOrder]:
        raw = await self._call("private_get", "open_orders", self.rest.open_orders)
        return [venue_order(o) for o in raw]

    async def fills_since(self, market: str, start_ms: int, max_pages: int = 5) -> AsyncIterator[VenueFill]:
        """Fills of ``market`` created at or after ``start_ms`` (newest pages first, as served)."""
        pages: list[list[dict[str, Any]]] = []

        async def fetch() -> None:
            async for page in self.rest.fills({"market": market, "start_at": start_ms}, max_pages=max_pages):
                pages.append(page)

        await self._call("private_get", "fills", fetch)
        for page in pages:
            for f in page:
                yield venue_fill(f)

    async def account(self) -> dict[str, Any]:
        return await self._call("private_get", "account", self.rest.account)

    async def balances(self) -> list[dict[str, Any]]:
        return await self._call("private_get", "balances", self.rest.balances)
