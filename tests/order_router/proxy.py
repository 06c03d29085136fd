"""A TCP relay that delays what the server sends back (network latency on one path), to force the
order in which the router sees a REST reply and the WebSocket update of the same order.

Bytes are forwarded unchanged and in order; each chunk from the server is held ``delay`` seconds
after it arrived. HTTP keep-alive and WebSocket connections pass through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit, urlunsplit


class DelayProxy:
    def __init__(self, target_url: str, delay: float) -> None:
        parts = urlsplit(target_url)
        self.parts = parts
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.delay = delay
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.listen_port = 0

    @property
    def url(self) -> str:
        return urlunsplit(self.parts._replace(netloc=f"127.0.0.1:{self.listen_port}"))

    async def start(self) -> DelayProxy:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.close()
            return
        t1 = asyncio.ensure_future(self._pipe(reader, up_w, 0.0))
        t2 = asyncio.ensure_future(self._pipe(up_r, writer, self.delay))
        for t in (t1, t2):
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def sender() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                dst.write(data)
                await dst.drain()

        out = asyncio.ensure_future(sender())
        try:
            while True:
                data = await src.read(65536)
                await queue.put((time.monotonic() + delay, data))
                if not data:
                    break
            await out
        except (ConnectionError, asyncio.CancelledError):
            out.cancel()
        finally:
            with contextlib.suppress(Exception):
                dst.close()
