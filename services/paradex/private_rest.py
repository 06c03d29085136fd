"""Private Paradex REST endpoints (account, orders, fills, funding payments) on top of ``RestClient``.

The JWT comes from a ``token_provider`` (in this project: the signer, over NATS). A 401 means the
token expired or was revoked: the client asks the provider for a fresh one once (``force=True``)
and repeats the request -- safe for every call here, because a 401 is answered before the venue
acts on anything. Write calls are never retried otherwise: a timeout or 5xx raises
``UnknownOutcome`` and the caller must look the order up (by client id) before trying again.

Paths, envelopes and field names: paradex-api.md §4.6-4.8.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from services.paradex.rest import ParadexError, Params, RestClient

ForceableTokenProvider = Callable[[bool], Awaitable[str]]


class PrivateRestClient(RestClient):
    """``token(force: bool) -> jwt``; ``force=True`` must bypass any cache."""

    def __init__(self, base_url: str, token: ForceableTokenProvider, **kwargs: Any) -> None:
        self._token = token
        self._force_next = False
        super().__init__(base_url, token_provider=self._provide, **kwargs)

    async def _provide(self) -> str:
        force, self._force_next = self._force_next, False
        return await self._token(force)

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return await super().request(method, path, **kwargs)
        except ParadexError as exc:
            if exc.status != 401 or not kwargs.get("auth"):
                raise
            self._force_next = True
            return await super().request(method, path, **kwargs)

    # -- account ------------------------------------------------------------------------------

    async def account(self) -> dict[str, Any]:
        return await self.get("/account", auth=True)

    async def balances(self) -> list[dict[str, Any]]:
        return (await self.get("/balance", auth=True))["results"]

    async def positions(self) -> list[dict[str, Any]]:
        return (await self.get("/positions", auth=True))["results"]

    # -- orders: writes (never retried here) ----------------------------------------------------

    async def submit_order(self, order: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /orders`` -> the order object (normally ``status: NEW``)."""
        return await self.request("POST", "/orders", json=dict(order), auth=True)

    async def submit_orders_batch(self, orders: list[Mapping[str, Any]]) -> dict[str, Any]:
        """``POST /orders/batch`` -> ``{"orders": [...], "errors": [...]}``."""
        return await self.request("POST", "/orders/batch", json=[dict(o) for o in orders], auth=True)

    async def modify_order(self, order_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", f"/orders/{order_id}", json=dict(body), auth=True)

    async def cancel_order(self, order_id: str) -> None:
        await self.request("DELETE", f"/orders/{order_id}", auth=True)

    async def cancel_order_by_client_id(self, client_id: str, market: str | None = None) -> None:
        await self.request("DELETE", f"/orders/by_client_id/{client_id}", params={"market": market}, auth=True)

    async def cancel_all_orders(self, market: str | None = None) -> Any:
        return await self.request("DELETE", "/orders", params={"market": market}, auth=True)

    async def cancel_orders_batch(
        self, order_ids: list[str] | None = None, client_order_ids: list[str] | None = None
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {}
        if order_ids:
            body["order_ids"] = order_ids
        if client_order_ids:
            body["client_order_ids"] = client_order_ids
        return (await self.request("DELETE", "/orders/batch", json=body, auth=True))["results"]

    # -- orders: reads -------------------------------------------------------------------------------

    async def open_orders(self, market: str | None = None) -> list[dict[str, Any]]:
        return (await self.get("/orders", {"market": market}, auth=True))["results"]

    async def order(self, order_id: str) -> dict[str, Any]:
        return await self.get(f"/orders/{order_id}", auth=True)

    async def order_by_client_id(self, client_id: str) -> dict[str, Any] | None:
        """The order with this client id, or None when the venue definitely has no open one.

        The venue documents this endpoint as open-orders-only; callers that need closed orders
        too should also search ``orders_history(client_id=...)``."""
        try:
            return await self.get(f"/orders/by_client_id/{client_id}", auth=True)
        except ParadexError as exc:
            if exc.status == 404 or exc.code in ("CLIENT_ORDER_ID_NOT_FOUND", "ORDER_ID_NOT_FOUND", "NOT_FOUND"):
                return None
            raise

    async def orders_history(
        self, params: Params | None = None, *, page_size: int = 100, max_pages: int | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        async for page in self.paginate("/orders-history", params, page_size=page_size, max_pages=max_pages, auth=True):
            yield page

    async def fills(
        self, params: Params | None = None, *, page_size: int = 100, max_pages: int | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        async for page in self.paginate("/fills", params, page_size=page_size, max_pages=max_pages, auth=True):
            yield page

    async def funding_payments(
        self, market: str, params: Params | None = None, *, page_size: int = 100, max_pages: int | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        query = {"market": market, **(params or {})}
        async for page in self.paginate(
            "/funding/payments", query, page_size=page_size, max_pages=max_pages, auth=True
        ):
            yield page

    async def find_order_by_client_id(self, client_id: str, market: str | None = None) -> dict[str, Any] | None:
        """Open orders first, then history: the lookup to run before retrying an unknown submit."""
        found = await self.order_by_client_id(client_id)
        if found is not None:
            return found
        async for page in self.orders_history({"client_id": client_id, "market": market}, page_size=50, max_pages=2):
            for o in page:
                if o.get("client_id") == client_id:
                    return o
        return None
