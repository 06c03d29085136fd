"""A WebSocket relay between a feed handler and the simulator that can inject extra frames.

Everything is forwarded unchanged in both directions (frames from the real simulator reach the
handler byte for byte); ``inject`` additionally sends frames of the test's choosing to every
downstream client -- malformed JSON, wrong types, unknown channels, binary -- which the simulator
itself never produces. When either side closes, the other is closed too.
"""

from __future__ import annotations

import asyncio
import contextlib

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve


class WsRelay:
    def __init__(self, upstream_url: str) -> None:
        self.upstream_url = upstream_url
        self.clients: list[ServerConnection] = []
        self.forwarded = 0

    async def start(self) -> WsRelay:
        self._server = await serve(self._handle, "127.0.0.1", 0, ping_interval=None, compression=None, max_size=None)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1"

    async def stop(self) -> None:
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, down: ServerConnection) -> None:
        async with connect(self.upstream_url, ping_interval=None, compression=None, max_size=None) as up:
            self.clients.append(down)

            async def pump_up() -> None:
                async for msg in down:
                    await up.send(msg)

            async def pump_down() -> None:
                async for msg in up:
                    self.forwarded += 1
                    await down.send(msg)

            tasks = [asyncio.create_task(pump_up()), asyncio.create_task(pump_down())]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in tasks:
                    t.cancel()
                for t in tasks:
                    with contextlib.suppress(BaseException):
                        await t
                if down in self.clients:
                    self.clients.remove(down)

    async def inject(self, frame: str | bytes) -> int:
        n = 0
        for c in list(self.clients):
            with contextlib.suppress(Exception):
                await c.send(frame)
                n += 1
        return n
