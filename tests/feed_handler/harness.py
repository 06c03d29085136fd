"""Helpers for the feed-handler tests that run against the real simulator and real NATS.

(The simulator's own ``AdminClient`` gives ground truth, flow control and faults.)
* ``feed_env`` -- the environment of a feed-handler process pointed at a simulator and a NATS.
* ``HealthWatch`` -- the latest ``ServiceHealth`` of every feed-handler instance (core NATS).
* bus readers: every message on a subject, the last one, and the book rebuilt from the deltas.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from bus.book_client import LocalBook, prev_seq_of
from bus.replay import replay
from schemas import ServiceHealth, decode
from services.paradex.normalize import fixed


def feed_env(nats_url: str, rest_url: str, ws_url: str, tmp: Path, instance: str, **extra: object) -> dict[str, str]:
    env = {
        "NATS_URL": nats_url,
        "PARADEX_REST_URL": rest_url,
        "PARADEX_WS_URL": ws_url,
        "FEED_CACHE_DIR": str(tmp / f"cache-{instance}"),
        "INSTANCE_ID": instance,
        "HEALTH_INTERVAL": "0.3",
        "FEED_STATUS_INTERVAL_S": "0.5",
        "FEED_SUB_ACK_TIMEOUT_S": "1",
        "FEED_WS_BACKOFF_MAX_S": "0.5",
        "LOG_LEVEL": "INFO",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


class HealthWatch:
    """Keeps the newest ServiceHealth per feed-handler instance."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.latest: dict[str, ServiceHealth] = {}
        self._sub: Any = None

    async def start(self) -> HealthWatch:
        async def cb(msg: Any) -> None:
            with contextlib.suppress(Exception):
                h = decode(msg.data)
                if isinstance(h, ServiceHealth):
                    self.latest[h.instance] = h

        self._sub = await self.nc.subscribe("svc.feed-handler.*.health", cb=cb)
        return self

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    def get(self, instance: str) -> ServiceHealth | None:
        return self.latest.get(instance)

    def counter(self, instance: str, name: str) -> int:
        h = self.latest.get(instance)
        return h.counters.get(name, 0) if h else 0

    async def wait(
        self, instance: str, cond: Callable[[ServiceHealth], bool], timeout: float, what: str
    ) -> ServiceHealth:
        deadline = time.monotonic() + timeout
        while True:
            h = self.latest.get(instance)
            if h is not None and cond(h):
                return h
            if time.monotonic() > deadline:
                raise AssertionError(f"{instance}: timed out waiting for {what}; last health: {h}")
            await asyncio.sleep(0.05)


async def eventually(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Call (await) ``fn`` until it returns a truthy value; return it. Fails with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = fn()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


async def bus_messages(js: JetStreamContext, subject: str) -> list[Any]:
    """Every stored message matching ``subject`` (BusMessage: .event, .headers, .stream_seq)."""
    try:
        return [m async for m in replay(js, subject, idle_timeout=2.0)]
    except NotFoundError:
        return []


async def bus_last(js: JetStreamContext, stream: str, subject: str) -> Any:
    try:
        raw = await js.get_last_msg(stream, subject, direct=True)
    except NotFoundError:
        return None
    return decode(raw.data)


async def book_from_bus(js: JetStreamContext, market: str) -> tuple[LocalBook, dict[str, int]]:
    """Rebuild the book from ``md.paradex.deltas.<MKT>`` with the consumer's continuity rule."""
    book = LocalBook(market)
    outcomes: dict[str, int] = {}
    for m in await bus_messages(js, f"md.paradex.deltas.{market}"):
        res = book.apply(m.event, prev_seq_of(m.headers), m.stream_seq)
        outcomes[res.name] = outcomes.get(res.name, 0) + 1
    return book, outcomes


def truth_levels(truth: dict[str, Any], pp: int, sp: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    bids = [(fixed(p, pp), fixed(s, sp)) for p, s in truth["bids"]]
    asks = [(fixed(p, pp), fixed(s, sp)) for p, s in truth["asks"]]
    return bids, asks


def book_levels(book: LocalBook, pp: int, sp: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    bids, asks = book.levels()
    return [(fixed(p, pp), fixed(s, sp)) for p, s in bids], [(fixed(p, pp), fixed(s, sp)) for p, s in asks]
