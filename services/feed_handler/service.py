"""The feed-handler process: Paradex public market data onto the ``MD`` and ``REF`` streams.

Wiring (each piece lives in its own module):

* ``Catalog`` (``/markets`` + ``/system/state``, disk copy) → ``CryptoPerpetual`` on
  ``ref.paradex.instrument.<MKT>`` (Msg-Id from a content hash, so an unchanged definition is stored
  once) and ``InstrumentStatus`` on ``md.paradex.status.<MKT>`` (published when the status changes,
  compared with the last one on the bus so restarts and replicas do not repeat it).
* ``WsClient`` (connection + subscription state machines) → ``MarketFeed`` handlers per owned market
  (trades, bbo, deltas, markets_summary, funding_data) → ``bus.Publisher`` (buffered, bounded).
* ``LeaseManager`` (mode ``shard``) decides which markets this instance owns; mode ``replica``
  serves every market.
* ``ctl.resync.<MKT>`` requests (core NATS, ``ResyncRequest``) resubscribe an owned market's book.

Health: ``state`` is the WebSocket connection state, ``subscriptions`` every channel's state,
``details`` the owned markets, mode, instrument source; counters come from the feed, the socket,
the REST client, the leases and the publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Any

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from bus import msgid, subjects
from schemas import CryptoPerpetual, DecodeError, InstrumentStatus, ResyncRequest, TradeTick, decode, decode_as
from schemas.base import market_of
from services.feed_handler.catalog import Catalog
from services.feed_handler.leases import LeaseManager
from services.feed_handler.market import FeedStats, MarketFeed
from services.feed_handler.settings import FeedSettings
from services.paradex.instruments import fingerprint, instrument_status, int_field
from services.paradex.rest import RestClient
from services.paradex.venue_types import markets_event_decoder
from services.paradex.ws import WsClient
from services.paradex.ws_types import ConnState, SubState
from services.runtime import Service

log = logging.getLogger("feed_handler")


class FeedHandler(Service):
    name = "feed-handler"

    def __init__(self, settings: FeedSettings) -> None:
        super().__init__(settings)
        self.fs = settings
        self.stats = FeedStats()
        self.feeds: dict[str, MarketFeed] = {}
        self.rest: RestClient = None  # type: ignore[assignment]
        self.catalog: Catalog = None  # type: ignore[assignment]
        self.ws: WsClient = None  # type: ignore[assignment]
        self.leases: LeaseManager | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._bg: set[asyncio.Task[Any]] = set()
        self._inst_fp: dict[str, str] = {}
        self._status_last: dict[str, tuple[str, str]] = {}
        self._pending_release: dict[str, asyncio.Task[None]] = {}
        self._disconnected_ms = 0
        self._ever_connected = False
        self._catalog_dirty = asyncio.Event()
        self._resync_sub: Any = None

    # -- lifecycle --------------------------------------------------------------------------------

    async def setup(self) -> None:
        s = self.fs
        self.rest = RestClient(s.rest_url, timeout=s.rest_timeout)
        self.catalog = Catalog(self.rest, s.cache_dir, fees=s.fees, report=self.problems.report)
        self.ws = WsClient(
            s.ws_url,
            name=f"{s.service}-ws",
            config=s.ws,
            on_state=self._on_ws_state,
            on_sub_state=self._on_sub_state,
            on_connected=self._on_ws_connected,
            report=self.problems.report,
        )
        self.counter_sources += [
            self.stats.as_counters,
            self.ws.stats.as_counters,
            self.rest.stats.as_counters,
        ]
        self.details["mode"] = s.mode
        self.details["owned_markets"] = ""
        self.details["owned_count"] = "0"
        self._resync_sub = await self.nc.subscribe("ctl.resync.*", cb=self._on_resync)

    async def run(self) -> None:
        await self._load_catalog()
        if self.fs.markets_channel:
            self.ws.subscribe("markets", self._on_markets_event)
        await self.ws.start()
        self._set_health_state()
        universe = self._universe()
        if self.fs.mode == "replica":
            for market in universe:
                await self._acquire(market, "replica")
        else:
            self.leases = LeaseManager(
                nc=self.nc,
                js=self.js,
                instance=self.settings.instance,
                markets=universe,
                on_acquire=self._acquire,
                on_release=self._release,
                ttl=self.fs.lease_ttl,
                scan_interval=self.fs.lease_scan,
                orphan_grace=self.fs.lease_orphan_grace,
                probe_interval=self.fs.lease_probe,
                report=self.problems.report,
            )
            self.counter_sources.append(self.leases.stats.as_counters)
            self._tasks.append(asyncio.create_task(self.leases.run(), name="leases"))
        self._tasks += [
            asyncio.create_task(self._catalog_loop(), name="catalog"),
            asyncio.create_task(self._status_loop(), name="status"),
            asyncio.create_task(self._trade_audit_loop(), name="trade-audit"),
            asyncio.create_task(self._details_loop(), name="details"),
        ]
        await self.stopping.wait()

    async def stop_intake(self) -> None:
        if self._resync_sub is not None:
            with contextlib.suppress(Exception):
                await self._resync_sub.unsubscribe()
        if self.leases is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.leases.release_all(), 3.0)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for t in list(self._bg) + list(self._pending_release.values()):
            t.cancel()
        if self.ws is not None:
            await self.ws.close()

    async def drain(self) -> None:
        if self.rest is not None:
            await self.rest.close()
        if self.catalog is not None:
            self.catalog.close()

    # -- catalogue --------------------------------------------------------------------------------

    async def _load_catalog(self) -> None:
        """REST, else the disk copy; without either, retry until the venue answers."""
        delay = 0.5
        while not self.stopping.is_set():
            try:
                await self.catalog.refresh()
                break
            except Exception as exc:  # noqa: BLE001 - any venue failure: fall back / retry
                self.problems.report("venue_rest_unavailable", error=repr(exc))
                if self.catalog.load_cache():
                    break
                self.details.update(self.catalog.details())
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self.details.update(self.catalog.details())
        log.info("catalogue: %d markets (%s)", len(self.catalog.instruments), self.catalog.source)

    def _universe(self) -> list[str]:
        known = set(self.catalog.instruments)
        if not self.fs.markets:
            return sorted(known)
        out = []
        for m in self.fs.markets:
            if m in known:
                out.append(m)
            else:
                self.problems.report("configured_market_unknown", market=m)
        return out

    async def _catalog_loop(self) -> None:
        interval = self.fs.instrument_refresh
        while True:
            retry = self.catalog.source != "rest"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._catalog_dirty.wait(), 5.0 if retry else interval)
            await asyncio.sleep(0.2)  # let a burst of markets events settle
            self._catalog_dirty.clear()
            try:
                changed = await self.catalog.refresh()
            except Exception as exc:  # noqa: BLE001 - keep serving the definitions we have
                self.problems.report("instrument_refresh_failed", error=repr(exc))
                self.details.update(self.catalog.details())
                continue
            self.details.update(self.catalog.details())
            self.details.pop("venue_rest_error", None)
            if changed:
                await self._apply_catalog_changes(changed)

    async def _apply_catalog_changes(self, changed: set[str]) -> None:
        universe = self._universe()
        if self.leases is not None:
            self.leases.set_markets(universe)
        elif self.fs.mode == "replica":
            for m in universe:
                if m not in self.feeds:
                    await self._acquire(m, "listed")
            for m in list(self.feeds):
                if m not in universe:
                    await self._release(m, "delisted")
        for m in changed:
            feed = self.feeds.get(m)
            spec = self.catalog.specs.get(m)
            if feed is not None and spec is not None:
                feed.spec = spec
                await self._publish_instrument(m)
                await self._publish_status(m)

    def _on_markets_event(self, channel: str, data: Any) -> None:
        try:
            event = markets_event_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.stats.malformed += 1
            self.problems.report("malformed_venue_message", channel=channel, error=str(exc))
            return
        log.info("markets event: %s %s", event.event_type, event.symbol)
        self._catalog_dirty.set()

    # -- ownership --------------------------------------------------------------------------------

    async def _acquire(self, market: str, why: str) -> None:
        pending = self._pending_release.pop(market, None)
        if pending is not None:
            pending.cancel()  # re-acquired during a handover grace: keep the running feed
            if market in self.feeds:
                self._update_owned()
                return
        if market in self.feeds:
            return
        spec = self.catalog.specs.get(market)
        if spec is None:
            self.problems.report("owned_market_unknown", market=market)
            return
        feed = MarketFeed(
            spec,
            publisher=self.publisher,
            ws=self.ws,
            rest=self.rest,
            stats=self.stats,
            report=self.problems.report,
            resync_min_interval=self.fs.resync_min_interval,
        )
        self.feeds[market] = feed
        takeover = await self._takeover_tape(market)
        if takeover is not None:
            feed.continue_tape_from(takeover[0])
            feed.hold_trades()
        ch = feed.channels
        idle = self.fs.idle_timeout or None
        self.ws.subscribe(ch.trades, feed.on_trade, idle_timeout=self.fs.trades_idle_timeout or None)
        self.ws.subscribe(ch.bbo, feed.on_bbo, idle_timeout=idle)
        self.ws.subscribe(ch.deltas, feed.on_book, idle_timeout=idle)
        self.ws.subscribe(ch.summary, feed.on_summary, idle_timeout=idle)
        self.ws.subscribe(ch.funding, feed.on_funding, idle_timeout=self.fs.funding_idle_timeout or None)
        self._update_owned()
        log.info("serving %s (%s)", market, why)
        await self._publish_instrument(market)
        await self._publish_status(market)
        if takeover is not None:
            self._spawn(feed.backfill_trades(takeover[1]))

    async def _release(self, market: str, why: str) -> None:
        if market not in self.feeds:
            return
        if why.startswith("rebalance") and self.fs.handover_grace > 0:
            # Keep publishing while the new owner starts: doubles are stored once (Msg-Ids).
            task = asyncio.create_task(self._stop_after(market, self.fs.handover_grace, why))
            self._pending_release[market] = task
            return
        await self._stop_market(market, why)

    async def _stop_after(self, market: str, delay: float, why: str) -> None:
        await asyncio.sleep(delay)
        self._pending_release.pop(market, None)
        await self._stop_market(market, why)

    async def _stop_market(self, market: str, why: str) -> None:
        feed = self.feeds.pop(market, None)
        if feed is None:
            return
        self._update_owned()
        log.info("stopped serving %s (%s)", market, why)
        ch = feed.channels
        for name in (ch.trades, ch.bbo, ch.deltas, ch.summary, ch.funding):
            self.subscriptions.pop(name, None)
            if self.stopping.is_set():
                continue  # the socket is about to close; no need to unsubscribe one by one
            try:
                await self.ws.unsubscribe(name)
            except Exception as exc:  # noqa: BLE001 - the venue side is best effort
                self.problems.report("unsubscribe_failed", channel=name, error=repr(exc))
        self._set_health_state()

    def _update_owned(self) -> None:
        owned = sorted(self.feeds)
        self.details["owned_markets"] = ",".join(owned)
        self.details["owned_count"] = str(len(owned))

    async def _takeover_tape(self, market: str) -> tuple[int, int] | None:
        """After taking a market over: (where the tape on the bus starts, where the backfill starts).

        The backfill re-audits the whole ``trade_backfill`` window, not just what came after the
        last trade on the bus: the previous owner may have died after a silent trades channel came
        back and before its audit filled the hole behind that trade. Trades already stored are
        dropped by their Msg-Ids (the MD duplicate window is longer than the backfill window)."""
        window = self.fs.trade_backfill
        if window <= 0:
            return None
        subject = subjects.md("trades", market)
        last = await self._on_bus("MD", subject)
        if not isinstance(last, TradeTick):
            return None  # nothing published for this market yet: nothing to catch up on
        first = await self._on_bus("MD", subject, first=True)
        tape_start_ms = (first if isinstance(first, TradeTick) else last).ts_event // 1_000_000
        floor_ms = int(time.time() * 1000 - window * 1000)
        return tape_start_ms, max(tape_start_ms, floor_ms)

    # -- reference data ---------------------------------------------------------------------------

    async def _on_bus(self, stream: str, subject: str, *, first: bool = False) -> Any:
        """The last (or first) event stored on ``subject``, or None."""
        try:
            if first:
                raw = await self.js.get_msg(stream, seq=1, subject=subject, next=True, direct=True)
            else:
                raw = await self.js.get_last_msg(stream, subject, direct=True)
        except (NotFoundError, nats.errors.Error, TimeoutError) as exc:
            if not isinstance(exc, NotFoundError):
                self.problems.report("bus_read_failed", subject=subject, error=repr(exc))
            return None
        if not raw.data:
            return None
        try:
            return decode(raw.data)
        except DecodeError as exc:
            self.problems.report("bus_message_undecodable", subject=subject, error=str(exc))
            return None

    async def _publish_instrument(self, market: str) -> None:
        inst = self.catalog.instruments.get(market)
        if inst is None:
            return
        fp = fingerprint(inst)
        if self._inst_fp.get(market) == fp:
            return
        subject = subjects.instrument(market)
        if market not in self._inst_fp:
            last = await self._on_bus("REF", subject)
            if isinstance(last, CryptoPerpetual) and fingerprint(last) == fp:
                self._inst_fp[market] = fp
                return
        self.publisher.publish_event_nowait(subject, inst, msgid.instrument(market, fp))
        self._inst_fp[market] = fp
        self.stats.published += 1

    async def _publish_status(self, market: str) -> None:
        raw = self.catalog.raw.get(market)
        if raw is None or self.catalog.system_status is None:
            return
        status = instrument_status(
            market, self.catalog.system_status, int_field(raw, "open_at"), int_field(raw, "expiry_at"), time.time_ns()
        )
        key = (status.action.value, status.reason or "")
        if self._status_last.get(market) == key:
            return
        subject = subjects.md("status", market)
        if market not in self._status_last:
            last = await self._on_bus("MD", subject)
            if isinstance(last, InstrumentStatus) and (last.action.value, last.reason or "") == key:
                self._status_last[market] = key
                return
        ts_ms = status.ts_event // 1_000_000
        self.publisher.publish_event_nowait(subject, status, msgid.status(market, status.action.value, ts_ms))
        self._status_last[market] = key
        self.stats.published += 1
        log.info("%s status %s (%s)", market, status.action.value, status.reason)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.fs.status_interval)
            try:
                await self.catalog.refresh_status()
            except Exception as exc:  # noqa: BLE001 - keep the last known status
                self.problems.report("system_state_failed", error=repr(exc))
            self.details["system_status"] = self.catalog.system_status or "unknown"
            for market in list(self.feeds):
                await self._publish_status(market)

    async def _trade_audit_loop(self) -> None:
        """Compare each owned market's trades with ``GET /trades`` every ``trade_audit`` seconds.

        A trades channel can go silent while the connection stays up (an acked-but-dead stream),
        and a quiet market looks the same, so silence alone cannot tell. The audit publishes any
        venue trade the socket did not deliver (same trade-id Msg-Ids: nothing is stored twice)."""
        if self.fs.trade_audit <= 0:
            return
        while True:
            await asyncio.sleep(self.fs.trade_audit)
            floor_ms = int(time.time() * 1000 - max(self.fs.trade_backfill, 2 * self.fs.trade_audit) * 1000)
            for feed in list(self.feeds.values()):
                since = max(floor_ms, feed.last_trade_ms - int(self.fs.trade_audit * 1000))
                self._spawn(feed.backfill_trades(since, max_pages=2))

    # -- control ----------------------------------------------------------------------------------

    async def _on_resync(self, msg: Msg) -> None:
        market = subjects.market_from_subject(msg.subject)
        try:
            req = decode_as(msg.data, ResyncRequest)
        except DecodeError as exc:
            self.problems.report("malformed_resync_request", subject=msg.subject, error=str(exc))
            return
        if market_of(req.instrument_id) != market:
            self.problems.report("resync_subject_mismatch", subject=msg.subject, instrument=req.instrument_id)
            return
        feed = self.feeds.get(market)
        if feed is None or market in self._pending_release:
            return  # another instance owns it and answers
        feed.request_resync(req.reason, req.requested_by)

    # -- socket events ----------------------------------------------------------------------------

    def _on_ws_state(self, old: ConnState, new: ConnState) -> None:
        if new in (ConnState.RECONNECTING, ConnState.DISCONNECTED) and old not in (
            ConnState.RECONNECTING,
            ConnState.DISCONNECTED,
            ConnState.CONNECTING,
        ):
            self._disconnected_ms = int(time.time() * 1000)
            for feed in self.feeds.values():
                feed.on_disconnect()
        self._set_health_state()

    def _on_ws_connected(self) -> None:
        reconnect = self._ever_connected
        self._ever_connected = True
        if not reconnect or self.fs.trade_backfill <= 0:
            return
        floor_ms = int(time.time() * 1000 - self.fs.trade_backfill * 1000)
        for feed in self.feeds.values():
            since = feed.last_trade_ms or (self._disconnected_ms - 1000)
            feed.hold_trades()
            self._spawn(feed.backfill_trades(max(since, floor_ms)))

    def _on_sub_state(self, channel: str, old: SubState, new: SubState) -> None:
        self.subscriptions[channel] = new.value

    def _set_health_state(self) -> None:
        if self.ws is None or self.stopping.is_set():
            return  # "Stopping"/"Stopped" belong to the runtime
        self.set_state(self.ws.state.value)

    async def _details_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.leases is not None:
                self.details["lease_share"] = str(self.leases.target())
                self.details["live_instances"] = str(len(self.leases.live_instances()))
            if self.ws.node_id:
                self.details["ws_node_id"] = self.ws.node_id
            self.details.update(self.rest.rate_limit.as_details())
            for k, v in self.stats.as_counters().items():
                self.metrics.set(k, v)
            for k, v in self.ws.stats.as_counters().items():
                self.metrics.set(k, v)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
