"""Paradex REST client (``httpx.AsyncClient``): typed errors, rate-limit tracking, pagination.

Shared by every process that calls the venue's REST API. The public endpoints the feed handler
needs are methods here; private endpoints (orders, fills, account) are added by subclassing
``RestClient`` (or by calling ``request(..., auth=True)``) with a ``token_provider`` that returns a
JWT -- the client adds ``Authorization: Bearer <jwt>`` (paradex-api.md §2, §4).

Outcomes are never ambiguous:

* a 2xx with a readable body returns the decoded JSON (``None`` for 204);
* the venue answering 4xx raises ``ParadexError(status, code, message, data)`` -- a definite
  rejection; 429 raises its subclass ``RateLimited`` (carrying ``retry_after``);
* a timeout, a connection error, any 5xx (503 is the venue's own 30 s timeout) or a 2xx whose body
  cannot be read raises ``UnknownOutcome``: the request may or may not have taken effect. Never
  treat it as a rejection; look the object up instead.

Idempotent GETs are retried (``get_retries``) on ``UnknownOutcome`` and ``RateLimited`` with
full-jitter backoff (honouring ``x-ratelimit-reset``/``Retry-After``); nothing else is retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import msgspec

from bus.stats import Counters

log = logging.getLogger("paradex.rest")

TokenProvider = Callable[[], Awaitable[str]]
Params = Mapping[str, str | int | float | bool | None]


class ParadexError(Exception):
    """The venue answered with an error status: a definite rejection."""

    def __init__(
        self, status: int, code: str, message: str, data: Any = None, *, method: str = "", path: str = ""
    ) -> None:
        super().__init__(f"{method} {path} -> {status} {code}: {message}".strip())
        self.status = status
        self.code = code
        self.message = message
        self.data = data
        self.method = method
        self.path = path


class RateLimited(ParadexError):
    """HTTP 429. ``retry_after`` is seconds to wait (from ``Retry-After``/``x-ratelimit-reset``)."""

    def __init__(self, retry_after: float | None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class UnknownOutcome(Exception):
    """No definite answer (timeout, connection error, 5xx, unreadable 2xx body).

    ``status`` is the HTTP status when one was received. The request may have taken effect.
    """

    def __init__(self, reason: str, *, status: int | None = None, method: str = "", path: str = "") -> None:
        super().__init__(f"{method} {path}: {reason}".strip())
        self.reason = reason
        self.status = status
        self.method = method
        self.path = path


@dataclass
class RateLimitState:
    """The last ``x-ratelimit-*`` values seen (paradex-api.md §4.10); ``None`` when not sent."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None  # Unix seconds when the window resets
    window: float | None = None  # seconds
    retry_after: float | None = None
    updated_at: float = 0.0  # time.time() of the response

    def update(self, headers: httpx.Headers) -> None:
        self.limit = _int(headers.get("x-ratelimit-limit"), self.limit)
        self.remaining = _int(headers.get("x-ratelimit-remaining"), self.remaining)
        self.reset = _float(headers.get("x-ratelimit-reset"), self.reset)
        self.window = _float(headers.get("x-ratelimit-window"), self.window)
        self.retry_after = _float(headers.get("retry-after"), None)
        self.updated_at = time.time()

    def as_details(self) -> dict[str, str]:
        return {
            f"ratelimit_{k}": str(v)
            for k, v in (("limit", self.limit), ("remaining", self.remaining), ("reset", self.reset))
            if v is not None
        }


@dataclass
class RestStats(Counters):
    prefix: ClassVar[str] = "rest_"

    requests: int = 0
    ok: int = 0
    rejected: int = 0
    rate_limited: int = 0
    unknown: int = 0
    retries: int = 0


class _ApiError(msgspec.Struct):
    error: str = ""
    message: str = ""
    data: Any = None


def _int(raw: str | None, default: int | None) -> int | None:
    try:
        return int(float(raw)) if raw is not None else default
    except ValueError:
        return default


def _float(raw: str | None, default: float | None) -> float | None:
    try:
        return float(raw) if raw is not None else default
    except ValueError:
        return default


class RestClient:
    """Async Paradex REST client. ``base_url`` includes ``/v1`` (e.g. ``http://127.0.0.1:8000/v1``)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        get_retries: int = 2,
        token_provider: TokenProvider | None = None,
        headers: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
        max_retry_wait: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.get_retries = get_retries
        self.token_provider = token_provider
        self.max_retry_wait = max_retry_wait
        self.rate_limit = RateLimitState()
        self.stats = RestStats()
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=timeout,
            headers={"User-Agent": "paradex-bus", "Accept": "application/json", **(headers or {})},
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- generic ----------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        auth: bool = False,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One request, no retries. Returns decoded JSON (or None); raises as the module says."""
        url = self.base_url + (path if path.startswith("/") else "/" + path)
        hdrs: dict[str, str] = dict(headers or {})
        if auth:
            if self.token_provider is None:
                raise ValueError(f"{method} {path} needs auth but no token_provider is configured")
            hdrs["Authorization"] = f"Bearer {await self.token_provider()}"
        content: bytes | None = None
        if json is not None:
            content = msgspec.json.encode(json)
            hdrs["Content-Type"] = "application/json"
        clean = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        self.stats.requests += 1
        try:
            resp = await self._client.request(
                method, url, params=clean or None, content=content, headers=hdrs, timeout=timeout or self.timeout
            )
        except httpx.TimeoutException as exc:
            self.stats.unknown += 1
            raise UnknownOutcome(f"timeout ({type(exc).__name__})", method=method, path=path) from exc
        except httpx.HTTPError as exc:
            self.stats.unknown += 1
            raise UnknownOutcome(f"transport error: {exc!r}", method=method, path=path) from exc
        self.rate_limit.update(resp.headers)
        return self._interpret(resp, method, path)

    def _interpret(self, resp: httpx.Response, method: str, path: str) -> Any:
        status = resp.status_code
        if 200 <= status < 300:
            if status == 204 or not resp.content:
                self.stats.ok += 1
                return None
            try:
                out = msgspec.json.decode(resp.content)
            except msgspec.DecodeError as exc:
                self.stats.unknown += 1
                raise UnknownOutcome(
                    f"unreadable {status} body: {resp.content[:200]!r}", status=status, method=method, path=path
                ) from exc
            self.stats.ok += 1
            return out
        if status >= 500:
            self.stats.unknown += 1
            raise UnknownOutcome(f"HTTP {status}: {resp.content[:200]!r}", status=status, method=method, path=path)
        code, message, data = _error_body(resp)
        if status == 429:
            self.stats.rate_limited += 1
            raise RateLimited(
                self._retry_after(),
                status,
                code or "RATE_LIMITED",
                message or "Rate limit exceeded",
                data,
                method=method,
                path=path,
            )
        self.stats.rejected += 1
        raise ParadexError(status, code or _default_code(status), message, data, method=method, path=path)

    def _retry_after(self) -> float | None:
        rl = self.rate_limit
        if rl.retry_after is not None:
            return max(0.0, rl.retry_after)
        if rl.reset is not None:
            return max(0.0, rl.reset - time.time())
        return None

    async def get(
        self, path: str, params: Params | None = None, *, auth: bool = False, retries: int | None = None
    ) -> Any:
        """GET with retries on ``UnknownOutcome`` / ``RateLimited`` (GETs are idempotent)."""
        attempts = (self.get_retries if retries is None else retries) + 1
        for attempt in range(attempts):
            try:
                return await self.request("GET", path, params=params, auth=auth)
            except RateLimited as exc:
                if attempt + 1 >= attempts:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else _backoff(attempt)
            except UnknownOutcome:
                if attempt + 1 >= attempts:
                    raise
                wait = _backoff(attempt)
            self.stats.retries += 1
            await asyncio.sleep(min(self.max_retry_wait, wait) + random.uniform(0, 0.1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def paginate(
        self,
        path: str,
        params: Params | None = None,
        *,
        page_size: int = 100,
        max_pages: int | None = None,
        auth: bool = False,
    ) -> AsyncIterator[list[Any]]:
        """Yield each page's ``results`` following the ``next`` cursor (§2 "List envelope")."""
        query: dict[str, Any] = {**(params or {}), "page_size": page_size}
        pages = 0
        while True:
            body = await self.get(path, query, auth=auth)
            results = body.get("results") if isinstance(body, dict) else None
            if not isinstance(results, list):
                raise UnknownOutcome(f"no results list in page: {str(body)[:200]}", method="GET", path=path)
            yield results
            pages += 1
            cursor = body.get("next")
            if not cursor or (max_pages is not None and pages >= max_pages):
                return
            query["cursor"] = cursor

    # -- public endpoints -------------------------------------------------------------------------

    async def system_config(self) -> dict[str, Any]:
        return await self.get("/system/config")

    async def system_state(self) -> str:
        """``ok`` | ``maintenance`` | ``cancel_only`` | ``post_only``."""
        body = await self.get("/system/state")
        status = body.get("status") if isinstance(body, dict) else None
        if not isinstance(status, str):
            raise UnknownOutcome(f"no status in /system/state: {str(body)[:200]}", method="GET", path="/system/state")
        return status

    async def system_time_ms(self) -> int:
        body = await self.get("/system/time")
        return int(body["server_time"])

    async def markets(self, market: str | None = None) -> list[dict[str, Any]]:
        return _results(await self.get("/markets", {"market": market}), "/markets")

    async def markets_summary(self, market: str = "ALL") -> list[dict[str, Any]]:
        return _results(await self.get("/markets/summary", {"market": market}), "/markets/summary")

    async def orderbook(self, market: str, depth: int | None = None) -> dict[str, Any]:
        return await self.get(f"/orderbook/{market}", {"depth": depth})

    async def bbo(self, market: str) -> dict[str, Any]:
        return await self.get(f"/bbo/{market}")

    async def trades(
        self,
        market: str,
        *,
        start_at: int | None = None,
        end_at: int | None = None,
        page_size: int = 1000,
        max_pages: int | None = 10,
    ) -> list[dict[str, Any]]:
        """Public trades of ``market`` (newest first, as the venue returns them), all pages."""
        out: list[dict[str, Any]] = []
        params = {"market": market, "start_at": start_at, "end_at": end_at}
        async for page in self.paginate("/trades", params, page_size=min(page_size, 1000), max_pages=max_pages):
            out.extend(page)
        return out

    async def funding_data(
        self,
        market: str,
        *,
        start_at: int | None = None,
        end_at: int | None = None,
        page_size: int = 100,
        max_pages: int | None = 1,
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        params = {"market": market, "start_at": start_at, "end_at": end_at}
        async for page in self.paginate("/funding/data", params, page_size=page_size, max_pages=max_pages):
            out.extend(page)
        return out


def _param(v: str | int | float | bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _results(body: Any, path: str) -> list[dict[str, Any]]:
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list):
        raise UnknownOutcome(f"no results list: {str(body)[:200]}", method="GET", path=path)
    return results


def _error_body(resp: httpx.Response) -> tuple[str, str, Any]:
    try:
        body = msgspec.json.decode(resp.content, type=_ApiError)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "", resp.text[:500], None
    return body.error, body.message, body.data


def _default_code(status: int) -> str:
    return {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND"}.get(status, f"HTTP_{status}")


def _backoff(attempt: int) -> float:
    return random.uniform(0, min(0.25 * 2**attempt, 5.0))
