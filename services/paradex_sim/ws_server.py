"""The WebSocket endpoint ``/v1``: JSON-RPC 2.0 (paradex-api.md §5) -- ``auth``, ``subscribe``,
``unsubscribe``, ``modify_subscription`` and the ``order.*`` methods -- with acks carrying the
request ``id`` and ``usIn``/``usOut``/``usDiff`` (µs), venue error codes, server pings every 55 s
(a pong is expected within 5 s), and cancel-on-disconnect.

Frames of one connection are handled strictly in order (paradex-py sends ``subscribe`` without
waiting for the ``auth`` reply). Malformed input gets a JSON-RPC error, never a dropped connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from services.paradex_sim import ws_orders
from services.paradex_sim.channels import Channel, ChannelError, parse_channel
from services.paradex_sim.context import SimContext
from services.paradex_sim.errors import ApiError
from services.paradex_sim.http_util import json_response
from services.paradex_sim.hub import Conn, notification, rpc_frame
from services.paradex_sim.jwt_tokens import TokenError
from services.paradex_sim.util import dumps, loads

log = logging.getLogger("paradex_sim.ws")


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


After = Callable[[], None] | None


class WsServer:
    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        self.node_id = secrets.token_hex(8)
        self.connections_total = 0
        self._ticks = {m: s.price_tick_size for m, s in ctx.exchange.markets.items()}

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1", self.handle)
        app.router.add_get("/v1/", self.handle)
        return app

    # -- connection ---------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctx = self.ctx
        ip = request.remote or "?"
        if ctx.faults.reject_active and ctx.faults.ws_reject():
            ctx.count("ws_rejected_fault")
            return json_response({"error": "SERVICE_UNAVAILABLE", "message": "injected: connections refused"},
                                 status=503)
        decision = ctx.limiter.check([("ws_connect", ip)])
        if not decision.ok:
            ctx.count("ws_rate_limited")
            return json_response({"error": "RATE_LIMIT_EXCEEDED", "message": "too many connections"}, status=429,
                                 headers=decision.headers())
        ws = web.WebSocketResponse(autoping=False, compress=ctx.cfg.ws_compression, max_msg_size=1 << 20)
        if not ws.can_prepare(request).ok:
            return json_response({"error": "BINDING_ERROR", "message": "a WebSocket upgrade is expected"}, status=400)
        await ws.prepare(request)
        self.connections_total += 1
        loop = asyncio.get_running_loop()
        conn = Conn(ws, ctx.hub, ip, request.transport)
        conn.last_pong = loop.time()
        ctx.hub.add_conn(conn)
        writer = asyncio.create_task(conn.writer(), name=f"ws-writer-{conn.id}")
        pinger = asyncio.create_task(self._pinger(conn), name=f"ws-pinger-{conn.id}")
        try:
            async for msg in ws:
                if conn.closed:
                    break
                if msg.type == WSMsgType.TEXT:
                    self.on_text(conn, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    try:
                        self.on_text(conn, msg.data.decode())
                    except UnicodeDecodeError:
                        self._send_error(conn, None, RpcError(-32700, "Parse error", "binary frame is not UTF-8"), 0)
                elif msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    conn.last_pong = loop.time()
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away: nothing to answer, the connection is cleaned up below
        finally:
            conn.closed = True
            ctx.hub.remove_conn(conn)
            writer.cancel()
            pinger.cancel()
            for task in (writer, pinger):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if conn.cancel_on_disconnect and conn.account:
                acct = ctx.exchange.accounts.get(conn.account)
                if acct is not None:
                    n = len(ctx.exchange.cancel_all(acct))
                    ctx.count("cancel_on_disconnect_orders", n)
        return ws

    async def _pinger(self, conn: Conn) -> None:
        loop = asyncio.get_running_loop()
        interval, timeout = self.ctx.cfg.ws_ping_interval_s, self.ctx.cfg.ws_pong_timeout_s
        while not conn.closed:
            await asyncio.sleep(interval)
            sent = loop.time()
            try:
                await conn.ws.ping(b"")
            except (ConnectionError, RuntimeError):
                return
            await asyncio.sleep(timeout)
            if conn.last_pong < sent and not conn.closed:
                self.ctx.count("ws_pong_timeout")
                await conn.close(1011, "keepalive ping timeout")
                return

    # -- JSON-RPC -----------------------------------------------------------------------------------

    def _send_result(self, conn: Conn, rid: object, result: object, us_in: int) -> None:
        us_out = self.ctx.clock.now_us()
        conn.send(rpc_frame({"jsonrpc": "2.0", "result": result, "usIn": us_in, "usOut": us_out,
                             "usDiff": us_out - us_in, "id": rid}))

    def _send_error(self, conn: Conn, rid: object, err: RpcError, us_in: int) -> None:
        us_out = self.ctx.clock.now_us()
        us_in = us_in or us_out
        error: dict[str, object] = {"code": err.code, "message": err.message}
        if err.data is not None:
            error["data"] = err.data
        conn.send(rpc_frame({"jsonrpc": "2.0", "error": error, "usIn": us_in, "usOut": us_out,
                             "usDiff": us_out - us_in, "id": rid}))

    def on_text(self, conn: Conn, text: str) -> None:
        us_in = self.ctx.clock.now_us()
        try:
            req = loads(text)
        except Exception:  # noqa: BLE001 - any undecodable frame is a parse error, never a crash
            self.ctx.count("ws_parse_error")
            self._send_error(conn, None, RpcError(-32700, "Parse error"), us_in)
            return
        rid = req.get("id") if isinstance(req, dict) else None
        if isinstance(rid, dict | list | float):
            rid = None
        try:
            if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
                raise RpcError(-32600, "Invalid request")
            method: str = req["method"]
            params = req.get("params", {})
            if params is None:
                params = {}
            result, after = self._dispatch(conn, method, params)
        except RpcError as err:
            self._send_error(conn, rid, err, us_in)
            return
        except ApiError as exc:
            code, message, data = ws_orders.api_error_to_rpc(exc)
            self._send_error(conn, rid, RpcError(code, message, data), us_in)
            return
        except Exception as exc:
            self.ctx.problems.report("ws_handler_error", error=repr(exc))
            log.exception("WS handler failed")
            self._send_error(conn, rid, RpcError(-32603, "Internal error"), us_in)
            return
        self._send_result(conn, rid, result, us_in)
        if after is not None:
            after()

    def _dispatch(self, conn: Conn, method: str, params: Any) -> tuple[object, After]:
        if method == "auth":
            return self._auth(conn, params), None
        if method == "subscribe":
            return self._subscribe(conn, params)
        if method == "unsubscribe":
            return self._unsubscribe(conn, params), None
        if method == "modify_subscription":
            return self._modify_subscription(conn, params), None
        fn = ws_orders.METHODS.get(method)
        if fn is None:
            raise RpcError(-32601, "method does not exist", method[:100])
        acct = self._require_auth(conn)
        if method in ws_orders.RATE_LIMITED:
            decision = self.ctx.limiter.check([("orders", acct.address)])
            if not decision.ok:
                raise RpcError(42901, "Rate limit exceeded")
        if method != "order.create_batch" and not isinstance(params, dict):
            raise RpcError(-32602, "Invalid parameters", "params must be an object")
        return fn(self.ctx, conn, acct, params), None

    def _require_auth(self, conn: Conn) -> Any:
        acct = self.ctx.exchange.accounts.get(conn.account) if conn.account else None
        if acct is None:
            if conn.auth_error is not None:
                raise RpcError(*conn.auth_error)
            raise RpcError(40300, "Permission denied", "authentication required")
        return acct

    def _auth(self, conn: Conn, params: Any) -> dict[str, object]:
        if not isinstance(params, dict) or not isinstance(params.get("bearer"), str):
            raise RpcError(-32602, "Invalid parameters", "params.bearer (JWT) is required")
        try:
            claims = self.ctx.jwt.verify(params["bearer"])
        except TokenError as exc:
            conn.auth_error = (40110, "Malformed Bearer Token") if exc.kind == "malformed" else (
                40111, "Invalid Bearer Token")
            raise RpcError(*conn.auth_error, exc.message) from None
        acct = self.ctx.exchange.accounts.get(claims.account)
        if acct is None or acct.internal:
            conn.auth_error = (40111, "Invalid Bearer Token")
            raise RpcError(*conn.auth_error, "unknown account")
        if conn.account and conn.account != acct.address:
            for name in [n for n, k in conn.subs.items() if "|" in k]:
                self.ctx.hub.unsubscribe(conn, name)
        conn.account = acct.address
        conn.auth_error = None
        return {"node_id": self.node_id}

    def _subscribe(self, conn: Conn, params: Any) -> tuple[object, After]:
        if not isinstance(params, dict):
            raise RpcError(-32602, "Invalid parameters", "params must be an object")
        ch = self._channel(params.get("channel"))
        if params.get("base_asset") is not None:
            raise RpcError(-32602, "Invalid parameters", "option channels (base_asset) are not simulated")
        if ch.private:
            self._require_auth(conn)
        if ch.name in conn.subs:
            raise RpcError(-32600, "invalid subscribe request", f"already subscribed to {ch.name}")
        markets = params.get("markets")
        if markets is not None:
            if ch.kind != "markets_summary" or ch.market is not None:
                raise RpcError(-32602, "Invalid parameters", "markets is only valid for the markets_summary channel")
            if not isinstance(markets, list) or any(m not in self.ctx.exchange.markets for m in markets):
                raise RpcError(-32602, "Invalid parameters", "markets must be a list of known markets")
            conn.summary_filter = set(markets)
        self.ctx.hub.subscribe(conn, ch.key(conn.account), ch.name)
        return {"channel": ch.name}, self._initial(conn, ch)

    def _initial(self, conn: Conn, ch: Channel) -> After:
        """What a new subscriber gets right after the ack: the book for book channels."""
        feeds = self.ctx.feeds
        if ch.kind == "book_deltas":
            assert ch.market is not None
            book = self.ctx.exchange.books[ch.market]
            return lambda: conn.send(notification(ch.name, dumps(book.snapshot())))
        if ch.kind == "book_snapshot":
            feeds.snapshot_channels.setdefault(ch.name, ch)
            return lambda: conn.send(notification(ch.name, feeds.snapshot_frame_data(ch)))
        return None

    def _unsubscribe(self, conn: Conn, params: Any) -> dict[str, object]:
        if not isinstance(params, dict) or not isinstance(params.get("channel"), str):
            raise RpcError(-32602, "Invalid parameters", "params.channel is required")
        name = params["channel"]
        if not self.ctx.hub.unsubscribe(conn, name):
            raise RpcError(-32600, "invalid unsubscribe request", f"not subscribed to {name}")
        if name == "markets_summary":
            conn.summary_filter = None
        return {"channel": name}

    def _modify_subscription(self, conn: Conn, params: Any) -> dict[str, object]:
        if not isinstance(params, dict) or params.get("channel") != "markets_summary":
            raise RpcError(-32602, "Invalid parameters", "only markets_summary supports modify_subscription")
        if "markets_summary" not in conn.subs:
            raise RpcError(-32600, "invalid request", "not subscribed to markets_summary")
        add, remove = params.get("add") or [], params.get("remove") or []
        known = self.ctx.exchange.markets
        if not isinstance(add, list) or not isinstance(remove, list) or any(m not in known for m in add + remove):
            raise RpcError(-32602, "Invalid parameters", "add/remove must be lists of known markets")
        current = set(known) if conn.summary_filter is None else set(conn.summary_filter)
        conn.summary_filter = (current | set(add)) - set(remove)
        return {"channel": "markets_summary", "add": add, "remove": remove}

    def _channel(self, name: object) -> Channel:
        try:
            return parse_channel(name, self.ctx.exchange.markets, self._ticks)  # type: ignore[arg-type]
        except ChannelError as exc:
            raise RpcError(exc.code, exc.message, exc.data) from None

    def refresh_markets(self) -> None:
        self._ticks = {m: s.price_tick_size for m, s in self.ctx.exchange.markets.items()}
