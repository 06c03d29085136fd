"""Trading over the bus: build order commands, publish them to ``CMD``, follow the resulting events.

Used by ``pdx order`` and by user programs (the SDK builds on it). Nothing here talks to the venue:
the order router consumes the commands and publishes the events.

    trader = Trader(nc, account)                     # account: lowercase 0x address
    cmd = trader.limit("BTC-USD-PERP", "BUY", "0.01", "65000.5", post_only=True)
    events = await trader.submit(cmd, until="rest")  # OrderInitialized, OrderSubmitted, OrderAccepted
    await trader.cancel(cmd.order.client_order_id, "BTC-USD-PERP")

    async with trader.watch(coid) as w:              # subscribe first, then publish: nothing missed
        await trader.send(cmd)
        async for ev in w.events(timeout=5):
            ...

* Builders: ``order(...)`` (any type; ``limit``/``market`` shortcuts), ``cancel_cmd``,
  ``cancel_all_cmd``, ``modify_cmd``, ``batch_cancel_cmd``, ``query_cmd``. Paradex-only order types
  (TAKE_PROFIT_*, STOP_LOSS_*) are given as ``paradex_type`` and travel in ``params``; batch submit
  is ``batch_id``/``batch_size`` in ``params`` (see ``services.order_router.batching``).
* One call each: ``submit_order(nc, js, account, market, side, qty, price=..., until=...)``,
  ``cancel_order(...)``, ``cancel_all_orders(...)`` (``bus.sdk.Bus`` delegates to these).
* ``send(cmd)`` publishes to ``cmd.paradex.<acct>.<MKT>`` (``ALL`` for every market) with
  ``Nats-Msg-Id = bus.msgid.command(command_id)`` and waits until ``CMD`` stored it: publishing the
  same command twice (a retry) is stored once.
* ``watch(coid)`` subscribes to ``exec.paradex.<acct>.order.<coid>`` (core NATS: the live events as
  they are stored). ``OrderWatch.wait(until, timeout)`` collects events until the condition:
  ``"final"`` (denied, rejected, canceled, expired or completely filled), ``"rest"`` (final, or
  accepted/triggered and resting: no further event for ``settle`` seconds; an IOC/market order is
  followed to its end), ``"accepted"`` (the first OrderAccepted, or final) or any predicate.
  A timeout raises ``TradingTimeout`` carrying the events seen so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck

import schemas as s
from bus import msgid, subjects
from bus.publisher import MSG_ID
from schemas.enums import OrderSide, OrderType, TimeInForce, TriggerType

FINAL_EVENTS = frozenset({"OrderDenied", "OrderRejected", "OrderCanceled", "OrderExpired"})
RESTING_EVENTS = frozenset({"OrderAccepted", "OrderTriggered", "OrderUpdated"})

Until = str | Callable[[list[Any]], bool]


class TradingTimeout(TimeoutError):
    """The awaited condition was not reached in time; ``events`` holds what arrived."""

    def __init__(self, message: str, events: list[Any]) -> None:
        super().__init__(message)
        self.events = events


def new_client_order_id(prefix: str = "O") -> str:
    """``<prefix>-<ms>-<random>``: unique, sortable by time, valid as a subject token and venue client id."""
    return f"{prefix}-{time.time_ns() // 1_000_000}-{secrets.token_hex(4)}"


def is_filled(events: list[Any]) -> bool:
    """True once the fills in ``events`` add up to the order quantity (as initialized/updated)."""
    qty: Decimal | None = None
    filled = Decimal(0)
    for ev in events:
        if isinstance(ev, s.OrderInitialized | s.OrderUpdated):
            qty = Decimal(ev.quantity)
        elif isinstance(ev, s.OrderFilled):
            filled += Decimal(ev.last_qty)
    return qty is not None and filled >= qty > 0


def is_final(events: list[Any]) -> bool:
    return any(type(ev).__name__ in FINAL_EVENTS for ev in events) or is_filled(events)


class OrderWatch:
    """Events of one order as they are stored; see the module docstring."""

    def __init__(self, nc: NATS, subject: str) -> None:
        self.nc = nc
        self.subject = subject
        self.seen: list[Any] = []
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._sub: Any = None
        self._ids: set[str] = set()

    async def __aenter__(self) -> OrderWatch:
        self._sub = await self.nc.subscribe(self.subject, cb=self._on_msg)
        await self.nc.flush()  # the subscription is registered before anything is published
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _on_msg(self, msg: Msg) -> None:
        mid = (msg.headers or {}).get(MSG_ID)
        if mid:
            if mid in self._ids:
                return  # the same fact published twice (router and reconciler): shown once
            self._ids.add(mid)
        try:
            ev = s.decode(msg.data)
        except s.DecodeError:
            return
        await self._queue.put(ev)

    async def next(self, timeout: float) -> Any:
        ev = await asyncio.wait_for(self._queue.get(), timeout)
        self.seen.append(ev)
        return ev

    async def events(self, timeout: float) -> AsyncIterator[Any]:
        """Every event until ``timeout`` seconds pass without one."""
        while True:
            try:
                yield await self.next(timeout)
            except TimeoutError:
                return

    async def wait(
        self,
        until: Until = "rest",
        timeout: float = 10.0,
        settle: float = 0.3,
        on_event: Callable[[Any], None] | None = None,
    ) -> list[Any]:
        """Collect events until ``until`` holds; returns every event seen by this watch.
        ``on_event`` is called with each event as it arrives (to stream them)."""
        deadline = time.monotonic() + timeout
        while True:
            if _reached(until, self.seen):
                return list(self.seen)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TradingTimeout(f"{self.subject}: {until!r} not reached in {timeout:g} s", list(self.seen))
            wait = left
            if until == "rest" and _resting(self.seen):
                wait = min(left, settle)
            try:
                ev = await self.next(wait)
            except TimeoutError:
                if until == "rest" and _resting(self.seen):
                    return list(self.seen)
                continue
            if on_event is not None:
                on_event(ev)


def _resting(events: list[Any]) -> bool:
    if not any(type(ev).__name__ in RESTING_EVENTS for ev in events):
        return False
    init = next((ev for ev in events if isinstance(ev, s.OrderInitialized)), None)
    return init is None or (init.time_in_force != TimeInForce.IOC and init.order_type != OrderType.MARKET)


def _reached(until: Until, events: list[Any]) -> bool:
    if callable(until):
        return until(events)
    if until == "final":
        return is_final(events)
    if until == "accepted":
        return is_final(events) or any(isinstance(ev, s.OrderAccepted) for ev in events)
    if until == "rest":
        return is_final(events)
    raise ValueError(f"unknown condition {until!r} (final, rest, accepted or a callable)")


class Trader:
    """Commands for one account; ``trader_id``/``strategy_id`` go into every command and order."""

    def __init__(
        self,
        nc: NATS,
        account: str,
        *,
        js: JetStreamContext | None = None,
        trader_id: str = "TRADER-001",
        strategy_id: str = "MANUAL-001",
        client_id: str = "PARADEX",
    ) -> None:
        self.nc = nc
        self.js = js or nc.jetstream()
        self.account = subjects.token(account.lower())
        self.trader_id = trader_id
        self.strategy_id = strategy_id
        self.client_id = client_id

    def _common(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "trader_id": self.trader_id,
            "strategy_id": self.strategy_id,
            "command_id": str(uuid.uuid4()),
            "ts_init": time.time_ns(),
        }

    # -- builders -----------------------------------------------------------------------------------

    def order(
        self,
        market: str,
        side: str,
        quantity: str | Decimal,
        *,
        order_type: str = OrderType.LIMIT,
        price: str | Decimal | None = None,
        trigger_price: str | Decimal | None = None,
        time_in_force: str = TimeInForce.GTC,
        post_only: bool = False,
        reduce_only: bool = False,
        client_order_id: str | None = None,
        paradex_type: str | None = None,
        params: dict[str, str] | None = None,
    ) -> s.SubmitOrder:
        """A SubmitOrder for any supported type (see ``services.order_router.mapping``)."""
        coid = client_order_id or new_client_order_id()
        now = time.time_ns()
        options = s.OrderOptions()
        if price is not None:
            options.price = str(price)
        if trigger_price is not None:
            options.trigger_price = str(trigger_price)
            options.trigger_type = TriggerType.DEFAULT
        p = dict(params or {})
        if paradex_type:
            p["paradex_type"] = paradex_type
        init = s.OrderInitialized(
            trader_id=self.trader_id,
            strategy_id=self.strategy_id,
            instrument_id=s.instrument_id(market),
            client_order_id=coid,
            order_side=OrderSide(side.upper()),
            order_type=OrderType(order_type),
            quantity=str(quantity),
            time_in_force=TimeInForce(time_in_force),
            post_only=post_only,
            reduce_only=reduce_only,
            options=options,
            event_id=str(uuid.uuid4()),
            ts_init=now,
            ts_event=now,
        )
        common = self._common()
        if p:
            return s.SubmitOrder(order=init, params=p, **common)
        return s.SubmitOrder(order=init, **common)

    def limit(self, market: str, side: str, quantity: str | Decimal, price: str | Decimal, **kw: Any) -> s.SubmitOrder:
        return self.order(market, side, quantity, order_type=OrderType.LIMIT, price=price, **kw)

    def market(self, market: str, side: str, quantity: str | Decimal, **kw: Any) -> s.SubmitOrder:
        return self.order(market, side, quantity, order_type=OrderType.MARKET, **kw)

    def cancel_cmd(self, client_order_id: str, market: str, venue_order_id: str | None = None) -> s.CancelOrder:
        return s.CancelOrder(
            instrument_id=s.instrument_id(market),
            client_order_id=client_order_id,
            venue_order_id=venue_order_id,
            **self._common(),
        )

    def cancel_all_cmd(self, market: str | None = None, side: str | None = None) -> s.CancelAllOrders:
        return s.CancelAllOrders(
            instrument_id=s.instrument_id(market) if market else s.ALL_MARKETS_INSTRUMENT,
            order_side=OrderSide(side.upper()) if side else OrderSide.NO_ORDER_SIDE,
            **self._common(),
        )

    def modify_cmd(
        self,
        client_order_id: str,
        market: str,
        *,
        quantity: str | Decimal | None = None,
        price: str | Decimal | None = None,
        trigger_price: str | Decimal | None = None,
        venue_order_id: str | None = None,
    ) -> s.ModifyOrder:
        return s.ModifyOrder(
            instrument_id=s.instrument_id(market),
            client_order_id=client_order_id,
            venue_order_id=venue_order_id,
            quantity=None if quantity is None else str(quantity),
            price=None if price is None else str(price),
            trigger_price=None if trigger_price is None else str(trigger_price),
            **self._common(),
        )

    def batch_cancel_cmd(self, market: str, client_order_ids: list[str]) -> s.BatchCancelOrders:
        return s.BatchCancelOrders(
            instrument_id=s.instrument_id(market),
            cancels=[self.cancel_cmd(c, market) for c in client_order_ids],
            **self._common(),
        )

    def query_cmd(self, client_order_id: str, market: str, venue_order_id: str | None = None) -> s.QueryOrder:
        return s.QueryOrder(
            instrument_id=s.instrument_id(market),
            client_order_id=client_order_id,
            venue_order_id=venue_order_id,
            **self._common(),
        )

    # -- sending and following -------------------------------------------------------------------------

    def subject_for(self, cmd: Any) -> str:
        iid = cmd.order.instrument_id if isinstance(cmd, s.SubmitOrder) else cmd.instrument_id
        market = "ALL" if iid == s.ALL_MARKETS_INSTRUMENT else s.market_of(iid)
        return subjects.cmd(self.account, market)

    async def send(self, cmd: Any, timeout: float = 5.0) -> PubAck:
        """Store ``cmd`` in ``CMD`` (idempotent by its command id)."""
        return await self.js.publish(
            self.subject_for(cmd), s.encode(cmd), timeout=timeout, headers={MSG_ID: msgid.command(cmd.command_id)}
        )

    def watch(self, client_order_id: str) -> OrderWatch:
        return OrderWatch(self.nc, subjects.exec_order(self.account, client_order_id))

    async def submit(
        self, cmd: s.SubmitOrder, *, until: Until | None = "rest", timeout: float = 10.0, settle: float = 0.3
    ) -> list[Any]:
        """Send a SubmitOrder and return its events once ``until`` holds (``None``: do not wait)."""
        async with self.watch(cmd.order.client_order_id) as w:
            await self.send(cmd)
            if until is None:
                return []
            return await w.wait(until, timeout, settle)

    async def cancel(
        self, client_order_id: str, market: str, *, venue_order_id: str | None = None, timeout: float = 10.0
    ) -> list[Any]:
        """Send a CancelOrder; return its events up to OrderCanceled / OrderCancelRejected (or final)."""
        cmd = self.cancel_cmd(client_order_id, market, venue_order_id)
        async with self.watch(client_order_id) as w:
            await self.send(cmd)
            return await w.wait(_cancel_settled, timeout)

    async def cancel_all(self, market: str | None = None, side: str | None = None) -> s.CancelAllOrders:
        cmd = self.cancel_all_cmd(market, side)
        await self.send(cmd)
        return cmd


def _cancel_settled(events: list[Any]) -> bool:
    return is_final(events) or any(isinstance(ev, s.OrderCancelRejected) for ev in events)


# -- one-call helpers (bus.sdk.Bus.submit_order and friends delegate here) ---------------------------


def _trader(nc: NATS, js: JetStreamContext | None, account: str, kwargs: dict[str, Any]) -> Trader:
    ident = {k: kwargs.pop(k) for k in ("trader_id", "strategy_id", "client_id") if k in kwargs}
    return Trader(nc, account, js=js, **ident)


async def submit_order(
    nc: NATS,
    js: JetStreamContext | None,
    account: str,
    market: str,
    side: str,
    quantity: str | Decimal,
    *,
    until: Until | None = "rest",
    timeout: float = 10.0,
    **order: Any,
) -> list[Any]:
    """Build, send and follow one order: ``order`` takes ``Trader.order``'s keywords (``price``,
    ``order_type``, ``time_in_force``, ``post_only``, ``reduce_only``, ``trigger_price``,
    ``client_order_id``, ``paradex_type``, ``params``) and ``trader_id``/``strategy_id``."""
    trader = _trader(nc, js, account, order)
    return await trader.submit(trader.order(market, side, quantity, **order), until=until, timeout=timeout)


async def cancel_order(
    nc: NATS,
    js: JetStreamContext | None,
    account: str,
    client_order_id: str,
    market: str,
    *,
    venue_order_id: str | None = None,
    timeout: float = 10.0,
    **ident: Any,
) -> list[Any]:
    """Cancel one order and return its events up to OrderCanceled / OrderCancelRejected."""
    return await _trader(nc, js, account, ident).cancel(
        client_order_id, market, venue_order_id=venue_order_id, timeout=timeout
    )


async def cancel_all_orders(
    nc: NATS, js: JetStreamContext | None, account: str, market: str | None = None, side: str | None = None,
    **ident: Any,
) -> s.CancelAllOrders:
    """Send a CancelAllOrders (every market when ``market`` is None); returns the command."""
    return await _trader(nc, js, account, ident).cancel_all(market, side)
