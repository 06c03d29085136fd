"""Minimal signed REST and WebSocket JSON-RPC clients for the simulator's own tests, the shared
pytest fixtures and the load test. Signing uses ``services.paradex.signing`` exactly as a real
client would. Not the production client (that lives in ``services/paradex``): no retries, no
reconnects, every reply returned raw so tests can assert on status codes and bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict, deque
from typing import Any

import aiohttp

from services.paradex import signing
from services.paradex_sim.markets import ACCOUNT_CLASS_HASH, PROXY_CLASS_HASH
from services.paradex_sim.util import loads

# The paradex-py SDK test account (paradex-api.md §6.8 C).
SDK_TEST_L2_KEY = 0x543B6CF6C91817A87174AAEA4FB370AC1C694E864D7740D728F8344D53E815
SDK_TEST_ADDRESS = "0x129c135ed63df9353885e292be4426b8ed6122b13c6c0e1bb787288a1f5adfa"
SDK_TEST_L1_ADDRESS = "0xd2c7314539dCe7752c8120af4eC2AA750Cf2035e"


class Reply:
    def __init__(self, status: int, body: Any, headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body!r})"


class SimTrader:
    """One account: onboarding, JWT, signed orders, raw REST calls."""

    def __init__(self, rest_url: str, private_key: int = SDK_TEST_L2_KEY,
                 chain_id: str = "PRIVATE_SN_POTC_SEPOLIA", l1_address: str = SDK_TEST_L1_ADDRESS) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.private_key = private_key
        self.chain_id = chain_id
        self.l1_address = l1_address
        self.public_key = signing.public_key(private_key)
        self.address_int = signing.account_address(self.public_key, ACCOUNT_CLASS_HASH, PROXY_CLASS_HASH)
        self.address = hex(self.address_int)
        self.jwt: str | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SimTrader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self._session

    async def request(self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None,
                      headers: dict[str, str] | None = None, auth: bool = True, data: bytes | None = None) -> Reply:
        h = dict(headers or {})
        if auth and self.jwt:
            h["Authorization"] = f"Bearer {self.jwt}"
        async with self.session.request(method, self.rest_url + path, json=json, params=params, headers=h,
                                        data=data) as resp:
            raw = await resp.read()
            body = loads(raw) if raw else None
            return Reply(resp.status, body, dict(resp.headers))

    # -- onboarding and auth ------------------------------------------------------------------------

    def onboarding_headers(self) -> dict[str, str]:
        r, s = signing.sign(signing.onboarding_hash(self.chain_id, self.address_int), self.private_key)
        return {
            "PARADEX-ETHEREUM-ACCOUNT": self.l1_address,
            "PARADEX-STARKNET-ACCOUNT": self.address,
            "PARADEX-STARKNET-SIGNATURE": signing.format_signature(r, s),
        }

    async def onboard(self) -> Reply:
        return await self.request("POST", "/onboarding", json={"public_key": hex(self.public_key)},
                                  headers=self.onboarding_headers(), auth=False)

    def auth_headers(self, timestamp: int | None = None, expiration: int | None = None) -> dict[str, str]:
        ts = int(time.time()) if timestamp is None else timestamp
        exp = ts + 180 if expiration is None else expiration
        r, s = signing.sign(signing.auth_hash(self.chain_id, self.address_int, ts, exp), self.private_key)
        return {
            "PARADEX-STARKNET-ACCOUNT": self.address,
            "PARADEX-STARKNET-SIGNATURE": signing.format_signature(r, s),
            "PARADEX-TIMESTAMP": str(ts),
            "PARADEX-SIGNATURE-EXPIRATION": str(exp),
        }

    async def auth(self, use_path_key: bool = True) -> Reply:
        path = f"/auth/{hex(self.public_key)}" if use_path_key else "/auth"
        reply = await self.request("POST", path, headers=self.auth_headers(), auth=False)
        if reply.status == 200:
            self.jwt = reply.body["jwt_token"]
        return reply

    async def login(self) -> SimTrader:
        """Onboard (idempotent) and authenticate; raises on failure."""
        for step in (self.onboard, self.auth):
            reply = await step()
            if reply.status != 200:
                raise RuntimeError(f"{step.__name__} failed: {reply}")
        return self

    # -- orders -------------------------------------------------------------------------------------

    def order_body(self, market: str, side: str, size: str, price: str | None = None, type: str = "LIMIT",
                   instruction: str = "GTC", client_id: str = "", timestamp_ms: int | None = None,
                   sign_as: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """A signed order body as paradex-py builds it; ``sign_as`` overrides what gets signed."""
        ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        fields = {"market": market, "side": side, "order_type": type, "size": size, "price": price, "timestamp_ms": ts,
                  **(sign_as or {})}
        key = fields.pop("private_key", self.private_key)
        chain = fields.pop("chain_id", self.chain_id)
        h = signing.order_hash(chain, self.address_int, signing.OrderFields(**fields))
        r, s = signing.sign(h, key)
        body: dict[str, Any] = {"market": market, "side": side, "size": size, "type": type, "client_id": client_id,
                                "instruction": instruction, "signature": signing.format_signature(r, s),
                                "signature_timestamp": ts, "recv_window": None, "stp": None}
        if price is not None:
            body["price"] = price
        body.update(extra)
        return body

    async def place(self, market: str, side: str, size: str, price: str | None = None, **kw: Any) -> Reply:
        return await self.request("POST", "/orders", json=self.order_body(market, side, size, price, **kw))

    def modify_body(self, order_id: str, market: str, side: str, size: str, price: str, type: str = "LIMIT",
                    timestamp_ms: int | None = None) -> dict[str, Any]:
        ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        fields = signing.OrderFields(market, side, type, size, price, ts)
        r, s = signing.sign(signing.modify_hash(self.chain_id, self.address_int, fields, order_id), self.private_key)
        return {"id": order_id, "market": market, "side": side, "type": type, "size": size, "price": price,
                "signature": signing.format_signature(r, s), "signature_timestamp": ts}

    async def modify(self, order_id: str, market: str, side: str, size: str, price: str, **kw: Any) -> Reply:
        return await self.request("PUT", f"/orders/{order_id}",
                                  json=self.modify_body(order_id, market, side, size, price, **kw))

    async def cancel(self, order_id: str) -> Reply:
        return await self.request("DELETE", f"/orders/{order_id}")

    async def cancel_all(self, market: str | None = None) -> Reply:
        return await self.request("DELETE", "/orders", params={"market": market} if market else None)

    async def get(self, path: str, **params: str) -> Reply:
        return await self.request("GET", path, params=params or None)


class SimWs:
    """A WebSocket JSON-RPC client that records everything it receives, per channel, in order."""

    def __init__(self, ws_url: str, compress: bool = False) -> None:
        self.ws_url = ws_url
        self.compress = compress
        self._session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.replies: dict[object, dict[str, Any]] = {}
        self.notes: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        self.raw: list[str] = []
        self.closed = asyncio.Event()
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.keep_raw = True

    async def connect(self, autoping: bool = True) -> SimWs:
        self._session = aiohttp.ClientSession()
        self.ws = await self._session.ws_connect(self.ws_url, autoping=autoping, compress=15 if self.compress else 0,
                                                 max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        return self

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> SimWs:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                if self.keep_raw:
                    self.raw.append(msg.data)
                obj = loads(msg.data)
                if obj.get("method") == "subscription":
                    self.notes[obj["params"]["channel"]].append(obj)
                else:
                    self.replies[obj.get("id")] = obj
                self._changed.set()
        finally:
            self.closed.set()
            self._changed.set()

    async def send_raw(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(text)

    async def call(self, method: str, params: Any = None, timeout: float = 5.0) -> dict[str, Any]:
        self._next_id += 1
        rid = self._next_id
        assert self.ws is not None
        await self.ws.send_json({"jsonrpc": "2.0", "method": method, "params": params or {}, "id": rid})
        return await self.reply(rid, timeout)

    async def reply(self, rid: object, timeout: float = 5.0) -> dict[str, Any]:
        await self.wait_for(lambda: rid in self.replies, timeout)
        return self.replies.pop(rid)

    async def subscribe(self, channel: str, **extra: Any) -> dict[str, Any]:
        return await self.call("subscribe", {"channel": channel, **extra})

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if self.closed.is_set() and not predicate():
                raise ConnectionError("websocket closed")
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError("condition not met in time")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def next(self, channel: str, timeout: float = 5.0, where: Any = None) -> dict[str, Any]:
        """Pop notifications of ``channel`` until one's data satisfies ``where``; returns its data."""
        q = self.notes[channel]
        while True:
            await self.wait_for(lambda: bool(q), timeout)
            data = q.popleft()["params"]["data"]
            if where is None or where(data):
                return data
