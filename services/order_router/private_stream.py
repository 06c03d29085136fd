"""The private WebSocket: ``orders.ALL``, ``fills.ALL``, ``positions`` and ``account`` through the
shared ``services.paradex.ws.WsClient`` (its connection and subscription state machines, auth on
every (re)connect, resubscription, idle/zombie detection).

* Each connection authenticates with a JWT from the signer; after an auth failure the next one is
  forced fresh (``force_refresh`` with the rejected token as ``stale_jwt``).
* Order updates and fills are decoded in the reader and handed to ``Transitions`` as one task each;
  per-order locks (FIFO) keep each order's updates in arrival order while orders proceed in
  parallel. Duplicates are dropped by order ``seq_no`` and fill id (counted). A plain ``NEW``
  update (no fills, no modify outcome) implies no event and is not dispatched at all.
* ``account`` -> ``AccountState`` on ``exec.paradex.<acct>.account`` (Msg-Id by the venue's
  ``seq_no``; the newest summary at most every ``account_interval`` s): total = account value,
  free = free collateral, locked = the rest, Money in USDC with 8 decimals; the cash balance of
  ``GET /balance`` (refreshed at most every ``balance_refresh`` seconds) and the margin figures
  go in ``info``.
* ``positions`` -> ``PositionStatusReport`` on ``exec.paradex.<acct>.report.position``.
* After every connection (the first included: events may have been missed while we were away) a
  ``ReconcileRequest`` goes to ``ctl.reconcile.<acct>`` (core NATS, served by the reconciler) and
  the in-flight resolver runs a full check of our own in-flight orders.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
from nats.aio.client import Client as NATS

import schemas as s
from bus import Publisher, msgid, subjects
from bus.msgid import event_uuid
from schemas.enums import PositionSideCode
from services.order_router.counters import BufferedMetrics
from services.order_router.inflight import Resolver
from services.order_router.mapping import (
    Q8,
    VenueAccount,
    account_decoder,
    amount,
    fill_decoder,
    fmt,
    order_decoder,
    position_decoder,
)
from services.order_router.market_data import MarketData
from services.order_router.transitions import Transitions
from services.order_router.venue import Signer, Venue
from services.paradex.rest import ParadexError, UnknownOutcome
from services.paradex.ws import WsClient
from services.paradex.ws_types import ConnState, SubState
from services.runtime import Metrics, Problems

log = logging.getLogger("order_router.private_stream")

CHANNELS = ("orders.ALL", "fills.ALL", "positions", "account")


class PrivateStream:
    def __init__(
        self,
        url: str,
        *,
        nc: NATS,
        account: str,
        signer: Signer,
        trans: Transitions,
        resolver: Resolver,
        venue: Venue,
        md: MarketData,
        publisher: Publisher,
        metrics: Metrics | BufferedMetrics,
        problems: Problems,
        balance_refresh: float,
        account_interval: float,
        on_change: Callable[[], None],
    ) -> None:
        self.nc = nc
        self.account = account
        self.account_id = f"PARADEX-{account}"
        self.signer = signer
        self.trans = trans
        self.resolver = resolver
        self.venue = venue
        self.md = md
        self.publisher = publisher
        self.metrics = metrics
        self.problems = problems
        self.balance_refresh = balance_refresh
        self.on_change = on_change
        self.connects = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._auth_failures_seen = 0
        self._last_jwt = ""
        self._balance: str | None = None
        self._balance_at = 0.0
        self._last_account_seq = 0
        self.account_interval = account_interval
        self._pending_account: VenueAccount | None = None
        self._account_flush: asyncio.Future[None] | None = None
        self._last_account_publish = 0.0
        self.ws = WsClient(
            url,
            name="paradex-private",
            jwt_provider=self._jwt,
            on_state=lambda old, new: self.on_change(),
            on_sub_state=lambda ch, old, new: self.on_change(),
            on_connected=self._on_connected,
            report=self._report,
        )
        self.ws.subscribe("orders.ALL", self._on_order)
        self.ws.subscribe("fills.ALL", self._on_fill)
        self.ws.subscribe("positions", self._on_position)
        self.ws.subscribe("account", self._on_account)

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.ws.start()

    async def close(self) -> None:
        await self.ws.close()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)

    @property
    def healthy(self) -> bool:
        return self.ws.state is ConnState.AUTHENTICATED and all(
            st == SubState.ACTIVE.value for st in self.ws.subscription_states().values()
        )

    def states(self) -> dict[str, str]:
        return {f"ws:{ch}": st for ch, st in self.ws.subscription_states().items()}

    def _report(self, kind: str, **ctx: object) -> None:
        self.problems.report(kind, **ctx)

    async def _jwt(self) -> str:
        force = self.ws.stats.auth_failures > self._auth_failures_seen
        self._auth_failures_seen = self.ws.stats.auth_failures
        token = await self.signer.jwt(force)
        self._last_jwt = token
        return token

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.problems.report("private_update_failed", error=repr(task.exception()))

    def _on_connected(self) -> None:
        self.connects += 1
        self._spawn(self._after_connect())

    async def _after_connect(self) -> None:
        reason = "router start" if self.connects == 1 else "private WebSocket reconnected"
        req = s.ReconcileRequest(
            account=self.account, reason=reason, requested_by="order-router", ts_init=time.time_ns()
        )
        try:
            await self.nc.publish(subjects.ctl_reconcile(self.account), s.encode(req))
        except Exception as exc:  # noqa: BLE001 - the resolver below still runs
            self.problems.report("reconcile_request_failed", error=repr(exc))
        self.metrics.inc("reconcile_requests_total")
        # Give the subscriptions a moment to be acked so the check does not race the live stream.
        await asyncio.sleep(0.2)
        self.resolver.kick(reason)
        await self._publish_account_from_rest()

    # -- handlers (synchronous, in the WS reader) ----------------------------------------------------

    def _on_order(self, channel: str, raw: msgspec.Raw) -> None:
        received = time.time_ns()
        try:
            v = order_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.problems.report("malformed_order_update", error=str(exc), data=bytes(raw)[:200])
            return
        self.metrics.inc("ws_order_updates_total")
        if v.status == "NEW" and v.request_info is None and v.remaining_size == v.size:
            # A plain NEW never implies an event (OrderSubmitted precedes the venue call): skip the
            # per-order task. (NEW with a modify outcome or fills goes the normal way.)
            self.metrics.inc("ws_new_updates_skipped_total")
            return
        self._spawn(self.trans.on_order_update(v, "ws", received))

    def _on_fill(self, channel: str, raw: msgspec.Raw) -> None:
        try:
            f = fill_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.problems.report("malformed_fill", error=str(exc), data=bytes(raw)[:200])
            return
        self.metrics.inc("ws_fills_total")
        self._spawn(self.trans.on_fill(f, "ws"))

    def _on_position(self, channel: str, raw: msgspec.Raw) -> None:
        try:
            p = position_decoder.decode(raw)
            size = Decimal(p.size or "0")
        except (msgspec.DecodeError, msgspec.ValidationError, InvalidOperation) as exc:
            self.problems.report("malformed_position", error=str(exc), data=bytes(raw)[:200])
            return
        _, sp = self.md.precisions(p.market)
        side = PositionSideCode.FLAT if size == 0 else PositionSideCode.LONG if size > 0 else PositionSideCode.SHORT
        key = f"{p.market}:{p.seq_no}"
        mid = msgid.report(self.account, "position", key)
        now = time.time_ns()
        report = s.PositionStatusReport(
            account_id=self.account_id,
            instrument_id=s.instrument_id(p.market),
            position_side=side,
            quantity=fmt(str(abs(size)), sp),
            report_id=event_uuid(mid),
            ts_last=p.last_updated_at * 1_000_000 if p.last_updated_at > 0 else now,
            ts_init=now,
            venue_position_id=p.id or None,
            avg_px_open=p.average_entry_price if p.average_entry_price and size != 0 else None,
        )
        self.publisher.publish_event_nowait(subjects.exec_report(self.account, "position"), report, mid)

    def _on_account(self, channel: str, raw: msgspec.Raw) -> None:
        try:
            a = account_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.problems.report("malformed_account", error=str(exc), data=bytes(raw)[:200])
            return
        # The venue sends a summary after every order change; the newest one is published at most
        # every ``account_interval`` seconds (each is a full snapshot, so nothing is lost).
        if self._pending_account is None or a.seq_no >= self._pending_account.seq_no:
            self._pending_account = a
        if self._account_flush is None or self._account_flush.done():
            self._account_flush = asyncio.ensure_future(self._flush_account())

    async def _flush_account(self) -> None:
        wait = self._last_account_publish + self.account_interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        a, self._pending_account = self._pending_account, None
        if a is not None:
            self._last_account_publish = time.monotonic()
            try:
                await self._publish_account(a)
            except Exception as exc:  # noqa: BLE001 - the next summary is published anyway
                self.problems.report("account_state_failed", error=repr(exc))

    # -- account state ------------------------------------------------------------------------------

    async def _publish_account_from_rest(self) -> None:
        try:
            raw = await self.venue.account()
            a = msgspec.convert(raw, VenueAccount)
        except (UnknownOutcome, ParadexError, msgspec.ValidationError) as exc:
            self.problems.report("account_fetch_failed", error=str(exc))
            return
        await self._publish_account(a)

    async def _balance_now(self) -> str | None:
        if time.monotonic() - self._balance_at < self.balance_refresh:
            return self._balance
        self._balance_at = time.monotonic()
        try:
            for b in await self.venue.balances():
                if b.get("token") == "USDC":
                    self._balance = str(b.get("size"))
        except (UnknownOutcome, ParadexError) as exc:
            self.problems.report("balance_fetch_failed", error=str(exc))
        return self._balance

    async def _publish_account(self, a: VenueAccount) -> None:
        if a.seq_no and a.seq_no <= self._last_account_seq:
            self.metrics.inc("account_updates_duplicate_total")
            return
        self._last_account_seq = max(self._last_account_seq, a.seq_no)
        try:
            # Quantized first, so total == locked + free holds exactly at Money precision.
            total = Decimal(a.account_value or "0").quantize(Q8)
            free = Decimal(a.free_collateral or "0").quantize(Q8)
        except InvalidOperation:
            self.problems.report("malformed_account", account_value=a.account_value, free=a.free_collateral)
            return
        ccy = (a.settlement_asset or "USDC").upper()
        balance = await self._balance_now()
        mid = msgid.account_state(self.account, a.seq_no)
        now = time.time_ns()
        info: dict[str, Any] = {
            "account_value": a.account_value,
            "free_collateral": a.free_collateral,
            "total_collateral": a.total_collateral,
            "initial_margin_requirement": a.initial_margin_requirement,
            "maintenance_margin_requirement": a.maintenance_margin_requirement,
            "margin_cushion": a.margin_cushion,
            "status": a.status,
            "seq_no": str(a.seq_no),
        }
        if balance is not None:
            info["cash_balance"] = balance
        ev = s.AccountState(
            account_id=self.account_id,
            base_currency=ccy,
            balances=[
                s.AccountBalance(
                    total=amount(str(total)),
                    locked=amount(str(total - free)),
                    free=amount(str(free)),
                    currency=ccy,
                )
            ],
            reported=True,
            info=info,
            event_id=event_uuid(mid),
            ts_event=a.updated_at * 1_000_000 if a.updated_at > 0 else now,
            ts_init=now,
        )
        await self.publisher.publish_event(subjects.exec_account(self.account), ev, mid)
        self.metrics.inc("account_states_total")
