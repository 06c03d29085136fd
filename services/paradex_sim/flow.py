"""Seeded background flow: simulated market makers and takers that place, cancel and cross orders
through the same engine as real clients, so the public feeds (book deltas and snapshots, BBO,
trades, summaries) move like a live market and real accounts' resting orders get hit.

``rate`` is book events per second summed over all markets (each event is one deltas message per
deltas subscription; BBO and trade messages come on top when they change). It runs from a few
events/s up to several thousand (one event costs tens of microseconds). Decisions come from one
``random.Random(seed)``; the market that results also depends on timing (price ticks, real orders).

Honours the system state: nothing in maintenance, cancels only in cancel_only, passive orders and
cancels in post_only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from services.paradex_sim.accounts import Account
from services.paradex_sim.engine import Exchange
from services.paradex_sim.errors import ApiError
from services.paradex_sim.models import CLOSED, Order

log = logging.getLogger("paradex_sim.flow")

BP = Decimal("0.0001")
TARGET_RESTING = 60  # flow orders per market the makers aim to keep
TICK_S = 0.01
CHUNK = 50  # flow events between yields to the event loop


def internal_address(name: str) -> str:
    return hex(int.from_bytes(hashlib.sha256(f"paradex-sim:{name}".encode()).digest()[:30], "big"))


class FlowGenerator:
    def __init__(self, exchange: Exchange, seed: int, rate: float) -> None:
        self.ex = exchange
        self.rng = random.Random(seed)
        self.rate = rate
        self.running = False
        self.seeded = False
        self.events = 0
        self.makers = [exchange.open_account(internal_address(f"flow-maker-{i}"), None, Decimal(0), internal=True)
                       for i in range(3)]
        self.takers = [exchange.open_account(internal_address(f"flow-taker-{i}"), None, Decimal(0), internal=True)
                       for i in range(2)]
        self.resting: dict[str, list[Order]] = {m: [] for m in exchange.markets}

    # -- actions ------------------------------------------------------------------------------------

    def _size(self, market: str, price: Decimal) -> Decimal:
        spec = self.ex.markets[market]
        notional = Decimal(self.rng.choice((25, 60, 150, 400, 1000, 2500)))
        size = (notional / price).quantize(spec.order_size_increment, rounding=ROUND_CEILING)
        while size * price < spec.min_notional:
            size += spec.order_size_increment
        return min(size, spec.max_order_size)

    def _place(self, acct: Account, market: str, side: str, price: Decimal, size: Decimal,
               instruction: str) -> Order | None:
        try:
            return self.ex.submit(acct, market=market, side=side, type="LIMIT", size=size, price=price,
                                  instruction=instruction, process_now=True)
        except ApiError:
            return None

    def add_passive(self, market: str, offset_bps: float | None = None) -> None:
        spec = self.ex.markets[market]
        tick = spec.price_tick_size
        mark = self.ex.pricing.mark(market)
        side = "BUY" if self.rng.random() < 0.5 else "SELL"
        bps = Decimal(str(round(offset_bps if offset_bps is not None else 0.5 + self.rng.expovariate(0.25), 2)))
        book = self.ex.books[market]
        if side == "BUY":
            price = (mark * (1 - bps * BP) / tick).to_integral_value(ROUND_FLOOR) * tick
            best_ask = book.best_ask()
            if best_ask is not None and price >= best_ask.price:
                price = best_ask.price - tick
        else:
            price = (mark * (1 + bps * BP) / tick).to_integral_value(ROUND_CEILING) * tick
            best_bid = book.best_bid()
            if best_bid is not None and price <= best_bid.price:
                price = best_bid.price + tick
        if price <= 0:
            return
        maker = self.makers[self.rng.randrange(len(self.makers))]
        order = self._place(maker, market, side, price, self._size(market, price), "POST_ONLY")
        if order is not None and order.status != CLOSED:
            self.resting[market].append(order)

    def cancel_one(self, market: str) -> bool:
        lst = self.resting[market]
        mark = self.ex.pricing.mark(market)
        while lst:
            # Of two random resting orders cancel the one farther from mark: keeps the book centred.
            i, j = self.rng.randrange(len(lst)), self.rng.randrange(len(lst))
            a, b = lst[i], lst[j]
            k = i if abs(a.price - mark) >= abs(b.price - mark) else j  # type: ignore[operator]
            order = lst[k]
            lst[k] = lst[-1]
            lst.pop()
            if order.status != CLOSED:
                self.ex.cancel_now(order)
                return True
        return False

    def take(self, market: str) -> None:
        book = self.ex.books[market]
        spec = self.ex.markets[market]
        side = "BUY" if self.rng.random() < 0.5 else "SELL"
        level = book.best_ask() if side == "BUY" else book.best_bid()
        if level is None:
            self.add_passive(market)
            return
        frac = Decimal(self.rng.choice(("0.3", "0.6", "1", "1.5")))
        size = max(spec.order_size_increment,
                   (level.size * frac).quantize(spec.order_size_increment, rounding=ROUND_FLOOR))
        size = min(size, spec.max_order_size)
        tick = spec.price_tick_size
        slack = (level.price * 3 * BP / tick).to_integral_value(ROUND_CEILING) * tick
        price = level.price + slack if side == "BUY" else level.price - slack
        taker = self.takers[self.rng.randrange(len(self.takers))]
        self._place(taker, market, side, price, size, "IOC")

    def step(self) -> None:
        status = self.ex.system_status
        if status == "maintenance":
            return
        markets = list(self.ex.markets)
        market = markets[self.rng.randrange(len(markets))]
        self.resting.setdefault(market, [])
        n = len(self.resting[market])
        r = self.rng.random()
        if status == "cancel_only":
            if not self.cancel_one(market):
                return
        elif status == "post_only":
            if r < 0.55 or n < 10 or not self.cancel_one(market):
                self.add_passive(market)
        else:
            p_add = 0.55 if n < TARGET_RESTING else 0.33
            if r < p_add:
                self.add_passive(market)
            elif r < 0.85:
                if not self.cancel_one(market):
                    self.add_passive(market)
            else:
                self.take(market)
        self.events += 1

    def seed_books(self) -> None:
        """A few levels each side around mark so the market is tradeable at once."""
        for market in list(self.ex.markets):
            self.resting.setdefault(market, [])
            for k in range(10):
                for _ in range(2):
                    self.add_passive(market, offset_bps=1.0 + 2.0 * k)
        self.seeded = True

    # -- loop ---------------------------------------------------------------------------------------

    def set(self, running: bool | None = None, rate: float | None = None) -> None:
        if rate is not None:
            if rate < 0:
                raise ValueError("rate must be >= 0")
            self.rate = rate
        if running is not None:
            if running and not self.seeded:
                self.seed_books()
            self.running = running

    def describe(self) -> dict[str, object]:
        return {"running": self.running, "rate": self.rate, "events": self.events,
                "resting": {m: len(v) for m, v in self.resting.items()}}

    async def run(self) -> None:
        last = time.monotonic()
        budget = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            dt, last = now - last, now
            if not self.running or self.rate <= 0:
                budget = 0.0
                continue
            # At most 50 ms of backlog: after a stall the flow catches up a little, not in one burst.
            budget = min(budget + self.rate * dt, max(1.0, self.rate * 0.05))
            n = int(budget)
            budget -= n
            while n > 0:
                chunk = min(n, CHUNK)
                n -= chunk
                for _ in range(chunk):
                    try:
                        self.step()
                    except Exception:  # the flow must keep going; the engine already counted it
                        log.exception("flow step failed")
                if n:
                    await asyncio.sleep(0)  # let the WS writers drain between chunks
