"""The exchange: accounts, one order book per market, the order lifecycle and price-time-priority
matching, fills, positions, funding settlement and stop triggers (paradex-api.md §4.6-4.8).

Lifecycle: ``submit`` registers an order in ``NEW`` (visible, cancellable) and queues its
processing; processing runs the risk checks (reduce-only, price band, min notional, position
limit, margin), then parks stop/TP/SL orders as ``UNTRIGGERED`` or matches: LIMIT/MARKET,
GTC/IOC/POST_ONLY, self-trade prevention, partial fills; a remainder rests ``OPEN`` or is
``CLOSED`` with a ``cancel_reason``. Cancels and modifies are queued the same way, so everything
happens in arrival order on the event loop, after the REST/WS reply has been produced.

Every change is reported to an ``EngineSink`` (the feeds) as it happens; each operation on a
market ends with ``_finish``, which turns the book changes into exactly one deltas update.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import Protocol

from services.paradex_sim.accounts import Account, MarginView
from services.paradex_sim.book import OrderBook
from services.paradex_sim.config import SimConfig
from services.paradex_sim.errors import ApiError, bad_request
from services.paradex_sim.markets import MarketSpec
from services.paradex_sim.models import (
    CLOSED,
    MARKET_TYPES,
    NEW,
    OPEN,
    TRIGGER_TYPES,
    UNTRIGGERED,
    ZERO,
    Fill,
    FundingPayment,
    Order,
    Position,
    Trade,
)
from services.paradex_sim.pricing import Pricing
from services.paradex_sim.util import Clock, Ids

log = logging.getLogger("paradex_sim.engine")

Q8 = Decimal("0.00000001")

# cancel_reason values (paradex-api.md §4.7.5)
USER_CANCELED = "USER_CANCELED"
NOT_ENOUGH_MARGIN = "NOT_ENOUGH_MARGIN"
EMPTY_MARKET = "EMPTY_MARKET"
POST_ONLY_WOULD_CROSS = "POST_ONLY_WOULD_CROSS"
REMAINING_IOC_CANCEL = "REMAINING_IOC_CANCEL"
SELF_TRADE = "SELF_TRADE"
EXCEEDS_MAX_SLIPPAGE = "EXCEEDS_MAX_SLIPPAGE"
ORDER_EXCEEDS_POSITION_LIMIT = "ORDER_EXCEEDS_POSITION_LIMIT"
REDUCE_ONLY_WILL_INCREASE = "REDUCE_ONLY_WILL_INCREASE"
ORDER_SIZE_BELOW_MIN = "ORDER_SIZE_BELOW_MIN"

SYSTEM_STATUSES = ("ok", "maintenance", "cancel_only", "post_only")


class EngineSink(Protocol):
    def on_order(self, order: Order) -> None: ...
    def on_fill(self, fill: Fill) -> None: ...
    def on_trade(self, trade: Trade) -> None: ...
    def on_book(self, market: str, update: dict[str, object]) -> None: ...
    def on_bbo(self, market: str) -> None: ...
    def on_position(self, acct: Account, pos: Position) -> None: ...
    def on_account(self, acct: Account) -> None: ...
    def on_funding_payment(self, payment: FundingPayment) -> None: ...


class NullSink:
    def on_order(self, order: Order) -> None:
        return None

    def on_fill(self, fill: Fill) -> None:
        return None

    def on_trade(self, trade: Trade) -> None:
        return None

    def on_book(self, market: str, update: dict[str, object]) -> None:
        return None

    def on_bbo(self, market: str) -> None:
        return None

    def on_position(self, acct: Account, pos: Position) -> None:
        return None

    def on_account(self, acct: Account) -> None:
        return None

    def on_funding_payment(self, payment: FundingPayment) -> None:
        return None


def band_violation(spec: MarketSpec, mark: Decimal, side: str, order_type: str, price: Decimal | None) -> bool:
    """An aggressive limit beyond mark x (1 ± price_bands_width) (passive ones are fine)."""
    if order_type in MARKET_TYPES or price is None:
        return False
    if side == "BUY":
        return price > mark * (1 + spec.price_bands_width)
    return price < mark * (1 - spec.price_bands_width)


def trigger_fires(order: Order, mark: Decimal) -> bool:
    trig = order.trigger_price
    if trig is None:
        return True
    if "STOP_CONDITION_ABOVE_TRIGGER" in order.flags:
        return mark >= trig
    if "STOP_CONDITION_BELOW_TRIGGER" in order.flags:
        return mark <= trig
    # Defaults: a buy stop / stop-loss fires on a rise, a buy take-profit on a fall; sells mirror.
    rising = order.type.startswith("TAKE_PROFIT") != order.is_buy
    return mark >= trig if rising else mark <= trig


class Exchange:
    def __init__(self, cfg: SimConfig, specs: dict[str, MarketSpec], clock: Clock, ids: Ids,
                 pricing: Pricing, sink: EngineSink | None = None) -> None:
        self.cfg = cfg
        self.markets = specs
        self.clock = clock
        self.ids = ids
        self.pricing = pricing
        self.sink: EngineSink = sink or NullSink()
        self.margin = MarginView(specs, pricing.mark, pricing.funding_index)
        self.books: dict[str, OrderBook] = {m: OrderBook(m) for m in specs}
        self.accounts: dict[str, Account] = {}
        self.by_pubkey: dict[int, Account] = {}
        self.orders: dict[str, Order] = {}
        self.trades: dict[str, list[Trade]] = {m: [] for m in specs}
        self.untriggered: dict[str, dict[str, Order]] = {m: {} for m in specs}
        self.last_bbo: dict[str, tuple[object, ...]] = {m: (None, ZERO, None, ZERO) for m in specs}
        self.system_status = "ok"
        self.error_count = 0
        self._hseq = 0
        self._queue: deque[Callable[[], None]] = deque()
        self._drain_scheduled = False
        self._dirty: dict[Account, set[str]] = {}

    # -- bookkeeping -------------------------------------------------------------------------------

    def add_market(self, spec: MarketSpec) -> None:
        self.markets[spec.symbol] = spec
        self.pricing.add_market(spec)
        self.books[spec.symbol] = OrderBook(spec.symbol)
        self.trades[spec.symbol] = []
        self.untriggered[spec.symbol] = {}
        self.last_bbo[spec.symbol] = (None, ZERO, None, ZERO)

    @property
    def last_seq(self) -> int:
        """The latest history sequence handed out (trades, fills, orders, funding payments)."""
        return self._hseq

    def _next_hseq(self) -> int:
        self._hseq += 1
        return self._hseq

    def open_account(self, address: str, public_key: int | None, balance: Decimal, internal: bool = False) -> Account:
        acct = self.accounts.get(address)
        if acct is None:
            acct = Account(address, public_key, balance, self.clock.now_ms(), internal=internal)
            acct.seq_no = self.ids.seq_no()
            self.accounts[address] = acct
        if public_key is not None:
            self.by_pubkey[public_key] = acct
        return acct

    def _enqueue(self, fn: Callable[[], None]) -> None:
        self._queue.append(fn)
        if self._drain_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.drain()
            return
        self._drain_scheduled = True
        loop.call_soon(self.drain)

    def drain(self) -> None:
        """Run every queued operation in arrival order."""
        self._drain_scheduled = False
        while self._queue:
            fn = self._queue.popleft()
            try:
                fn()
            except Exception:  # one bad operation must not stop the exchange
                self.error_count += 1
                log.exception("engine operation failed")

    # -- pushes -------------------------------------------------------------------------------------

    def _push(self, order: Order) -> None:
        if order.internal:
            return
        now = self.clock.now_ms()
        order.seq_no = self.ids.seq_no()
        order.published_at = now
        self.sink.on_order(order)

    def _touch_account(self, acct: Account, market: str | None = None) -> None:
        if acct.internal:
            return
        s = self._dirty.get(acct)
        if s is None:
            s = self._dirty[acct] = set()
        if market is not None:
            s.add(market)

    def _finish(self, market: str | None) -> None:
        """End of one operation: reduce-only enforcement, one deltas update per touched book, then
        bbo, positions and account pushes."""
        now = self.clock.now_ms()
        books = {market} if market is not None else set()
        for acct, mkts in list(self._dirty.items()):
            for m in sorted(mkts):
                if self._enforce_reduce_only(acct, m):
                    books.add(m)
        for m in sorted(books):
            book = self.books[m]
            upd = book.flush(now)
            if upd is not None:
                self.sink.on_book(m, upd)
                bbo = book.bbo()
                if bbo != self.last_bbo[m]:
                    self.last_bbo[m] = bbo
                    self.sink.on_bbo(m)
        if self._dirty:
            dirty, self._dirty = self._dirty, {}
            for acct, mkts in dirty.items():
                acct.seq_no = self.ids.seq_no()
                acct.updated_at = now
                for m in sorted(mkts):
                    pos = acct.positions.get(m)
                    if pos is not None:
                        self.sink.on_position(acct, pos)
                self.sink.on_account(acct)

    # -- exposure -----------------------------------------------------------------------------------

    def _set_exposure(self, order: Order, amount: Decimal) -> None:
        if order.internal or amount == order.exposed:
            return
        acct = self.accounts[order.account]
        acct.add_exposure(order.market, order.side, amount - order.exposed)
        order.exposed = amount

    # -- submit / cancel / modify (called by the order service, admin, flow) -------------------------

    def submit(
        self,
        acct: Account,
        *,
        market: str,
        side: str,
        type: str,
        size: Decimal,
        price: Decimal | None,
        instruction: str = "GTC",
        client_id: str = "",
        flags: list[str] | None = None,
        stp: str = "EXPIRE_TAKER",
        trigger_price: Decimal | None = None,
        timestamp: int | None = None,
        process_now: bool = False,
    ) -> Order:
        spec = self.markets[market]
        if client_id and client_id in acct.open_by_cid:
            raise bad_request("DUPLICATED_CLIENT_ID", f"client_id {client_id!r} is used by an open order")
        if not acct.internal and acct.open_count.get(market, 0) >= spec.max_open_orders:
            raise bad_request("VALIDATION_ERROR", f"max_open_orders ({spec.max_open_orders}) reached in {market}")
        now = self.clock.now_ms()
        order = Order(
            id=self.ids.new_id(), account=acct.address, market=market, side=side, type=type, size=size,
            price=price, instruction=instruction, client_id=client_id, flags=list(flags or ()), stp=stp,
            trigger_price=trigger_price, timestamp=timestamp if timestamp is not None else now, now_ms=now,
            internal=acct.internal,
        )
        self.orders[order.id] = order
        acct.open_orders[order.id] = order
        acct.open_count[market] = acct.open_count.get(market, 0) + 1
        if client_id:
            acct.open_by_cid[client_id] = order
        if not acct.internal:
            order.hseq = self._next_hseq()
            acct.history.append(order)
            self._trim_history(acct)
            if type not in TRIGGER_TYPES:
                self._set_exposure(order, order.remaining)
        self._push(order)
        if process_now:
            self._process(order)
        else:
            self._enqueue(lambda: self._process(order))
        return order

    def cancel(self, acct: Account, order: Order, reason: str = USER_CANCELED) -> None:
        """Queue a cancel; raises if the order is already closed."""
        if order.status == CLOSED:
            raise bad_request("ORDER_IS_CLOSED", f"order {order.id} is closed")
        self._enqueue(lambda: self._do_cancel(order, reason))

    def cancel_all(self, acct: Account, market: str | None = None) -> list[Order]:
        targets = [o for o in acct.open_orders.values() if market is None or o.market == market]
        for o in targets:
            self._enqueue(lambda o=o: self._do_cancel(o, USER_CANCELED))
        return targets

    def cancel_now(self, order: Order, reason: str = USER_CANCELED) -> None:
        self._do_cancel(order, reason)

    def _do_cancel(self, order: Order, reason: str) -> None:
        if order.status == CLOSED:
            return
        if order.status == OPEN:
            self.books[order.market].remove(order)
        self._close(order, reason)
        self._finish(order.market)

    def modify(self, acct: Account, order: Order, size: Decimal, price: Decimal | None,
               trigger_price: Decimal | None, timestamp: int) -> dict[str, str]:
        request_info = {"id": self.ids.new_id(), "request_type": "MODIFY_ORDER", "status": "PENDING", "message": ""}
        order.request_info = request_info
        self._enqueue(lambda: self._do_modify(order, size, price, trigger_price, timestamp, request_info))
        return request_info

    def _do_modify(self, order: Order, size: Decimal, price: Decimal | None, trigger_price: Decimal | None,
                   timestamp: int, info: dict[str, str]) -> None:
        info = dict(info)
        if order.status == CLOSED or size <= order.filled:
            info.update(status="REJECTED", message="order is closed" if order.status == CLOSED else "size below filled")
            order.request_info = info
            self._push(order)
            return
        was_open = order.status == OPEN
        if was_open:
            self.books[order.market].remove(order)
        order.remaining = size - order.filled
        order.size = size
        if price is not None:
            order.price = price
        if trigger_price is not None:
            order.trigger_price = trigger_price
        order.timestamp = timestamp
        order.last_updated_at = self.clock.now_ms()
        info.update(status="SUCCESS")
        order.request_info = info
        acct = self.accounts[order.account]
        if was_open:
            self._set_exposure(order, order.remaining)
            self._execute(order, acct)  # re-enters the book at the back of its level (loses priority)
        else:
            if order.status == NEW and order.type not in TRIGGER_TYPES:
                self._set_exposure(order, order.remaining)
            self._push(order)
        self._touch_account(acct)
        self._finish(order.market)

    # -- processing --------------------------------------------------------------------------------

    def _process(self, order: Order) -> None:
        if order.status != NEW:
            return  # cancelled while queued
        acct = self.accounts[order.account]
        reason = None if acct.internal else self._risk_reason(acct, order, at_trigger=False)
        if reason:
            self._close(order, reason)
        elif order.type in TRIGGER_TYPES:
            order.status = UNTRIGGERED
            order.last_updated_at = self.clock.now_ms()
            self.untriggered[order.market][order.id] = order
            self._push(order)
        else:
            self._execute(order, acct)
        self._touch_account(acct)
        self._finish(order.market)

    def _risk_reason(self, acct: Account, order: Order, at_trigger: bool) -> str | None:
        spec = self.markets[order.market]
        mark = self.pricing.mark(order.market)
        pos = acct.position_size(order.market)
        if order.reduce_only and (
            not pos or (order.is_buy and pos > 0) or (not order.is_buy and pos < 0) or order.remaining > abs(pos)
        ):
            return REDUCE_ONLY_WILL_INCREASE
        is_trigger_type = order.type in TRIGGER_TYPES
        if self.cfg.risk_reject_mode == "async" and (at_trigger or not is_trigger_type):
            if band_violation(spec, mark, order.side, order.type, order.price):
                return EXCEEDS_MAX_SLIPPAGE
            closes_position = order.reduce_only and order.remaining == abs(pos)
            if order.remaining * mark < spec.min_notional and not closes_position:
                return ORDER_SIZE_BELOW_MIN
        if order.reduce_only:
            return None  # reducing orders never increase IMR or the position
        same_side = (acct.open_buy if order.is_buy else acct.open_sell).get(order.market, ZERO) - order.exposed
        directional = pos if order.is_buy else -pos
        if order.remaining + same_side + directional > spec.position_limit:
            return ORDER_EXCEEDS_POSITION_LIMIT
        add_b = order.remaining if order.is_buy else ZERO
        add_s = ZERO if order.is_buy else order.remaining
        if order.exposed:  # already counted in the account's exposure: compare against without it
            m_with = self.margin.market_imr(acct, order.market)
            m_without = self.margin.market_imr(acct, order.market, -order.exposed if order.is_buy else ZERO,
                                               ZERO if order.is_buy else -order.exposed)
        else:
            m_without = self.margin.market_imr(acct, order.market)
            m_with = self.margin.market_imr(acct, order.market, add_b, add_s)
        if m_with > m_without:
            total_imr = self.margin.imr(acct) - self.margin.market_imr(acct, order.market) + m_with
            if self.margin.account_value(acct) < total_imr:
                return NOT_ENOUGH_MARGIN
        return None

    def _close(self, order: Order, reason: str) -> None:
        order.status = CLOSED
        order.cancel_reason = reason
        order.last_updated_at = self.clock.now_ms()
        self._set_exposure(order, ZERO)
        acct = self.accounts[order.account]
        if acct.open_orders.pop(order.id, None) is not None:
            acct.open_count[order.market] -= 1
        if order.client_id and acct.open_by_cid.get(order.client_id) is order:
            del acct.open_by_cid[order.client_id]
        self.untriggered[order.market].pop(order.id, None)
        if order.internal:
            self.orders.pop(order.id, None)
        else:
            self._touch_account(acct)
        self._push(order)

    def _execute(self, order: Order, acct: Account) -> None:
        market = order.market
        book = self.books[market]
        book.touch()
        spec = self.markets[market]
        is_buy = order.is_buy
        is_market = order.type in MARKET_TYPES
        if is_market:
            mark = self.pricing.mark(market)
            limit = mark * (1 + spec.price_bands_width) if is_buy else mark * (1 - spec.price_bands_width)
        else:
            assert order.price is not None
            limit = order.price
            if order.instruction == "POST_ONLY":
                best = book.best_ask() if is_buy else book.best_bid()
                if best is not None and (limit >= best.price if is_buy else limit <= best.price):
                    self._close(order, POST_ONLY_WOULD_CROSS)
                    return
        had_liquidity = (book.best_ask() if is_buy else book.best_bid()) is not None
        stp_stop = False
        while order.remaining > 0 and not stp_stop:
            level = book.best_ask() if is_buy else book.best_bid()
            if level is None or (level.price > limit if is_buy else level.price < limit):
                break
            for maker in list(level.orders.values()):
                if maker.account == order.account:
                    mode = order.stp
                    if mode in ("EXPIRE_MAKER", "EXPIRE_BOTH"):
                        book.remove(maker)
                        self._close(maker, SELF_TRADE)
                    if mode in ("EXPIRE_TAKER", "EXPIRE_BOTH"):
                        stp_stop = True
                        break
                    continue
                self._match(order, maker, level.price, min(order.remaining, maker.remaining))
                if order.remaining == 0:
                    break
        if order.remaining == 0:
            self._close(order, "")
        elif stp_stop:
            self._close(order, SELF_TRADE)
        elif is_market:
            if not had_liquidity:
                reason = EMPTY_MARKET
            elif (book.best_ask() if is_buy else book.best_bid()) is not None:
                reason = EXCEEDS_MAX_SLIPPAGE
            else:
                reason = REMAINING_IOC_CANCEL
            self._close(order, reason)
        elif order.instruction == "IOC":
            self._close(order, REMAINING_IOC_CANCEL)
        else:
            order.status = OPEN
            order.last_updated_at = self.clock.now_ms()
            book.add(order)
            self._set_exposure(order, order.remaining)
            self._push(order)

    def _match(self, taker: Order, maker: Order, price: Decimal, qty: Decimal) -> None:
        market = taker.market
        book = self.books[market]
        now = self.clock.now_ms()
        book.fill(maker, qty)
        for o in (taker, maker):
            o.remaining -= qty
            o.filled_notional += price * qty
            o.avg_fill_price = (o.filled_notional / o.filled).quantize(Q8)
            o.last_updated_at = now
        self._set_exposure(maker, maker.remaining)
        self._set_exposure(taker, taker.remaining)
        trade = Trade(self.ids.new_id(), market, taker.side, qty, price, now)
        self._record_trade(trade)
        self.sink.on_trade(trade)
        ob_seq = book.seq_no + 1  # the seq this operation's flush will assign
        underlying = self.pricing.index(market)
        for o, liquidity in ((taker, "TAKER"), (maker, "MAKER")):
            acct = self.accounts[o.account]
            if acct.internal:
                continue
            rate = self.cfg.taker_fee if liquidity == "TAKER" else self.cfg.maker_fee
            fee = (price * qty * rate).quantize(Q8)
            fill_id = self.ids.new_id()
            realized, funding = self._apply_fill(acct, market, o.side, qty, price, fee, fill_id, now)
            fill = Fill(
                id=fill_id, account=acct.address, market=market, order_id=o.id, client_id=o.client_id,
                side=o.side if self.cfg.fill_side == "own" else taker.side, liquidity=liquidity, price=price,
                size=qty, remaining_size=o.remaining, fee=fee, realized_pnl=realized, realized_funding=funding,
                underlying_price=underlying, orderbook_seq_no=ob_seq, created_at=now,
            )
            fill.hseq = self._next_hseq()
            acct.fills.append(fill)
            self.sink.on_fill(fill)
        if maker.remaining == 0:
            self._close(maker, "")
        else:
            self._push(maker)

    def _record_trade(self, trade: Trade) -> None:
        trade.hseq = self._next_hseq()
        lst = self.trades[trade.market]
        lst.append(trade)
        cap = max(1000, self.cfg.trade_history_limit // max(1, len(self.markets)))
        if len(lst) > cap + cap // 10:
            del lst[: len(lst) - cap]

    def _trim_history(self, acct: Account) -> None:
        limit = self.cfg.order_history_limit
        if len(acct.history) <= limit + limit // 10:
            return
        keep: list[Order] = []
        drop = len(acct.history) - limit
        for o in acct.history:
            if drop and o.status == CLOSED:
                drop -= 1
                self.orders.pop(o.id, None)
            else:
                keep.append(o)
        acct.history = keep

    # -- positions and funding ----------------------------------------------------------------------

    def _position(self, acct: Account, market: str, now: int) -> Position:
        pos = acct.positions.get(market)
        if pos is None:
            pos = Position(acct.address, market, now, self.pricing.funding_index(market))
            acct.positions[market] = pos
        return pos

    def _settle_funding(self, acct: Account, pos: Position, fill_id: str, now: int) -> Decimal:
        idx = self.pricing.funding_index(pos.market)
        amount = pos.unrealized_funding(idx).quantize(Q8) if pos.size else ZERO
        pos.cached_funding_index = idx
        if not amount:
            return ZERO
        acct.balance += amount
        acct.balance_updated_at = now
        pos.realized_funding += amount
        payment = FundingPayment(self.ids.new_id(), acct.address, pos.market, amount, idx, fill_id, now)
        payment.hseq = self._next_hseq()
        acct.funding_payments.append(payment)
        self.sink.on_funding_payment(payment)
        self._touch_account(acct, pos.market)
        return amount

    def _apply_fill(self, acct: Account, market: str, side: str, qty: Decimal, price: Decimal, fee: Decimal,
                    fill_id: str, now: int) -> tuple[Decimal, Decimal]:
        pos = self._position(acct, market, now)
        funding = self._settle_funding(acct, pos, fill_id, now)
        signed = qty if side == "BUY" else -qty
        realized = ZERO
        if not pos.size or (pos.size > 0) == (signed > 0):
            if not pos.size:
                pos.created_at, pos.closed_at = now, 0
                pos.realized_pnl = pos.realized_funding = pos.closed_size = pos.closed_notional = ZERO
                pos.realized_funding = funding
            new_size = pos.size + signed
            pos.avg_entry = ((abs(pos.size) * pos.avg_entry + qty * price) / abs(new_size)).quantize(Q8)
            pos.size = new_size
        else:
            close_qty = min(qty, abs(pos.size))
            direction = 1 if pos.size > 0 else -1
            realized = ((price - pos.avg_entry) * close_qty * direction).quantize(Q8)
            pos.closed_size += close_qty
            pos.closed_notional += close_qty * price
            pos.size -= close_qty * direction
            rest = qty - close_qty
            if not pos.size:
                pos.closed_at = now
            if rest:
                pos.size = rest if signed > 0 else -rest
                pos.avg_entry = price
                pos.created_at, pos.closed_at = now, 0
        pos.realized_pnl += realized
        acct.balance += realized - fee
        acct.balance_updated_at = now
        pos.last_fill_id = fill_id
        pos.last_updated_at = now
        pos.seq_no = self.ids.seq_no()
        self._touch_account(acct, market)
        return realized, funding

    def _enforce_reduce_only(self, acct: Account, market: str) -> bool:
        """Close reduce-only orders that would now increase the position; True if any rested."""
        pos = acct.position_size(market)
        budget = abs(pos)
        touched_book = False
        for o in list(acct.open_orders.values()):
            if o.market != market or not o.reduce_only or o.status == NEW:
                continue
            reduces = (o.is_buy and pos < 0) or (not o.is_buy and pos > 0)
            if o.status == UNTRIGGERED and reduces:
                continue  # TP and SL for the same position may each cover all of it
            if reduces and o.remaining <= budget:
                budget -= o.remaining
                continue
            if o.status == OPEN:
                self.books[market].remove(o)
                touched_book = True
            self._close(o, REDUCE_ONLY_WILL_INCREASE)
        return touched_book

    def settle_funding_all(self, market: str | None = None) -> int:
        """Settle accrued funding of every open position (periodic, or on admin request)."""
        now = self.clock.now_ms()
        count = 0
        for acct in self.accounts.values():
            if acct.internal:
                continue
            for m, pos in acct.positions.items():
                if pos.size and (market is None or m == market) and self._settle_funding(acct, pos, "", now):
                    pos.last_updated_at = now
                    pos.seq_no = self.ids.seq_no()
                    count += 1
        self._finish(None)
        return count

    # -- prices and triggers ------------------------------------------------------------------------

    def on_mark_change(self, market: str) -> None:
        if self.system_status in ("maintenance", "cancel_only"):
            return
        pending = self.untriggered[market]
        if not pending:
            return
        mark = self.pricing.mark(market)
        fired = [o for o in pending.values() if trigger_fires(o, mark)]
        for order in fired:
            del pending[order.id]
            acct = self.accounts[order.account]
            reason = None if acct.internal else self._risk_reason(acct, order, at_trigger=True)
            if reason:
                self._close(order, reason)
            else:
                self._set_exposure(order, order.remaining)
                self._execute(order, acct)
            self._touch_account(acct)
            self._finish(market)

    def price_tick(self, elapsed_ms: int, walk: bool) -> dict[str, dict[str, object]]:
        """Advance index (random walk while the flow runs), mark, funding; fire stop triggers."""
        now = self.clock.now_ms()
        seconds = Decimal(elapsed_ms) / 1000
        rows: dict[str, dict[str, object]] = {}
        for m in list(self.markets):
            if walk:
                self.pricing.walk(m, elapsed_ms / 1000)
                bid, _, ask, _ = self.books[m].bbo()
                self.pricing.observe_mid(m, (bid + ask) / 2 if bid is not None and ask is not None else None)
            else:
                self.pricing.observe_mid(m, None)
            rows[m] = self.pricing.tick_funding(m, seconds, now)
            self.on_mark_change(m)
        return rows

    def open_interest(self, market: str) -> Decimal:
        total = ZERO
        for acct in self.accounts.values():
            pos = acct.positions.get(market)
            if pos is not None and pos.size > 0:
                total += pos.size
        return total

    def set_balance(self, acct: Account, amount: Decimal) -> None:
        """Admin deposit/withdrawal: set the USDC balance and push the account update."""
        acct.balance = amount
        acct.balance_updated_at = self.clock.now_ms()
        self._touch_account(acct)
        self._finish(None)

    def set_system_status(self, status: str) -> None:
        if status not in SYSTEM_STATUSES:
            raise ApiError(400, "VALIDATION_ERROR", f"status must be one of {', '.join(SYSTEM_STATUSES)}")
        self.system_status = status
