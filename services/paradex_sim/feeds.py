"""Turns exchange events into WebSocket notifications (the engine's ``EngineSink``) and produces
the periodic public data: order-book snapshots (at most one per 50/100 ms period, only when the
book changed), ``markets_summary``, ``funding_data`` and the ``markets`` spec-change feed.

Payloads are built only when someone listens, encoded once, and published on every channel name
that carries them (e.g. a trade goes to ``trades.<M>`` and ``trades.ALL``). Fault hooks for book
sequence gaps/duplicates and dropped/duplicated private messages sit here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from decimal import Decimal

from services.paradex_sim.accounts import Account
from services.paradex_sim.channels import Channel
from services.paradex_sim.engine import Exchange
from services.paradex_sim.faults import FaultRegistry
from services.paradex_sim.hub import Hub
from services.paradex_sim.models import ZERO, Fill, FundingPayment, Order, Position, Trade
from services.paradex_sim.util import Clock, dstr, dumps

log = logging.getLogger("paradex_sim.feeds")

DAY_MS = 86_400_000


class MarketStats:
    """Last price, lifetime volume and a rolling 24 h window bucketed per second (bounded memory
    whatever the trade rate)."""

    __slots__ = ("last_price", "total_volume", "window", "window_volume")

    def __init__(self) -> None:
        self.last_price: Decimal | None = None
        self.total_volume = ZERO
        self.window: deque[list[object]] = deque()  # [second, notional, first price of the second]
        self.window_volume = ZERO

    def add(self, ts: int, price: Decimal, size: Decimal) -> None:
        notional = price * size
        self.last_price = price
        self.total_volume += notional
        self.window_volume += notional
        second = ts // 1000
        w = self.window
        if w and w[-1][0] == second:
            w[-1][1] += notional  # type: ignore[operator]
        else:
            w.append([second, notional, price])

    def prune(self, now_ms: int) -> None:
        w = self.window
        cutoff = (now_ms - DAY_MS) // 1000
        while w and w[0][0] < cutoff:  # type: ignore[operator]
            self.window_volume -= w.popleft()[1]  # type: ignore[operator]

    def open_price(self) -> Decimal | None:
        return self.window[0][2] if self.window else None  # type: ignore[return-value]


class Feeds:
    def __init__(self, exchange: Exchange, hub: Hub, faults: FaultRegistry, clock: Clock) -> None:
        self.ex = exchange
        self.hub = hub
        self.faults = faults
        self.clock = clock
        self.stats: dict[str, MarketStats] = {m: MarketStats() for m in exchange.markets}
        self.snapshot_channels: dict[str, Channel] = {}
        self.snap_last_seq: dict[str, int] = {}
        self._delta_names: dict[str, tuple[str, ...]] = {}
        self.markets_events: list[dict[str, object]] = []
        for m in exchange.markets:
            self._add_names(m)
        hub.on_close.append(self._channel_closed)

    def _add_names(self, market: str) -> None:
        base = f"order_book.{market}.deltas"
        self._delta_names[market] = (base, base + "@15@50ms", base + "@15@100ms")
        self.stats.setdefault(market, MarketStats())

    def add_market(self, market: str) -> None:
        self._add_names(market)

    def _channel_closed(self, key: str) -> None:
        self.snapshot_channels.pop(key, None)
        self.snap_last_seq.pop(key, None)

    # -- EngineSink: public ---------------------------------------------------------------------

    def on_trade(self, trade: Trade) -> None:
        self.stats[trade.market].add(trade.created_at, trade.price, trade.size)
        subs = self.hub.subs
        k1, k2 = f"trades.{trade.market}", "trades.ALL"
        if k1 in subs or k2 in subs:
            data = dumps(trade.to_json())
            self.hub.publish(k1, k1, data)
            self.hub.publish(k2, k2, data)

    def on_book(self, market: str, update: dict[str, object]) -> None:
        subs = self.hub.subs
        live = [n for n in self._delta_names[market] if n in subs]
        if not live:
            return
        repeat = 1
        if self.faults.book_active:
            action = self.faults.book_action(market)
            if action == "skip":
                return
            if action == "dup":
                repeat = 2
        data = dumps(update)
        for name in live:
            self.hub.publish(name, name, data, repeat)

    def bbo_json(self, market: str) -> dict[str, object]:
        book = self.ex.books[market]
        bid, bid_size, ask, ask_size = book.bbo()
        return {
            "market": market,
            "bid": dstr(bid),
            "bid_size": dstr(bid_size) if bid is not None else "0",
            "ask": dstr(ask),
            "ask_size": dstr(ask_size) if ask is not None else "0",
            "last_updated_at": book.last_updated_at,
            "seq_no": book.seq_no,
        }

    def on_bbo(self, market: str) -> None:
        subs = self.hub.subs
        k1, k2 = f"bbo.{market}", "bbo.ALL"
        if k1 in subs or k2 in subs:
            data = dumps(self.bbo_json(market))
            self.hub.publish(k1, k1, data)
            self.hub.publish(k2, k2, data)

    # -- EngineSink: private ----------------------------------------------------------------------

    def _private(self, kind: str, account: str, market: str, payload: dict[str, object]) -> None:
        subs = self.hub.subs
        n_all, n_m = f"{kind}.ALL", f"{kind}.{market}"
        k_all, k_m = f"{account}|{n_all}", f"{account}|{n_m}"
        if k_all not in subs and k_m not in subs:
            return
        repeat = 1
        if self.faults.private_active and kind in ("orders", "fills"):
            action = self.faults.private_action(kind, account, market)
            if action == "drop":
                return
            if action == "dup":
                repeat = 2
        data = dumps(payload)
        self.hub.publish(k_all, n_all, data, repeat)
        self.hub.publish(k_m, n_m, data, repeat)

    def on_order(self, order: Order) -> None:
        subs = self.hub.subs
        acct = order.account
        if f"{acct}|orders.ALL" in subs or f"{acct}|orders.{order.market}" in subs:
            self._private("orders", acct, order.market, order.to_json())

    def on_fill(self, fill: Fill) -> None:
        acct: str = fill.account  # type: ignore[assignment]
        market: str = fill.market  # type: ignore[assignment]
        subs = self.hub.subs
        if f"{acct}|fills.ALL" in subs or f"{acct}|fills.{market}" in subs:
            self._private("fills", acct, market, fill.to_json())
        key = f"{acct}|balance_events"
        if key in subs:
            account = self.ex.accounts[acct]
            after = account.balance
            delta = fill.realized_pnl - fill.fee  # type: ignore[operator]
            self.hub.publish(key, "balance_events", dumps({
                "type": "TRANSACTION_FILL",
                "fill_id": fill.id,
                "market": market,
                "status": "ON_BLOCKCHAIN",
                "settlement_asset_name": "USDC",
                "settlement_asset_address": "0x6f373b346561036d98ea10fb3e60d2f459c872b1933b50b21fe6ef4fda3b75e",
                "settlement_asset_balance_before": dstr(after - delta),
                "settlement_asset_balance_after": dstr(after),
                "settlement_asset_price": "1",
                "funding_index": dstr(self.ex.pricing.funding_index(market)),
                "realized_pnl": dstr(fill.realized_pnl),  # type: ignore[arg-type]
                "realized_funding": dstr(fill.realized_funding),  # type: ignore[arg-type]
                "fees": dstr(fill.fee),  # type: ignore[arg-type]
                "created_at": fill.created_at,
            }))

    def on_position(self, acct: Account, pos: Position) -> None:
        key = f"{acct.address}|positions"
        if key in self.hub.subs:
            self.hub.publish(key, "positions", dumps(self.ex.margin.position_json(acct, pos)))

    def on_account(self, acct: Account) -> None:
        key = f"{acct.address}|account"
        if key in self.hub.subs:
            self.hub.publish(key, "account", dumps(self.ex.margin.summary(acct)))

    def on_funding_payment(self, payment: FundingPayment) -> None:
        subs = self.hub.subs
        acct, market = payment.account, payment.market
        if f"{acct}|funding_payments.ALL" in subs or f"{acct}|funding_payments.{market}" in subs:
            self._private("funding_payments", acct, market, payment.to_json())

    # -- periodic public data -------------------------------------------------------------------

    def summary_json(self, market: str) -> dict[str, object]:
        now = self.clock.now_ms()
        st = self.stats[market]
        st.prune(now)
        p = self.ex.pricing.prices[market]
        bid, bid_size, ask, ask_size = self.ex.books[market].bbo()
        first = st.open_price()
        change = ((st.last_price - first) / first).quantize(Decimal("0.000001")) if first and st.last_price else ZERO
        return {
            "symbol": market,
            "mark_price": dstr(p.mark),
            "underlying_price": dstr(p.index),
            "external_fair_price": dstr(p.index),
            "last_traded_price": dstr(st.last_price) if st.last_price is not None else "",
            "bid": dstr(bid),
            "bid_size": dstr(bid_size) if bid is not None else "",
            "ask": dstr(ask),
            "ask_size": dstr(ask_size) if ask is not None else "",
            "volume_24h": dstr(st.window_volume),
            "total_volume": dstr(st.total_volume),
            "open_interest": dstr(self.ex.open_interest(market)),
            "funding_rate": dstr(p.funding_rate),
            "future_funding_rate": dstr(p.funding_rate),
            "price_change_rate_24h": dstr(change),
            "created_at": now,
        }

    def publish_periodic(self, funding_rows: dict[str, dict[str, object]]) -> None:
        """After a price tick: markets_summary (3 spellings) and funding_data per market."""
        subs = self.hub.subs
        want_summary = any(k in subs for k in ("markets_summary", "markets_summary.ALL")) or any(
            k.startswith("markets_summary.") for k in subs
        )
        for market in self.ex.markets:
            if want_summary:
                k_m = f"markets_summary.{market}"
                if "markets_summary" in subs or "markets_summary.ALL" in subs or k_m in subs:
                    data = dumps(self.summary_json(market))
                    self.hub.publish_filtered("markets_summary", "markets_summary", data, market)
                    self.hub.publish("markets_summary.ALL", "markets_summary.ALL", data)
                    self.hub.publish(k_m, k_m, data)
            row = funding_rows.get(market)
            if row is not None:
                k_m, k_all = f"funding_data.{market}", "funding_data.ALL"
                if k_m in subs or k_all in subs:
                    data = dumps(row)
                    self.hub.publish(k_m, k_m, data)
                    self.hub.publish(k_all, k_all, data)

    def publish_market_event(self, market: str, event_type: str, changed: dict[str, object]) -> None:
        event = {"symbol": market, "event_type": event_type, "updated_at": self.clock.now_ms(),
                 "changed_fields": changed}
        self.markets_events.append(event)
        data = dumps(event)
        self.hub.publish("markets", "markets", data)
        self.hub.publish(f"markets.{market}", f"markets.{market}", data)

    def snapshot_frame_data(self, channel: Channel) -> bytes:
        assert channel.market is not None
        return dumps(self.ex.books[channel.market].snapshot(15, channel.tick))

    async def snapshot_loop(self) -> None:
        """Snapshot channels: a full 15+15 book at most once per period, only when it changed."""
        tick = 0
        while True:
            await asyncio.sleep(0.05)
            tick += 1
            for name, ch in list(self.snapshot_channels.items()):
                if ch.period_ms == 100 and tick % 2:
                    continue
                assert ch.market is not None
                seq = self.ex.books[ch.market].seq_no
                if self.snap_last_seq.get(name) == seq:
                    continue
                self.snap_last_seq[name] = seq
                self.hub.publish(name, name, self.snapshot_frame_data(ch))
