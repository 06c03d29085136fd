"""WebSocket fan-out: which connection listens to which channel, and one outgoing frame queue per
connection drained by its own writer task.

A notification is serialized once per channel (``publish`` builds the frame bytes once and hands
the same object to every subscriber), never once per subscriber. Frames are newline-terminated
like the venue's (paradex-api.md §5.1). A connection whose queue grows past the slow-consumer
limit is closed, as the venue does with clients that let 2000+ messages pile up (§5.5).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from services.paradex_sim.faults import FaultRegistry
from services.paradex_sim.util import dumps

log = logging.getLogger("paradex_sim.ws")

_PREFIX = b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"'
_MIDDLE = b'","data":'
_SUFFIX = b"}}\n"
WRITE_BUFFER_HIGH = 1 << 20  # bytes buffered in the transport before the writer waits
BATCH_BYTES = 256 * 1024


def notification(channel: str, data: bytes) -> bytes:
    return _PREFIX + channel.encode() + _MIDDLE + data + _SUFFIX


def rpc_frame(obj: dict[str, Any]) -> bytes:
    return dumps(obj) + b"\n"


class Conn:
    """One client connection: subscriptions, auth state, outgoing queue."""

    _next_id = 0

    def __init__(self, ws: web.WebSocketResponse, hub: Hub, peer: str,
                 transport: asyncio.BaseTransport | None) -> None:
        Conn._next_id += 1
        self.id = Conn._next_id
        self.ws = ws
        self.transport = transport
        self.hub = hub
        self.peer = peer
        self.queue: deque[bytes] = deque()
        self.wakeup = asyncio.Event()
        self.closed = False
        self.subs: dict[str, str] = {}  # public channel name -> hub key
        self.account: str | None = None
        self.auth_error: tuple[int, str] | None = None
        self.summary_filter: set[str] | None = None  # markets_summary scoped mode
        self.cancel_on_disconnect = False
        self.sent = 0
        self.last_pong = 0.0
        self.close_reason = ""

    def send(self, frame: bytes) -> None:
        if self.closed:
            return
        q = self.queue
        q.append(frame)
        if len(q) > self.hub.slow_consumer_limit:
            self.hub.problems("ws_slow_consumer", conn=self.id, queued=len(q))
            self.abort("slow consumer")
            return
        if len(q) == 1:
            self.wakeup.set()

    def abort(self, reason: str) -> None:
        """Drop the connection without a close handshake (what a venue-side cut looks like)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.queue.clear()
        self.wakeup.set()
        if self.transport is not None and isinstance(self.transport, asyncio.Transport):
            self.transport.abort()

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.queue.clear()
        self.wakeup.set()
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason.encode())

    async def writer(self) -> None:
        """Drain the queue. Without permessage-deflate, every queued frame is framed here and all of
        them go out in one transport write (one syscall per batch, not per message); with
        compression each message goes through aiohttp's compressing writer."""
        if not self.ws.compress and isinstance(self.transport, asyncio.WriteTransport):
            await self._raw_writer(self.transport)
        else:
            await self._framed_writer()

    async def _raw_writer(self, transport: asyncio.WriteTransport) -> None:
        q, wakeup = self.queue, self.wakeup
        try:
            while not self.closed:
                if not q:
                    wakeup.clear()
                    await wakeup.wait()
                    continue
                if transport.is_closing():
                    self.closed = True
                    self.close_reason = self.close_reason or "transport closed"
                    return
                if transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
                    await asyncio.sleep(0.002)  # the client reads slower than we produce; the queue grows
                    continue
                out = bytearray()
                n = 0
                while q and len(out) < BATCH_BYTES:
                    out += _text_frame(q.popleft())
                    n += 1
                transport.write(out)
                self.sent += n
        except asyncio.CancelledError:
            raise
        except (ConnectionError, RuntimeError) as exc:
            self.closed = True
            self.close_reason = self.close_reason or f"send failed: {exc}"

    async def _framed_writer(self) -> None:
        ws, q, wakeup = self.ws, self.queue, self.wakeup
        text = WSMsgType.TEXT
        try:
            while not self.closed:
                if not q:
                    wakeup.clear()
                    await wakeup.wait()
                    continue
                await ws.send_frame(q.popleft(), text)
                self.sent += 1
        except asyncio.CancelledError:
            raise
        except (ConnectionError, RuntimeError) as exc:
            self.closed = True
            self.close_reason = self.close_reason or f"send failed: {exc}"


def _text_frame(payload: bytes) -> bytes:
    """An unmasked, final, text WebSocket frame (RFC 6455 §5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class Hub:
    def __init__(self, faults: FaultRegistry, problems: Callable[..., None], slow_consumer_limit: int) -> None:
        self.faults = faults
        self.problems = problems
        self.slow_consumer_limit = slow_consumer_limit
        self.subs: dict[str, dict[Conn, None]] = {}
        self.conns: dict[int, Conn] = {}
        self.frames_published = 0
        self.frames_suppressed = 0
        self.on_open: list[Callable[[str], None]] = []
        self._closing: set[asyncio.Task[None]] = set()
        self.on_close: list[Callable[[str], None]] = []

    # -- membership -------------------------------------------------------------------------------

    def add_conn(self, conn: Conn) -> None:
        self.conns[conn.id] = conn

    def remove_conn(self, conn: Conn) -> None:
        self.conns.pop(conn.id, None)
        for key in list(conn.subs.values()):
            self._drop(conn, key)
        conn.subs.clear()

    def subscribe(self, conn: Conn, key: str, name: str) -> None:
        members = self.subs.get(key)
        if members is None:
            members = self.subs[key] = {}
            for cb in self.on_open:
                cb(key)
        members[conn] = None
        conn.subs[name] = key

    def unsubscribe(self, conn: Conn, name: str) -> bool:
        key = conn.subs.pop(name, None)
        if key is None:
            return False
        self._drop(conn, key)
        return True

    def _drop(self, conn: Conn, key: str) -> None:
        members = self.subs.get(key)
        if members is None:
            return
        members.pop(conn, None)
        if not members:
            del self.subs[key]
            for cb in self.on_close:
                cb(key)

    def has(self, key: str) -> bool:
        return key in self.subs

    # -- publishing -------------------------------------------------------------------------------

    def publish(self, key: str, name: str, data: bytes, repeat: int = 1) -> None:
        """Send ``data`` to every subscriber of ``key``; ``name`` is the channel put in the frame."""
        members = self.subs.get(key)
        if not members:
            return
        if self.faults.stale_active and self.faults.suppress(name, key):
            self.frames_suppressed += len(members)
            return
        frame = notification(name, data)
        for _ in range(repeat):
            for conn in members:
                conn.send(frame)
        self.frames_published += len(members) * repeat

    def publish_filtered(self, key: str, name: str, data: bytes, market: str) -> None:
        """markets_summary scoped mode: connections with a market filter only get their markets."""
        members = self.subs.get(key)
        if not members:
            return
        if self.faults.stale_active and self.faults.suppress(name, key):
            return
        frame = notification(name, data)
        for conn in members:
            if conn.summary_filter is None or market in conn.summary_filter:
                conn.send(frame)
                self.frames_published += 1

    def drop_all(self, mode: str = "abort") -> int:
        """Cut every connection (fault injection)."""
        conns = list(self.conns.values())
        for conn in conns:
            if mode == "abort":
                conn.abort("dropped by admin")
            else:
                task = asyncio.ensure_future(conn.close(1011, "dropped by admin"))
                self._closing.add(task)  # the loop keeps only weak references to tasks
                task.add_done_callback(self._closing.discard)
        return len(conns)
