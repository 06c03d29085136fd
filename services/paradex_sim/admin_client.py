"""Async client of the simulator's admin API, for other components' tests and the chaos invariant
checker: ground truth, scripting (market maker, crossing, prices, funding, clock, outside orders),
flow control, rate limits and every fault kind (see ``services.paradex_sim.faults``).

    async with AdminClient(sim.admin_url) as admin:
        await admin.mm_order("BTC-USD-PERP", "SELL", "0.1", "65000")
        await admin.skip_book_seq("BTC-USD-PERP")
        truth = await admin.account(address)
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import aiohttp

Num = str | Decimal | int


class AdminError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"admin API {status}: {body}")
        self.status = status
        self.body = body


def _s(v: Num | None) -> str | None:
    return None if v is None else str(v)


class AdminClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession | None = None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._own = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own and self._session is not None:
            await self._session.close()
            self._session = None

    async def _req(self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.request(method, self.base_url + path, json=json, params=params) as resp:
            body = await resp.json(content_type=None) if resp.content_length != 0 else None
            if resp.status >= 400:
                raise AdminError(resp.status, body)
            return body

    # -- system ---------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return await self._req("GET", "/health")

    async def stats(self) -> dict[str, Any]:
        return await self._req("GET", "/stats")

    async def config(self) -> dict[str, Any]:
        return await self._req("GET", "/config")

    async def state(self) -> str:
        return (await self._req("GET", "/state"))["status"]

    async def set_state(self, status: str, duration_s: float | None = None, revert_to: str | None = None) -> str:
        """ok | maintenance | cancel_only | post_only; with ``duration_s`` it reverts by itself."""
        body: dict[str, Any] = {"status": status}
        if duration_s is not None:
            body["duration_s"] = duration_s
        if revert_to is not None:
            body["revert_to"] = revert_to
        return (await self._req("POST", "/state", body))["status"]

    async def clock(self) -> dict[str, int]:
        return await self._req("GET", "/clock")

    async def set_clock_offset(self, offset_ms: int) -> dict[str, int]:
        return await self._req("POST", "/clock", {"offset_ms": offset_ms})

    async def advance_clock(self, ms: int) -> dict[str, int]:
        """Moves the simulator clock forward (ages JWTs and signature timestamps, accrues funding)."""
        return await self._req("POST", "/clock", {"advance_ms": ms})

    # -- markets, prices, funding ------------------------------------------------------------------

    async def patch_market(self, market: str, **fields: Num) -> dict[str, Any]:
        """Change spec fields (published on the ``markets`` channel as UPDATED)."""
        return await self._req("PATCH", f"/markets/{market}", {k: str(v) for k, v in fields.items()})

    async def set_price(self, market: str, index: Num | None = None, mark: Num | None = None) -> dict[str, Any]:
        body = {k: v for k, v in (("index", _s(index)), ("mark", _s(mark))) if v is not None}
        return await self._req("POST", f"/markets/{market}/price", body)

    async def funding(self, market: str, rate: Num | None = None, accrue_seconds: float | None = None,
                      settle: bool = False, clear_rate: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"settle": settle}
        if rate is not None or clear_rate:
            body["rate"] = _s(rate)
        if accrue_seconds is not None:
            body["accrue_seconds"] = accrue_seconds
        return await self._req("POST", f"/markets/{market}/funding", body)

    # -- ground truth ---------------------------------------------------------------------------

    async def book(self, market: str, orders: bool = False) -> dict[str, Any]:
        return await self._req("GET", f"/truth/book/{market}", params={"orders": "1"} if orders else None)

    async def trades(self, market: str | None = None, after_seq: int = 0) -> list[dict[str, Any]]:
        params = {"after_seq": str(after_seq)}
        if market:
            params["market"] = market
        return (await self._req("GET", "/truth/trades", params=params))["results"]

    async def prices(self) -> list[dict[str, Any]]:
        return (await self._req("GET", "/truth/prices"))["results"]

    async def accounts(self) -> list[dict[str, Any]]:
        return (await self._req("GET", "/truth/accounts"))["results"]

    async def account(self, address: str) -> dict[str, Any]:
        """account summary, balance, positions, open_orders, orders (incl. closed), fills, funding_payments."""
        return await self._req("GET", f"/truth/accounts/{address}")

    # -- scripting ------------------------------------------------------------------------------

    async def outside_order(self, account: str, market: str, side: str, size: Num, price: Num | None = None,
                            type: str = "LIMIT", **extra: Any) -> dict[str, Any]:
        """Place an order on a real account as if from the web UI (no signature, no API call)."""
        body = {"market": market, "side": side, "size": str(size), "type": type, "price": _s(price), **extra}
        return await self._req("POST", f"/accounts/{account}/orders", body)

    async def deposit(self, account: str, amount: Num) -> dict[str, Any]:
        return await self._req("POST", f"/accounts/{account}/balance", {"deposit": str(amount)})

    async def set_balance(self, account: str, amount: Num) -> dict[str, Any]:
        return await self._req("POST", f"/accounts/{account}/balance", {"set": str(amount)})

    async def mm_order(self, market: str, side: str, size: Num, price: Num, **extra: Any) -> dict[str, Any]:
        """A resting order from the admin market maker (an internal account without risk limits)."""
        body = {"market": market, "side": side, "size": str(size), "price": str(price), **extra}
        return await self._req("POST", "/mm/orders", body)

    async def mm_cancel(self, market: str | None = None) -> int:
        return (await self._req("DELETE", "/mm/orders", params={"market": market} if market else None))["cancelled"]

    async def cross(self, market: str, side: str, size: Num, price: Num | None = None) -> dict[str, Any]:
        """Take liquidity with an IOC from the admin taker; returns {"order", "trades"}."""
        body = {"market": market, "side": side, "size": str(size), "price": _s(price)}
        return await self._req("POST", "/mm/cross", body)

    # -- flow -------------------------------------------------------------------------------------

    async def flow(self) -> dict[str, Any]:
        return await self._req("GET", "/flow")

    async def set_flow(self, running: bool | None = None, rate: float | None = None) -> dict[str, Any]:
        body = {k: v for k, v in (("running", running), ("rate", rate)) if v is not None}
        return await self._req("POST", "/flow", body)

    async def pause_flow(self) -> dict[str, Any]:
        return await self.set_flow(running=False)

    async def resume_flow(self, rate: float | None = None) -> dict[str, Any]:
        return await self.set_flow(running=True, rate=rate)

    # -- faults -------------------------------------------------------------------------------------

    async def faults(self) -> list[dict[str, Any]]:
        return (await self._req("GET", "/faults"))["results"]

    async def add_fault(self, kind: str, **scope: Any) -> dict[str, Any]:
        return await self._req("POST", "/faults", {"kind": kind, **scope})

    async def remove_fault(self, fault_id: str) -> None:
        await self._req("DELETE", f"/faults/{fault_id}")

    async def clear_faults(self) -> int:
        return (await self._req("DELETE", "/faults"))["removed"]

    async def stale_channel(self, channel: str, duration_s: float | None = None, count: int | None = None,
                            account: str | None = None) -> dict[str, Any]:
        """Channel (glob) goes silent while the connection stays up."""
        return await self.add_fault("ws_stale", channel=channel, duration_s=duration_s, count=count, account=account)

    async def skip_book_seq(self, market: str, count: int = 1) -> dict[str, Any]:
        return await self.add_fault("book_seq_skip", market=market, count=count)

    async def dup_book_seq(self, market: str, count: int = 1) -> dict[str, Any]:
        return await self.add_fault("book_seq_dup", market=market, count=count)

    async def drop_private(self, channel: str, account: str | None = None, market: str | None = None,
                           count: int | None = 1, duration_s: float | None = None) -> dict[str, Any]:
        """channel: "orders" or "fills"."""
        return await self.add_fault("private_drop", channel=channel, account=account, market=market, count=count,
                                    duration_s=duration_s)

    async def dup_private(self, channel: str, account: str | None = None, market: str | None = None,
                          count: int | None = 1, duration_s: float | None = None) -> dict[str, Any]:
        return await self.add_fault("private_dup", channel=channel, account=account, market=market, count=count,
                                    duration_s=duration_s)

    async def rest_delay(self, path: str, delay_ms: int, method: str | None = None, count: int | None = None,
                         duration_s: float | None = None) -> dict[str, Any]:
        return await self.add_fault("rest_delay", path=path, delay_ms=delay_ms, method=method, count=count,
                                    duration_s=duration_s)

    async def rest_error(self, path: str, status: int = 500, method: str | None = None, count: int | None = 1,
                         duration_s: float | None = None) -> dict[str, Any]:
        return await self.add_fault("rest_error", path=path, status=status, method=method, count=count,
                                    duration_s=duration_s)

    async def rest_timeout(self, path: str, seconds: float = 35.0, method: str | None = None, count: int | None = 1,
                           duration_s: float | None = None) -> dict[str, Any]:
        return await self.add_fault("rest_timeout", path=path, seconds=seconds, method=method, count=count,
                                    duration_s=duration_s)

    async def rest_lost_reply(self, path: str, mode: str = "drop", status: int = 504, method: str | None = None,
                              count: int | None = 1) -> dict[str, Any]:
        """The call takes effect (e.g. the order is placed) but the reply is lost."""
        return await self.add_fault("rest_lost_reply", path=path, mode=mode, status=status, method=method,
                                    count=count)

    async def ws_reject(self, count: int | None = None, duration_s: float | None = None) -> dict[str, Any]:
        return await self.add_fault("ws_reject", count=count, duration_s=duration_s)

    async def drop_ws(self, mode: str = "abort") -> int:
        """Cut every WebSocket connection now ("abort": no close frame; "close": close frame 1011)."""
        return (await self._req("POST", "/ws/drop", {"mode": mode}))["dropped"]

    async def ws_connections(self) -> list[dict[str, Any]]:
        return (await self._req("GET", "/ws/connections"))["results"]

    # -- rate limits ------------------------------------------------------------------------------

    async def rate_limits(self) -> dict[str, Any]:
        return await self._req("GET", "/ratelimits")

    async def set_rate_limits(self, enabled: bool | None = None, scopes: dict[str, list[list[float]]] | None = None,
                              reset: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"reset": reset}
        if enabled is not None:
            body["enabled"] = enabled
        if scopes:
            body["scopes"] = scopes
        return await self._req("POST", "/ratelimits", body)
