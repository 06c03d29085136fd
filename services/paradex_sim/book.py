"""One market's limit order book: price levels in price-time priority, the book ``seq_no``, and
the venue's book payloads (PriceBookUpdate snapshots and deltas, BBO; paradex-api.md §4.5, §5.7).

The engine mutates the book during one operation (an order processed, a cancel, a trigger) and
then calls ``flush``: that advances ``seq_no`` by exactly one and returns the net level changes of
the operation as one ``"d"`` update -- possibly with no levels at all, as the venue does -- so the
deltas stream is contiguous by construction.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from sortedcontainers import SortedDict

from services.paradex_sim.models import ZERO, Order
from services.paradex_sim.util import dstr


class Level:
    __slots__ = ("orders", "price", "size")

    def __init__(self, price: Decimal) -> None:
        self.price = price
        self.size = ZERO
        self.orders: dict[str, Order] = {}  # insertion order = time priority


class OrderBook:
    def __init__(self, market: str) -> None:
        self.market = market
        self.bids: SortedDict = SortedDict()  # best = last
        self.asks: SortedDict = SortedDict()  # best = first
        self.seq_no = 0
        self.last_updated_at = 0
        self._before: dict[tuple[str, Decimal], Decimal] = {}
        self._touched = False

    # -- mutation (during one engine operation) --------------------------------------------------

    def _side(self, side: str) -> SortedDict:
        return self.bids if side == "BUY" else self.asks

    def _note(self, side: str, price: Decimal, size_before: Decimal) -> None:
        key = (side, price)
        if key not in self._before:
            self._before[key] = size_before

    def touch(self) -> None:
        """Mark the current operation as a book event even if no level changes (empty delta)."""
        self._touched = True

    def add(self, order: Order) -> None:
        book = self._side(order.side)
        price = order.price
        assert price is not None
        level = book.get(price)
        if level is None:
            level = Level(price)
            book[price] = level
        self._note(order.side, price, level.size)
        level.orders[order.id] = order
        level.size += order.remaining

    def remove(self, order: Order) -> None:
        """Take a resting order out (cancel, expiry); its remaining size leaves the level."""
        book = self._side(order.side)
        price = order.price
        level = book.get(price)
        if level is None or order.id not in level.orders:
            return
        self._note(order.side, price, level.size)
        del level.orders[order.id]
        level.size -= order.remaining
        if not level.orders:
            del book[price]

    def fill(self, order: Order, qty: Decimal) -> None:
        """A resting order traded ``qty``; call before reducing ``order.remaining``."""
        book = self._side(order.side)
        level = book[order.price]
        self._note(order.side, level.price, level.size)
        level.size -= qty
        if qty >= order.remaining:
            del level.orders[order.id]
            if not level.orders:
                del book[level.price]

    def flush(self, now_ms: int) -> dict[str, object] | None:
        """End of an operation: one ``"d"`` update (or None if the operation was no book event)."""
        if not self._before and not self._touched:
            return None
        inserts: list[dict[str, str]] = []
        updates: list[dict[str, str]] = []
        deletes: list[dict[str, str]] = []
        for (side, price), before in self._before.items():
            level = (self.bids if side == "BUY" else self.asks).get(price)
            after = level.size if level is not None else ZERO
            if after == before:
                continue
            item = {"side": side, "price": dstr(price), "size": dstr(after)}
            if not before:
                inserts.append(item)
            elif not after:
                deletes.append(item)
            else:
                updates.append(item)
        self._before = {}
        self._touched = False
        self.seq_no += 1
        self.last_updated_at = now_ms
        return {
            "seq_no": self.seq_no,
            "market": self.market,
            "last_updated_at": now_ms,
            "update_type": "d",
            "deletes": deletes,
            "inserts": inserts,
            "updates": updates,
        }

    # -- reads ------------------------------------------------------------------------------------

    def best_bid(self) -> Level | None:
        return self.bids.peekitem(-1)[1] if self.bids else None

    def best_ask(self) -> Level | None:
        return self.asks.peekitem(0)[1] if self.asks else None

    def bbo(self) -> tuple[Decimal | None, Decimal, Decimal | None, Decimal]:
        b, a = self.best_bid(), self.best_ask()
        return (
            b.price if b else None, b.size if b else ZERO,
            a.price if a else None, a.size if a else ZERO,
        )

    def levels(self, side: str, depth: int | None = None) -> list[tuple[Decimal, Decimal]]:
        """Best first."""
        book = self._side(side)
        n = len(book) if depth is None else min(depth, len(book))
        if side == "BUY":
            return [(lv.price, lv.size) for lv in (book.peekitem(-1 - i)[1] for i in range(n))]
        return [(lv.price, lv.size) for lv in (book.peekitem(i)[1] for i in range(n))]

    def grouped_levels(self, side: str, depth: int, tick: Decimal) -> list[tuple[Decimal, Decimal]]:
        """Levels aggregated to a coarser ``tick`` (bids floor, asks ceil), best first."""
        rounding = ROUND_FLOOR if side == "BUY" else ROUND_CEILING
        out: list[tuple[Decimal, Decimal]] = []
        for price, size in self.levels(side):
            bucket = (price / tick).to_integral_value(rounding=rounding) * tick
            if out and out[-1][0] == bucket:
                out[-1] = (bucket, out[-1][1] + size)
            elif len(out) == depth:
                break
            else:
                out.append((bucket, size))
        return out

    def snapshot(self, depth: int | None = None, tick: Decimal | None = None) -> dict[str, object]:
        """A self-contained ``"s"`` update: bids then asks, best first, all in ``inserts``."""
        if tick is not None:
            bids, asks = self.grouped_levels("BUY", depth or 15, tick), self.grouped_levels("SELL", depth or 15, tick)
        else:
            bids, asks = self.levels("BUY", depth), self.levels("SELL", depth)
        inserts = [{"side": "BUY", "price": dstr(p), "size": dstr(s)} for p, s in bids]
        inserts += [{"side": "SELL", "price": dstr(p), "size": dstr(s)} for p, s in asks]
        return {
            "seq_no": self.seq_no,
            "market": self.market,
            "last_updated_at": self.last_updated_at,
            "update_type": "s",
            "deletes": [],
            "inserts": inserts,
            "updates": [],
        }

    def order_count(self) -> int:
        return sum(len(lv.orders) for lv in self.bids.values()) + sum(len(lv.orders) for lv in self.asks.values())
