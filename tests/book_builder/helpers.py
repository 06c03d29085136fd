"""Shared pieces of the book-builder process tests: publishing a synthetic flow onto ``MD`` exactly
as the feed handler does, collecting the builder's outputs, and waiting for a caught-up book."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bus.book_client import MD_SEQ_HEADER, SEQ_HEADER, BookUnavailable, fetch_snapshot
from schemas import OrderBookDepth10, QuoteTick, ResyncRequest, decode_as
from schemas.book import BookSnapshot, BookStatus
from services.book_builder.synthetic import FlowMessage, SyntheticMarket


def builder_env(nats_url: str, **extra: str) -> dict[str, str]:
    env = {
        "NATS_URL": nats_url,
        "HEALTH_INTERVAL": "0.5",
        "LOG_LEVEL": "INFO",
        "BOOK_BUILDER_DEPTH_INTERVAL_MS": "0",
        "BOOK_BUILDER_CHECKPOINT_INTERVAL": "0.2",
        "BOOK_BUILDER_STALE_AFTER": "30",
        "BOOK_BUILDER_RESYNC_RETRY": "1",
    }
    env.update(extra)
    return env


async def publish(js: JetStreamContext, msgs: list[FlowMessage], window: int = 500) -> int:
    """Store ``msgs`` in order (pipelined acks); returns the last stream sequence."""
    last = 0
    for i in range(0, len(msgs), window):
        futs = [await js.publish_async(m.subject, m.payload, headers=m.nats_headers()) for m in msgs[i : i + window]]
        acks = await asyncio.gather(*futs)
        last = max([last, *(a.seq for a in acks)])
    return last


@dataclass
class Outputs:
    """Everything the builder publishes on core subjects, as it arrives."""

    quotes: list[tuple[str, QuoteTick, int, int]] = field(default_factory=list)
    depths: list[tuple[str, OrderBookDepth10]] = field(default_factory=list)
    statuses: list[tuple[str, BookStatus]] = field(default_factory=list)
    resyncs: list[ResyncRequest] = field(default_factory=list)
    subs: list[Any] = field(default_factory=list)

    async def start(self, nc: NATS) -> Outputs:
        async def on_quote(msg: Any) -> None:
            h = msg.headers or {}
            self.quotes.append(
                (
                    msg.subject.rsplit(".", 1)[-1],
                    decode_as(msg.data, QuoteTick),
                    int(h[SEQ_HEADER]),
                    int(h[MD_SEQ_HEADER]),
                )
            )

        async def on_depth(msg: Any) -> None:
            self.depths.append((msg.subject.rsplit(".", 1)[-1], decode_as(msg.data, OrderBookDepth10)))

        async def on_status(msg: Any) -> None:
            self.statuses.append((msg.subject.rsplit(".", 1)[-1], decode_as(msg.data, BookStatus)))

        async def on_resync(msg: Any) -> None:
            self.resyncs.append(decode_as(msg.data, ResyncRequest))

        self.subs = [
            await nc.subscribe("book.paradex.quotes.>", cb=on_quote),
            await nc.subscribe("book.paradex.depth10.>", cb=on_depth),
            await nc.subscribe("book.paradex.status.>", cb=on_status),
            await nc.subscribe("ctl.resync.>", cb=on_resync),
        ]
        return self

    def quote_seqs(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for m, _q, seq, _md in self.quotes:
            out.setdefault(m, []).append(seq)
        return out

    def last_quote(self, market: str) -> QuoteTick | None:
        got = [q for m, q, _s, _md in self.quotes if m == market]
        return got[-1] if got else None

    def last_depth(self, market: str) -> OrderBookDepth10 | None:
        got = [d for m, d in self.depths if m == market]
        return got[-1] if got else None


async def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def caught_up_snapshot(nc: NATS, market: str, md_seq: int, timeout: float = 20.0) -> BookSnapshot:
    """Poll the snapshot service until the builder is live and has seen MD up to ``md_seq``."""
    deadline = time.monotonic() + timeout
    last: BookSnapshot | None = None
    while time.monotonic() < deadline:
        try:
            last = await fetch_snapshot(nc, market, timeout=0.5, attempts=1)
        except BookUnavailable:
            await asyncio.sleep(0.05)
            continue
        if last.live and last.md_stream_seq >= md_seq:
            return last
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{market}: builder not caught up to MD {md_seq}; last snapshot {last!r:.300}")


def levels_of(snap: BookSnapshot) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    return [(lv.price, lv.size) for lv in snap.bids], [(lv.price, lv.size) for lv in snap.asks]


def depth_levels(d: OrderBookDepth10) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    return (
        [(lv.price, lv.size) for lv, c in zip(d.bids, d.bid_counts, strict=True) if c],
        [(lv.price, lv.size) for lv, c in zip(d.asks, d.ask_counts, strict=True) if c],
    )


def top_of(q: QuoteTick) -> tuple[str, str, str, str]:
    return q.bid_price, q.bid_size, q.ask_price, q.ask_size


def expected_depth(gen: SyntheticMarket) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    bids, asks = gen.expected()
    return bids[:10], asks[:10]
