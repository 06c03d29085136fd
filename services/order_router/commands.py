"""Command handling: each command's events, venue calls and idempotency.

Every handler may run more than once for the same command (JetStream redelivers what was not
acked; a replacement router resumes the durable consumer), so each first asks the projection what
already happened:

* ``SubmitOrder`` -- ``OrderInitialized`` (the command's own, Msg-Id by client order id), then
  ``OrderDenied`` (pre-trade checks failed; the venue is never called) or ``OrderSubmitted``, *then*
  the venue. ``OrderSubmitted`` is stored before the POST, so a crash at any later point leaves the
  order in SUBMITTED and it is resolved by looking it up -- never by sending it again. A redelivered
  command whose order is past INITIALIZED is only looked up. A submit that provably did not reach
  the venue (429, connection refused) is re-signed and re-sent after the venue confirms it has no
  such order; a timeout or 5xx is unknown and goes to ``Resolver.resolve_submit``.
  Batch submit: commands with ``params["batch_id"]`` (and ``params["batch_size"]``) are sent
  together in one ``POST /orders/batch`` (see ``batching``).
* ``ModifyOrder`` -- ``OrderPendingUpdate`` (Msg-Id by command id), signed ``PUT``; the venue's
  ``request_info`` or the changed values settle it (``OrderUpdated`` / ``OrderModifyRejected``).
* ``CancelOrder`` -- ``OrderPendingCancel`` (by command id), ``DELETE`` by venue id (or client id);
  the WS ``CLOSED`` gives ``OrderCanceled``; a venue refusal ``OrderCancelRejected``.
* ``CancelAllOrders`` -- ``OrderPendingCancel`` for every open order in scope, then one
  ``DELETE /orders[?market=]`` (or a batch cancel when a side is given). A redelivered cancel-all
  cancels only what existed when it was issued (venue ``created_at`` <= command ``ts_init``).
* ``BatchCancelOrders`` -- one ``DELETE /orders/batch`` for all of them; per-order results.
* ``QueryOrder`` -- looks the order up and publishes an ``OrderStatusReport`` on
  ``exec.paradex.<acct>.report.order`` (and settles our view of the order from it).

A definite venue rejection (4xx) is a rejection; 429 and transport failures never are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import schemas as s
from bus import Publisher, msgid, subjects
from bus.msgid import event_uuid
from schemas.enums import OrderSide
from services.execution import projection as P
from services.execution.projection import OrderView
from services.order_router import pretrade
from services.order_router.batching import SubmitBatcher
from services.order_router.counters import BufferedMetrics
from services.order_router.inflight import Resolver
from services.order_router.mapping import (
    MARKET_TYPES,
    Unsupported,
    VenueOrderSpec,
    order_status_report,
    plain,
    venue_order_spec,
)
from services.order_router.market_data import MarketData
from services.order_router.orders import OrderStore, PendingModify, base_fields
from services.order_router.settings import RouterSettings
from services.order_router.transitions import Transitions, legal
from services.order_router.venue import NotSent, SignerFailed, Venue
from services.paradex.rest import ParadexError, RateLimited, UnknownOutcome
from services.runtime import Metrics, Problems

log = logging.getLogger("order_router.commands")

CANCEL_BATCH = 50


class Delivery:
    """What a handler may ask about the message that carried its command: how often it was
    delivered, when it was stored in CMD and when this router received it (ns)."""

    def __init__(self, num_delivered: int = 1, stored_ns: int = 0, received_ns: int = 0) -> None:
        self.num_delivered = num_delivered
        self.stored_ns = stored_ns
        self.received_ns = received_ns


class Commands:
    def __init__(
        self,
        store: OrderStore,
        trans: Transitions,
        venue: Venue,
        md: MarketData,
        resolver: Resolver,
        publisher: Publisher,
        settings: RouterSettings,
        metrics: Metrics | BufferedMetrics,
        problems: Problems,
    ) -> None:
        self.store = store
        self.trans = trans
        self.venue = venue
        self.md = md
        self.resolver = resolver
        self.publisher = publisher
        self.settings = settings
        self.metrics = metrics
        self.problems = problems
        self.batcher = SubmitBatcher(self, settings.batch_window)

    async def handle(self, cmd: Any, delivery: Delivery) -> None:
        self.metrics.inc("commands_total", kind=type(cmd).__name__)
        if isinstance(cmd, s.SubmitOrder):
            if delivery.num_delivered == 1 and delivery.stored_ns:
                self.store.latency.start(cmd.order.client_order_id, delivery.stored_ns, delivery.received_ns)
            await self.submit(cmd)
        elif isinstance(cmd, s.CancelOrder):
            await self.cancel(cmd)
        elif isinstance(cmd, s.ModifyOrder):
            await self.modify(cmd)
        elif isinstance(cmd, s.CancelAllOrders):
            await self.cancel_all(cmd, delivery)
        elif isinstance(cmd, s.BatchCancelOrders):
            await self.batch_cancel(cmd)
        elif isinstance(cmd, s.QueryOrder):
            await self.query(cmd)
        else:  # pragma: no cover - the dispatcher filters types
            self.problems.report("unknown_command", kind=type(cmd).__name__)

    # -- submit -------------------------------------------------------------------------------------

    async def submit(self, cmd: s.SubmitOrder) -> None:
        order = cmd.order
        coid = order.client_order_id
        market = s.market_of(order.instrument_id)
        params = cmd.params if isinstance(cmd.params, dict) else {}
        async with self.store.locked(coid):
            o = self.store.order(coid)
            fresh = o is None or "OrderInitialized" not in o.history
            if not fresh and self.store.init_event_ids.get(coid) not in (None, order.event_id):
                self.problems.report("duplicate_client_order_id", coid=coid, command_id=cmd.command_id)
                self.metrics.inc("commands_refused_total", reason="duplicate_client_order_id")
                return
            redelivered = not fresh and o is not None and o.status != P.INITIALIZED
        if redelivered:
            assert o is not None
            self.metrics.inc("submits_redelivered_total", status=o.status)
            if o.status == P.SUBMITTED:
                await self.resolver.resolve_submit(coid)
            return
        reason: str | None = None
        spec: VenueOrderSpec | None = None
        try:
            spec = venue_order_spec(order, params)
        except Unsupported as exc:
            reason = str(exc)
        inst = await self.md.instrument_or_fetch(market) if spec is not None else None
        if spec is not None and inst is None:
            reason = f"unknown instrument {order.instrument_id}"
        if spec is not None and inst is not None and self.settings.pretrade:
            mark = await self.md.mark(market) if spec.price is not None and not spec.is_trigger else None
            if mark is None and spec.is_market:
                mark = await self.md.mark(market)
            reason = pretrade.check(
                spec,
                inst,
                system_status=self.md.system_status,
                mark=mark,
                open_orders=self.store.open_count(market),
            )
        if reason is not None or spec is None:
            await self._deny(order, reason or "not expressible on Paradex")
            return
        t = self.store.track(coid, market)
        t.venue_type = spec.type
        if params.get("batch_id"):
            async with self.store.locked(coid):
                if self.store.needs_init(coid):
                    await self.store.emit(order)
            o = self.store.order(coid)
            assert o is not None
            await self.batcher.add(params["batch_id"], _int(params.get("batch_size"), 0), o, spec)
            return
        with self.store.owning([coid]):
            sign_task = asyncio.ensure_future(self._sign(spec))
            try:
                async with self.store.locked(coid):
                    # OrderInitialized and OrderSubmitted in one round trip, stored before the POST.
                    init = [(order, 0)] if self.store.needs_init(coid) else []
                    await self.store.emit_pipelined([*init, (self._submitted_event(order), 0)])
            except BaseException:
                sign_task.cancel()
                raise
            self.store.latency.mark(coid, "submitted")
            o = self.store.order(coid)
            assert o is not None
            await self.send(o, spec, sign_task)

    async def _deny(self, order: s.OrderInitialized, reason: str) -> None:
        """``OrderInitialized`` (if not stored yet) and ``OrderDenied``; the venue is never called."""
        self.metrics.inc("orders_denied_total")
        coid = order.client_order_id
        async with self.store.locked(coid):
            o = self.store.order(coid)
            if o is not None and o.status != P.INITIALIZED:
                return
            now = time.time_ns()
            denied = s.OrderDenied(
                trader_id=order.trader_id,
                strategy_id=order.strategy_id,
                instrument_id=order.instrument_id,
                client_order_id=coid,
                reason=reason,
                event_id=self.store.eid(coid, "OrderDenied"),
                ts_event=now,
                ts_init=now,
            )
            init = [(order, 0)] if self.store.needs_init(coid) else []
            await self.store.emit_pipelined([*init, (denied, 0)])

    def _submitted_event(self, order: s.OrderInitialized) -> s.OrderSubmitted:
        now = time.time_ns()
        return s.OrderSubmitted(
            trader_id=order.trader_id,
            strategy_id=order.strategy_id,
            instrument_id=order.instrument_id,
            client_order_id=order.client_order_id,
            account_id=self.store.account_id,
            event_id=self.store.eid(order.client_order_id, "OrderSubmitted"),
            ts_event=now,
            ts_init=now,
        )

    async def _submitted(self, o: OrderView) -> None:
        """Under the lock: ``OrderSubmitted`` (batch members), stored before anything is sent."""
        if o.status != P.INITIALIZED:
            return
        now = time.time_ns()
        await self.store.emit(
            s.OrderSubmitted(
                **base_fields(o),
                account_id=self.store.account_id,
                event_id=self.store.eid(o.client_order_id, "OrderSubmitted"),
                ts_event=now,
                ts_init=now,
            )
        )

    async def _sign(self, spec: VenueOrderSpec) -> tuple[str, int]:
        """Sign, retrying a signer that did not answer (nothing can have been sent meanwhile)."""
        give_up = time.monotonic() + self.settings.submit_retry_budget
        lat = self.store.latency
        while True:
            try:
                lat.mark(spec.client_id, "sign_start")
                signed = await self.venue.sign(spec)
                lat.mark(spec.client_id, "sign_end")
                return signed
            except SignerFailed as exc:
                if not exc.retryable or time.monotonic() > give_up:
                    raise
                self.problems.report("signer_retry", coid=spec.client_id, code=exc.code)
                await asyncio.sleep(0.2)

    async def send(self, o: OrderView, spec: VenueOrderSpec, signed: asyncio.Future[tuple[str, int]]) -> None:
        """POST the order; settle its fate from the reply (or hand an unknown outcome on)."""
        coid = o.client_order_id
        give_up = time.monotonic() + self.settings.submit_retry_budget
        attempt = 0
        while True:
            attempt += 1
            try:
                sig, ts = await signed
            except SignerFailed as exc:
                async with self.store.locked(coid):
                    await self.trans.emit_rejected(o, f"SIGNER_{exc.code}: {exc.reason}")
                return
            self.resolver.note_attempt(coid, ts)
            lat = self.store.latency
            lat.mark(coid, "signed")
            lat.mark(coid, "post_start")
            try:
                v = await self.venue.submit(spec, sig, ts)
            except (RateLimited, NotSent) as exc:
                # Provably not placed by this attempt. Look before trying again (an earlier attempt
                # of ours cannot be pending: we only retry after these definite non-deliveries).
                wait = exc.retry_after if isinstance(exc, RateLimited) and exc.retry_after is not None else None
                wait = min(wait if wait is not None else 0.1 * 2 ** min(attempt, 5), 5.0)
                self.metrics.inc("submit_retries_total", reason=type(exc).__name__)
                if time.monotonic() + wait > give_up:
                    await self._not_placed(o, f"{type(exc).__name__}: not placed after {attempt} attempts: {exc}")
                    return
                await asyncio.sleep(wait)
                if await self._found(o):
                    return
                signed = asyncio.ensure_future(self._sign(spec))
                continue
            except ParadexError as exc:
                if exc.code == "DUPLICATED_CLIENT_ID" and await self._found(o):
                    return
                async with self.store.locked(coid):
                    await self.trans.emit_rejected(
                        o, f"{exc.code}: {exc.message}", due_post_only=exc.code == "POST_ONLY_WOULD_CROSS"
                    )
                return
            except UnknownOutcome as exc:
                self.metrics.inc("unknown_submits_total")
                self.problems.report("submit_unknown_outcome", coid=coid, error=str(exc))
                await self.resolver.resolve_submit(coid)
                return
            lat.mark(coid, "post_end")
            async with self.store.locked(coid):
                await self.trans.apply_order(coid, v, "rest")
            return

    async def _found(self, o: OrderView) -> bool:
        """Look the order up; apply it if the venue has it."""
        try:
            v = await self.resolver.lookup(o)
        except (UnknownOutcome, ParadexError) as exc:
            self.problems.report("lookup_failed", coid=o.client_order_id, error=str(exc))
            # Cannot tell: resolve as an unknown outcome rather than risk a second order.
            await self.resolver.resolve_submit(o.client_order_id)
            return True
        if v is None:
            return False
        async with self.store.locked(o.client_order_id):
            await self.trans.apply_order(o.client_order_id, v, "query")
        return True

    async def _not_placed(self, o: OrderView, reason: str) -> None:
        if await self._found(o):
            return
        async with self.store.locked(o.client_order_id):
            await self.trans.emit_rejected(o, reason)

    # -- modify -------------------------------------------------------------------------------------

    async def modify(self, cmd: s.ModifyOrder) -> None:
        coid = cmd.client_order_id
        cid = cmd.command_id
        async with self.store.locked(coid):
            o = self._order_for(coid, cmd.venue_order_id)
            if o is None:
                self.problems.report("modify_unknown_order", coid=coid, command_id=cid)
                return
            coid = o.client_order_id
            redelivered = cid in self.store.seen_commands
            if not redelivered:
                reason = _modify_refusal(o)
                if reason is None and not await self._pending(o, s.OrderPendingUpdate, cid):
                    reason = _modify_refusal(o) or f"order is {o.status.lower()}"
                if reason is not None:
                    await self.trans.emit_modify_rejected(o, cid, reason)
                    return
            t = self.store.track(coid)
            if t.pending_modify is None or t.pending_modify.command_id != cid:
                t.pending_modify = PendingModify(
                    cid, cmd.quantity, cmd.price, cmd.trigger_price, previous_request_id=t.last_request_id
                )
        if o.status != P.PENDING_UPDATE:
            return  # settled meanwhile (a redelivery after the outcome was stored)
        with self.store.owning([coid]):
            await self._send_modify(o, cmd)

    async def _send_modify(self, o: OrderView, cmd: s.ModifyOrder) -> None:
        coid = o.client_order_id
        cid = cmd.command_id
        t = self.store.track(coid)
        venue_id = cmd.venue_order_id or o.venue_order_id
        if not venue_id or not t.venue_type:
            try:
                v0 = await self.resolver.lookup(o)
            except (UnknownOutcome, ParadexError) as exc:
                self.problems.report("lookup_failed", coid=coid, error=str(exc))
                return  # stays pending; the in-flight check settles it
            if v0 is None:
                async with self.store.locked(coid):
                    await self.trans.emit_modify_rejected(o, cid, "order not found at the venue")
                return
            async with self.store.locked(coid):
                await self.trans.apply_order(coid, v0, "query")
            venue_id = v0.id
        if o.status != P.PENDING_UPDATE:
            return
        price = cmd.price if cmd.price is not None else o.price
        trigger = cmd.trigger_price if cmd.trigger_price is not None else o.trigger_price
        spec = VenueOrderSpec(
            market=s.market_of(o.instrument_id),
            side=o.side,
            type=t.venue_type,
            size=plain(cmd.quantity if cmd.quantity is not None else str(o.quantity)),
            price=None if t.venue_type in MARKET_TYPES or price is None else plain(price),
            instruction="GTC",
            client_id=coid,
            trigger_price=plain(trigger) if trigger is not None and t.venue_type != "LIMIT" else None,
        )
        give_up = time.monotonic() + self.settings.submit_retry_budget
        attempt = 0
        while True:
            attempt += 1
            try:
                v = await self.venue.modify(venue_id, spec)
            except (RateLimited, NotSent) as exc:
                wait = exc.retry_after if isinstance(exc, RateLimited) and exc.retry_after is not None else 0.2
                if time.monotonic() + wait > give_up:
                    return  # still pending: the in-flight check settles it from venue truth
                await asyncio.sleep(min(wait, 5.0))
                continue
            except SignerFailed as exc:
                async with self.store.locked(coid):
                    await self.trans.emit_modify_rejected(o, cid, f"SIGNER_{exc.code}: {exc.reason}")
                return
            except ParadexError as exc:
                async with self.store.locked(coid):
                    await self.trans.emit_modify_rejected(o, cid, f"{exc.code}: {exc.message}")
                return
            except UnknownOutcome as exc:
                self.problems.report("modify_unknown_outcome", coid=coid, error=str(exc))
                return
            break
        async with self.store.locked(coid):
            pm = t.pending_modify
            if pm is not None and v.request_info is not None and pm.command_id == cid:
                pm.request_id = v.request_info.id
            await self.trans.apply_order(coid, v, "rest")

    # -- cancel -------------------------------------------------------------------------------------

    async def cancel(self, cmd: s.CancelOrder) -> None:
        coid = cmd.client_order_id
        cid = cmd.command_id
        async with self.store.locked(coid):
            o = self._order_for(coid, cmd.venue_order_id)
            if o is None:
                self.problems.report("cancel_unknown_order", coid=coid, command_id=cid)
                return
            coid = o.client_order_id
            if cid not in self.store.seen_commands:
                if o.is_closed or o.status == P.INITIALIZED or not await self._pending(o, s.OrderPendingCancel, cid):
                    await self.trans.emit_cancel_rejected(o, cid, f"order is {o.status.lower()}")
                    return
            elif o.status != P.PENDING_CANCEL:
                return  # a redelivery after the outcome was stored
        with self.store.owning([coid]):
            await self._send_cancel(o, cid, cmd.venue_order_id)

    async def _send_cancel(self, o: OrderView, cid: str, venue_id: str | None = None) -> None:
        coid = o.client_order_id
        market = s.market_of(o.instrument_id)
        venue_id = venue_id or o.venue_order_id
        give_up = time.monotonic() + self.settings.submit_retry_budget
        while True:
            try:
                if venue_id:
                    await self.venue.cancel(venue_id)
                else:
                    await self.venue.cancel_by_client_id(coid, market)
                return  # queued at the venue; the WS (or the in-flight check) brings the outcome
            except (RateLimited, NotSent) as exc:
                wait = exc.retry_after if isinstance(exc, RateLimited) and exc.retry_after is not None else 0.2
                if time.monotonic() + wait > give_up:
                    return
                await asyncio.sleep(min(wait, 5.0))
            except ParadexError as exc:
                await self._cancel_refused(o, cid, f"{exc.code}: {exc.message}")
                return
            except UnknownOutcome as exc:
                self.problems.report("cancel_unknown_outcome", coid=coid, error=str(exc))
                return

    async def _cancel_refused(self, o: OrderView, cid: str, reason: str) -> None:
        """The venue refused a cancel (closed, not found): settle the order from the venue first,
        so a fill that beat the cancel shows up as fills, then reject the cancel if still pending."""
        coid = o.client_order_id
        v = None
        try:
            v = await self.resolver.lookup(o)
        except (UnknownOutcome, ParadexError) as exc:
            self.problems.report("lookup_failed", coid=coid, error=str(exc))
        async with self.store.locked(coid):
            if v is not None:
                await self.trans.apply_order(coid, v, "query")
            t = self.store.track(coid)
            if v is not None and v.filled > o.filled_qty:
                return  # fills on their way; the cancel is settled once they arrive
            if o.status == P.PENDING_CANCEL and t.pending_cancel_cmd == cid:
                await self.trans.emit_cancel_rejected(o, cid, reason)

    async def cancel_all(self, cmd: s.CancelAllOrders, delivery: Delivery) -> None:
        cid = cmd.command_id
        market = None if cmd.instrument_id == s.ALL_MARKETS_INSTRUMENT else s.market_of(cmd.instrument_id)
        side = None if cmd.order_side == OrderSide.NO_ORDER_SIDE else str(cmd.order_side)
        targets: list[OrderView] = []
        markets = [market] if market else list(self.store.open_by_market)
        for m in markets:
            for coid in sorted(self.store.open_by_market.get(m, ())):
                o = self.store.order(coid)
                if o is None or o.is_closed or (side and o.side != side):
                    continue
                async with self.store.locked(coid):
                    if o.is_closed:
                        continue
                    if (
                        cid not in self.store.seen_commands or self.store.track(coid).pending_cancel_cmd != cid
                    ) and not await self._pending(o, s.OrderPendingCancel, cid):
                        continue  # closed meanwhile: nothing left to cancel
                    targets.append(o)
        try:
            with self.store.owning([o.client_order_id for o in targets]):
                if side is not None or delivery.num_delivered > 1:
                    await self._cancel_listed(cmd, targets, redelivered=delivery.num_delivered > 1)
                else:
                    await self._retrying(lambda: self.venue.cancel_all(market))
        except ParadexError as exc:
            for o in targets:
                await self._cancel_refused(o, cid, f"{exc.code}: {exc.message}")
        except UnknownOutcome as exc:
            self.problems.report("cancel_all_unknown_outcome", command_id=cid, error=str(exc))

    async def _cancel_listed(self, cmd: s.CancelAllOrders, targets: list[OrderView], *, redelivered: bool) -> None:
        """Cancel-all by explicit ids: with a side filter, or on redelivery (only what existed when
        the command was issued, so a replayed cancel-all never hits newer orders)."""
        ids = [o.venue_order_id for o in targets if o.venue_order_id]
        cids = [o.client_order_id for o in targets if not o.venue_order_id]
        if redelivered:
            market = None if cmd.instrument_id == s.ALL_MARKETS_INSTRUMENT else s.market_of(cmd.instrument_id)
            side = None if cmd.order_side == OrderSide.NO_ORDER_SIDE else str(cmd.order_side)
            issued_ms = cmd.ts_init // 1_000_000
            for v in await self.venue.open_orders():
                if (market and v.market != market) or (side and v.side != side) or v.created_at > issued_ms:
                    continue
                if v.id not in ids:
                    ids.append(v.id)
        for i in range(0, len(ids), CANCEL_BATCH):
            chunk = ids[i : i + CANCEL_BATCH]
            await self._retrying(lambda chunk=chunk: self.venue.cancel_batch(chunk, []))
        for i in range(0, len(cids), CANCEL_BATCH):
            chunk = cids[i : i + CANCEL_BATCH]
            await self._retrying(lambda chunk=chunk: self.venue.cancel_batch([], chunk))

    async def batch_cancel(self, cmd: s.BatchCancelOrders) -> None:
        pending: list[tuple[OrderView, str]] = []
        for c in cmd.cancels:
            async with self.store.locked(c.client_order_id):
                o = self._order_for(c.client_order_id, c.venue_order_id)
                if o is None:
                    self.problems.report("cancel_unknown_order", coid=c.client_order_id, command_id=c.command_id)
                    continue
                if c.command_id not in self.store.seen_commands:
                    if (
                        o.is_closed
                        or o.status == P.INITIALIZED
                        or not await self._pending(o, s.OrderPendingCancel, c.command_id)
                    ):
                        await self.trans.emit_cancel_rejected(o, c.command_id, f"order is {o.status.lower()}")
                        continue
                elif o.status != P.PENDING_CANCEL:
                    continue
                pending.append((o, c.command_id))
        for i in range(0, len(pending), CANCEL_BATCH):
            chunk = pending[i : i + CANCEL_BATCH]
            ids = [o.venue_order_id for o, _ in chunk if o.venue_order_id]
            cids = [o.client_order_id for o, _ in chunk if not o.venue_order_id]
            try:
                with self.store.owning([o.client_order_id for o, _ in chunk]):
                    results = await self._retrying(lambda ids=ids, cids=cids: self.venue.cancel_batch(ids, cids))
            except ParadexError as exc:
                for o, cid in chunk:
                    await self._cancel_refused(o, cid, f"{exc.code}: {exc.message}")
                continue
            except UnknownOutcome as exc:
                self.problems.report("batch_cancel_unknown_outcome", command_id=cmd.command_id, error=str(exc))
                continue
            status = {}
            for r in results or []:
                status[str(r.get("id") or "")] = str(r.get("status") or "")
                status[str(r.get("client_id") or "")] = str(r.get("status") or "")
            for o, cid in chunk:
                st = status.get(o.venue_order_id or "") or status.get(o.client_order_id) or ""
                if st and st != "QUEUED_FOR_CANCELLATION":
                    await self._cancel_refused(o, cid, st)

    async def _retrying(self, fn: Any) -> Any:
        """A cancel call retried while it provably did not reach the venue (429, not sent)."""
        give_up = time.monotonic() + self.settings.submit_retry_budget
        while True:
            try:
                return await fn()
            except (RateLimited, NotSent) as exc:
                wait = exc.retry_after if isinstance(exc, RateLimited) and exc.retry_after is not None else 0.2
                if time.monotonic() + wait > give_up:
                    raise UnknownOutcome(f"gave up after retries: {exc}") from exc
                await asyncio.sleep(min(wait, 5.0))

    # -- query --------------------------------------------------------------------------------------

    async def query(self, cmd: s.QueryOrder) -> None:
        o = self._order_for(cmd.client_order_id, cmd.venue_order_id)
        market = s.market_of(cmd.instrument_id)
        try:
            if o is not None:
                v = await self.resolver.lookup(o)
            elif cmd.venue_order_id:
                v = await self.venue.order(cmd.venue_order_id)
            else:
                v = await self.venue.find_by_client_id(cmd.client_order_id, market)
        except (UnknownOutcome, ParadexError) as exc:
            self.problems.report("query_failed", coid=cmd.client_order_id, error=str(exc))
            raise  # redelivered: a query is worth answering
        if v is None:
            self.problems.report("query_not_found", coid=cmd.client_order_id, command_id=cmd.command_id)
            return
        coid = self.store.coid_for(v.client_id, v.id)
        if coid is not None:
            async with self.store.locked(coid):
                await self.trans.apply_order(coid, v, "query")
        pp, sp = self.md.precisions(v.market)
        mid = msgid.report(self.store.account, "order", cmd.command_id)
        report = order_status_report(
            v,
            account_id=self.store.account_id,
            instrument_id=s.instrument_id(v.market),
            client_order_id=coid or (v.client_id or None),
            price_precision=pp,
            size_precision=sp,
            ts_init=time.time_ns(),
            report_id=event_uuid(mid),
        )
        await self.publisher.publish_event_acked(subjects.exec_report(self.store.account, "order"), report, mid)

    # -- helpers ------------------------------------------------------------------------------------

    def _order_for(self, coid: str, venue_order_id: str | None) -> OrderView | None:
        o = self.store.order(coid)
        if o is None and venue_order_id:
            o = self.store.proj.by_venue(venue_order_id)
        return o

    async def _pending(self, o: OrderView, cls: type, command_id: str) -> bool:
        """Under the lock: ``OrderPendingCancel`` / ``OrderPendingUpdate`` keyed by the command.
        False if the order cannot take the request (it moved on, e.g. a fill another writer stored
        while this command was on its way): the caller answers the command instead."""
        target = P.PENDING_CANCEL if cls is s.OrderPendingCancel else P.PENDING_UPDATE
        if not legal(o.status, target):
            return False
        now = time.time_ns()
        res = await self.store.emit(
            cls(
                **base_fields(o),
                venue_order_id=o.venue_order_id,
                account_id=self.store.account_id,
                event_id=self.store.eid(o.client_order_id, cls.__name__, command_id),
                ts_event=now,
                ts_init=now,
            ),
            command_id,
            still_valid=lambda cur: legal(cur.status, target),
        )
        return res.ok


def _modify_refusal(o: OrderView) -> str | None:
    if o.is_closed:
        return f"order is {o.status.lower()}"
    if o.status == P.PENDING_CANCEL:
        return "a cancel is pending"
    if o.status == P.INITIALIZED:
        return "order was never submitted"
    if o.order_type in ("MARKET",):
        return "market orders cannot be modified"
    return None


def _int(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


