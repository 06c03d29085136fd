"""``ParadexDataClient``: a Nautilus live market-data client that reads the bus, not the venue.

Sources (DESIGN.md "Subjects"):

==========================  ===================================================================
Nautilus subscription       bus
==========================  ===================================================================
instruments                 ``REF`` (``ref.paradex.instrument.*``): all loaded at connect, then followed
trade ticks                 ``md.paradex.trades.<MKT>``
quote ticks                 ``md.paradex.quotes.<MKT>`` (venue BBO) or, with ``quotes_source="book"``,
                            ``book.paradex.quotes.<MKT>`` (top of the built book)
order book deltas (L2)      the book builder's snapshot (``book.paradex.snapshot.<MKT>``), then
                            ``md.paradex.deltas.<MKT>`` from the sequence it reflects
                            (``bus.book_client.book_stream``: no gap, no overlap)
order book depth (10)       ``book.paradex.depth10.<MKT>``
mark / index / funding      ``md.paradex.{mark,index,funding}.<MKT>``
instrument status           ``md.paradex.status.<MKT>``
==========================  ===================================================================

Live data comes through core NATS subscriptions (JetStream publishes are seen by plain
subscribers; nothing is replayed, as with any live feed). Order books are the exception: they need
every delta, so they use an ordered JetStream consumer and resynchronise themselves. Every book the
strategy sees starts with a full snapshot (CLEAR, then ADDs, ``F_SNAPSHOT``, ``F_LAST`` on the
last); after a gap the local book turns invalid and nothing is forwarded until the next snapshot,
which is forwarded whole. Every deltas message forwarded ends with ``F_LAST`` (one bus message is
one venue update), so ``DataEngineConfig.buffer_deltas=True`` works too.

Requests: instruments (``REF``), quote/trade ticks and depth10 history (replayed from ``MD``/
``BOOK`` -- as far back as those streams keep, 24 h / 1 h by default), and a book snapshot (the
builder). There are no bars and no instrument-close events on the bus: such requests and
subscriptions are refused with an error that says so (aggregate bars internally from trades).

Timestamps are the bus's: ``ts_event`` from the venue, ``ts_init`` when the pipeline built the event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pandas as pd
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.data.messages import (
    RequestBars,
    RequestInstrument,
    RequestInstruments,
    RequestOrderBookDepth,
    RequestOrderBookSnapshot,
    RequestQuoteTicks,
    RequestTradeTicks,
    SubscribeBars,
    SubscribeFundingRates,
    SubscribeIndexPrices,
    SubscribeInstrument,
    SubscribeInstrumentClose,
    SubscribeInstruments,
    SubscribeInstrumentStatus,
    SubscribeMarkPrices,
    SubscribeOrderBook,
    SubscribeQuoteTicks,
    SubscribeTradeTicks,
    UnsubscribeBars,
    UnsubscribeFundingRates,
    UnsubscribeIndexPrices,
    UnsubscribeInstrument,
    UnsubscribeInstrumentClose,
    UnsubscribeInstruments,
    UnsubscribeInstrumentStatus,
    UnsubscribeMarkPrices,
    UnsubscribeOrderBook,
    UnsubscribeQuoteTicks,
    UnsubscribeTradeTicks,
)
from nautilus_trader.live.data_client import LiveMarketDataClient
from nautilus_trader.model.data import DataType, OrderBookDeltas
from nautilus_trader.model.enums import BookType
from nautilus_trader.model.identifiers import ClientId, InstrumentId, Venue

import schemas as s
from bus import subjects
from bus.book_client import INVALIDATING, Applied, BookUnavailable, BookUpdate, book_stream, fetch_snapshot
from bus.connection import connect, jetstream
from bus.replay import replay, start_seq_for_last
from schemas.book import BookSnapshot
from schemas.enums import RecordFlag
from services.nautilus.config import QUOTE_SOURCES, ParadexDataClientConfig, nats_settings
from services.nautilus.convert import book_snapshot_to_deltas, to_nautilus
from services.nautilus.errors import ConversionError
from services.nautilus.providers import ALL_INSTRUMENTS, ParadexInstrumentProvider

VENUE = "PARADEX"
DEFAULT_HISTORY_LIMIT = 10_000
"""Messages returned by a tick request that gives neither ``start`` nor ``limit``."""


class ParadexDataClient(LiveMarketDataClient):
    """Market data for a ``TradingNode`` from the paradex-bus streams (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
        instrument_provider: ParadexInstrumentProvider,
        config: ParadexDataClientConfig,
        name: str | None = None,
    ) -> None:
        if config.quotes_source not in QUOTE_SOURCES:
            raise ValueError(f"quotes_source must be one of {QUOTE_SOURCES}, not {config.quotes_source!r}")
        super().__init__(
            loop=loop,
            client_id=ClientId(name or VENUE),
            venue=Venue(VENUE),
            msgbus=msgbus,
            cache=cache,
            clock=clock,
            instrument_provider=instrument_provider,
            config=config,
        )
        self._config = config
        self._provider = instrument_provider
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._subs: dict[str, Subscription] = {}
        self._books: dict[InstrumentId, asyncio.Task[None]] = {}
        self.counts: Counter[str] = Counter()
        """Messages forwarded per kind, and problems (``bad:<kind>``); for health and tests."""
        self._problem_logged: dict[str, float] = {}

    # -- connection -------------------------------------------------------------------------------

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("not connected")
        return self._js

    @property
    def nc(self) -> NATS:
        if self._nc is None:
            raise RuntimeError("not connected")
        return self._nc

    async def _connect(self) -> None:
        self._nc = await connect(f"nautilus-data-{self.trader_id}", nats_settings(self._config.nats_url))
        self._js = jetstream(self._nc)
        self._provider.bind(self._js)
        await self._load_instruments()
        self._subs[ALL_INSTRUMENTS] = await self.nc.subscribe(ALL_INSTRUMENTS, cb=self._on_instrument)

    async def _load_instruments(self) -> None:
        deadline = self._loop.time() + self._config.instrument_wait_secs
        while True:
            await self._provider.initialize(reload=True)
            if self._provider.count or self._loop.time() >= deadline:
                break
            self._log.info("Waiting for instruments on REF (is the feed handler running?)")
            await asyncio.sleep(0.5)
        for instrument in self._provider.list_all():
            self._handle_data(instrument)
        self._log.info(f"Loaded {self._provider.count} instruments from REF")

    async def _disconnect(self) -> None:
        for task in self._books.values():
            task.cancel()
        if self._books:
            await asyncio.wait(list(self._books.values()), timeout=5.0)
        self._books.clear()
        for sub in self._subs.values():
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
        self._nc = self._js = None

    # -- helpers ----------------------------------------------------------------------------------

    def _market(self, instrument_id: InstrumentId) -> str:
        if instrument_id.venue.value != VENUE:
            raise ValueError(f"{instrument_id} is not a {VENUE} instrument")
        return subjects.token(instrument_id.symbol.value)

    def _problem(self, kind: str, detail: object) -> None:
        """Count every bad message; log the first of a kind and then at most one per 10 s."""
        self.counts[f"bad:{kind}"] += 1
        now = self._loop.time()
        if now - self._problem_logged.get(kind, -1e9) >= 10.0:
            self._problem_logged[kind] = now
            self._log.warning(f"Dropped {kind} message ({self.counts[f'bad:{kind}']} so far): {detail}")

    def _forwarder(self, kind: str, cls: type[msgspec.Struct]) -> Callable[[Msg], Awaitable[None]]:
        async def on_msg(msg: Msg) -> None:
            try:
                obj = to_nautilus(s.decode_as(msg.data, cls), checked=True)
            except (s.DecodeError, ConversionError) as exc:
                self._problem(kind, exc)
                return
            self.counts[kind] += 1
            self._handle_data(obj)

        return on_msg

    async def _subscribe_subject(self, kind: str, subject: str, cls: type[msgspec.Struct]) -> None:
        if subject in self._subs:
            return
        self._subs[subject] = await self.nc.subscribe(subject, cb=self._forwarder(kind, cls))

    async def _unsubscribe_subject(self, subject: str) -> None:
        sub = self._subs.pop(subject, None)
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_instrument(self, msg: Msg) -> None:
        try:
            definition = s.decode_as(msg.data, s.CryptoPerpetual)
        except s.DecodeError as exc:
            self._problem("instrument", exc)
            return
        instrument = self._provider.add_definition(definition)
        if instrument is None:
            self.counts["bad:instrument"] += 1
            return
        self.counts["instrument"] += 1
        self._handle_data(instrument)

    def _quotes_subject(self, market: str) -> str:
        return subjects.book_quotes(market) if self._config.quotes_source == "book" else subjects.md("quotes", market)

    # -- subscriptions ----------------------------------------------------------------------------

    async def _subscribe_instruments(self, command: SubscribeInstruments) -> None:
        # Every definition on REF is already followed since connect (and sent to the DataEngine).
        self._log.debug("Instruments are followed on ref.paradex.instrument.* since connect")

    async def _subscribe_instrument(self, command: SubscribeInstrument) -> None:
        self._log.debug(f"{command.instrument_id} is followed on ref.paradex.instrument.* since connect")

    async def _unsubscribe_instruments(self, command: UnsubscribeInstruments) -> None:
        self._log.debug("Instrument definitions keep being followed for the cache")

    async def _unsubscribe_instrument(self, command: UnsubscribeInstrument) -> None:
        self._log.debug(f"{command.instrument_id} keeps being followed for the cache")

    async def _subscribe_trade_ticks(self, command: SubscribeTradeTicks) -> None:
        await self._subscribe_subject("trade", subjects.md("trades", self._market(command.instrument_id)), s.TradeTick)

    async def _unsubscribe_trade_ticks(self, command: UnsubscribeTradeTicks) -> None:
        await self._unsubscribe_subject(subjects.md("trades", self._market(command.instrument_id)))

    async def _subscribe_quote_ticks(self, command: SubscribeQuoteTicks) -> None:
        await self._subscribe_subject("quote", self._quotes_subject(self._market(command.instrument_id)), s.QuoteTick)

    async def _unsubscribe_quote_ticks(self, command: UnsubscribeQuoteTicks) -> None:
        await self._unsubscribe_subject(self._quotes_subject(self._market(command.instrument_id)))

    async def _subscribe_mark_prices(self, command: SubscribeMarkPrices) -> None:
        subject = subjects.md("mark", self._market(command.instrument_id))
        await self._subscribe_subject("mark", subject, s.MarkPriceUpdate)

    async def _unsubscribe_mark_prices(self, command: UnsubscribeMarkPrices) -> None:
        await self._unsubscribe_subject(subjects.md("mark", self._market(command.instrument_id)))

    async def _subscribe_index_prices(self, command: SubscribeIndexPrices) -> None:
        subject = subjects.md("index", self._market(command.instrument_id))
        await self._subscribe_subject("index", subject, s.IndexPriceUpdate)

    async def _unsubscribe_index_prices(self, command: UnsubscribeIndexPrices) -> None:
        await self._unsubscribe_subject(subjects.md("index", self._market(command.instrument_id)))

    async def _subscribe_funding_rates(self, command: SubscribeFundingRates) -> None:
        subject = subjects.md("funding", self._market(command.instrument_id))
        await self._subscribe_subject("funding", subject, s.FundingRateUpdate)

    async def _unsubscribe_funding_rates(self, command: UnsubscribeFundingRates) -> None:
        await self._unsubscribe_subject(subjects.md("funding", self._market(command.instrument_id)))

    async def _subscribe_instrument_status(self, command: SubscribeInstrumentStatus) -> None:
        subject = subjects.md("status", self._market(command.instrument_id))
        await self._subscribe_subject("status", subject, s.InstrumentStatus)

    async def _unsubscribe_instrument_status(self, command: UnsubscribeInstrumentStatus) -> None:
        await self._unsubscribe_subject(subjects.md("status", self._market(command.instrument_id)))

    async def _subscribe_instrument_close(self, command: SubscribeInstrumentClose) -> None:
        self._log.error(
            f"Cannot subscribe to {command.instrument_id} instrument close: Paradex perpetuals never close "
            "and the bus carries no such event"
        )

    async def _unsubscribe_instrument_close(self, command: UnsubscribeInstrumentClose) -> None:
        self._log.debug(f"No instrument close subscription for {command.instrument_id}")

    async def _subscribe_bars(self, command: SubscribeBars) -> None:
        self._log.error(
            f"Cannot subscribe to {command.bar_type} bars: the bus carries no venue bars; "
            "subscribe to INTERNAL bars aggregated from trade ticks instead"
        )

    async def _unsubscribe_bars(self, command: UnsubscribeBars) -> None:
        self._log.debug(f"No bar subscription for {command.bar_type}")

    # order book deltas: snapshot + MD deltas --------------------------------------------------

    async def _subscribe_order_book_deltas(self, command: SubscribeOrderBook) -> None:
        if command.book_type == BookType.L3_MBO:
            self._log.error(f"Cannot subscribe to L3 book of {command.instrument_id}: Paradex publishes L2 only")
            return
        if command.instrument_id in self._books:
            return
        market = self._market(command.instrument_id)
        task = self._loop.create_task(self._run_book(command.instrument_id, market), name=f"paradex-book-{market}")
        task.add_done_callback(self._on_book_done)
        self._books[command.instrument_id] = task

    async def _unsubscribe_order_book_deltas(self, command: UnsubscribeOrderBook) -> None:
        task = self._books.pop(command.instrument_id, None)
        if task is not None:
            task.cancel()

    def _on_book_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._log.error(f"Book task {task.get_name()} stopped: {task.exception()!r}")

    async def _run_book(self, instrument_id: InstrumentId, market: str) -> None:
        backoff = 0.25
        while True:
            try:
                async for update in book_stream(
                    self.nc,
                    self.js,
                    market,
                    snapshot_timeout=self._config.book_snapshot_timeout_secs,
                    attempts=self._config.book_snapshot_attempts,
                ):
                    self._on_book_update(instrument_id, update)
                    backoff = 0.25
                self._log.warning(f"Book stream of {market} ended; restarting from a snapshot")
            except asyncio.CancelledError:
                raise
            except BookUnavailable as exc:
                self._log.warning(f"{exc}; retrying in {backoff:.2f}s (is the book builder running?)")
            except Exception as exc:  # noqa: BLE001 - NATS/consumer failures: resync from a new snapshot
                self._log.warning(f"Book stream of {market} failed ({exc!r}); resyncing in {backoff:.2f}s")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    def _on_book_update(self, instrument_id: InstrumentId, update: BookUpdate) -> None:
        result = update.result
        if result is Applied.SNAPSHOT:
            if update.book.valid:
                self._send_book_snapshot(update)
            return
        if result is Applied.APPLIED and update.deltas is not None:
            deltas = update.deltas
            last = deltas.deltas[-1]
            if not last.flags & RecordFlag.F_LAST:
                deltas = msgspec.structs.replace(
                    deltas,
                    deltas=[*deltas.deltas[:-1], msgspec.structs.replace(last, flags=last.flags | RecordFlag.F_LAST)],
                )
            try:
                obj = to_nautilus(deltas, checked=True)
            except ConversionError as exc:
                self._problem("deltas", exc)
                return
            self.counts["deltas"] += 1
            self._handle_data(obj)
            return
        if result in INVALIDATING:
            self.counts[f"book_{result.name.lower()}"] += 1
            self._log.warning(
                f"Book of {instrument_id} is invalid ({update.book.reason}); nothing is forwarded until the next "
                "venue snapshot"
            )
        elif result is Applied.MALFORMED:
            self._problem("deltas", f"undecodable message at MD seq {update.md_stream_seq}")

    def _send_book_snapshot(self, update: BookUpdate) -> None:
        try:
            obj = to_nautilus(update.book.to_deltas(ts_init=self._clock.timestamp_ns()))
        except ConversionError as exc:
            self._problem("book_snapshot", exc)
            return
        self.counts["book_snapshot"] += 1
        self._handle_data(obj)

    # order book depth10 -------------------------------------------------------------------------

    def subscribe_order_book_depth(self, command: SubscribeOrderBook) -> None:
        # The 1.221 live base class has no wrapper for depth subscriptions; this mirrors the others.
        self._add_subscription_order_book_snapshots(command.instrument_id)
        self.create_task(
            self._subscribe_order_book_depth(command),
            log_msg=f"subscribe: order_book_depth {command.instrument_id}",
            success_msg=f"Subscribed {command.instrument_id} order book depth10",
        )

    def unsubscribe_order_book_depth(self, command: UnsubscribeOrderBook) -> None:
        self._remove_subscription_order_book_snapshots(command.instrument_id)
        self.create_task(
            self._unsubscribe_order_book_depth(command),
            log_msg=f"unsubscribe: order_book_depth {command.instrument_id}",
        )

    async def _subscribe_order_book_depth(self, command: SubscribeOrderBook) -> None:
        subject = subjects.book_depth10(self._market(command.instrument_id))
        await self._subscribe_subject("depth10", subject, s.OrderBookDepth10)

    async def _unsubscribe_order_book_depth(self, command: UnsubscribeOrderBook) -> None:
        await self._unsubscribe_subject(subjects.book_depth10(self._market(command.instrument_id)))

    # -- requests ---------------------------------------------------------------------------------

    async def _request_instrument(self, request: RequestInstrument) -> None:
        await self._provider.load_async(request.instrument_id)
        instrument = self._provider.find(request.instrument_id)
        if instrument is None:
            self._log.error(f"Cannot find instrument {request.instrument_id} on REF")
            return
        self._handle_instrument(instrument, request.id, request.start, request.end, request.params)

    async def _request_instruments(self, request: RequestInstruments) -> None:
        await self._provider.load_all_async()
        self._handle_instruments(
            request.venue, self._provider.list_all(), request.id, request.start, request.end, request.params
        )

    async def _request_quote_ticks(self, request: RequestQuoteTicks) -> None:
        market = self._market(request.instrument_id)
        ticks = await self._history(self._quotes_subject(market), s.QuoteTick, request)
        self._handle_quote_ticks(request.instrument_id, ticks, request.id, request.start, request.end, request.params)

    async def _request_trade_ticks(self, request: RequestTradeTicks) -> None:
        ticks = await self._history(subjects.md("trades", self._market(request.instrument_id)), s.TradeTick, request)
        self._handle_trade_ticks(request.instrument_id, ticks, request.id, request.start, request.end, request.params)

    async def _request_order_book_depth(self, request: RequestOrderBookDepth) -> None:
        depths = await self._history(
            subjects.book_depth10(self._market(request.instrument_id)), s.OrderBookDepth10, request
        )
        self._handle_order_book_depths(
            request.instrument_id, depths, request.id, request.start, request.end, request.params
        )

    async def _request_order_book_snapshot(self, request: RequestOrderBookSnapshot) -> None:
        market = self._market(request.instrument_id)
        try:
            snap = await fetch_snapshot(
                self.nc,
                market,
                timeout=self._config.book_snapshot_timeout_secs,
                attempts=self._config.book_snapshot_attempts,
            )
        except BookUnavailable as exc:
            self._log.error(f"Cannot get a book snapshot of {market}: {exc}")
            return
        if request.limit > 0:
            snap = msgspec.structs.replace(snap, bids=snap.bids[: request.limit], asks=snap.asks[: request.limit])
        deltas = self._snapshot_deltas(snap)
        if deltas is None:
            return
        self._handle_data_response(
            DataType(OrderBookDeltas, metadata={"instrument_id": request.instrument_id}),
            deltas,
            request.id,
            None,
            None,
            request.params,
        )

    def _snapshot_deltas(self, snap: BookSnapshot) -> OrderBookDeltas | None:
        if not snap.valid:
            self._log.warning(f"Book of {snap.instrument_id} is {snap.state} ({snap.reason}); returning it anyway")
        try:
            return book_snapshot_to_deltas(snap, ts_init=self._clock.timestamp_ns())
        except ConversionError as exc:
            self._log.error(f"Book snapshot of {snap.instrument_id} cannot be converted: {exc}")
            return None

    async def _request_bars(self, request: RequestBars) -> None:
        self._log.error(
            f"Cannot request {request.bar_type} bars: the bus has no venue bars; "
            "request trade ticks and aggregate them instead"
        )

    async def _history(self, subject: str, cls: type[msgspec.Struct], request: Any) -> list[Any]:
        """Stored messages of ``subject`` within the request's time range, at most ``limit`` (newest)."""
        start_ns = int(pd.Timestamp(request.start).value) if request.start is not None else None
        end_ns = int(pd.Timestamp(request.end).value) if request.end is not None else None
        limit = request.limit or (0 if start_ns is not None else DEFAULT_HISTORY_LIMIT)
        kwargs: dict[str, int] = {}
        if start_ns is not None:
            kwargs["start_time_ns"] = start_ns
        else:
            kwargs["start_seq"] = await start_seq_for_last(self.js, subject, limit)
        out: deque[Any] = deque(maxlen=limit or None)
        try:
            async with asyncio.timeout(self._config.request_timeout_secs):
                async for m in replay(self.js, subject, **kwargs):
                    try:
                        ev = s.decode_as(m.data, cls)
                    except s.DecodeError as exc:
                        self._problem("history", exc)
                        continue
                    ts = ev.ts_event  # type: ignore[attr-defined]
                    if (start_ns is not None and ts < start_ns) or (end_ns is not None and ts > end_ns):
                        continue
                    try:
                        out.append(to_nautilus(ev, checked=True))
                    except ConversionError as exc:
                        self._problem("history", exc)
        except TimeoutError:
            self._log.warning(
                f"History of {subject} cut short after {self._config.request_timeout_secs}s: "
                f"returning the {len(out)} messages read"
            )
        return list(out)
