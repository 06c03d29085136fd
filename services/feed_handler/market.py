"""One market's public channels: venue notification → schema event → bus, with the checks.

``MarketFeed`` holds the handlers the WebSocket client calls synchronously (no task per message):

* trades → ``md.paradex.trades.<MKT>`` (Msg-Id by trade id). Trade ids seen recently are
  remembered, so a duplicate is counted and dropped. ``backfill_trades`` fetches ``GET /trades``
  after a takeover or a reconnect and publishes what the socket missed, in order: live trades that
  arrive meanwhile are held back and released after the backfill. The tape on the bus starts at
  ``tape_floor_ms`` (the first trade on the bus after a takeover, else the first trade the socket
  delivers): trades older than that are history, never back-filled behind newer ones.
* bbo → ``md.paradex.quotes.<MKT>`` (Msg-Id by seq_no; an older or repeated seq_no is dropped).
* deltas → ``md.paradex.deltas.<MKT>``: ``BookSequencer`` checks ``seq_no``; a gap is counted and
  the channel resubscribed (the venue's only resync), the fresh ``"s"`` is published as a snapshot.
  Non-snapshot messages carry ``Pdx-Prev-Seq``.
* markets_summary → ``md.paradex.mark|index|funding.<MKT>``; funding_data → ``md.paradex.funding``.

Every malformed, unknown, duplicate or dropped message is counted in ``FeedStats`` and reported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import msgspec

from bus import msgid, subjects
from bus.book_client import PREV_SEQ_HEADER
from bus.publisher import Publisher
from bus.stats import Counters
from services.feed_handler.book_seq import BookSequencer, Verdict
from services.paradex.normalize import (
    MarketSpec,
    NormalizeError,
    book_deltas,
    funding_update,
    quote_tick,
    summary_updates,
    trade_tick,
)
from services.paradex.rest import ParadexError, RestClient, UnknownOutcome
from services.paradex.venue_types import (
    TradeMsg,
    bbo_decoder,
    book_decoder,
    funding_decoder,
    summary_decoder,
    trade_decoder,
)
from services.paradex.ws import WsClient

log = logging.getLogger("feed_handler.market")

Reporter = Callable[..., None]
_DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError)
_M = TypeVar("_M", bound=msgspec.Struct)
_RECENT_TRADES = 4096
_MAX_HELD_TRADES = 20_000


@dataclass
class FeedStats(Counters):
    """Hot-path counters (plain ints; mirrored to metrics and health by the service)."""

    prefix: ClassVar[str] = "feed_"

    trades_in: int = 0
    bbo_in: int = 0
    book_in: int = 0
    summary_in: int = 0
    funding_in: int = 0
    published: int = 0
    trades_out: int = 0
    quotes_out: int = 0
    book_snapshots_out: int = 0
    book_deltas_out: int = 0
    tickers_out: int = 0
    malformed: int = 0
    market_mismatch: int = 0
    trade_duplicates: int = 0
    trades_backfilled: int = 0
    trade_backfill_failures: int = 0
    bbo_stale: int = 0
    bbo_one_sided: int = 0
    book_gaps: int = 0
    book_resyncs: int = 0
    book_resync_requests: int = 0
    book_duplicates: int = 0
    book_empty_deltas: int = 0
    book_dropped_awaiting_snapshot: int = 0


@dataclass(frozen=True)
class Channels:
    trades: str
    bbo: str
    deltas: str
    summary: str
    funding: str

    @classmethod
    def for_market(cls, market: str) -> Channels:
        return cls(
            trades=f"trades.{market}",
            bbo=f"bbo.{market}",
            deltas=f"order_book.{market}.deltas",
            summary=f"markets_summary.{market}",
            funding=f"funding_data.{market}",
        )


class MarketFeed:
    def __init__(
        self,
        spec: MarketSpec,
        *,
        publisher: Publisher,
        ws: WsClient,
        rest: RestClient,
        stats: FeedStats,
        report: Reporter,
        resync_min_interval: float = 1.0,
    ) -> None:
        self.market = spec.market
        self.spec = spec
        self.publisher = publisher
        self.ws = ws
        self.rest = rest
        self.stats = stats
        self.report = report
        self.resync_min_interval = resync_min_interval
        self.channels = Channels.for_market(self.market)
        m = self.market
        self.subj_trades = subjects.md("trades", m)
        self.subj_quotes = subjects.md("quotes", m)
        self.subj_deltas = subjects.md("deltas", m)
        self.subj_mark = subjects.md("mark", m)
        self.subj_index = subjects.md("index", m)
        self.subj_funding = subjects.md("funding", m)
        self.book = BookSequencer()
        self.last_bbo_seq = -1
        self.last_trade_ms = 0
        # Until the socket delivers a first trade the floor is the subscription time (provisional).
        self.tape_floor_ms = int(time.time() * 1000)
        self._floor_provisional = True
        self._recent: dict[str, None] = {}
        self._held: list[TradeMsg] | None = None  # live trades held back during a backfill
        self._backfilling = False
        self._last_resync = 0.0
        self._unique_snapshot = False

    # -- trades -----------------------------------------------------------------------------------

    def _decode(
        self, channel: str, data: msgspec.Raw, decoder: msgspec.json.Decoder[_M], field: str = "market"
    ) -> _M | None:
        """The venue message, or None after counting it as malformed or meant for another market."""
        try:
            msg = decoder.decode(data)
        except _DECODE_ERRORS as exc:
            self._malformed(channel, exc, data)
            return None
        market = getattr(msg, field)
        if market != self.market:
            self._mismatch(channel, market)
            return None
        return msg

    def on_trade(self, channel: str, data: msgspec.Raw) -> None:
        self.stats.trades_in += 1
        msg = self._decode(channel, data, trade_decoder)
        if msg is None:
            return
        if self._held is not None:
            if len(self._held) < _MAX_HELD_TRADES:
                self._held.append(msg)
                return
            self.report("trade_hold_overflow", market=self.market, held=len(self._held))
        self._publish_trade(msg, "ws")

    def _publish_trade(self, msg: TradeMsg, source: str) -> bool:
        if msg.id in self._recent:
            if source == "ws":
                self.stats.trade_duplicates += 1
                self.report("trade_duplicate", market=self.market, trade_id=msg.id)
            return False
        try:
            tick = trade_tick(msg, self.spec, time.time_ns())
        except NormalizeError as exc:
            self._malformed(self.channels.trades, exc, None)
            return False
        if self._floor_provisional and source == "ws":
            self._floor_provisional = False
            self.tape_floor_ms = max(self.tape_floor_ms, msg.created_at)
        recent = self._recent
        recent[msg.id] = None
        if len(recent) > _RECENT_TRADES:
            del recent[next(iter(recent))]
        self.last_trade_ms = max(self.last_trade_ms, msg.created_at)
        self.publisher.publish_event_nowait(self.subj_trades, tick, msgid.trade(self.market, msg.id))
        self.stats.trades_out += 1
        self.stats.published += 1
        return True

    def continue_tape_from(self, since_ms: int) -> None:
        """The bus already holds this market's tape from ``since_ms`` on (a takeover): holes after
        it are filled by the backfill, trades before it are history."""
        self.tape_floor_ms = since_ms
        self._floor_provisional = False

    def gap_start(self, since_ms: int) -> int:
        """Where a backfill asked to start at ``since_ms`` may start without reaching into history."""
        return max(since_ms, self.tape_floor_ms)

    def hold_trades(self) -> None:
        """Hold live trades back from now on, until the coming ``backfill_trades`` has run."""
        if self._held is None:
            self._held = []

    async def backfill_trades(self, since_ms: int, max_pages: int = 5) -> int:
        """Publish trades since ``since_ms`` from REST that the socket did not deliver, then the
        live trades held back meanwhile (so the subject stays in venue order)."""
        if self._backfilling:
            return 0
        since_ms = self.gap_start(since_ms)
        self._backfilling = True
        self.hold_trades()
        published = 0
        try:
            rows = await self.rest.trades(self.market, start_at=since_ms, max_pages=max_pages)
            msgs: list[TradeMsg] = []
            for row in rows:
                try:
                    msgs.append(msgspec.convert(row, TradeMsg))
                except msgspec.ValidationError as exc:
                    self._malformed("GET /trades", exc, None)
            msgs.sort(key=lambda t: (t.created_at, len(t.id), t.id))
            for t in msgs:
                if t.market == self.market and t.created_at >= since_ms and self._publish_trade(t, "rest"):
                    published += 1
            self.stats.trades_backfilled += published
            if published:
                log.info("%s: backfilled %d trades since %d", self.market, published, since_ms)
        except (ParadexError, UnknownOutcome) as exc:
            self.stats.trade_backfill_failures += 1
            self.report("trade_backfill_failed", market=self.market, error=str(exc))
        finally:
            held, self._held = self._held or [], None
            self._backfilling = False
            for t in held:
                self._publish_trade(t, "ws")
        return published

    # -- bbo --------------------------------------------------------------------------------------

    def on_bbo(self, channel: str, data: msgspec.Raw) -> None:
        self.stats.bbo_in += 1
        msg = self._decode(channel, data, bbo_decoder)
        if msg is None:
            return
        if msg.seq_no <= self.last_bbo_seq:
            self.stats.bbo_stale += 1
            self.report("bbo_stale", market=self.market, seq_no=msg.seq_no, last=self.last_bbo_seq)
            return
        try:
            quote = quote_tick(msg, self.spec, time.time_ns())
        except NormalizeError as exc:
            self._malformed(channel, exc, data)
            return
        self.last_bbo_seq = msg.seq_no
        if quote is None:
            self.stats.bbo_one_sided += 1
            self.report("bbo_one_sided", level=logging.INFO, market=self.market, seq_no=msg.seq_no)
            return
        self.publisher.publish_event_nowait(self.subj_quotes, quote, msgid.bbo(self.market, msg.seq_no))
        self.stats.quotes_out += 1
        self.stats.published += 1

    # -- book -------------------------------------------------------------------------------------

    def on_book(self, channel: str, data: msgspec.Raw) -> None:
        self.stats.book_in += 1
        try:
            msg = book_decoder.decode(data)
        except _DECODE_ERRORS as exc:
            self._malformed(channel, exc, data)
            self._book_broken("malformed book message")
            return
        if msg.market != self.market:
            self._mismatch(channel, msg.market)
            return
        if msg.update_type not in ("s", "d"):
            self._malformed(channel, f"update_type {msg.update_type!r}", data)
            self._book_broken("unknown update_type")
            return
        prev_seq = self.book.last_seq
        verdict = self.book.check(msg.update_type, msg.seq_no, bool(msg.inserts or msg.updates or msg.deletes))
        if verdict is Verdict.PUBLISH:
            try:
                deltas = book_deltas(msg, self.spec, time.time_ns())
            except NormalizeError as exc:
                self._malformed(channel, exc, data)
                self._book_broken("unusable book message")
                return
            if deltas is None:  # pragma: no cover - the sequencer already filtered empty deltas
                return
            if msg.update_type == "s":
                mid = msgid.book(self.market, msg.seq_no, snapshot=True)
                if self._unique_snapshot:
                    # Asked for by a consumer: make sure it is stored even if nothing changed since
                    # the last snapshot with this seq_no (which the duplicate window would swallow).
                    mid += f":r{time.time_ns()}"
                    self._unique_snapshot = False
                self.publisher.publish_event_nowait(self.subj_deltas, deltas, mid)
                self.stats.book_snapshots_out += 1
            else:
                prev = self.book.prev_published
                self.publisher.publish_event_nowait(
                    self.subj_deltas,
                    deltas,
                    msgid.book(self.market, msg.seq_no),
                    headers={PREV_SEQ_HEADER: str(prev if prev is not None else msg.seq_no - 1)},
                )
                self.stats.book_deltas_out += 1
            self.book.published(msg.seq_no)
            self.stats.published += 1
        elif verdict is Verdict.SKIP_EMPTY:
            self.stats.book_empty_deltas += 1
        elif verdict is Verdict.DUPLICATE:
            self.stats.book_duplicates += 1
            self.report("book_duplicate_seq", market=self.market, seq_no=msg.seq_no, last=prev_seq)
        elif verdict is Verdict.GAP:
            self.stats.book_gaps += 1
            self.report("book_seq_gap", market=self.market, expected=(prev_seq or 0) + 1, got=msg.seq_no)
            self._resubscribe_book("seq gap")
        else:
            self.stats.book_dropped_awaiting_snapshot += 1
            self.report("book_dropped_awaiting_snapshot", level=logging.INFO, market=self.market, seq_no=msg.seq_no)

    def _book_broken(self, why: str) -> None:
        self.book.invalidate()
        self._resubscribe_book(why)

    def _resubscribe_book(self, why: str) -> None:
        if self.ws.request_resubscribe(self.channels.deltas, f"{self.market}: {why}"):
            self.stats.book_resyncs += 1
            self._last_resync = time.monotonic()

    def request_resync(self, reason: str, requested_by: str) -> bool:
        """A consumer (the book builder) asked for a fresh snapshot; rate-limited per market."""
        self.stats.book_resync_requests += 1
        now = time.monotonic()
        if now - self._last_resync < self.resync_min_interval:
            self.report("resync_request_coalesced", level=logging.INFO, market=self.market, by=requested_by)
            return False
        log.info("%s: resync requested by %s (%s)", self.market, requested_by, reason)
        self._unique_snapshot = True
        self.book.invalidate()
        self._resubscribe_book(f"requested by {requested_by}: {reason}")
        return True

    def on_disconnect(self) -> None:
        """The socket dropped: the book restarts with the snapshot of the new subscription, and
        the next BBO is taken whatever its seq_no (a restarted venue starts its sequences again)."""
        self.book.invalidate()
        self.last_bbo_seq = -1

    # -- tickers ----------------------------------------------------------------------------------

    def on_summary(self, channel: str, data: msgspec.Raw) -> None:
        self.stats.summary_in += 1
        msg = self._decode(channel, data, summary_decoder, "symbol")
        if msg is None:
            return
        try:
            mark, index, funding = summary_updates(msg, self.spec, time.time_ns())
        except NormalizeError as exc:
            self._malformed(channel, exc, data)
            return
        m, ts = self.market, msg.created_at
        pub = self.publisher.publish_event_nowait
        if mark is not None:
            pub(self.subj_mark, mark, msgid.ticker("mark", m, ts))
            self.stats.tickers_out += 1
        if index is not None:
            pub(self.subj_index, index, msgid.ticker("index", m, ts))
            self.stats.tickers_out += 1
        if funding is not None:
            pub(self.subj_funding, funding, msgid.ticker("funding", m, ts))
            self.stats.tickers_out += 1
        self.stats.published += (mark is not None) + (index is not None) + (funding is not None)

    def on_funding(self, channel: str, data: msgspec.Raw) -> None:
        self.stats.funding_in += 1
        try:
            msg = funding_decoder.decode(data)
            if msg.market != self.market:
                self._mismatch(channel, msg.market)
                return
            update = funding_update(msg, self.spec, time.time_ns())
        except (*_DECODE_ERRORS, NormalizeError) as exc:
            self._malformed(channel, exc, data)
            return
        if update is None:
            return
        self.publisher.publish_event_nowait(
            self.subj_funding, update, msgid.ticker("funding_data", self.market, msg.created_at)
        )
        self.stats.tickers_out += 1
        self.stats.published += 1

    # -- helpers ----------------------------------------------------------------------------------

    def _malformed(self, channel: str, error: object, data: msgspec.Raw | None) -> None:
        self.stats.malformed += 1
        sample = bytes(data)[:200] if data is not None else b""
        self.report("malformed_venue_message", channel=channel, error=str(error), sample=sample)

    def _mismatch(self, channel: str, got: str) -> None:
        self.stats.market_mismatch += 1
        self.report("venue_market_mismatch", channel=channel, market=got)
