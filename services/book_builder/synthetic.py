"""A seeded synthetic book feed, exactly as the feed handler publishes it, for tests and the
benchmark: per market a snapshot (CLEAR + ADDs, ``F_SNAPSHOT``, last ``F_SNAPSHOT|F_LAST``), then
delta messages (ADD / UPDATE / DELETE, last ``F_LAST``) whose venue sequence sometimes skips (the
venue's level-less deltas the feed handler drops), each with ``Pdx-Prev-Seq`` and the feed
handler's Msg-Id. The generator keeps its own book (the reference) and never crosses it.

Prices and sizes are built from integers (ticks, lots), never floats.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bus import msgid, subjects
from bus.book_client import PREV_SEQ_HEADER
from schemas import encode
from schemas.base import instrument_id
from schemas.data import BookOrder, OrderBookDelta, OrderBookDeltas
from schemas.enums import BookAction, OrderSide, RecordFlag

F_SNAPSHOT = RecordFlag.F_SNAPSHOT
F_LAST = RecordFlag.F_LAST


@dataclass
class FlowMessage:
    market: str
    subject: str
    event: OrderBookDeltas
    headers: dict[str, str]  # Pdx-Prev-Seq (non-snapshot only); the Msg-Id is separate
    msg_id: str
    snapshot: bool

    @property
    def payload(self) -> bytes:
        return encode(self.event)

    @property
    def sequence(self) -> int:
        return self.event.deltas[-1].sequence

    def nats_headers(self) -> dict[str, str]:
        return {**self.headers, "Nats-Msg-Id": self.msg_id}


def fmt_units(units: int, decimals: int) -> str:
    if decimals == 0:
        return str(units)
    q, r = divmod(units, 10**decimals)
    return f"{q}.{r:0{decimals}d}"


class SyntheticMarket:
    def __init__(
        self,
        market: str,
        *,
        seed: int = 1,
        levels: int = 20,
        price_decimals: int = 1,
        size_decimals: int = 3,
        mid_ticks: int = 500_000,
        skip_prob: float = 0.1,
        max_changes: int = 3,
        start_seq: int = 1000,
    ) -> None:
        self.market = market
        self.instrument_id = instrument_id(market)
        self.subject = subjects.md("deltas", market)
        self.rng = random.Random(f"{seed}:{market}")
        self.levels = levels
        self.pdec, self.sdec = price_decimals, size_decimals
        self.skip_prob = skip_prob
        self.max_changes = max_changes
        self.seq = start_seq
        self.last_published = 0
        self.ts = 1_700_000_000_000_000_000
        self.bids: dict[int, int] = {}  # tick -> lots
        self.asks: dict[int, int] = {}
        for i in range(levels):
            self.bids[mid_ticks - 1 - i] = self._lots()
            self.asks[mid_ticks + 1 + i] = self._lots()

    # -- reference book ---------------------------------------------------------------------------

    def price(self, tick: int) -> str:
        return fmt_units(tick, self.pdec)

    def size(self, lots: int) -> str:
        return fmt_units(lots, self.sdec)

    def expected(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The generator's book, best first: ``(bids, asks)`` of (price, size) strings."""
        bids = [(self.price(t), self.size(v)) for t, v in sorted(self.bids.items(), reverse=True)]
        asks = [(self.price(t), self.size(v)) for t, v in sorted(self.asks.items())]
        return bids, asks

    def expected_top(self) -> tuple[str, str, str, str] | None:
        if not self.bids or not self.asks:
            return None
        b, a = max(self.bids), min(self.asks)
        return self.price(b), self.size(self.bids[b]), self.price(a), self.size(self.asks[a])

    def _lots(self) -> int:
        return self.rng.randint(1, 50_000)

    def _delta(self, action: BookAction, side: OrderSide, tick: int, lots: int, flags: int = 0) -> OrderBookDelta:
        return OrderBookDelta(
            instrument_id=self.instrument_id,
            action=action,
            order=BookOrder(side=side, price=self.price(tick), size=self.size(lots)),
            flags=flags,
            sequence=self.seq,
            ts_event=self.ts,
            ts_init=self.ts,
        )

    # -- messages ---------------------------------------------------------------------------------

    def snapshot(self) -> FlowMessage:
        """The whole book at the current sequence (what a (re)subscription starts with)."""
        self.seq += 1
        self.ts += 1_000_000
        clear = OrderBookDelta(
            instrument_id=self.instrument_id,
            action=BookAction.CLEAR,
            order=BookOrder(side=OrderSide.NO_ORDER_SIDE, price="0", size="0"),
            flags=F_SNAPSHOT,
            sequence=self.seq,
            ts_event=self.ts,
            ts_init=self.ts,
        )
        deltas = [clear]
        deltas += [self._delta(BookAction.ADD, OrderSide.BUY, t, v, F_SNAPSHOT) for t, v in self.bids.items()]
        deltas += [self._delta(BookAction.ADD, OrderSide.SELL, t, v, F_SNAPSHOT) for t, v in self.asks.items()]
        deltas[-1].flags = F_SNAPSHOT | F_LAST
        self.last_published = self.seq
        return FlowMessage(
            self.market,
            self.subject,
            OrderBookDeltas(instrument_id=self.instrument_id, deltas=deltas),
            {},
            msgid.book(self.market, self.seq, snapshot=True),
            True,
        )

    def step(self) -> FlowMessage:
        """One venue delta message with 1..max_changes level changes (the book stays uncrossed)."""
        rng = self.rng
        if rng.random() < self.skip_prob:
            self.seq += rng.randint(1, 3)  # level-less venue deltas: not published
        self.seq += 1
        self.ts += 1_000_000
        deltas: list[OrderBookDelta] = []
        for _ in range(rng.randint(1, self.max_changes)):
            deltas.append(self._change())
        deltas[-1].flags = F_LAST
        prev = self.last_published
        self.last_published = self.seq
        return FlowMessage(
            self.market,
            self.subject,
            OrderBookDeltas(instrument_id=self.instrument_id, deltas=deltas),
            {PREV_SEQ_HEADER: str(prev)},
            msgid.book(self.market, self.seq),
            False,
        )

    def lose(self) -> FlowMessage:
        """A message the venue sent but the bus never got (the next one reveals the gap)."""
        prev = self.last_published
        msg = self.step()
        msg.headers[PREV_SEQ_HEADER] = str(prev)
        return msg

    def _change(self) -> OrderBookDelta:
        rng = self.rng
        is_bid = rng.random() < 0.5
        book, other = (self.bids, self.asks) if is_bid else (self.asks, self.bids)
        side = OrderSide.BUY if is_bid else OrderSide.SELL
        r = rng.random()
        fill = len(book) / max(1, self.levels)
        if book and r < 0.6:
            tick = self._near_top(book, is_bid)
            book[tick] = self._lots()
            return self._delta(BookAction.UPDATE, side, tick, book[tick])
        if book and (r < 0.6 + 0.2 * fill or len(book) > 2 * self.levels):
            tick = self._near_top(book, is_bid)
            del book[tick]
            return self._delta(BookAction.DELETE, side, tick, 0)
        # insert a level that cannot cross the other side
        if is_bid:
            limit = min(other) - 1 if other else (max(book) + 5 if book else 500_000)
            tick = limit - int(rng.expovariate(1 / max(1.0, self.levels / 2)))
        else:
            limit = max(other) + 1 if other else (min(book) - 5 if book else 500_001)
            tick = limit + int(rng.expovariate(1 / max(1.0, self.levels / 2)))
        action = BookAction.UPDATE if tick in book else BookAction.ADD
        book[tick] = self._lots()
        return self._delta(action, side, tick, book[tick])

    def _near_top(self, book: dict[int, int], is_bid: bool) -> int:
        ticks = sorted(book, reverse=is_bid)
        i = min(len(ticks) - 1, int(self.rng.expovariate(1 / 5)))
        return ticks[i]


class SyntheticFlow:
    """Several markets interleaved at random (seeded)."""

    def __init__(self, markets: list[str], *, seed: int = 1, **kw: object) -> None:
        self.rng = random.Random(seed)
        self.markets = {m: SyntheticMarket(m, seed=seed, **kw) for m in markets}  # type: ignore[arg-type]
        self._names = list(self.markets)

    def snapshots(self) -> list[FlowMessage]:
        return [m.snapshot() for m in self.markets.values()]

    def step(self) -> FlowMessage:
        return self.markets[self.rng.choice(self._names)].step()
