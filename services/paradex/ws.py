"""Paradex JSON-RPC 2.0 WebSocket client: connection and subscription state machines.

Shared by every process that talks to the venue's WebSocket (feed handler, order router). What it
does (paradex-api.md §5, §7.4; nautilus-model.md §3.3 and §5 for the failure modes it guards
against):

* **Connection state machine** ``Disconnected → Connecting → Connected [→ Authenticating →
  Authenticated] → (drop) → Reconnecting → …``, plus ``Degraded`` while some subscription has used
  up its fast retries. Every transition is logged and passed to ``on_state(old, new)``.
* **Reconnects forever** with exponential backoff and jitter (reset once a connection stayed up
  ``stable_after`` seconds). The venue's protocol pings are answered by the websockets library; we
  send our own pings and treat *any* frame, including their pongs, as liveness: no frame for
  ``zombie_timeout`` seconds drops the connection (a zombie that is open but carries nothing).
* **Auth** (optional): ``jwt_provider()`` is awaited on every (re)connect so each connection gets a
  fresh JWT; a ``40110/40111`` on auth or on a subscribe forces a reconnect with a new token.
* **Subscriptions** per channel: ``Pending → Active`` on the venue's ack; an error or an ack
  timeout makes it ``Failed`` and schedules a retry (exponential backoff); after
  ``sub_max_retries`` the client is ``Degraded`` and the channel keeps being retried every
  ``degraded_retry_interval`` until it is acked. Everything is resubscribed after a reconnect. An
  application-level ``idle_timeout`` per channel detects an acked stream that went silent and
  resubscribes it (unsubscribe + subscribe, the only way to get a fresh book snapshot).
* **Dispatch** by exact ``params.channel`` to a synchronous handler, in the reader: no task per
  message. Frames are parsed with ``msgspec.json`` into a struct whose ``data`` stays raw JSON, so
  each handler decodes only what it needs. Malformed frames and handler errors are counted and
  reported, never raised.
* **Generic requests** (``call``) for JSON-RPC methods such as ``order.create``: a venue error raises
  ``RpcError`` (a rejection); a timeout or a dropped connection raises ``WsUnknownOutcome``; no
  connection raises ``NotConnected`` (nothing was sent).

Typical use::

    ws = WsClient(url, on_state=lambda old, new: ..., report=problems.report)
    ws.subscribe("trades.BTC-USD-PERP", on_trade, idle_timeout=None)
    ws.subscribe("order_book.BTC-USD-PERP.deltas", on_book, idle_timeout=30)
    await ws.start()
    ...
    ws.request_resubscribe("order_book.BTC-USD-PERP.deltas", "seq gap")
    await ws.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection, connect

from services.paradex.ws_types import (
    AUTH_ERROR_CODES,
    ConnState,
    Frame,
    Handler,
    NotConnected,
    RpcError,
    Subscription,
    SubState,
    WsConfig,
    WsStats,
    WsUnknownOutcome,
)

log = logging.getLogger("paradex.ws")

JwtProvider = Callable[[], Awaitable[str]]
StateCallback = Callable[[ConnState, ConnState], None]
SubStateCallback = Callable[[str, SubState, SubState], None]
Reporter = Callable[..., None]

_frame_decoder = msgspec.json.Decoder(Frame)
_encoder = msgspec.json.Encoder()


@dataclass(eq=False)
class _Request:
    kind: str  # "subscribe" | "unsubscribe" | "call"
    channel: str
    sent_at: float
    future: asyncio.Future[Any] | None = None


class _AuthFailed(Exception):
    pass


def _default_report(kind: str, **ctx: object) -> None:
    log.warning("%s %s", kind, " ".join(f"{k}={v}" for k, v in ctx.items()))


class WsClient:
    """A self-healing JSON-RPC WebSocket client for one venue endpoint. See the module docstring.

    Arguments: ``url``; ``name`` (logs); ``config`` (``WsConfig`` timings and retry policy);
    ``jwt_provider`` (async, returns a fresh JWT; called once per connection; enables the ``auth``
    step); ``bearer_header`` (also send that JWT as ``Authorization: Bearer`` on the upgrade, as
    paradex-py does); ``headers`` (extra upgrade headers); ``on_state(old, new)`` and
    ``on_sub_state(channel, old, new)`` observers; ``on_connected()`` -- called on every (re)connect
    once the socket is ready (authenticated) and before the channels are resubscribed, e.g. to
    re-arm ``order.cancel_on_disconnect`` with ``call`` from a task; ``report(kind, **ctx)`` --
    where problems are counted (the runtime's ``problems.report``).
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "paradex-ws",
        config: WsConfig | None = None,
        jwt_provider: JwtProvider | None = None,
        on_state: StateCallback | None = None,
        on_sub_state: SubStateCallback | None = None,
        on_connected: Callable[[], None] | None = None,
        report: Reporter | None = None,
        headers: dict[str, str] | None = None,
        bearer_header: bool = False,
    ) -> None:
        self.url = url
        self.name = name
        self.config = config or WsConfig()
        self.jwt_provider = jwt_provider
        self.on_state = on_state
        self.on_sub_state = on_sub_state
        self.on_connected = on_connected
        self.report: Reporter = report or _default_report
        self.headers = dict(headers or {})
        self.bearer_header = bearer_header
        self.stats = WsStats()
        self.node_id: str | None = None
        self._state = ConnState.DISCONNECTED
        self._subs: dict[str, Subscription] = {}
        self._pending: dict[int, _Request] = {}
        self._next_id = 0
        self._ws: ClientConnection | None = None
        self._ready = False  # connected (and authenticated when a jwt provider is set)
        self._authenticated = False
        self._closed = False
        self._run_task: asyncio.Task[None] | None = None
        self._maint_task: asyncio.Task[None] | None = None
        self._bg: set[asyncio.Task[Any]] = set()
        self._ready_event = asyncio.Event()
        self._last_rx = 0.0
        self._last_ping = 0.0
        self._connected_at = 0.0
        self._force_reauth = False

    # -- public API ------------------------------------------------------------------------------

    @property
    def state(self) -> ConnState:
        return self._state

    @property
    def connected(self) -> bool:
        """True once the socket is open (and authenticated, when auth is configured)."""
        return self._ready

    def subscription_states(self) -> dict[str, str]:
        return {ch: s.state.value for ch, s in self._subs.items()}

    def subscription(self, channel: str) -> Subscription | None:
        return self._subs.get(channel)

    @property
    def channels(self) -> list[str]:
        return list(self._subs)

    def subscribe(
        self,
        channel: str,
        handler: Handler,
        *,
        params: dict[str, Any] | None = None,
        idle_timeout: float | None = None,
    ) -> Subscription:
        """Register ``channel`` (sent now if connected, else on connect) and return its state.

        ``params`` defaults to ``{"channel": channel}``; pass e.g. ``{"channel": "markets_summary",
        "markets": [...]}`` for scoped subscriptions (notifications then carry ``channel``).
        ``idle_timeout`` (seconds) resubscribes the channel when it is acked but silent that long.
        """
        if channel in self._subs:
            raise ValueError(f"already subscribed to {channel!r}")
        sub = Subscription(channel, handler, params or {"channel": channel}, idle_timeout)
        self._subs[channel] = sub
        self._emit_sub_state(sub, SubState.PENDING, force=True)
        if self._ready:
            self._spawn(self._send_subscribe(sub))
        return sub

    async def unsubscribe(self, channel: str) -> None:
        """Forget ``channel`` and tell the venue (errors such as "not subscribed" are ignored)."""
        sub = self._subs.pop(channel, None)
        if sub is None:
            return
        if self._ready:
            await self._unsubscribe_wire(sub.channel, sub.params)
        self._recompute_state()

    def request_resubscribe(self, channel: str, reason: str) -> bool:
        """Schedule unsubscribe + subscribe of ``channel`` (e.g. after a book seq gap).

        Safe to call from a handler; coalesced while one is already running. Returns False when
        the channel is unknown or a resubscribe is already in progress.
        """
        sub = self._subs.get(channel)
        if sub is None or sub.busy:
            return False
        self.stats.resubscribes += 1
        log.info("%s: resubscribing %s (%s)", self.name, channel, reason)
        sub.busy = True
        self._spawn(self._resubscribe(sub))
        return True

    async def resubscribe(self, channel: str, reason: str) -> None:
        """Unsubscribe + subscribe ``channel`` and wait until the subscribe request is sent."""
        sub = self._subs.get(channel)
        if sub is None:
            raise KeyError(channel)
        while sub.busy:
            await asyncio.sleep(self.config.tick)
        self.stats.resubscribes += 1
        log.info("%s: resubscribing %s (%s)", self.name, channel, reason)
        sub.busy = True
        await self._resubscribe(sub)

    async def call(self, method: str, params: Any, timeout: float | None = None) -> Any:
        """Send one JSON-RPC request and return its ``result`` (decoded JSON).

        Raises ``RpcError`` (the venue said no), ``WsUnknownOutcome`` (sent, no answer) or
        ``NotConnected`` (not sent).
        """
        if not self._ready or self._ws is None:
            raise NotConnected(f"{self.name}: not connected")
        return await self._call_on(self._ws, method, params, timeout or self.config.call_timeout)

    async def start(self) -> None:
        """Start connecting in the background (returns at once; see ``wait_connected``)."""
        if self._run_task is None:
            self._closed = False
            self._run_task = asyncio.create_task(self._run(), name=f"{self.name}-run")
            self._maint_task = asyncio.create_task(self._maintenance(), name=f"{self.name}-maint")

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._ready_event.wait(), timeout)

    async def wait_active(self, channel: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            sub = self._subs.get(channel)
            if sub is not None and sub.state is SubState.ACTIVE:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{channel} not active after {timeout}s")
            await asyncio.sleep(0.02)

    def drop_connection(self, reason: str = "requested") -> None:
        """Abort the current connection (the client reconnects). For tests and operators."""
        ws = self._ws
        if ws is not None:
            log.warning("%s: dropping connection (%s)", self.name, reason)
            ws.transport.abort()

    async def close(self) -> None:
        """Stop for good: close the socket, fail pending requests, state ``Disconnected``."""
        self._closed = True
        tasks = [t for t in (self._run_task, self._maint_task) if t is not None]
        tasks.extend(self._bg)
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._run_task = self._maint_task = None
        self._on_disconnect("closed")
        self._set_state(ConnState.DISCONNECTED)

    # -- connection loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        first = True
        while not self._closed:
            self._set_state(ConnState.CONNECTING if first else ConnState.RECONNECTING)
            first = False
            token: str | None = None
            if self.jwt_provider is not None and self.bearer_header:
                try:
                    token = await self.jwt_provider()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - user code (a signer request ...)
                    self.stats.auth_failures += 1
                    self.report("ws_jwt_provider_failed", error=repr(exc))
                    await self._sleep_backoff(attempt)
                    attempt += 1
                    continue
            headers = dict(self.headers)
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            try:
                ws = await connect(
                    self.url,
                    open_timeout=self.config.open_timeout,
                    ping_interval=None,  # we run our own pings (zombie detection counts pongs)
                    ping_timeout=None,
                    close_timeout=1.0,
                    compression=self.config.compression,
                    max_size=self.config.max_size,
                    max_queue=self.config.max_queue,
                    additional_headers=headers or None,
                    user_agent_header=self.config.user_agent,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any connect failure means "try again later"
                self.stats.connect_failures += 1
                self.report("ws_connect_failed", url=self.url, error=repr(exc), attempt=attempt)
                await self._sleep_backoff(attempt)
                attempt += 1
                continue
            self.stats.connects += 1
            try:
                await self._serve(ws, token)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    ws.transport.abort()
                raise
            except _AuthFailed:
                pass  # already reported and counted where it was raised; reconnect with a fresh JWT
            except Exception as exc:  # noqa: BLE001 - never let one connection kill the loop
                self.report("ws_connection_error", error=repr(exc))
            finally:
                self._on_disconnect("connection closed")
            if self._closed:
                break
            self.stats.disconnects += 1
            stable = time.monotonic() - self._connected_at >= self.config.stable_after
            attempt = 0 if stable and not self._force_reauth else attempt
            await self._sleep_backoff(attempt)
            attempt += 1

    async def _sleep_backoff(self, attempt: int) -> None:
        c = self.config
        delay = min(c.backoff_max, c.backoff_initial * (c.backoff_factor**attempt))
        delay *= 1.0 - c.jitter * random.random()
        if delay > 0 and not self._closed:
            self._set_state(ConnState.RECONNECTING)
            await asyncio.sleep(delay)

    async def _serve(self, ws: ClientConnection, token: str | None) -> None:
        """One connection's life: reader, optional auth, subscribe everything, read until closed."""
        self._ws = ws
        now = time.monotonic()
        self._last_rx = self._connected_at = self._last_ping = now
        self._authenticated = False
        self._set_state(ConnState.CONNECTED)
        reader = asyncio.create_task(self._reader(ws), name=f"{self.name}-reader")
        try:
            if self.jwt_provider is not None:
                self._set_state(ConnState.AUTHENTICATING)
                await self._authenticate(ws, token)
                self._authenticated = True
            self._force_reauth = False
            self._ready = True
            self._ready_event.set()
            self._recompute_state()
            log.info("%s: connected to %s (%d channels to subscribe)", self.name, self.url, len(self._subs))
            if self.on_connected is not None:
                try:
                    self.on_connected()
                except Exception as exc:  # noqa: BLE001 - a callback must not break the connection
                    self.report("ws_callback_error", callback="on_connected", error=repr(exc))
            for sub in list(self._subs.values()):
                await self._send_subscribe(sub)
            await reader
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
            with contextlib.suppress(Exception):
                ws.transport.abort()

    async def _authenticate(self, ws: ClientConnection, token: str | None) -> None:
        assert self.jwt_provider is not None
        try:
            if token is None:
                token = await self.jwt_provider()
            result = await self._call_on(ws, "auth", {"bearer": token}, self.config.auth_timeout)
        except RpcError as exc:
            self.stats.auth_failures += 1
            self._force_reauth = True
            self.report("ws_auth_rejected", code=exc.code, message=exc.message)
            raise _AuthFailed from exc
        except (WsUnknownOutcome, NotConnected) as exc:
            self.stats.auth_failures += 1
            self.report("ws_auth_no_answer", error=repr(exc))
            raise _AuthFailed from exc
        except Exception as exc:  # the provider is user code (a signer request ...)
            self.stats.auth_failures += 1
            self.report("ws_jwt_provider_failed", error=repr(exc))
            raise _AuthFailed from exc
        if isinstance(result, dict) and isinstance(result.get("node_id"), str):
            self.node_id = result["node_id"]

    def _on_disconnect(self, reason: str) -> None:
        was_ready = self._ready
        self._ws = None
        self._ready = False
        self._authenticated = False
        self._ready_event.clear()
        for req in self._pending.values():
            if req.future is not None and not req.future.done():
                req.future.set_exception(WsUnknownOutcome(f"{self.name}: {reason} before the answer"))
        self._pending.clear()
        for sub in self._subs.values():
            sub.req_id = None
            if sub.state is not SubState.PENDING:
                old = sub.state
                sub.state = SubState.PENDING
                self._emit_sub_state(sub, old)
        if was_ready:
            log.warning("%s: disconnected (%s)", self.name, reason)

    # -- reading ----------------------------------------------------------------------------------

    async def _reader(self, ws: ClientConnection) -> None:
        stats = self.stats
        subs = self._subs
        decode = _frame_decoder.decode
        monotonic = time.monotonic
        yield_every = max(1, self.config.yield_every)
        burst = 0
        try:
            while True:
                data = await ws.recv(decode=False)
                burst += 1
                if burst >= yield_every:
                    burst = 0
                    await asyncio.sleep(0)
                now = monotonic()
                self._last_rx = now
                stats.frames_in += 1
                stats.bytes_in += len(data)
                try:
                    frame = decode(data)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    stats.malformed += 1
                    self.report("ws_malformed_frame", error=str(exc), frame=bytes(data[:200]))
                    continue
                params = frame.params
                if params is not None and frame.method == "subscription":
                    sub = subs.get(params.channel)
                    if sub is None:
                        stats.unknown_channel += 1
                        self.report("ws_unknown_channel", channel=params.channel)
                        continue
                    sub.last_msg = now
                    sub.messages += 1
                    stats.messages += 1
                    try:
                        sub.handler(params.channel, params.data)
                    except Exception as exc:  # noqa: BLE001 - one bad message must not stop the feed
                        stats.handler_errors += 1
                        self.report("ws_handler_error", channel=params.channel, error=repr(exc))
                elif frame.id is not None:
                    self._on_response(frame)
                else:
                    stats.unexpected_frames += 1
                    self.report("ws_unexpected_frame", frame=bytes(data[:200]))
        except websockets.ConnectionClosed as exc:
            if not self._closed:
                self.report("ws_closed", code=exc.rcvd.code if exc.rcvd else None, reason=str(exc))

    def _on_response(self, frame: Frame) -> None:
        rid = frame.id
        req = self._pending.pop(rid, None) if isinstance(rid, int) else None
        if req is None:
            self.stats.late_acks += 1
            self.report("ws_unmatched_response", id=rid)
            return
        err = frame.error
        if req.future is not None:
            if req.future.done():
                return
            if err is not None:
                req.future.set_exception(RpcError(err.code, err.message, err.data))
            else:
                req.future.set_result(msgspec.json.decode(frame.result) if frame.result else None)
            return
        if req.kind != "subscribe":
            return
        sub = self._subs.get(req.channel)
        if sub is None or sub.req_id != rid:
            self.stats.late_acks += 1
            self.report("ws_late_ack", channel=req.channel, error=err.message if err else "")
            if sub is None and err is None and self._ready:
                # Acked after we dropped the channel: undo it, or its data would keep coming.
                self._spawn(self._unsubscribe_wire(req.channel, {"channel": req.channel}))
            return
        sub.req_id = None
        if err is not None:
            self._sub_failed(sub, f"{err.code}: {err.message}" + (f" ({err.data})" if err.data else ""))
            if err.code in AUTH_ERROR_CODES:
                self._force_reauth = True
                self.drop_connection(f"subscribe answered {err.code}: reconnecting with a fresh JWT")
            return
        old = sub.state
        sub.state = SubState.ACTIVE
        sub.active_since = time.monotonic()
        sub.failures = 0
        sub.last_error = ""
        if sub.exhausted:
            sub.exhausted = False
            log.info("%s: %s recovered", self.name, sub.channel)
        self._emit_sub_state(sub, old)
        self._recompute_state()

    # -- requests ---------------------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def _call_on(self, ws: ClientConnection, method: str, params: Any, timeout: float) -> Any:
        rid = self._new_id()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = _Request("call", method, time.monotonic(), fut)
        try:
            await ws.send(_encoder.encode({"jsonrpc": "2.0", "method": method, "params": params, "id": rid}).decode())
        except websockets.ConnectionClosed as exc:
            self._pending.pop(rid, None)
            raise WsUnknownOutcome(f"{method}: connection closed while sending") from exc
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError as exc:
            raise WsUnknownOutcome(f"{method}: no answer within {timeout}s") from exc
        finally:
            self._pending.pop(rid, None)

    async def _send_subscribe(self, sub: Subscription) -> None:
        ws = self._ws
        if ws is None or not self._ready or self._subs.get(sub.channel) is not sub or sub.req_id is not None:
            return
        rid = self._new_id()
        now = time.monotonic()
        self._pending[rid] = _Request("subscribe", sub.channel, now)
        sub.req_id = rid
        sub.sent_at = now
        if sub.state is not SubState.PENDING:
            old = sub.state
            sub.state = SubState.PENDING
            self._emit_sub_state(sub, old)
        frame = {"jsonrpc": "2.0", "method": "subscribe", "params": sub.params, "id": rid}
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(_encoder.encode(frame).decode())

    async def _unsubscribe_wire(self, channel: str, params: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            return
        rid = self._new_id()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = _Request("unsubscribe", channel, time.monotonic(), fut)
        un_params = {"channel": params.get("channel", channel)}
        try:
            await ws.send(
                _encoder.encode({"jsonrpc": "2.0", "method": "unsubscribe", "params": un_params, "id": rid}).decode()
            )
            await asyncio.wait_for(fut, self.config.sub_ack_timeout)
        except RpcError as exc:
            log.debug("%s: unsubscribe %s answered %s (ignored)", self.name, channel, exc)
        except (TimeoutError, WsUnknownOutcome, websockets.ConnectionClosed) as exc:
            log.debug("%s: unsubscribe %s got no answer: %r", self.name, channel, exc)
        finally:
            self._pending.pop(rid, None)

    async def _resubscribe(self, sub: Subscription) -> None:
        try:
            if self._ready:
                await self._unsubscribe_wire(sub.channel, sub.params)
            if self._subs.get(sub.channel) is sub:
                old = sub.state
                sub.state = SubState.PENDING
                sub.req_id = None
                self._emit_sub_state(sub, old)
                await self._send_subscribe(sub)
        finally:
            sub.busy = False

    def _sub_failed(self, sub: Subscription, error: str) -> None:
        c = self.config
        self.stats.sub_failures += 1
        sub.failures += 1
        sub.last_error = error
        old = sub.state
        sub.state = SubState.FAILED
        if sub.failures > c.sub_max_retries:
            if not sub.exhausted:
                sub.exhausted = True
                log.error("%s: %s failed %d times: degraded (%s)", self.name, sub.channel, sub.failures, error)
            delay = c.degraded_retry_interval
        else:
            delay = min(c.sub_retry_max, c.sub_retry_initial * (2 ** (sub.failures - 1)))
        sub.next_retry_at = time.monotonic() + delay
        self.report("ws_subscription_failed", channel=sub.channel, error=error, failures=sub.failures)
        self._emit_sub_state(sub, old)
        self._recompute_state()

    # -- maintenance ------------------------------------------------------------------------------

    async def _maintenance(self) -> None:
        c = self.config
        while not self._closed:
            await asyncio.sleep(c.tick)
            try:
                self._maintain(time.monotonic())
            except Exception as exc:  # noqa: BLE001 - the loop must survive anything
                self.report("ws_maintenance_error", error=repr(exc))

    def _maintain(self, now: float) -> None:
        c = self.config
        ws = self._ws
        if ws is None:
            return
        if now - self._last_rx > c.zombie_timeout:
            self.stats.zombies += 1
            self.report("ws_zombie_connection", silent_for=round(now - self._last_rx, 2))
            self._last_rx = now
            ws.transport.abort()
            return
        if now - self._last_ping >= c.ping_interval:
            self._last_ping = now
            self._spawn(self._ping(ws))
        if not self._ready:
            return
        for rid, req in list(self._pending.items()):
            if req.kind == "subscribe" and now - req.sent_at > c.sub_ack_timeout:
                self._pending.pop(rid, None)
                sub = self._subs.get(req.channel)
                if sub is not None and sub.req_id == rid:
                    sub.req_id = None
                    self._sub_failed(sub, f"no ack within {c.sub_ack_timeout}s")
        for sub in list(self._subs.values()):
            if sub.busy:
                continue
            if sub.state is SubState.FAILED and now >= sub.next_retry_at:
                self.stats.sub_retries += 1
                sub.busy = True
                self._spawn(self._resubscribe(sub))
            elif sub.state is SubState.ACTIVE and sub.idle_timeout:
                silent = now - max(sub.last_msg, sub.active_since)
                if silent > sub.idle_timeout:
                    self.stats.stale_resubscribes += 1
                    self.report("ws_stale_stream", channel=sub.channel, silent_for=round(silent, 2))
                    sub.active_since = now  # restart the clock; the resubscribe is in progress
                    sub.busy = True
                    self._spawn(self._resubscribe(sub))

    async def _ping(self, ws: ClientConnection) -> None:
        try:
            waiter = await ws.ping()
            self.stats.pings_sent += 1
            await waiter
        except (websockets.ConnectionClosed, asyncio.CancelledError):
            return
        except Exception as exc:  # noqa: BLE001 - a failed ping is left to zombie detection
            log.debug("%s: ping failed: %r", self.name, exc)
            return
        self.stats.pongs += 1
        if ws is self._ws:
            self._last_rx = time.monotonic()

    # -- state ------------------------------------------------------------------------------------

    def _recompute_state(self) -> None:
        if self._ws is None:
            return
        if not self._ready:
            return
        if any(s.exhausted for s in self._subs.values()):
            self._set_state(ConnState.DEGRADED)
        else:
            self._set_state(ConnState.AUTHENTICATED if self._authenticated else ConnState.CONNECTED)

    def _set_state(self, new: ConnState) -> None:
        old = self._state
        if new is old:
            return
        self._state = new
        level = logging.WARNING if new in (ConnState.RECONNECTING, ConnState.DEGRADED) else logging.INFO
        log.log(level, "%s: %s -> %s", self.name, old.value, new.value, extra={"ctx": {"from": old, "to": new}})
        if self.on_state is not None:
            try:
                self.on_state(old, new)
            except Exception as exc:  # noqa: BLE001 - observers must not break the client
                self.report("ws_callback_error", callback="on_state", error=repr(exc))

    def _emit_sub_state(self, sub: Subscription, old: SubState, *, force: bool = False) -> None:
        if (old is sub.state and not force) or self.on_sub_state is None:
            return
        try:
            self.on_sub_state(sub.channel, old, sub.state)
        except Exception as exc:  # noqa: BLE001 - observers must not break the client
            self.report("ws_callback_error", callback="on_sub_state", error=repr(exc))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
