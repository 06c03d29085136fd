"""The book-builder process: MD intake, outputs, snapshot replies, checkpoints, health.

Intake: one JetStream **ordered consumer** on ``MD`` (subject filters from ``Ownership``) started
at the oldest checkpoint's ``md_stream_seq + 1``. It replays history and then simply keeps going
live, so there is no hand-over between a replay consumer and a live one, and nothing is acked.
Why not a durable consumer: the durable's ack floor would be a second notion of "where am I" that
can run ahead of what is checkpointed. Acking a message whose effect only lives in memory makes it
unrecoverable from the durable after a crash, while acking only after a checkpoint means huge
ack-pending windows and redelivery storms. The checkpoint (book + MD sequence, in KV) is the single
source of truth, and the ordered consumer (ephemeral, in-memory, flow-controlled, about 150k msgs/s
here, recreated by nats-py from the last received sequence after a gap or missed heartbeats) reads
from exactly that point. Messages are handled inside the subscription callback with no ``await``,
so a snapshot reply or a checkpoint always sees the books at a message boundary, and unprocessed
messages hold back flow control (backpressure instead of an unbounded buffer). The consumer
sequence of every delivery is checked as well: nats-py counts a message as delivered before
queueing it, so a message lost from its queue would go unseen by the ordered consumer; a jump makes
the builder recreate the consumer right after the last message it handled.

Restart time does not grow with the stream: replay starts at the oldest checkpoint (every market
is re-checkpointed each ``BOOK_BUILDER_CHECKPOINT_INTERVAL`` at the consumer's current position,
even when unchanged, so the oldest is at most one interval old), and never more than
``BOOK_BUILDER_MAX_REPLAY`` messages back. A checkpoint older than that window, ahead of the stream
(the stream was recreated) or behind its first message (expired) is discarded; such a market, like
one seen for the first time, waits for a venue snapshot in the window or asks for a resync.

Outputs (rules in ``services.book_builder.engine``):

* ``book.paradex.quotes.<MKT>`` QuoteTick, headers ``Pdx-Seq`` (venue sequence) and ``Pdx-Md-Seq``;
  Msg-Id ``pdx:bq:<MKT>:<seq>:<bid>:<bid size>:<ask>:<ask size>``.
* ``book.paradex.depth10.<MKT>`` OrderBookDepth10 (``sequence`` = venue sequence), header
  ``Pdx-Md-Seq``; Msg-Id ``pdx:bd10:<MKT>:<seq>:<crc32 of the levels>``.
* ``book.paradex.status.<MKT>`` BookStatus on every validity/staleness change.
* ``ctl.resync.<MKT>`` ResyncRequest (core NATS) when a book is invalid or has no snapshot.
* Request/reply ``book.paradex.snapshot.<MKT>`` -> BookSnapshot (full book + ``md_stream_seq``).
  An empty request returns every level; a request body ``N`` (ASCII integer) the best N a side.
  Only the instance owning the market replies, so every shard subscribes to the wildcard.

Scaling: run several instances with ``BOOK_BUILDER_SHARD=0/n`` .. ``n-1/n`` (crc32 of the market)
or disjoint ``BOOK_BUILDER_MARKETS`` lists (see ``services.book_builder.config``). Each keeps its
own ordered consumer and its markets' checkpoints; the checkpoints are keyed by market, so
changing the split keeps them usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from bus import Bucket, Publisher, subjects
from bus.book_client import MD_SEQ_HEADER, SEQ_HEADER, BookState
from bus.replay import replay
from schemas import DecodeError, ResyncRequest, decode_as, encode
from schemas.base import instrument_id
from schemas.book import BookCheckpoint, BookStatus
from schemas.data import OrderBookDepth10, QuoteTick
from services.book_builder import STARTED_MONOTONIC
from services.book_builder.config import SERVICE, BookBuilderSettings
from services.book_builder.engine import BookEngine, depth_msg_id, quote_msg_id, status_msg_id
from services.runtime import Service

MD_STREAM = "MD"
CHECKPOINT_CHUNK = 64


class BookBuilder(Service):
    name = SERVICE

    def __init__(self, settings: BookBuilderSettings) -> None:
        super().__init__(settings)
        self.cfg = settings
        self.t0 = time.monotonic()
        self.engine = BookEngine(
            self,
            ownership=settings.ownership,
            report=self.problems.report,
            builder=f"{settings.service}/{settings.instance}",
            depth_interval=settings.depth_interval,
            stale_after=settings.stale_after,
            resync_retry=settings.resync_retry,
            regression_threshold=settings.regression_threshold,
        )
        self.out: Publisher | None = None
        self.bucket: Bucket | None = None
        self.start_seq = 0
        self.end_seq_at_start = 0
        self.checkpoints_loaded = 0
        self.timings: dict[str, float] = {}
        self._md_sub: Any = None
        self._snap_sub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._resync_q: deque[tuple[str, str]] = deque()
        self._resync_wake = asyncio.Event()
        self._subjects: dict[str, tuple[str, str, str]] = {}
        self._last_md = time.monotonic()
        self._dseq = 0  # consumer sequence of the last MD message handled
        self._resubscribe_from = 0  # > 0: recreate the MD consumer from this stream sequence
        self.counter_sources.append(self.engine.stats.as_counters)
        self.counter_sources.append(self._out_counters)

    # -- sink (called by the engine) --------------------------------------------------------------

    def _subjects_of(self, market: str) -> tuple[str, str, str]:
        s = self._subjects.get(market)
        if s is None:
            s = self._subjects[market] = (
                subjects.book_quotes(market),
                subjects.book_depth10(market),
                subjects.book_status(market),
            )
        return s

    def quote(self, market: str, quote: QuoteTick, sequence: int, md_stream_seq: int) -> None:
        assert self.out is not None
        top = (quote.bid_price, quote.bid_size, quote.ask_price, quote.ask_size)
        self.out.publish_nowait(
            self._subjects_of(market)[0],
            encode(quote),
            quote_msg_id(market, sequence, top),
            headers={SEQ_HEADER: str(sequence), MD_SEQ_HEADER: str(md_stream_seq)},
        )

    def depth(self, market: str, depth: OrderBookDepth10, md_stream_seq: int) -> None:
        assert self.out is not None
        self.out.publish_nowait(
            self._subjects_of(market)[1],
            encode(depth),
            depth_msg_id(market, depth),
            headers={MD_SEQ_HEADER: str(md_stream_seq)},
        )

    def status(self, market: str, status: BookStatus) -> None:
        assert self.out is not None
        if status.state != BookState.VALID.value or status.stale:
            self.log.warning(
                "book %s %s%s: %s", market, status.state, " (stale)" if status.stale else "", status.reason
            )
        self.out.publish_nowait(
            self._subjects_of(market)[2],
            encode(status),
            status_msg_id(market, status),
            headers={MD_SEQ_HEADER: str(status.md_stream_seq)},
        )

    def resync(self, market: str, reason: str) -> None:
        self._resync_q.append((market, reason))
        self._resync_wake.set()

    # -- lifecycle --------------------------------------------------------------------------------

    async def setup(self) -> None:
        self.set_state("Recovering")
        self.out = await Publisher(self.nc, self.js, name=f"{SERVICE}-out").start()
        self.bucket = await Bucket.open(self.js, self.cfg.bucket)
        own = self.cfg.ownership
        for market in sorted(own.markets):
            if own.owns(market):
                self.engine.market(market)
        self.details["ownership"] = own.describe()
        info = await self.js.stream_info(MD_STREAM)
        first, last = int(info.state.first_seq or 0), int(info.state.last_seq or 0)
        self.end_seq_at_start = last
        window_start = max(1, first, last - self.cfg.max_replay + 1)
        t = time.monotonic()
        oldest = await self._load_checkpoints(first, last, window_start)
        self.timings["load_checkpoints_s"] = time.monotonic() - t
        t = time.monotonic()
        await self._load_floors()
        self.timings["load_floors_s"] = time.monotonic() - t
        self.timings["setup_s"] = time.monotonic() - self.t0
        self.start_seq = min(oldest + 1, last + 1) if oldest is not None else window_start
        self.engine.position = self.start_seq - 1
        self.log.info(
            "replaying MD from %d (stream %d..%d, %d checkpoints, %s)",
            self.start_seq,
            first,
            last,
            self.checkpoints_loaded,
            own.describe(),
        )
        await self._subscribe_md()
        self._snap_sub = await self.nc.subscribe("book.paradex.snapshot.*", cb=self._on_snapshot_request)
        self._tasks = [
            asyncio.create_task(self._checkpoint_loop(), name="checkpoints"),
            asyncio.create_task(self._maintenance_loop(), name="maintenance"),
            asyncio.create_task(self._resync_sender(), name="resync"),
        ]
        if self.cfg.depth_interval > 0:
            self._tasks.append(asyncio.create_task(self._depth_loop(), name="depth10"))
        if last < self.start_seq:
            self._go_live()
        else:
            info = await self._md_sub.consumer_info()
            if int(info.num_pending or 0) == 0 and int(info.num_ack_pending or 0) == 0:
                self._go_live()  # nothing of ours in the replay window (e.g. other shards' markets)

    async def _load_checkpoints(self, first: int, last: int, window_start: int) -> int | None:
        """Restore every owned market's checkpoint; returns the oldest kept ``md_stream_seq``."""
        assert self.bucket is not None
        oldest: int | None = None
        async for m in replay(
            self.js, f"$KV.{self.cfg.bucket}.paradex.>", stream=f"KV_{self.cfg.bucket}", last_per_subject=True
        ):
            if m.headers and m.headers.get("KV-Operation") in ("DEL", "PURGE"):
                continue
            try:
                ck = msgspec.msgpack.decode(m.data, type=BookCheckpoint)
            except msgspec.DecodeError as exc:
                self.problems.report("malformed_checkpoint", subject=m.subject, error=str(exc)[:200])
                continue
            if not self.engine.owns(ck.market):
                continue
            if ck.md_stream_seq > last:
                self.problems.report(
                    "checkpoint_ahead_of_stream", market=ck.market, checkpoint=ck.md_stream_seq, stream_last=last
                )
                continue
            if ck.md_stream_seq + 1 < max(first, window_start):
                self.problems.report(
                    "checkpoint_too_old", market=ck.market, checkpoint=ck.md_stream_seq, replay_from=window_start
                )
                continue
            try:
                self.engine.restore(ck)
            except (msgspec.DecodeError, ValueError) as exc:
                self.problems.report("malformed_checkpoint", market=ck.market, error=str(exc)[:200])
                continue
            self.checkpoints_loaded += 1
            oldest = ck.md_stream_seq if oldest is None else min(oldest, ck.md_stream_seq)
        return oldest

    async def _load_floors(self) -> None:
        """The newest stored quote and depth10 per owned market: never publish below them."""
        async for m in replay(self.js, "book.paradex.quotes.>", stream="BOOK", last_per_subject=True):
            market = subjects.market_from_subject(m.subject)
            if not self.engine.owns(market):
                continue
            try:
                q = decode_as(m.data, QuoteTick)
                seq = int((m.headers or {}).get(SEQ_HEADER, "0"))
            except (DecodeError, ValueError) as exc:
                self.problems.report("malformed_stored_quote", market=market, error=str(exc)[:200])
                continue
            self.engine.set_quote_floor(market, seq, (q.bid_price, q.bid_size, q.ask_price, q.ask_size))
        async for m in replay(self.js, "book.paradex.depth10.>", stream="BOOK", last_per_subject=True):
            market = subjects.market_from_subject(m.subject)
            if not self.engine.owns(market):
                continue
            try:
                d = decode_as(m.data, OrderBookDepth10)
            except DecodeError as exc:
                self.problems.report("malformed_stored_depth", market=market, error=str(exc)[:200])
                continue
            levels = (
                [(lv.price, lv.size) for lv, c in zip(d.bids, d.bid_counts, strict=False) if c],
                [(lv.price, lv.size) for lv, c in zip(d.asks, d.ask_counts, strict=False) if c],
            )
            self.engine.set_depth_floor(market, d.sequence, levels)

    async def _subscribe_md(self) -> None:
        """The ordered consumer from ``self.start_seq`` (nothing is acked; see the module docstring)."""
        filters = self.cfg.ownership.filter_subjects()
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.start_seq)
        if len(filters) > 1:
            config.filter_subjects = filters
        self._md_sub = await self.js.subscribe(
            filters[0],
            stream=MD_STREAM,
            ordered_consumer=True,
            cb=self._on_md,
            config=config,
            idle_heartbeat=2.0,
            pending_msgs_limit=200_000,
            pending_bytes_limit=512 * 2**20,
        )
        self.subscriptions["md.deltas"] = "Active" if self.engine.live else "Replaying"

    async def _resubscribe(self) -> None:
        start = self._resubscribe_from
        if self._md_sub is not None:
            with contextlib.suppress(Exception):
                await self._md_sub.unsubscribe()
        self.start_seq = start
        self._dseq = 0
        await self._subscribe_md()
        self._resubscribe_from = 0
        self.log.warning("MD consumer recreated from stream sequence %d after a lost delivery", start)

    async def stop_intake(self) -> None:
        for sub in (self._md_sub, self._snap_sub):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        self._md_sub = self._snap_sub = None
        self.subscriptions["md.deltas"] = "Stopped"

    async def drain(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        await self._checkpoint()
        if self.out is not None:
            await self.out.close(self.settings.drain_timeout)

    # -- intake -----------------------------------------------------------------------------------

    async def _on_md(self, msg: Msg) -> None:
        # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending> (+ domain/hash form)
        tokens = msg.reply.split(".") if msg.reply else ()
        o = 2 if len(tokens) == 9 else 4
        try:
            sseq = int(tokens[o + 3])
            dseq = int(tokens[o + 4])
            pending = int(tokens[o + 6])
        except (IndexError, ValueError):
            self.problems.report("md_message_without_metadata", subject=msg.subject, reply=msg.reply)
            return
        if self._resubscribe_from:
            return  # a delivery was lost below us: everything until the new consumer is dropped
        if dseq != self._dseq + 1 and dseq != 1:
            # nats-py counts a message as delivered before queueing it; if its queue overflowed the
            # message is gone without the ordered consumer noticing. Start over after the position.
            self.problems.report("md_delivery_gap", expected=self._dseq + 1, got=dseq, stream_seq=sseq)
            self._resubscribe_from = self.engine.position + 1
            return
        self._dseq = dseq
        try:
            self.engine.on_message(msg.subject, msg.data, msg.headers, sseq)
        except Exception as exc:  # noqa: BLE001 - a bug on one message must not stop the intake
            market = subjects.market_from_subject(msg.subject)
            self.problems.report("handler_error", market=market, stream_seq=sseq, error=repr(exc)[:300])
            m = self.engine.markets.get(market)
            if m is not None:
                m.book.invalidate(f"internal error at MD seq {sseq}: {exc!r}"[:200])
        self._last_md = time.monotonic()
        if pending == 0 and not self.engine.live:
            self._go_live()

    def _go_live(self) -> None:
        if self.engine.live:
            return
        self.engine.go_live()
        since_init = time.monotonic() - self.t0
        took = time.monotonic() - STARTED_MONOTONIC
        replayed = max(0, self.engine.position - self.start_seq + 1)
        self.timings["replay_s"] = since_init - self.timings.get("setup_s", 0.0)
        self.timings["startup_s"] = took - since_init
        self.details["recovery_s"] = f"{took:.3f}"
        self.details["replayed_messages"] = str(replayed)
        self.details["replay_from"] = str(self.start_seq)
        self.details["checkpoints_loaded"] = str(self.checkpoints_loaded)
        for k, v in self.timings.items():
            self.details[k] = f"{v:.3f}"
        self.subscriptions["md.deltas"] = "Active"
        self.log.info(
            "live after %.3f s: replayed MD %d..%d (%d checkpoints, %d markets)",
            took,
            self.start_seq,
            self.engine.position,
            self.checkpoints_loaded,
            len(self.engine.markets),
            extra={"ctx": {"recovery_s": round(took, 3), "replayed": replayed, **self.timings}},
        )
        self._update_health()

    # -- snapshot service -------------------------------------------------------------------------

    async def _on_snapshot_request(self, msg: Msg) -> None:
        market = subjects.market_from_subject(msg.subject)
        depth: int | None = None
        if msg.data:
            try:
                depth = max(0, int(msg.data))
            except ValueError:
                self.problems.report("malformed_snapshot_request", market=market, body=msg.data[:40])
        snap = self.engine.snapshot(market, depth)
        if snap is None:
            return  # another shard owns it
        if not msg.reply:
            self.problems.report("snapshot_request_without_reply", market=market)
            return
        payload = encode(snap)
        if len(payload) > self.nc.max_payload:
            self.problems.report(
                "snapshot_too_large", market=market, size=len(payload), limit=self.nc.max_payload, hint="ask with depth"
            )
            return
        self.metrics.inc("snapshot_replies")
        await self.nc.publish(msg.reply, payload)

    # -- periodic work ----------------------------------------------------------------------------

    async def _checkpoint(self) -> None:
        if self.bucket is None:
            return
        batch = self.engine.checkpoints()
        limit = self.nc.max_payload
        for i in range(0, len(batch), CHECKPOINT_CHUNK):
            chunk = batch[i : i + CHECKPOINT_CHUNK]
            puts = []
            for key, value, m, _eff in chunk:
                if len(value) > limit:
                    self.problems.report("checkpoint_too_large", market=m.market, size=len(value), limit=limit)
                    continue
                puts.append(self.bucket.put(key, value))
            results = await asyncio.gather(*puts, return_exceptions=True)
            kept = [c for c in chunk if len(c[1]) <= limit]
            for (_key, _value, m, eff), r in zip(kept, results, strict=True):
                if isinstance(r, BaseException):
                    self.problems.report("checkpoint_failed", market=m.market, error=repr(r)[:200])
                else:
                    m.ckpt_seq = eff
                    self.metrics.inc("checkpoints_written")

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.checkpoint_interval)
            try:
                await self._checkpoint()
            except Exception as exc:  # noqa: BLE001 - retried next interval
                self.problems.report("checkpoint_failed", error=repr(exc)[:200])

    async def _depth_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.depth_interval)
            self.engine.flush_depth()

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                if self._resubscribe_from:
                    await self._resubscribe()
                if not self.engine.live and time.monotonic() - self._last_md > 1.0 and self._md_sub is not None:
                    info = await self._md_sub.consumer_info()
                    if int(info.num_pending or 0) == 0:
                        self._go_live()
                self.engine.tick()
                self._update_health()
            except Exception as exc:  # noqa: BLE001 - next round retries
                self.problems.report("maintenance_failed", error=repr(exc)[:200])

    async def _resync_sender(self) -> None:
        requester = f"{self.settings.service}/{self.settings.instance}"
        while True:
            await self._resync_wake.wait()
            self._resync_wake.clear()
            while self._resync_q:
                market, reason = self._resync_q.popleft()
                req = ResyncRequest(
                    instrument_id=instrument_id(market),
                    reason=reason[:300],
                    requested_by=requester,
                    ts_init=time.time_ns(),
                )
                try:
                    await self.nc.publish(subjects.ctl_resync(market), encode(req))
                    self.metrics.inc("resync_requests")
                    self.log.info("resync requested for %s: %s", market, reason)
                except Exception as exc:  # noqa: BLE001 - the engine asks again after resync_retry
                    self.problems.report("resync_publish_failed", market=market, error=repr(exc)[:200])

    def _update_health(self) -> None:
        s = self.engine.summary()
        self.details["live"] = "1" if self.engine.live else "0"
        self.details["md_position"] = str(self.engine.position)
        self.details["markets"] = str(len(self.engine.markets))
        for key in ("invalid", "stale", "awaiting"):
            names = s[key]
            self.details[f"{key}_markets"] = ",".join(names[:20]) + (f",+{len(names) - 20}" if len(names) > 20 else "")
        for name, m in self.engine.markets.items():
            self.subscriptions[f"book.{name}"] = m.book.state.value + (",stale" if m.stale else "")
        if self.engine.live:
            self.set_state("Degraded" if s["invalid"] or s["stale"] else "Running")
        for k, v in self.engine.stats.as_counters("engine_").items():
            self.metrics.set(k, v)

    def _out_counters(self) -> dict[str, int]:
        return self.out.stats.as_counters("out_publish_") if self.out is not None else {}


def main() -> None:
    from services.runtime import run_service

    run_service(lambda: BookBuilder(BookBuilderSettings.from_env()))
