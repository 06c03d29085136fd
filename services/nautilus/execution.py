"""``ParadexExecutionClient``: a Nautilus live execution client that trades through the bus.

Commands go out, events come back -- the order router does the venue work:

* ``submit_order`` / ``modify_order`` / ``cancel_order`` / ``batch_cancel_orders`` become schema
  commands on ``cmd.paradex.<account>.<MKT>`` (stream ``CMD``), published with the Msg-Id
  ``pdx:cmd:<command_id>`` and awaited until stored. ``OrderSubmitted`` is generated once the
  command is handed to the bus, as a venue adapter does before its HTTP call. A command that cannot
  be written on the bus (an id the schema refuses) is ``OrderDenied`` / ``Order*Rejected`` locally;
  a command whose storage is not confirmed is an unknown outcome and stays in flight.
* ``cancel_all_orders`` cancels the strategy's own open and in-flight orders one by one (Nautilus
  semantics); the bus's account-wide ``CancelAllOrders`` would also cancel other strategies' orders.
* Order lists are sent order by order; contingent lists (OCO/OTO/OUO) are denied (Paradex has none).

Events: one ordered JetStream consumer follows ``exec.paradex.<account>.>`` from the start of
``EXEC`` and folds it into ``ExecState``. Events newer than the fold at connect are forwarded to the
ExecutionEngine when they concern an order in the node's cache; a per-order shadow of what the node
has already been told drops what Nautilus would refuse as an illegal transition (the router's own
``OrderSubmitted`` after ours, a pending-cancel the strategy already applied, a duplicate fill).
The router's ``OrderDenied`` of an order the node has submitted becomes ``OrderRejected``.
Events carry the cached order's trader and strategy ids (after a restart, reconciliation may have
adopted the order as ``EXTERNAL``). ``AccountState`` messages are forwarded as they come.

Reconciliation (``generate_*``): reports are built from ``ExecState`` (see its docstring). Before a
mass status the client asks the reconciler for a full run (``ctl.reconcile.<account>``, reply a
``ReconciliationSummary``) and waits until it has folded everything stored up to then, so the
reports reflect the venue. Reports reach Nautilus without ``venue_position_id`` (NETTING: one position per market;
a venue position id would make Nautilus reconcile it as a HEDGING position). Events arriving while
the mass status is built are held and released
afterwards, except those already reflected in it. Runtime execution reports on
``exec.paradex.<account>.report.*`` are folded but never forwarded: the reconciler's corrections
arrive as order events, and feeding both would count fills twice (nautilus #3493).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
import pandas as pd
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.execution import messages as nm
from nautilus_trader.execution.reports import (
    ExecutionMassStatus,
    FillReport,
    OrderStatusReport,
    PositionStatusReport,
)
from nautilus_trader.live.execution_client import LiveExecutionClient
from nautilus_trader.model.enums import AccountType, ContingencyType, OmsType, OrderStatus
from nautilus_trader.model.identifiers import ClientId, ClientOrderId, InstrumentId, Venue, VenueOrderId
from nautilus_trader.model.orders import Order

import schemas as s
from bus import msgid, subjects
from bus.connection import connect, jetstream
from bus.consumer import BusMessage
from bus.publisher import Publisher, PublishError
from bus.replay import replay
from bus.subjects import SubjectError
from schemas.events import OrderEvent
from services.nautilus.config import ParadexExecClientConfig, nats_settings
from services.nautilus.convert import account_id, from_nautilus, to_nautilus
from services.nautilus.errors import ConversionError
from services.nautilus.exec_state import ExecState, ReportFilter
from services.nautilus.providers import ParadexInstrumentProvider

VENUE = "PARADEX"
EXEC_STREAM = "EXEC"
_CLOSED = frozenset({"DENIED", "REJECTED", "CANCELED", "EXPIRED", "FILLED"})


@dataclass
class _Shadow:
    """What the node's ExecutionEngine has been told about one order (by us or by its strategy)."""

    status: str
    venue_order_id: str | None = None
    trade_ids: set[str] = field(default_factory=set)
    previous: str | None = None

    @property
    def closed(self) -> bool:
        return self.status in _CLOSED


def _netting(report: Any) -> Any:
    """A report without the venue's position id: Paradex has one position per market, so the client
    is a NETTING one, and Nautilus reconciles a report that names a venue position as HEDGING."""
    if getattr(report, "venue_position_id", None) is None:
        return report
    return msgspec.structs.replace(report, venue_position_id=None)


def _ns(value: Any) -> int | None:
    return None if value is None else int(pd.Timestamp(value).value)


def decide(ev: OrderEvent, sh: _Shadow, account: str, fully_filled: bool) -> tuple[str | None, Any]:
    """Whether the node's ExecutionEngine should see ``ev`` for an order in state ``sh``.

    Returns ``(status the order will have, event to send)`` or ``(None, ev)`` to skip it. Updates
    the shadow's venue order id, trade ids and previous status as a side effect of acceptance.
    ``fully_filled`` says whether the bus (the projection) counts the order as filled after ``ev``.
    """
    status, closed = sh.status, sh.closed
    if isinstance(ev, s.OrderSubmitted):
        return ("SUBMITTED" if status == "INITIALIZED" else None), ev
    if isinstance(ev, s.OrderDenied):
        if closed:
            return None, ev
        if status == "INITIALIZED":
            return "DENIED", ev
        # Nautilus denies only what it never submitted; for a submitted order it is a rejection.
        rejected = s.OrderRejected(
            trader_id=ev.trader_id,
            strategy_id=ev.strategy_id,
            instrument_id=ev.instrument_id,
            client_order_id=ev.client_order_id,
            account_id=account,
            reason=f"denied by the order router: {ev.reason}",
            event_id=ev.event_id,
            ts_event=ev.ts_event,
            ts_init=ev.ts_init,
        )
        return "REJECTED", rejected
    if isinstance(ev, s.OrderAccepted):
        if closed or sh.venue_order_id is not None:
            return None, ev
        sh.venue_order_id = ev.venue_order_id
        return "ACCEPTED", ev
    if isinstance(ev, s.OrderRejected | s.OrderCanceled | s.OrderExpired):
        if closed:
            return None, ev
        return {s.OrderRejected: "REJECTED", s.OrderCanceled: "CANCELED"}.get(type(ev), "EXPIRED"), ev
    if isinstance(ev, s.OrderTriggered):
        return ("TRIGGERED" if status in ("ACCEPTED", "PENDING_UPDATE", "PENDING_CANCEL") else None), ev
    if isinstance(ev, s.OrderPendingCancel):
        if closed or status in ("PENDING_CANCEL", "INITIALIZED"):
            return None, ev
        sh.previous = status
        return "PENDING_CANCEL", ev
    if isinstance(ev, s.OrderPendingUpdate):
        if closed or status in ("PENDING_UPDATE", "PENDING_CANCEL", "INITIALIZED"):
            return None, ev
        sh.previous = status
        return "PENDING_UPDATE", ev
    if isinstance(ev, s.OrderCancelRejected | s.OrderModifyRejected | s.OrderUpdated):
        if closed:
            return None, ev
        pending = "PENDING_CANCEL" if isinstance(ev, s.OrderCancelRejected) else "PENDING_UPDATE"
        return ((sh.previous or "ACCEPTED") if status == pending else status), ev
    if isinstance(ev, s.OrderFilled):
        if ev.trade_id in sh.trade_ids or status in ("DENIED", "REJECTED", "EXPIRED", "FILLED"):
            return None, ev
        sh.trade_ids.add(ev.trade_id)
        sh.venue_order_id = sh.venue_order_id or ev.venue_order_id
        return ("FILLED" if fully_filled else "PARTIALLY_FILLED"), ev
    return None, ev


class ParadexExecutionClient(LiveExecutionClient):
    """Execution for a ``TradingNode`` through the paradex-bus (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
        instrument_provider: ParadexInstrumentProvider,
        config: ParadexExecClientConfig,
        name: str | None = None,
    ) -> None:
        super().__init__(
            loop=loop,
            client_id=ClientId(name or VENUE),
            venue=Venue(VENUE),
            oms_type=OmsType.NETTING,
            account_type=AccountType.MARGIN,
            base_currency=None,
            instrument_provider=instrument_provider,
            msgbus=msgbus,
            cache=cache,
            clock=clock,
            config=config,
        )
        self._config = config
        self._provider = instrument_provider
        account = (config.account or os.environ.get("PARADEX_ACCOUNT") or "").strip().lower() or None
        self._account: str | None = None
        if account is not None:
            self._use_account(account)
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._publisher: Publisher | None = None
        self._follower: asyncio.Task[None] | None = None
        self._state = ExecState(str(self.account_id) if self.account_id else "")
        self._live_from = 0
        self._holding = False
        self._held: list[tuple[int, Any]] = []
        self._seq_changed = asyncio.Event()
        self._shadows: dict[str, _Shadow] = {}
        self.counts: Counter[str] = Counter()
        """Commands sent, events forwarded / skipped, problems; for health and tests."""
        self._problem_logged: dict[str, float] = {}

    # -- connection -------------------------------------------------------------------------------

    def _use_account(self, account: str) -> None:
        subjects.token(account)
        self._account = account
        self._set_account_id(account_id(account))

    @property
    def account(self) -> str:
        if self._account is None:
            raise RuntimeError("no Paradex account configured or discovered")
        return self._account

    @property
    def state(self) -> ExecState:
        """The folded ``EXEC`` state of the account (read-only use)."""
        return self._state

    @property
    def nc(self) -> NATS:
        if self._nc is None:
            raise RuntimeError("not connected")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("not connected")
        return self._js

    async def _connect(self) -> None:
        self._nc = await connect(f"nautilus-exec-{self.trader_id}", nats_settings(self._config.nats_url))
        self._js = jetstream(self._nc)
        self._publisher = Publisher(self._nc, self._js, name="nautilus-commands", ack_timeout=2.0)
        self._provider.bind(self._js)
        if self._account is None:
            self._use_account(await self._discover_account())
        self._state = ExecState(str(self.account_id))
        await self._provider.initialize()
        for instrument in self._provider.list_all():
            self._cache.add_instrument(instrument)
        target = await self._last_exec_seq()
        self._live_from = target
        self._follower = self._loop.create_task(self._follow(), name="paradex-exec-follower")
        self._follower.add_done_callback(self._on_follower_done)
        await self._wait_for_seq(target, timeout=max(30.0, self._config.reconcile_timeout_secs))
        self._log.info(
            f"Folded EXEC for {self.account}: {len(self._state.projection.orders)} orders, "
            f"{sum(len(f) for f in self._state.fills.values())} fills, up to stream seq {target}"
        )
        await self._establish_account_state()

    async def _disconnect(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.wait({self._follower}, timeout=5.0)
            self._follower = None
        if self._publisher is not None:
            await self._publisher.close(timeout=2.0)
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
        self._nc = self._js = self._publisher = None

    async def _discover_account(self) -> str:
        """The one account with an ``AccountState`` on ``EXEC`` (the local stack has exactly one)."""
        try:
            info = await self.js.stream_info(EXEC_STREAM, subjects_filter="exec.paradex.*.account")
        except NotFoundError as exc:
            raise RuntimeError("stream EXEC does not exist: is the stack running (make up)?") from exc
        found = sorted({subj.split(".")[2] for subj in (info.state.subjects or {})})
        if len(found) != 1:
            raise RuntimeError(
                "set the Paradex account (ParadexExecClientConfig.account or PARADEX_ACCOUNT): "
                f"accounts with an AccountState on EXEC: {found or 'none'}"
            )
        self._log.info(f"Using the account found on EXEC: {found[0]}")
        return found[0]

    async def _last_exec_seq(self) -> int:
        try:
            raw = await self.js.get_last_msg(EXEC_STREAM, subjects.exec_all(self.account), direct=True)
        except NotFoundError:
            return 0
        return int(raw.seq or 0)

    async def _wait_for_seq(self, target: int, timeout: float) -> None:
        deadline = self._loop.time() + timeout
        while self._state.last_seq < target:
            left = deadline - self._loop.time()
            if left <= 0:
                raise TimeoutError(f"EXEC fold reached seq {self._state.last_seq}, not {target}, in {timeout}s")
            self._seq_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._seq_changed.wait(), left)

    async def _catch_up(self) -> None:
        """Wait until everything stored on the account's EXEC subjects so far has been folded."""
        await self._wait_for_seq(await self._last_exec_seq(), timeout=self._config.reconcile_timeout_secs)

    def _on_follower_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._log.error(f"EXEC follower stopped: {task.exception()!r}")

    async def _follow(self) -> None:
        while True:
            try:
                async for m in replay(
                    self.js,
                    subjects.exec_all(self.account),
                    stream=EXEC_STREAM,
                    start_seq=self._state.last_seq + 1,
                    follow=True,
                ):
                    self._on_exec(m)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - consumer failure: resume from the last folded seq
                self._log.warning(f"EXEC follower failed ({exc!r}); resuming after seq {self._state.last_seq}")
                await asyncio.sleep(0.5)

    def _on_exec(self, m: BusMessage) -> None:
        try:
            ev = m.event
        except s.DecodeError as exc:
            self._problem("undecodable", f"{m.subject} seq {m.stream_seq}: {exc}")
            self._state.last_seq = max(self._state.last_seq, m.stream_seq)
            self._seq_changed.set()
            return
        self._state.apply(ev, m.stream_seq)
        if m.stream_seq > self._live_from:
            if self._holding:
                self._held.append((m.stream_seq, ev))
            else:
                self._dispatch(ev)
        self._seq_changed.set()

    def _problem(self, kind: str, detail: object) -> None:
        self.counts[f"bad:{kind}"] += 1
        now = self._loop.time()
        if now - self._problem_logged.get(kind, -1e9) >= 10.0:
            self._problem_logged[kind] = now
            self._log.warning(f"{kind} ({self.counts[f'bad:{kind}']} so far): {detail}")

    async def _establish_account_state(self) -> None:
        if self._state.account_state is None and self._config.reconcile_before_mass_status:
            await self._request_reconcile("no AccountState on the bus yet")
        deadline = self._loop.time() + self._config.account_state_timeout_secs
        while self._state.account_state is None and self._loop.time() < deadline:
            self._seq_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._seq_changed.wait(), max(0.0, deadline - self._loop.time()))
        if self._state.account_state is None:
            raise RuntimeError(
                f"no AccountState on {subjects.exec_account(self.account)} within "
                f"{self._config.account_state_timeout_secs}s: are the order router and reconciler running?"
            )
        self._send_account_state(to_nautilus(self._state.account_state, checked=True, derive_uuid4=True))
        await self._await_account_registered()

    # -- events -----------------------------------------------------------------------------------

    def _dispatch(self, ev: Any) -> None:
        if isinstance(ev, s.AccountState):
            if ev.account_id != str(self.account_id):
                self._problem("foreign_account_state", ev.account_id)
                return
            try:
                self._send_account_state(to_nautilus(ev, checked=True, derive_uuid4=True))
            except ConversionError as exc:
                self._problem("account_state", exc)
                return
            self.counts["account_state"] += 1
        elif isinstance(ev, OrderEvent):
            self._forward_order_event(ev)

    def _release_held(self) -> None:
        held, self._held, self._holding = self._held, [], False
        for seq, ev in held:
            if seq > self._live_from:
                self._dispatch(ev)

    def _shadow(self, order: Order) -> _Shadow:
        key = order.client_order_id.value
        sh = self._shadows.get(key)
        if sh is None:
            sh = self._shadows[key] = _Shadow(
                status=OrderStatus(order.status).name,
                venue_order_id=order.venue_order_id.value if order.venue_order_id is not None else None,
                trade_ids={t.value for t in order.trade_ids},
            )
        return sh

    def _cached_order(self, ev: OrderEvent) -> Order | None:
        order = self._cache.order(ClientOrderId(ev.client_order_id))
        venue_order_id = getattr(ev, "venue_order_id", None)
        if order is None and venue_order_id:
            coid = self._cache.client_order_id(VenueOrderId(venue_order_id))
            order = self._cache.order(coid) if coid is not None else None
        return order

    def _forward_order_event(self, ev: OrderEvent) -> None:
        if isinstance(ev, s.OrderInitialized):
            return  # the node built the order itself (or reconciliation adopts it)
        order = self._cached_order(ev)
        if order is None:
            self.counts["skipped:unknown_order"] += 1
            return
        sh = self._shadow(order)
        view = self._state.projection.order(ev.client_order_id)
        new_status, out = decide(ev, sh, str(self.account_id), view is not None and view.status == "FILLED")
        if new_status is None:
            self.counts[f"skipped:{type(ev).__name__}"] += 1
            return
        out = msgspec.structs.replace(
            out,
            trader_id=order.trader_id.value,
            strategy_id=order.strategy_id.value,
            client_order_id=order.client_order_id.value,
        )
        try:
            event = to_nautilus(out, derive_uuid4=True)
        except ConversionError as exc:
            self._problem("event", exc)
            return
        sh.status = new_status
        self.counts[type(out).__name__] += 1
        self._send_order_event(event)

    # -- commands ---------------------------------------------------------------------------------

    def _subject(self, instrument_id: InstrumentId) -> str:
        if instrument_id.venue.value != VENUE:
            raise SubjectError(f"{instrument_id} is not a {VENUE} instrument")
        return subjects.cmd(self.account, instrument_id.symbol.value)

    async def _publish(self, subject: str, command: s.Event, command_id: str) -> bool:
        """Publish one command until stored (same Msg-Id on every retry); False = outcome unknown."""
        assert self._publisher is not None
        try:
            await self._publisher.publish_acked(
                subject, s.encode(command), msgid.command(command_id), deadline=self._config.command_timeout_secs
            )
        except PublishError as exc:
            self._problem("command_unconfirmed", f"{type(command).__name__} {command_id}: {exc}")
            return False
        self.counts[f"sent:{type(command).__name__}"] += 1
        return True

    def _now(self) -> int:
        return self._clock.timestamp_ns()

    async def _submit_order(self, command: nm.SubmitOrder) -> None:
        order = command.order
        try:
            bus_command = from_nautilus(command)
            subject = self._subject(order.instrument_id)
        except (ConversionError, SubjectError) as exc:
            self._shadows[order.client_order_id.value] = _Shadow("DENIED")
            self.generate_order_denied(
                order.strategy_id,
                order.instrument_id,
                order.client_order_id,
                f"cannot be sent on the bus: {exc}",
                self._now(),
            )
            return
        self._shadows[order.client_order_id.value] = _Shadow("SUBMITTED")
        self.generate_order_submitted(order.strategy_id, order.instrument_id, order.client_order_id, self._now())
        await self._publish(subject, bus_command, command.id.value)

    async def _submit_order_list(self, command: nm.SubmitOrderList) -> None:
        orders = command.order_list.orders
        contingent = [o for o in orders if o.contingency_type != ContingencyType.NO_CONTINGENCY]
        for order in orders:
            if contingent:
                self._shadows[order.client_order_id.value] = _Shadow("DENIED")
                self.generate_order_denied(
                    order.strategy_id,
                    order.instrument_id,
                    order.client_order_id,
                    "Paradex has no contingent orders (OCO/OTO/OUO)",
                    self._now(),
                )
                continue
            single = nm.SubmitOrder(
                trader_id=command.trader_id,
                strategy_id=command.strategy_id,
                order=order,
                command_id=UUID4(),
                ts_init=self._now(),
                position_id=command.position_id,
                client_id=command.client_id,
                params=dict(command.params) if command.params else None,
            )
            await self._submit_order(single)

    async def _modify_order(self, command: nm.ModifyOrder) -> None:
        order = self._cache.order(command.client_order_id)
        try:
            bus_command = from_nautilus(command)
            subject = self._subject(command.instrument_id)
        except (ConversionError, SubjectError) as exc:
            self.generate_order_modify_rejected(
                command.strategy_id,
                command.instrument_id,
                command.client_order_id,
                command.venue_order_id,
                f"cannot be sent on the bus: {exc}",
                self._now(),
            )
            return
        if order is not None:
            sh = self._shadow(order)
            if not sh.closed and sh.status not in ("PENDING_UPDATE", "PENDING_CANCEL"):
                sh.previous, sh.status = sh.status, "PENDING_UPDATE"
        await self._publish(subject, bus_command, command.id.value)

    async def _cancel_order(self, command: nm.CancelOrder) -> None:
        order = self._cache.order(command.client_order_id)
        try:
            bus_command = from_nautilus(command)
            subject = self._subject(command.instrument_id)
        except (ConversionError, SubjectError) as exc:
            self.generate_order_cancel_rejected(
                command.strategy_id,
                command.instrument_id,
                command.client_order_id,
                command.venue_order_id,
                f"cannot be sent on the bus: {exc}",
                self._now(),
            )
            return
        if order is not None:
            self._mark_pending_cancel(order)
        await self._publish(subject, bus_command, command.id.value)

    def _mark_pending_cancel(self, order: Order) -> None:
        sh = self._shadow(order)
        if not sh.closed and sh.status != "PENDING_CANCEL":
            sh.previous, sh.status = sh.status, "PENDING_CANCEL"

    async def _cancel_all_orders(self, command: nm.CancelAllOrders) -> None:
        query: dict[str, Any] = {
            "instrument_id": command.instrument_id,
            "strategy_id": command.strategy_id,
            "side": command.order_side,
        }
        orders = {o.client_order_id: o for o in self._cache.orders_open(**query)}
        for o in self._cache.orders_inflight(**query):
            orders.setdefault(o.client_order_id, o)
        if not orders:
            self._log.info(f"No open or in-flight {command.instrument_id} orders of {command.strategy_id} to cancel")
            return
        for order in orders.values():
            if order.status == OrderStatus.INITIALIZED or order.is_closed:
                continue
            cancel = nm.CancelOrder(
                trader_id=command.trader_id,
                strategy_id=order.strategy_id,
                instrument_id=order.instrument_id,
                client_order_id=order.client_order_id,
                venue_order_id=order.venue_order_id,
                command_id=UUID4(),
                ts_init=self._now(),
                client_id=command.client_id,
            )
            await self._cancel_order(cancel)

    async def _batch_cancel_orders(self, command: nm.BatchCancelOrders) -> None:
        try:
            bus_command = from_nautilus(command)
            subject = self._subject(command.instrument_id)
        except (ConversionError, SubjectError) as exc:
            for cancel in command.cancels:
                self.generate_order_cancel_rejected(
                    cancel.strategy_id,
                    cancel.instrument_id,
                    cancel.client_order_id,
                    cancel.venue_order_id,
                    f"cannot be sent on the bus: {exc}",
                    self._now(),
                )
            return
        for cancel in command.cancels:
            order = self._cache.order(cancel.client_order_id)
            if order is not None:
                self._mark_pending_cancel(order)
        await self._publish(subject, bus_command, command.id.value)

    async def _query_account(self, command: nm.QueryAccount) -> None:
        await self._catch_up()
        if self._state.account_state is None:
            self._log.warning(f"No AccountState on {subjects.exec_account(self.account)}")
            return
        self._send_account_state(to_nautilus(self._state.account_state, checked=True, derive_uuid4=True))

    # -- reconciliation ---------------------------------------------------------------------------

    async def _request_reconcile(self, reason: str) -> s.ReconciliationSummary | None:
        """Ask the reconciler for a full run; None when no reconciler answers (the bus is used as is)."""
        request = s.ReconcileRequest(
            account=self.account, reason=reason, requested_by=f"nautilus:{self.trader_id}", ts_init=self._now()
        )
        try:
            reply = await self.nc.request(
                subjects.ctl_reconcile(self.account), s.encode(request), timeout=self._config.reconcile_timeout_secs
            )
        except nats.errors.NoRespondersError:
            self._log.warning("No reconciler answered ctl.reconcile: reports reflect the bus only")
            return None
        except nats.errors.TimeoutError:
            self._log.warning(f"The reconciler did not answer within {self._config.reconcile_timeout_secs}s")
            return None
        try:
            summary = s.decode_as(reply.data, s.ReconciliationSummary)
        except s.DecodeError as exc:
            self._problem("reconcile_reply", exc)
            return None
        text = f"Reconciler run {summary.run_id}: ok={summary.ok} counts={summary.counts}"
        if summary.ok:
            self._log.info(text)
        else:
            self._log.warning(f"{text} unresolved={summary.unresolved}")
        return summary

    def _size_precision(self, instrument_id: str) -> int | None:
        instrument = self._cache.instrument(InstrumentId.from_str(instrument_id))
        return instrument.size_precision if instrument is not None else None

    def _convert_all(self, reports: list[Any]) -> list[Any]:
        out = []
        for rep in reports:
            try:
                out.append(to_nautilus(_netting(rep), derive_uuid4=True))
            except ConversionError as exc:
                self._problem("report", exc)
        return out

    async def generate_order_status_report(self, command: nm.GenerateOrderStatusReport) -> OrderStatusReport | None:
        await self._catch_up()
        coid = command.client_order_id.value if command.client_order_id is not None else None
        vid = command.venue_order_id.value if command.venue_order_id is not None else None
        view = self._state.find(coid, vid)
        if view is None:
            self._log.info(f"No order {coid or vid} on the bus")
            return None
        report = self._state.order_report(view, self._now())
        converted = self._convert_all([report] if report is not None else [])
        return converted[0] if converted else None

    async def generate_order_status_reports(self, command: nm.GenerateOrderStatusReports) -> list[OrderStatusReport]:
        await self._catch_up()
        flt = ReportFilter(
            instrument_id=command.instrument_id.value if command.instrument_id is not None else None,
            start_ns=_ns(command.start),
            end_ns=_ns(command.end),
            open_only=command.open_only,
        )
        return self._convert_all(self._state.order_reports(flt, self._now()))

    async def generate_fill_reports(self, command: nm.GenerateFillReports) -> list[FillReport]:
        await self._catch_up()
        flt = ReportFilter(
            instrument_id=command.instrument_id.value if command.instrument_id is not None else None,
            venue_order_id=command.venue_order_id.value if command.venue_order_id is not None else None,
            start_ns=_ns(command.start),
            end_ns=_ns(command.end),
        )
        return self._convert_all(self._state.fill_reports(flt, self._now()))

    async def generate_position_status_reports(
        self, command: nm.GeneratePositionStatusReports
    ) -> list[PositionStatusReport]:
        await self._catch_up()
        flt = ReportFilter(instrument_id=command.instrument_id.value if command.instrument_id is not None else None)
        return self._convert_all(self._state.position_reports(flt, self._now(), self._size_precision))

    async def generate_mass_status(self, lookback_mins: int | None = None) -> ExecutionMassStatus | None:
        self._log.info("Generating ExecutionMassStatus from the bus...")
        self.reconciliation_active = True
        self._holding = True
        try:
            if self._config.reconcile_before_mass_status:
                await self._request_reconcile("nautilus mass status")
            await self._catch_up()
            now = self._now()
            since = now - lookback_mins * 60 * 1_000_000_000 if lookback_mins else None
            orders = self._state.order_reports(ReportFilter(start_ns=since), now)
            order_ids = {r.venue_order_id for r in orders}
            fills: dict[str, list[s.FillReport]] = {}
            for f in self._state.fill_reports(ReportFilter(), now):
                if f.venue_order_id in order_ids:
                    fills.setdefault(f.venue_order_id, []).append(f)
            positions = self._state.position_reports(ReportFilter(), now, self._size_precision)
            mass_status = s.ExecutionMassStatus(
                client_id=self.id.value,
                account_id=str(self.account_id),
                venue=VENUE,
                report_id=str(uuid.uuid4()),
                ts_init=now,
                order_reports={r.venue_order_id: _netting(r) for r in orders},
                fill_reports={k: [_netting(f) for f in v] for k, v in fills.items()},
                position_reports={p.instrument_id: [_netting(p)] for p in positions},
            )
            result = to_nautilus(mass_status, derive_uuid4=True)
            self._live_from = self._state.last_seq
            self._log.info(
                f"ExecutionMassStatus up to EXEC seq {self._live_from}: {len(orders)} orders, "
                f"{sum(len(v) for v in fills.values())} fills, {len(positions)} positions"
            )
            return result
        except Exception as exc:  # noqa: BLE001 - reported to the engine as "no mass status"
            self._log.exception("Cannot generate the execution mass status", exc)
            return None
        finally:
            self._release_held()
            self.reconciliation_active = False
