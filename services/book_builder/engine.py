"""The book-builder's logic without I/O: one ``LocalBook`` per owned market, fed raw MD messages
in stream order, deciding what to publish (through a ``Sink``) and what to checkpoint.

Kept free of NATS so the property tests drive exactly the code the process runs. The service
(``services.book_builder.service``) feeds it from the MD consumer and implements the sink.

Output rules:

* QuoteTick when the top of book (prices or sizes) differs from the last one published, the book is
  valid and its sequence is not below the last published quote's (``quote_floor``). After a restart
  the floor and the last top come from the newest stored quote in ``BOOK``, so no QuoteTick sequence
  ever regresses, across crashes too. While replaying (not ``live``) nothing is published; going
  live publishes one catch-up quote/depth per market whose top differs from the stored one.
* OrderBookDepth10 on every change (``depth_interval == 0``) or from ``flush_depth`` (the service
  calls it every ``depth_interval``), only when the 10 levels differ from the last published.
* BookStatus whenever (state, stale) changes; a ResyncRequest when a book turns invalid, and again
  with backoff (``resync_retry`` doubling up to 60 s) while it stays without a valid snapshot.
* Stale: a valid market without an applied message for ``stale_after`` seconds while another market
  had one within that time.

Every message that is dropped (not owned is not a drop: it is another shard's), old, duplicate,
malformed or ignored is counted in ``EngineStats`` and reported through ``report(kind, **ctx)``.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import msgspec

from bus.book_client import INVALIDATING, PREV_SEQ_HEADER, Applied, BookState, LocalBook
from bus.stats import Counters
from schemas import DecodeError, decode_as
from schemas.book import BookCheckpoint, BookSnapshot, BookStatus, CheckpointLevels
from schemas.data import OrderBookDeltas, OrderBookDepth10, QuoteTick
from services.book_builder.config import DELTAS_PREFIX, Ownership

_levels_enc = msgspec.msgpack.Encoder()
_ckpt_enc = msgspec.msgpack.Encoder()
_levels_dec = msgspec.msgpack.Decoder(CheckpointLevels)

RESYNC_BACKOFF_MAX = 60.0


def checkpoint_key(market: str) -> str:
    """KV key of a market's checkpoint (KV keys allow ``[-/_=.a-zA-Z0-9]``; never ``:``)."""
    return f"paradex.{market}"


class Sink(Protocol):
    """Where the engine's outputs go (the service publishes them; tests collect them)."""

    def quote(self, market: str, quote: QuoteTick, sequence: int, md_stream_seq: int) -> None: ...

    def depth(self, market: str, depth: OrderBookDepth10, md_stream_seq: int) -> None: ...

    def status(self, market: str, status: BookStatus) -> None: ...

    def resync(self, market: str, reason: str) -> None: ...


Reporter = Callable[..., None]


@dataclass
class EngineStats(Counters):
    prefix: ClassVar[str] = "book_"

    messages: int = 0
    levels: int = 0
    snapshots: int = 0
    not_owned: int = 0
    already_in_checkpoint: int = 0
    old: int = 0
    old_snapshots: int = 0
    gaps: int = 0
    crossed: int = 0
    malformed: int = 0
    wrong_instrument: int = 0
    ignored_not_valid: int = 0
    regressions: int = 0
    unknown_deletes: int = 0
    missing_prev_seq: int = 0
    quotes: int = 0
    depths: int = 0
    statuses: int = 0
    resyncs: int = 0


class MarketState:
    """A market's book plus what was published and checkpointed for it."""

    __slots__ = (
        "book",
        "ckpt_levels",
        "ckpt_seq",
        "depth_dirty",
        "depth_floor",
        "last_depth",
        "last_top",
        "last_update",
        "levels_dirty",
        "market",
        "quote_floor",
        "resync_at",
        "resync_backoff",
        "stale",
        "status_sent",
    )

    def __init__(self, market: str, now: float, regression_threshold: int) -> None:
        self.market = market
        self.book = LocalBook(market, regression_threshold=regression_threshold)
        self.quote_floor = 0
        self.last_top: tuple[str, str, str, str] | None = None
        self.depth_floor = 0
        self.last_depth: tuple[list[tuple[str, str]], list[tuple[str, str]]] | None = None
        self.depth_dirty = False
        self.last_update = now
        self.stale = False
        self.status_sent: tuple[str, bool, str] | None = None
        self.levels_dirty = True
        self.ckpt_levels: msgspec.Raw | None = None
        self.ckpt_seq = 0
        self.resync_at = 0.0  # monotonic time of the next allowed resync request
        self.resync_backoff = 0.0


class BookEngine:
    def __init__(
        self,
        sink: Sink,
        *,
        ownership: Ownership | None = None,
        report: Reporter | None = None,
        builder: str = "",
        depth_interval: float = 0.0,
        stale_after: float = 30.0,
        resync_retry: float = 5.0,
        regression_threshold: int = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.ownership = ownership or Ownership()
        self.report: Reporter = report or (lambda kind, **ctx: None)
        self.builder = builder
        self.depth_interval = depth_interval
        self.stale_after = stale_after
        self.resync_retry = resync_retry
        self.regression_threshold = regression_threshold
        self.clock = clock
        self.markets: dict[str, MarketState] = {}
        self.stats = EngineStats()
        self.position = 0  # MD stream sequence of the last message handled (owned or not)
        self.live = False
        self._owns: dict[str, bool] = {}
        self._floors: dict[str, tuple[int, tuple[str, str, str, str] | None]] = {}
        self._depth_floors: dict[str, tuple[int, tuple[list[tuple[str, str]], list[tuple[str, str]]] | None]] = {}
        self._plen = len(DELTAS_PREFIX)

    # -- markets ----------------------------------------------------------------------------------

    def owns(self, market: str) -> bool:
        got = self._owns.get(market)
        if got is None:
            got = self._owns[market] = self.ownership.owns(market)
        return got

    def market(self, market: str) -> MarketState:
        """The state of an owned market, created (awaiting a snapshot) on first use."""
        m = self.markets.get(market)
        if m is None:
            m = self.markets[market] = MarketState(market, self.clock(), self.regression_threshold)
            floor = self._floors.pop(market, None)
            if floor is not None:
                m.quote_floor, m.last_top = floor
            dfloor = self._depth_floors.pop(market, None)
            if dfloor is not None:
                m.depth_floor, m.last_depth = dfloor
        return m

    def set_quote_floor(self, market: str, sequence: int, top: tuple[str, str, str, str] | None) -> None:
        """The newest quote already stored for ``market`` (read from ``BOOK`` at start)."""
        m = self.markets.get(market)
        if m is None:
            self._floors[market] = (sequence, top)
        else:
            m.quote_floor, m.last_top = sequence, top

    def set_depth_floor(
        self, market: str, sequence: int, levels: tuple[list[tuple[str, str]], list[tuple[str, str]]] | None
    ) -> None:
        m = self.markets.get(market)
        if m is None:
            self._depth_floors[market] = (sequence, levels)
        else:
            m.depth_floor, m.last_depth = sequence, levels

    # -- the hot path -----------------------------------------------------------------------------

    def on_message(self, subject: str, data: bytes, headers: dict[str, str] | None, stream_seq: int) -> Applied | None:
        """Handle one ``md.paradex.deltas.<MKT>`` message at MD stream sequence ``stream_seq``."""
        self.position = max(self.position, stream_seq)
        market = subject[self._plen :]
        m = self.markets.get(market)
        if m is None:
            if not subject.startswith(DELTAS_PREFIX) or not self.owns(market):
                self.stats.not_owned += 1
                return None
            m = self.market(market)
        book = m.book
        if stream_seq <= book.md_stream_seq:
            self.stats.already_in_checkpoint += 1
            return None
        try:
            msg = decode_as(data, OrderBookDeltas)
        except DecodeError as exc:
            book.md_stream_seq = stream_seq
            self.stats.malformed += 1
            self.report("malformed_message", market=market, stream_seq=stream_seq, error=str(exc)[:300])
            return Applied.MALFORMED
        prev: int | None = None
        raw = headers.get(PREV_SEQ_HEADER) if headers else None
        if raw is not None:
            try:
                prev = int(raw)
            except ValueError:
                self.report("malformed_prev_seq_header", market=market, stream_seq=stream_seq, value=raw[:40])
        self.stats.messages += 1
        unknown_before = book.unknown_deletes
        was_valid = book.state is BookState.VALID
        result = book.apply(msg, prev, stream_seq)
        if result is Applied.APPLIED or result is Applied.SNAPSHOT:
            self.stats.levels += len(msg.deltas)
            m.last_update = self.clock()
            m.levels_dirty = True
            if result is Applied.SNAPSHOT:
                self.stats.snapshots += 1
                m.resync_backoff = 0.0
            elif prev is None:
                self.stats.missing_prev_seq += 1
                self.report("missing_prev_seq_header", market=market, stream_seq=stream_seq, sequence=book.sequence)
            if book.unknown_deletes != unknown_before:
                self.stats.unknown_deletes += book.unknown_deletes - unknown_before
                self.report("delete_of_unknown_level", market=market, sequence=book.sequence)
            if self.live:
                self._publish_book(m)
                if not was_valid or m.stale:
                    m.stale = False
                    self._publish_status(m)
            return result
        self._not_applied(m, msg, result, stream_seq, prev)
        return result

    def _not_applied(
        self, m: MarketState, msg: OrderBookDeltas, result: Applied, stream_seq: int, prev: int | None
    ) -> None:
        book = m.book
        market = m.market
        seq = msg.deltas[-1].sequence
        if result is Applied.OLD:
            self.stats.old += 1
            self.report("old_or_duplicate", market=market, stream_seq=stream_seq, sequence=seq, book=book.sequence)
        elif result is Applied.OLD_SNAPSHOT:
            self.stats.old_snapshots += 1
            self.report("old_snapshot", market=market, stream_seq=stream_seq, sequence=seq, book=book.sequence)
        elif result is Applied.NOT_VALID:
            self.stats.ignored_not_valid += 1
            self.report(
                "ignored_until_snapshot", market=market, stream_seq=stream_seq, sequence=seq, state=book.state.value
            )
            if self.live:
                self._maybe_resync(m, book.reason)
        elif result is Applied.WRONG_INSTRUMENT:
            self.stats.wrong_instrument += 1
            self.report("wrong_instrument", market=market, stream_seq=stream_seq, instrument_id=msg.instrument_id)
        elif result in INVALIDATING:
            if result is Applied.GAP:
                self.stats.gaps += 1
            elif result is Applied.CROSSED:
                self.stats.crossed += 1
                m.levels_dirty = True
            elif result is Applied.MALFORMED:
                self.stats.malformed += 1
                m.levels_dirty = True
            else:
                self.stats.regressions += 1
            self.report(
                f"book_{result.name.lower()}",
                market=market,
                stream_seq=stream_seq,
                sequence=seq,
                prev_seq=prev,
                reason=book.reason,
            )
            if result is Applied.REGRESSED:
                # The venue's sequence went back (venue restart): quotes can only follow it down.
                m.quote_floor = 0
                m.depth_floor = 0
            if self.live:
                m.resync_at = 0.0
                self._maybe_resync(m, book.reason)
                self._publish_status(m)

    # -- outputs ----------------------------------------------------------------------------------

    def _publish_book(self, m: MarketState) -> None:
        book = m.book
        if book.state is not BookState.VALID:
            return
        top = book.top()
        if top is not None and top != m.last_top and book.sequence >= m.quote_floor:
            q = book.to_quote()
            assert q is not None
            m.last_top = top
            m.quote_floor = book.sequence
            self.stats.quotes += 1
            self.sink.quote(m.market, q, book.sequence, max(book.md_stream_seq, self.position))
        if self.depth_interval <= 0:
            self._publish_depth(m)
        else:
            m.depth_dirty = True

    def _publish_depth(self, m: MarketState) -> None:
        book = m.book
        m.depth_dirty = False
        if book.state is not BookState.VALID or book.sequence < m.depth_floor:
            return
        levels = book.depth(10)
        if levels == m.last_depth:
            return
        m.last_depth = levels
        m.depth_floor = book.sequence
        self.stats.depths += 1
        self.sink.depth(m.market, book.to_depth10(), max(book.md_stream_seq, self.position))

    def flush_depth(self) -> None:
        """Publish depth10 of every market that changed since the last flush (throttled mode)."""
        if not self.live:
            return
        for m in self.markets.values():
            if m.depth_dirty:
                self._publish_depth(m)

    def status_of(self, m: MarketState) -> BookStatus:
        now = time.time_ns()
        return BookStatus(
            instrument_id=m.book.instrument_id,
            state=m.book.state.value,
            reason=m.book.reason,
            stale=m.stale,
            sequence=m.book.sequence,
            md_stream_seq=max(m.book.md_stream_seq, self.position),
            builder=self.builder,
            ts_event=m.book.ts_event or now,
            ts_init=now,
        )

    def _publish_status(self, m: MarketState) -> None:
        key = (m.book.state.value, m.stale, m.book.reason)
        if key == m.status_sent:
            return
        m.status_sent = key
        self.stats.statuses += 1
        self.sink.status(m.market, self.status_of(m))

    def _maybe_resync(self, m: MarketState, reason: str) -> None:
        now = self.clock()
        if now < m.resync_at:
            return
        m.resync_backoff = min(RESYNC_BACKOFF_MAX, m.resync_backoff * 2 if m.resync_backoff else self.resync_retry)
        m.resync_at = now + m.resync_backoff
        self.stats.resyncs += 1
        self.sink.resync(m.market, reason or "no valid book")

    def go_live(self) -> None:
        """The replay reached the end of the stream: publish the current state of every market."""
        if self.live:
            return
        self.live = True
        now = self.clock()
        for m in self.markets.values():
            m.last_update = max(m.last_update, now)
            self._publish_status(m)
            if m.book.state is BookState.VALID:
                self._publish_book(m)
            else:
                self._maybe_resync(m, m.book.reason)

    def tick(self) -> None:
        """Periodic work: staleness and resync retries (call about once a second)."""
        if not self.live or not self.markets:
            return
        now = self.clock()
        newest = max(m.last_update for m in self.markets.values())
        flowing = now - newest < self.stale_after
        for m in self.markets.values():
            valid = m.book.state is BookState.VALID
            stale = valid and flowing and now - m.last_update > self.stale_after
            if stale != m.stale:
                m.stale = stale
                if stale:
                    self.report("market_stale", market=m.market, idle_s=round(now - m.last_update, 1))
                self._publish_status(m)
            if not valid:
                self._maybe_resync(m, m.book.reason)

    # -- snapshot service -------------------------------------------------------------------------

    def snapshot(self, market: str, depth: int | None = None) -> BookSnapshot | None:
        """The full book of an owned market and the MD sequence it reflects; None if not owned."""
        if not self.owns(market):
            return None
        m = self.markets.get(market)
        book = m.book if m is not None else LocalBook(market)
        snap = book.to_snapshot(live=self.live, builder=self.builder, depth=depth)
        snap.md_stream_seq = max(book.md_stream_seq, self.position)
        return snap

    # -- checkpoints ------------------------------------------------------------------------------

    def checkpoints(self, force: bool = False) -> list[tuple[str, bytes, MarketState, int]]:
        """``(key, value, market, md_stream_seq)`` of every market whose checkpoint is behind.

        Taken synchronously, so every value is the book exactly at ``md_stream_seq``. Markets with
        no book yet are skipped: on restart they wait for a snapshot either way.
        """
        out: list[tuple[str, bytes, MarketState, int]] = []
        now = time.time_ns()
        for m in self.markets.values():
            book = m.book
            if book.state is BookState.AWAITING_SNAPSHOT:
                continue
            eff = max(book.md_stream_seq, self.position)
            if eff == m.ckpt_seq and not force:
                continue
            if m.levels_dirty or m.ckpt_levels is None:
                bids, asks = book.levels()
                m.ckpt_levels = msgspec.Raw(_levels_enc.encode(CheckpointLevels(bids=bids, asks=asks)))
                m.levels_dirty = False
            value = _ckpt_enc.encode(
                BookCheckpoint(
                    market=m.market,
                    md_stream_seq=eff,
                    sequence=book.sequence,
                    state=book.state.value,
                    reason=book.reason,
                    ts_event=book.ts_event,
                    ts_init=now,
                    levels=m.ckpt_levels,
                )
            )
            out.append((checkpoint_key(m.market), value, m, eff))
        return out

    def restore(self, ckpt: BookCheckpoint) -> MarketState:
        """Load a checkpoint (the book as of ``ckpt.md_stream_seq``)."""
        m = self.market(ckpt.market)
        levels = _levels_dec.decode(ckpt.levels)
        book = m.book
        book.bids.load_canonical(levels.bids)
        book.asks.load_canonical(levels.asks)
        book.sequence = ckpt.sequence
        book.md_stream_seq = ckpt.md_stream_seq
        book.ts_event = ckpt.ts_event
        book.state = BookState(ckpt.state)
        book.reason = ckpt.reason
        m.ckpt_seq = ckpt.md_stream_seq
        m.ckpt_levels = msgspec.Raw(bytes(ckpt.levels))
        m.levels_dirty = False
        return m

    # -- health -----------------------------------------------------------------------------------

    def summary(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"valid": [], "invalid": [], "awaiting": [], "stale": []}
        for name, m in sorted(self.markets.items()):
            st = m.book.state
            if st is BookState.VALID:
                out["valid"].append(name)
                if m.stale:
                    out["stale"].append(name)
            elif st is BookState.INVALID:
                out["invalid"].append(name)
            else:
                out["awaiting"].append(name)
        return out


def quote_msg_id(market: str, sequence: int, top: tuple[str, str, str, str]) -> str:
    """Deterministic: a restarted or standby builder publishing the same quote is stored once;
    a different top at the same sequence (a corrected book) is a different message."""
    return f"pdx:bq:{market}:{sequence}:{top[0]}:{top[1]}:{top[2]}:{top[3]}"


def depth_msg_id(market: str, depth: OrderBookDepth10) -> str:
    """Market + sequence + a checksum of the levels (a corrected book at one sequence differs)."""
    crc = zlib.crc32(_levels_enc.encode((depth.bids, depth.asks)))
    return f"pdx:bd10:{market}:{depth.sequence}:{crc:08x}"


def status_msg_id(market: str, status: BookStatus) -> str:
    return f"pdx:bstatus:{market}:{status.state}:{int(status.stale)}:{status.sequence}:{status.md_stream_seq}"
