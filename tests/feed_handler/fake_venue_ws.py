"""A tiny scriptable JSON-RPC WebSocket server for unit tests of ``services.paradex.ws``.

Not a simulator: it only acks/rejects/ignores ``auth``/``subscribe``/``unsubscribe`` as the test
scripts it, records every request, pushes notifications on demand, and can go silent (stop reading
and writing: a zombie) or drop connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve


@dataclass
class FakeVenueWs:
    valid_tokens: set[str] = field(default_factory=set)
    reject: dict[str, int] = field(default_factory=dict)  # channel -> error code for subscribe
    ignore: set[str] = field(default_factory=set)  # channels whose subscribe is never answered
    requests: list[dict[str, Any]] = field(default_factory=list)
    conns: list[ServerConnection] = field(default_factory=list)
    subscribed: dict[int, set[str]] = field(default_factory=dict)
    connections_total: int = 0
    auth_required: bool = False
    upgrade_headers: list[dict[str, str]] = field(default_factory=list)

    async def start(self) -> FakeVenueWs:
        self._server = await serve(self._handler, "127.0.0.1", 0, ping_interval=None, compression=None)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1"

    async def stop(self) -> None:
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    def methods(self, method: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("method") == method]

    def channels_requested(self, method: str) -> list[str]:
        return [r["params"]["channel"] for r in self.methods(method)]

    async def _handler(self, ws: ServerConnection) -> None:
        self.conns.append(ws)
        self.connections_total += 1
        if ws.request is not None:
            self.upgrade_headers.append({k.lower(): v for k, v in ws.request.headers.raw_items()})
        cid = id(ws)
        self.subscribed[cid] = set()
        authed = False
        try:
            async for raw in ws:
                try:
                    req = json.loads(raw)
                except ValueError:
                    await ws.send(json.dumps({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}}))
                    continue
                self.requests.append(req)
                method, rid, params = req.get("method"), req.get("id"), req.get("params") or {}
                if method == "auth":
                    if params.get("bearer") in self.valid_tokens:
                        authed = True
                        await ws.send(json.dumps({"jsonrpc": "2.0", "result": {"node_id": "n1"}, "id": rid}))
                    else:
                        await ws.send(_err(rid, 40111, "Invalid Bearer Token"))
                elif method == "subscribe":
                    ch = params.get("channel")
                    if ch in self.ignore:
                        continue
                    if self.auth_required and not authed:
                        await ws.send(_err(rid, 40111, "Invalid Bearer Token"))
                    elif ch in self.reject:
                        await ws.send(_err(rid, self.reject[ch], "invalid subscribe request"))
                    elif ch in self.subscribed[cid]:
                        await ws.send(_err(rid, -32600, "already subscribed"))
                    else:
                        self.subscribed[cid].add(ch)
                        await ws.send(json.dumps({"jsonrpc": "2.0", "result": {"channel": ch}, "id": rid}) + "\n")
                elif method == "unsubscribe":
                    ch = params.get("channel")
                    if ch in self.subscribed[cid]:
                        self.subscribed[cid].discard(ch)
                        await ws.send(json.dumps({"jsonrpc": "2.0", "result": {"channel": ch}, "id": rid}))
                    else:
                        await ws.send(_err(rid, -32600, "not subscribed"))
                elif method == "echo":
                    await ws.send(json.dumps({"jsonrpc": "2.0", "result": params, "id": rid}))
                elif method == "fail":
                    await ws.send(_err(rid, 100, "method error"))
                elif method == "silent":
                    pass
                else:
                    await ws.send(_err(rid, -32601, "method does not exist"))
        except Exception:  # noqa: BLE001 - connection gone; the test decides what that means
            pass
        finally:
            self.subscribed.pop(cid, None)
            if ws in self.conns:
                self.conns.remove(ws)

    async def push(self, channel: str, data: Any) -> int:
        """Send a notification to every connection subscribed to ``channel``; returns how many."""
        frame = json.dumps({"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": data}})
        n = 0
        for ws in list(self.conns):
            if channel in self.subscribed.get(id(ws), set()):
                with contextlib.suppress(Exception):
                    await ws.send(frame + "\n")
                    n += 1
        return n

    async def send_raw(self, text: str | bytes) -> None:
        for ws in list(self.conns):
            with contextlib.suppress(Exception):
                await ws.send(text)

    def drop_all(self) -> None:
        for ws in list(self.conns):
            ws.transport.abort()

    def go_silent(self) -> None:
        """Stop reading (so pings are never answered) and never write again: a zombie."""
        for ws in list(self.conns):
            ws.transport.pause_reading()

    async def ping_clients(self) -> list[float]:
        """Ping every client and wait for the pongs (the client library answers them)."""
        waiters = [await ws.ping() for ws in list(self.conns)]
        return list(await asyncio.wait_for(asyncio.gather(*waiters), 2))


def _err(rid: Any, code: int, message: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": rid, "usIn": 1, "usOut": 2})
