"""A strategy-like client for chaos runs: it trades only through the bus, as a user's program would.

It reads instruments from ``REF``, prices from the built book (``book.paradex.quotes.<MKT>``, falling
back to the venue BBO on ``md.paradex.quotes.<MKT>`` while the book builder is down) and its own
orders from ``EXEC`` (an ``ExecProjection`` fed by an ordered consumer that survives reconnects),
and sends commands to ``CMD`` with ``bus.trading.Trader``. Every step picks one action with a
seeded ``random.Random``:

* passive post-only limits a few ticks to 0.4 % away from the touch (they rest);
* limits at the touch (background-flow takers fill them, often partially);
* aggressive IOC limits through the touch and market orders (taker fills, positions move);
* modifies (price a few ticks, sometimes size), cancels, batch cancels and market cancel-alls.

A send that fails (NATS restarting) is retried with the same command -- the same command id, so
the same ``Nats-Msg-Id`` -- for a few seconds, then given up and counted: the command may or may not
be in ``CMD``, which is why the invariant checker reads commands from ``CMD``, not from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

import schemas as s
from bus import subjects
from bus.replay import last_per_subject, replay
from bus.trading import Trader, new_client_order_id
from services.execution.projection import ACCEPTED, PARTIALLY_FILLED, ExecProjection, OrderView

log = logging.getLogger("chaos.workload")

OPEN_FOR_ACTIONS = (ACCEPTED, PARTIALLY_FILLED)


@dataclass
class Quote:
    bid: Decimal
    ask: Decimal
    at: float  # monotonic


@dataclass
class Instrument:
    tick: Decimal
    step: Decimal
    min_notional: Decimal

    def price(self, value: Decimal, up: bool) -> Decimal:
        return (value / self.tick).to_integral_value(ROUND_UP if up else ROUND_DOWN) * self.tick

    def size_for(self, notional: Decimal, price: Decimal) -> Decimal:
        size = (notional / price / self.step).to_integral_value(ROUND_UP) * self.step
        return max(size, self.step)


@dataclass
class WorkloadStats:
    actions: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    send_retries: int = 0
    send_failed: int = 0
    skipped_no_quote: int = 0
    events_seen: int = 0
    undecodable: int = 0
    follower_restarts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "actions": dict(self.actions),
            "sent": dict(self.sent),
            "send_retries": self.send_retries,
            "send_failed": self.send_failed,
            "skipped_no_quote": self.skipped_no_quote,
            "events_seen": self.events_seen,
            "follower_restarts": self.follower_restarts,
        }


ACTIONS: tuple[tuple[str, int], ...] = (
    ("passive", 30),
    ("touch", 12),
    ("aggressive", 8),
    ("market", 3),
    ("modify", 20),
    ("cancel", 15),
    ("batch_cancel", 5),
    ("cancel_all", 2),
)


class Workload:
    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        account: str,
        markets: tuple[str, ...],
        rng: random.Random,
        *,
        rate: float = 3.0,
        max_open: int = 16,
        send_deadline: float = 8.0,
    ) -> None:
        self.nc, self.js = nc, js
        self.account = account
        self.markets = markets
        self.rng = rng
        self.rate = rate
        self.max_open = max_open
        self.send_deadline = send_deadline
        self.trader = Trader(nc, account, js=js, trader_id="CHAOS-001", strategy_id="CHAOS-001")
        self.proj = ExecProjection()
        self.quotes: dict[str, Quote] = {}
        self.instruments: dict[str, Instrument] = {}
        self.stats = WorkloadStats()
        self._subs: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._sends: set[asyncio.Task[None]] = set()
        self._last_seq = 0

    # -- inputs ---------------------------------------------------------------------------------

    async def start(self) -> Workload:
        await self._load_instruments()
        for m in self.markets:
            self._subs.append(await self.nc.subscribe(subjects.book_quotes(m), cb=self._on_quote))
            self._subs.append(await self.nc.subscribe(subjects.md("quotes", m), cb=self._on_quote))
        self._tasks.append(asyncio.create_task(self._follow(), name="chaos-workload-follow"))
        return self

    async def _load_instruments(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            found = await last_per_subject(self.js, "ref.paradex.instrument.>", stream="REF")
            for ev in found.values():
                if isinstance(ev, s.CryptoPerpetual):
                    m = s.market_of(ev.id)
                    min_notional = Decimal((ev.min_notional or "10").split(" ")[0])  # Money: "10.00 USD"
                    self.instruments[m] = Instrument(
                        Decimal(ev.price_increment), Decimal(ev.size_increment), min_notional
                    )
            if all(m in self.instruments for m in self.markets) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        missing = [m for m in self.markets if m not in self.instruments]
        if missing:
            raise RuntimeError(f"no instrument definition on the bus for {missing} (is the feed handler up?)")

    async def _on_quote(self, msg: Msg) -> None:
        try:
            q = s.decode_as(msg.data, s.QuoteTick)
        except s.DecodeError:
            return
        try:
            bid, ask = Decimal(q.bid_price), Decimal(q.ask_price)
        except ArithmeticError:
            return
        if bid > 0 and ask > bid:
            self.quotes[s.market_of(q.instrument_id)] = Quote(bid, ask, time.monotonic())

    async def _follow(self) -> None:
        """Fold our order events from ``EXEC``; restarted from the last sequence if it breaks."""
        while True:
            try:
                async for m in replay(
                    self.js,
                    subjects.exec_orders(self.account),
                    stream="EXEC",
                    start_seq=self._last_seq + 1 if self._last_seq else None,
                    follow=True,
                ):
                    self._last_seq = m.stream_seq
                    try:
                        ev = m.event
                    except s.DecodeError:
                        self.stats.undecodable += 1
                        continue
                    self.proj.apply(ev, m.stream_seq)
                    self.stats.events_seen += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS restarting: follow again from where we were
                self.stats.follower_restarts += 1
                log.debug("EXEC follower restarting: %r", exc)
                await asyncio.sleep(1.0)

    # -- acting ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.step()
            except Exception as exc:  # noqa: BLE001 - one bad step must not end the workload
                self.stats.actions["step_error"] += 1
                log.warning("workload step failed: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.rng.expovariate(self.rate))

    async def stop(self) -> None:
        if self._sends:
            await asyncio.wait(self._sends, timeout=self.send_deadline + 2)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _open(self, market: str | None = None) -> list[OrderView]:
        iid = s.instrument_id(market) if market else None
        return [
            o
            for o in self.proj.orders.values()
            if o.status in OPEN_FOR_ACTIONS and o.strategy_id == "CHAOS-001" and (iid is None or o.instrument_id == iid)
        ]

    async def step(self) -> None:
        market = self.rng.choice(self.markets)
        open_all = self._open()
        if len(open_all) >= self.max_open:
            victim = min(open_all, key=lambda o: o.ts_last)
            self._send("cancel", self.trader.cancel_cmd(victim.client_order_id, s.market_of(victim.instrument_id)))
            return
        action = self.rng.choices([a for a, _ in ACTIONS], [w for _, w in ACTIONS])[0]
        self.stats.actions[action] += 1
        if action in ("modify", "cancel", "batch_cancel"):
            mine = self._open(market)
            if not mine:
                action = "passive"
            elif action == "modify":
                self._modify(self.rng.choice(mine), market)
                return
            elif action == "cancel":
                self._send("cancel", self.trader.cancel_cmd(self.rng.choice(mine).client_order_id, market))
                return
            else:
                chosen = self.rng.sample(mine, min(len(mine), self.rng.randint(2, 3)))
                self._send("batch_cancel", self.trader.batch_cancel_cmd(market, [o.client_order_id for o in chosen]))
                return
        if action == "cancel_all":
            self._send("cancel_all", self.trader.cancel_all_cmd(market))
            return
        q = self.quotes.get(market)
        inst = self.instruments[market]
        if q is None or time.monotonic() - q.at > 15:
            self.stats.skipped_no_quote += 1
            return
        side = self.rng.choice(("BUY", "SELL"))
        buy = side == "BUY"
        notional = inst.min_notional * Decimal(str(round(self.rng.uniform(1.5, 4.0), 2)))
        coid = new_client_order_id("CH")
        if action == "passive":
            away = Decimal(str(round(self.rng.uniform(0.0005, 0.004), 5)))
            px = inst.price(q.bid * (1 - away), up=False) if buy else inst.price(q.ask * (1 + away), up=True)
            cmd = self.trader.limit(market, side, inst.size_for(notional, px), px, post_only=True, client_order_id=coid)
        elif action == "touch":
            px = q.bid if buy else q.ask
            cmd = self.trader.limit(market, side, inst.size_for(notional, px), px, client_order_id=coid)
        elif action == "aggressive":
            px = inst.price(q.ask * Decimal("1.002"), up=True) if buy else inst.price(q.bid * Decimal("0.998"), False)
            cmd = self.trader.limit(
                market, side, inst.size_for(notional, px), px, time_in_force="IOC", client_order_id=coid
            )
        else:  # market
            ref = q.ask if buy else q.bid
            cmd = self.trader.market(market, side, inst.size_for(notional, ref), client_order_id=coid)
        self._send(action, cmd)

    def _modify(self, o: OrderView, market: str) -> None:
        inst = self.instruments[market]
        if o.price is None:
            return
        ticks = Decimal(self.rng.randint(1, 4)) * inst.tick
        # Move away from the touch so a post-only order stays post-only.
        new_px = Decimal(o.price) - ticks if o.side == "BUY" else Decimal(o.price) + ticks
        qty = None
        if self.rng.random() < 0.3 and o.filled_qty == 0:
            qty = inst.size_for(inst.min_notional * Decimal(str(round(self.rng.uniform(1.5, 4.0), 2))), new_px)
        self._send("modify", self.trader.modify_cmd(o.client_order_id, market, price=new_px, quantity=qty))

    def _send(self, kind: str, cmd: Any) -> None:
        task = asyncio.create_task(self._send_retrying(kind, cmd))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send_retrying(self, kind: str, cmd: Any) -> None:
        deadline = time.monotonic() + self.send_deadline
        while True:
            try:
                await self.trader.send(cmd, timeout=2.0)
                self.stats.sent[kind] += 1
                return
            except Exception as exc:  # noqa: BLE001 - NATS down or electing: same command, same Msg-Id
                if time.monotonic() > deadline:
                    self.stats.send_failed += 1
                    log.info("command %s not confirmed stored: %r", kind, exc)
                    return
                self.stats.send_retries += 1
                await asyncio.sleep(0.3)
