"""In-flight resolution: settling orders whose last request has no known outcome from venue truth.

* ``resolve_submit(coid)`` -- for a submit whose outcome is unknown (timeout, 5xx, a crash between
  submit and reply, a redelivered command): query the venue by client id (open orders, then
  history). Found: apply it. Not found: keep asking until ``not_placed_after`` -- the last
  signature's timestamp + ``recv_window`` + a grace, after which the venue can no longer accept
  any request we signed for it -- then ``OrderRejected`` ("never reached the venue"). It never
  submits again: that is the only way a client order id cannot be placed twice.
* The loop (``run``) every ``inflight_interval``: orders in SUBMITTED / PENDING_CANCEL /
  PENDING_UPDATE whose last event is older than ``inflight_threshold`` (and that no command is
  resolving) are queried and settled: a pending cancel the venue still shows open is re-sent once,
  then ``OrderCancelRejected``; a pending modify the venue does not reflect is
  ``OrderModifyRejected`` after two checks; a venue order showing more filled than our fills gets
  its fills fetched (``GET /fills``) after ``fill_grace``. Every ``open_check_interval`` one
  ``GET /orders`` audits the orders we think are open: the venue's snapshot is applied to those it
  lists; the others are queried one by one (they closed while their updates were lost).
* ``kick()`` runs a full cycle now with every in-flight order due (after a WS reconnect, at start).

Private GETs are scarce (600/min), so the per-cycle number of single-order queries is bounded and
the open-order list is preferred.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from services.execution import projection as P
from services.execution.projection import OrderView
from services.order_router.counters import BufferedMetrics
from services.order_router.mapping import VenueOrder
from services.order_router.orders import OrderStore
from services.order_router.settings import RouterSettings
from services.order_router.transitions import Transitions
from services.order_router.venue import Venue
from services.paradex.rest import ParadexError, UnknownOutcome
from services.runtime import Metrics, Problems

log = logging.getLogger("order_router.inflight")

MAX_QUERIES_PER_CYCLE = 20
MAX_FILL_FETCHES_PER_CYCLE = 5


class Resolver:
    def __init__(
        self,
        store: OrderStore,
        trans: Transitions,
        venue: Venue,
        settings: RouterSettings,
        metrics: Metrics | BufferedMetrics,
        problems: Problems,
    ) -> None:
        self.store = store
        self.trans = trans
        self.venue = venue
        self.settings = settings
        self.metrics = metrics
        self.problems = problems
        self._kick = asyncio.Event()
        self._force = False
        self._last_audit = 0.0
        self.cycles = 0

    def not_placed_window(self) -> float:
        """Seconds after a signature's timestamp when the venue can no longer act on it."""
        return self.settings.recv_window_ms / 1000.0 + self.settings.unknown_grace

    def note_attempt(self, coid: str, signature_ts_ms: int) -> None:
        t = self.store.track(coid)
        t.not_placed_after = max(t.not_placed_after, signature_ts_ms / 1000.0 + self.not_placed_window())

    def note_restart(self) -> None:
        """After a restart any SUBMITTED order may have had a request signed up to now."""
        horizon = time.time() + self.not_placed_window()
        for o in self.store.in_flight():
            t = self.store.track(o.client_order_id, _market(o))
            t.not_placed_after = max(t.not_placed_after, horizon)

    def kick(self, reason: str) -> None:
        log.info("in-flight check requested: %s", reason)
        self._force = True
        self._kick.set()

    # -- lookups ------------------------------------------------------------------------------------

    async def lookup(self, o: OrderView) -> VenueOrder | None:
        """The venue's view of ``o``: by venue id when known, else by client id (open + history)."""
        market = _market(o)
        if o.venue_order_id:
            v = await self.venue.order(o.venue_order_id)
            if v is not None:
                return v
        return await self.venue.find_by_client_id(o.client_order_id, market or None)

    async def resolve_submit(self, coid: str) -> None:
        """Settle a SUBMITTED order of unknown fate (see the module docstring); owns the order meanwhile."""
        t = self.store.track(coid)
        delay = 0.1
        with self.store.owning([coid]):
            while True:
                o = self.store.order(coid)
                if o is None or o.status != P.SUBMITTED:
                    return
                try:
                    v = await self.lookup(o)
                except (UnknownOutcome, ParadexError) as exc:
                    # A failed lookup says nothing about the order: never read it as "absent".
                    self.problems.report("lookup_failed", coid=coid, error=str(exc))
                else:
                    if v is not None:
                        async with self.store.locked(coid):
                            await self.trans.apply_order(coid, v, "query")
                        self.metrics.inc("unknown_submits_resolved_total", outcome="found")
                        return
                    if time.time() > t.not_placed_after:
                        async with self.store.locked(coid):
                            o = self.store.order(coid)
                            if o is not None and o.status == P.SUBMITTED:
                                await self.trans.emit_rejected(
                                    o, "NOT_PLACED: the venue has no order with this client id after an unknown "
                                    "submit outcome and the signature's recv_window has expired"
                                )
                        self.metrics.inc("unknown_submits_resolved_total", outcome="not_placed")
                        return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- loop ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.settings.inflight_interval)
            self._kick.clear()
            force, self._force = self._force, False
            try:
                await self.cycle(force)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the loop must survive anything
                self.problems.report("inflight_cycle_failed", error=repr(exc))

    async def cycle(self, force: bool = False) -> None:
        self.cycles += 1
        now = time.monotonic()
        s = self.settings
        due: list[str] = []
        for o in self.store.in_flight():
            t = self.store.track(o.client_order_id, _market(o))
            if t.owner:
                continue
            if force or (now - t.last_change >= s.inflight_threshold and now - t.last_check >= s.inflight_threshold):
                due.append(o.client_order_id)
        if s.open_check_interval > 0 and (force or now - self._last_audit >= s.open_check_interval):
            self._last_audit = now
            due.extend(c for c in await self.audit_open_orders() if c not in due)
        for coid in due[:MAX_QUERIES_PER_CYCLE]:
            await self.check(coid)
        fills_due = [
            coid
            for coid, t in list(self.store.tracked.items())
            if t.fills_missing_since and (force or now - t.fills_missing_since >= s.fill_grace)
        ]
        for coid in fills_due[:MAX_FILL_FETCHES_PER_CYCLE]:
            await self.fetch_fills(coid)
        self.metrics.set("in_flight_orders", len(self.store.in_flight()))

    async def audit_open_orders(self) -> list[str]:
        """Apply the venue's open-order list; return our open orders it does not list."""
        try:
            venue_open = await self.venue.open_orders()
        except (UnknownOutcome, ParadexError) as exc:
            self.problems.report("open_orders_failed", error=str(exc))
            return []
        seen: set[str] = set()
        for v in venue_open:
            coid = self.store.coid_for(v.client_id, v.id)
            if coid is None:
                self.metrics.inc("external_open_orders_seen_total")
                continue
            seen.add(coid)
            t = self.store.track(coid, v.market)
            if v.last_updated_at > t.last_venue_ts or v.filled > t.venue_filled:
                async with self.store.locked(coid):
                    await self.trans.apply_order(coid, v, "audit")
        missing = []
        for market_orders in list(self.store.open_by_market.values()):
            for coid in list(market_orders):
                o = self.store.order(coid)
                if o is None or coid in seen or o.status == P.SUBMITTED:
                    continue  # SUBMITTED ones are the in-flight check's business
                if self.store.track(coid).owner:
                    continue
                missing.append(coid)
        if missing:
            self.metrics.inc("audit_missing_total", len(missing))
        return missing

    async def check(self, coid: str) -> None:
        o = self.store.order(coid)
        if o is None or o.is_closed:
            return
        t = self.store.track(coid, _market(o))
        t.last_check = time.monotonic()
        t.checks += 1
        self.metrics.inc("inflight_checks_total", status=o.status)
        try:
            v = await self.lookup(o)
        except (UnknownOutcome, ParadexError) as exc:
            self.problems.report("lookup_failed", coid=coid, error=str(exc))
            return
        async with self.store.locked(coid):
            o = self.store.order(coid)
            if o is None or o.is_closed:
                return
            if v is not None:
                await self.trans.apply_order(coid, v, "query")
                await self._settle_pending(o, v)
                return
            if o.status in (P.SUBMITTED, P.PENDING_CANCEL, P.PENDING_UPDATE) and not o.venue_order_id:
                if time.time() > t.not_placed_after:
                    await self.trans.emit_rejected(
                        o, "NOT_PLACED: the venue has no order with this client id and the last "
                        "signature's recv_window has expired"
                    )
                    self.metrics.inc("unknown_submits_resolved_total", outcome="not_placed")
                return
            self.problems.report("order_unknown_at_venue", coid=coid, status=o.status, venue_id=o.venue_order_id)

    async def _settle_pending(self, o: OrderView, v: VenueOrder) -> None:
        """Under the lock, after the venue snapshot was applied."""
        coid = o.client_order_id
        t = self.store.track(coid)
        if o.status == P.PENDING_CANCEL and v.status in ("NEW", "OPEN", "UNTRIGGERED"):
            if not t.cancel_resent:
                t.cancel_resent = True
                try:
                    await self.venue.cancel(v.id)
                    self.metrics.inc("cancels_resent_total")
                except (UnknownOutcome, ParadexError) as exc:
                    self.problems.report("cancel_resend_failed", coid=coid, error=str(exc))
                return
            await self.trans.emit_cancel_rejected(
                o, t.pending_cancel_cmd or "inflight", "cancel not effective: the order is still open at the venue"
            )
        elif o.status == P.PENDING_UPDATE and t.checks >= 2:
            pm = t.pending_modify
            await self.trans.emit_modify_rejected(
                o, pm.command_id if pm else "inflight", "modify not effective: the venue shows the previous values"
            )

    async def fetch_fills(self, coid: str) -> None:
        o = self.store.order(coid)
        t = self.store.tracked.get(coid)
        if o is None or t is None:
            return
        market = _market(o)
        start = (t.venue_created_at or int(time.time() * 1000) - 3_600_000) - 1000
        try:
            fills = [f async for f in self.venue.fills_since(market, start)]
        except (UnknownOutcome, ParadexError) as exc:
            self.problems.report("fills_fetch_failed", coid=coid, error=str(exc))
            return
        ours = [f for f in fills if f.client_id == coid or (o.venue_order_id and f.order_id == o.venue_order_id)]
        ours.sort(key=lambda f: (f.created_at, f.id))
        applied = 0
        async with self.store.locked(coid):
            for f in ours:
                if f.id not in o.trade_ids and await self.trans.apply_fill(coid, f, "rest"):
                    applied += 1
            if applied:
                self.problems.report("fills_recovered_from_rest", coid=coid, count=applied)
            if o.filled_qty >= t.venue_filled:
                t.fills_missing_since = 0.0
                if t.deferred_close is not None and not o.is_closed:
                    deferred, t.deferred_close = t.deferred_close, None
                    await self.trans.apply_order(coid, deferred, "deferred")
            else:
                # The venue reports filled quantity without fill records (yet): try again later;
                # inferring fills is the reconciler's job.
                self.problems.report(
                    "fill_records_missing", coid=coid, ours=str(o.filled_qty), venue=str(t.venue_filled)
                )
                t.fills_missing_since = time.monotonic()


def _market(o: OrderView) -> str:
    return o.instrument_id.rsplit(".", 1)[0] if o.instrument_id else ""
