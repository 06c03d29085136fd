"""``services.paradex.rest.RestClient`` against a local aiohttp server scripted per test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from services.paradex.rest import ParadexError, RateLimited, RestClient, UnknownOutcome


class Server:
    def __init__(self) -> None:
        self.app = web.Application()
        self.hits: dict[str, int] = {}
        self.seen_headers: list[dict[str, str]] = []
        self.seen_queries: list[dict[str, str]] = []
        self.fail_first: dict[str, tuple[int, int]] = {}  # path -> (status, times)
        r = self.app.router
        r.add_get("/v1/system/state", self.state)
        r.add_get("/v1/markets", self.markets)
        r.add_get("/v1/trades", self.trades)
        r.add_get("/v1/err400", self.err400)
        r.add_get("/v1/err401", self.err401)
        r.add_get("/v1/err429", self.err429)
        r.add_get("/v1/err503", self.err503)
        r.add_get("/v1/slow", self.slow)
        r.add_get("/v1/garbage", self.garbage)
        r.add_get("/v1/private", self.private)
        r.add_post("/v1/orders", self.orders)
        r.add_delete("/v1/orders/1", self.no_content)

    async def start(self) -> Server:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _count(self, request: web.Request) -> int:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        self.seen_headers.append(dict(request.headers))
        self.seen_queries.append(dict(request.query))
        return self.hits[request.path]

    def _maybe_fail(self, request: web.Request, n: int) -> web.Response | None:
        status, times = self.fail_first.get(request.path, (0, 0))
        if n <= times:
            return web.json_response({"error": "X", "message": "scripted"}, status=status)
        return None

    async def state(self, request: web.Request) -> web.Response:
        n = self._count(request)
        return self._maybe_fail(request, n) or web.json_response(
            {"status": "ok"},
            headers={
                "x-ratelimit-limit": "1500",
                "x-ratelimit-remaining": "1499",
                "x-ratelimit-reset": "1900000000",
                "x-ratelimit-window": "60",
            },
        )

    async def markets(self, request: web.Request) -> web.Response:
        self._count(request)
        rows = [{"symbol": "BTC-USD-PERP"}, {"symbol": "ETH-USD-PERP"}]
        if request.query.get("market"):
            rows = [r for r in rows if r["symbol"] == request.query["market"]]
        return web.json_response({"results": rows})

    async def trades(self, request: web.Request) -> web.Response:
        self._count(request)
        cursor = request.query.get("cursor")
        page = int(cursor) if cursor else 0
        size = int(request.query["page_size"])
        rows = [{"id": str(i)} for i in range(page * size, min(7, (page + 1) * size))]
        nxt = str(page + 1) if (page + 1) * size < 7 else None
        return web.json_response({"next": nxt, "prev": None, "results": rows})

    async def err400(self, request: web.Request) -> web.Response:
        self._count(request)
        return web.json_response({"error": "INVALID_SYMBOL", "message": "bad market", "data": {"m": "x"}}, status=400)

    async def err401(self, request: web.Request) -> web.Response:
        self._count(request)
        return web.json_response({"message": "invalid bearer jwt: token is expired by 9s"}, status=401)

    async def err429(self, request: web.Request) -> web.Response:
        n = self._count(request)
        if n <= 1:
            return web.Response(status=429, text="slow down", headers={"Retry-After": "0.2"})
        return web.json_response({"ok": n})

    async def err503(self, request: web.Request) -> web.Response:
        self._count(request)
        return web.json_response({"error": "SERVICE_UNAVAILABLE", "message": "timeout"}, status=503)

    async def slow(self, request: web.Request) -> web.Response:
        self._count(request)
        await asyncio.sleep(2)
        return web.json_response({})

    async def garbage(self, request: web.Request) -> web.Response:
        self._count(request)
        return web.Response(status=200, text="<html>not json")

    async def private(self, request: web.Request) -> web.Response:
        self._count(request)
        return web.json_response({"auth": request.headers.get("Authorization")})

    async def orders(self, request: web.Request) -> web.Response:
        n = self._count(request)
        if n == 1:
            return web.json_response({"error": "INTERNAL_ERROR", "message": "boom"}, status=500)
        return web.json_response(await request.json(), status=201)

    async def no_content(self, request: web.Request) -> web.Response:
        self._count(request)
        return web.Response(status=204)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = await Server().start()
    yield s
    await s.runner.cleanup()


async def test_public_endpoints_and_rate_limit_headers(server: Server) -> None:
    async with RestClient(server.url) as rest:
        assert await rest.system_state() == "ok"
        assert rest.rate_limit.limit == 1500 and rest.rate_limit.remaining == 1499
        assert rest.rate_limit.reset == 1_900_000_000 and rest.rate_limit.window == 60
        assert [m["symbol"] for m in await rest.markets()] == ["BTC-USD-PERP", "ETH-USD-PERP"]
        assert [m["symbol"] for m in await rest.markets("ETH-USD-PERP")] == ["ETH-USD-PERP"]
        assert rest.rate_limit.as_details()["ratelimit_limit"] == "1500"


async def test_pagination_follows_cursor(server: Server) -> None:
    async with RestClient(server.url) as rest:
        rows = await rest.trades("BTC-USD-PERP", page_size=3, start_at=5)
        assert [r["id"] for r in rows] == [str(i) for i in range(7)]
        assert server.hits["/v1/trades"] == 3
        assert server.seen_queries[0]["start_at"] == "5" and server.seen_queries[0]["market"] == "BTC-USD-PERP"
        pages = [p async for p in rest.paginate("/trades", {"market": "X"}, page_size=3, max_pages=2)]
        assert len(pages) == 2


async def test_4xx_is_a_typed_rejection(server: Server) -> None:
    async with RestClient(server.url) as rest:
        with pytest.raises(ParadexError) as e:
            await rest.get("/err400")
        assert (e.value.status, e.value.code, e.value.message, e.value.data) == (
            400,
            "INVALID_SYMBOL",
            "bad market",
            {"m": "x"},
        )
        assert server.hits["/v1/err400"] == 1  # rejections are not retried
        with pytest.raises(ParadexError) as e:
            await rest.get("/err401")
        assert e.value.status == 401 and e.value.code == "UNAUTHORIZED" and "expired" in e.value.message
        assert rest.stats.rejected == 2


async def test_5xx_timeout_garbage_are_unknown_outcomes(server: Server) -> None:
    async with RestClient(server.url, timeout=0.3, get_retries=1) as rest:
        with pytest.raises(UnknownOutcome) as e:
            await rest.get("/err503")
        assert e.value.status == 503
        assert server.hits["/v1/err503"] == 2  # GET retried once
        with pytest.raises(UnknownOutcome) as e:
            await rest.request("GET", "/slow")
        assert e.value.status is None and "timeout" in e.value.reason
        with pytest.raises(UnknownOutcome) as e:
            await rest.request("GET", "/garbage")
        assert e.value.status == 200
        assert not isinstance(e.value, ParadexError)
    async with RestClient("http://127.0.0.1:1/v1", timeout=0.3, get_retries=0) as rest:
        with pytest.raises(UnknownOutcome) as e:
            await rest.system_state()
        assert "transport" in e.value.reason


async def test_429_retried_after_retry_after_for_gets(server: Server) -> None:
    async with RestClient(server.url) as rest:
        t0 = time.monotonic()
        assert await rest.get("/err429") == {"ok": 2}
        assert time.monotonic() - t0 >= 0.2
        assert rest.stats.rate_limited == 1 and rest.stats.retries == 1
    server.hits.clear()
    async with RestClient(server.url) as rest:
        with pytest.raises(RateLimited) as e:
            await rest.request("GET", "/err429")
        assert e.value.status == 429 and e.value.retry_after == pytest.approx(0.2)


async def test_non_get_never_retried_and_auth_header(server: Server) -> None:
    async def token() -> str:
        return "jwt-123"

    async with RestClient(server.url, token_provider=token) as rest:
        with pytest.raises(UnknownOutcome) as e:
            await rest.request("POST", "/orders", json={"market": "BTC-USD-PERP", "size": "0.1"})
        assert e.value.status == 500 and server.hits["/v1/orders"] == 1
        assert await rest.request("POST", "/orders", json={"size": "0.1"}) == {"size": "0.1"}
        assert await rest.request("DELETE", "/orders/1") is None
        assert await rest.get("/private", auth=True) == {"auth": "Bearer jwt-123"}
    async with RestClient(server.url) as rest:
        with pytest.raises(ValueError, match="token_provider"):
            await rest.get("/private", auth=True)


async def test_get_retries_recover_from_a_transient_5xx(server: Server) -> None:
    server.fail_first["/v1/system/state"] = (502, 2)
    async with RestClient(server.url, get_retries=2) as rest:
        assert await rest.system_state() == "ok"
        assert server.hits["/v1/system/state"] == 3
