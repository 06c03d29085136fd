"""A simple Nautilus market maker for Paradex perpetuals, trading through the paradex-bus.

It is an ordinary ``Strategy`` -- nothing in it knows about NATS: it quotes one post-only limit
order a side around the mid of the venue's best bid and offer, ``edge_ticks`` away from it, and

* modifies a resting quote (``modify_order``) when its target price moves ``requote_ticks`` or more,
* cancels a quote older than ``max_order_age_secs`` (a fresh one follows on the next quote),
* stops quoting the side that would grow the position beyond ``max_position``,
* cancels everything on stop (and, with ``flatten_on_stop``, closes the position with a reduce-only
  market order).

Prices are Decimals rounded to the instrument's tick (bids down, asks up, never through the
opposite side). ``report()`` summarises what the strategy saw and did, including the node's view of
orders and positions right after its start-up reconciliation; ``examples/run_market_maker.py``
writes it as JSON.
"""

from __future__ import annotations

import time
from collections import Counter
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import (
    FundingRateUpdate,
    IndexPriceUpdate,
    MarkPriceUpdate,
    OrderBookDeltas,
    OrderBookDepth10,
    QuoteTick,
    TradeTick,
)
from nautilus_trader.model.enums import BookType, OrderSide, TimeInForce
from nautilus_trader.model.events import (
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    OrderUpdated,
)
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.model.orders import LimitOrder
from nautilus_trader.trading.strategy import Strategy


class MarketMakerConfig(StrategyConfig, frozen=True):
    """instrument_id: e.g. ``BTC-USD-PERP.PARADEX``; trade_size: per quote, in base units."""

    instrument_id: InstrumentId
    trade_size: Decimal
    edge_ticks: int = 1
    requote_ticks: int = 1
    max_position: Decimal = Decimal("0.01")
    max_order_age_secs: float = 20.0
    flatten_on_stop: bool = True
    subscribe_book: bool = True


class MarketMaker(Strategy):
    """Quotes both sides around mid with post-only limits (see the module docstring)."""

    def __init__(self, config: MarketMakerConfig) -> None:
        super().__init__(config)
        self.instrument: Instrument | None = None
        self.tick = Decimal(0)
        self.orders: dict[OrderSide, LimitOrder | None] = {OrderSide.BUY: None, OrderSide.SELL: None}
        self.seen: Counter[str] = Counter()
        self.done: Counter[str] = Counter()
        self.events: list[str] = []
        self.at_start: dict[str, Any] = {}
        self.last_quote: QuoteTick | None = None
        self.started_monotonic: float | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def on_start(self) -> None:
        cfg = self.config
        self.started_monotonic = time.monotonic()
        self.at_start = self.snapshot()  # the node's view right after its reconciliation
        self.instrument = self.cache.instrument(cfg.instrument_id)
        if self.instrument is None:
            self.log.error(f"No instrument {cfg.instrument_id}: is the feed handler publishing REF?")
            self.stop()
            return
        self.tick = self.instrument.price_increment.as_decimal()
        self.seen["instruments"] = len(self.cache.instruments(venue=cfg.instrument_id.venue))
        self.subscribe_quote_ticks(cfg.instrument_id)
        self.subscribe_trade_ticks(cfg.instrument_id)
        self.subscribe_mark_prices(cfg.instrument_id)
        self.subscribe_index_prices(cfg.instrument_id)
        self.subscribe_funding_rates(cfg.instrument_id)
        if cfg.subscribe_book:
            self.subscribe_order_book_deltas(cfg.instrument_id, BookType.L2_MBP)
            self.subscribe_order_book_depth(cfg.instrument_id, BookType.L2_MBP, depth=10)

    def on_stop(self) -> None:
        cfg = self.config
        self.cancel_all_orders(cfg.instrument_id)
        if cfg.flatten_on_stop:
            self.close_all_positions(cfg.instrument_id, time_in_force=TimeInForce.IOC, reduce_only=True)

    # -- market data ------------------------------------------------------------------------------

    def on_instrument(self, instrument: Instrument) -> None:
        self.seen["instrument_updates"] += 1

    def on_trade_tick(self, tick: TradeTick) -> None:
        self.seen["trades"] += 1

    def on_order_book_deltas(self, deltas: OrderBookDeltas) -> None:
        self.seen["book_deltas"] += 1

    def on_order_book_depth(self, depth: OrderBookDepth10) -> None:
        self.seen["depth10"] += 1

    def on_mark_price(self, mark_price: MarkPriceUpdate) -> None:
        self.seen["mark"] += 1

    def on_index_price(self, index_price: IndexPriceUpdate) -> None:
        self.seen["index"] += 1

    def on_funding_rate(self, funding_rate: FundingRateUpdate) -> None:
        self.seen["funding"] += 1

    def on_quote_tick(self, tick: QuoteTick) -> None:
        self.seen["quotes"] += 1
        self.last_quote = tick
        self.requote(tick)

    # -- quoting ----------------------------------------------------------------------------------

    def targets(self, tick: QuoteTick) -> dict[OrderSide, Decimal]:
        """Post-only prices: ``edge_ticks`` off mid, on the tick grid, never crossing the touch."""
        bid, ask = tick.bid_price.as_decimal(), tick.ask_price.as_decimal()
        mid = (bid + ask) / 2
        edge = self.tick * self.config.edge_ticks
        buy = ((mid - edge) / self.tick).to_integral_value(ROUND_FLOOR) * self.tick
        sell = ((mid + edge) / self.tick).to_integral_value(ROUND_CEILING) * self.tick
        return {OrderSide.BUY: min(buy, ask - self.tick), OrderSide.SELL: max(sell, bid + self.tick)}

    def requote(self, tick: QuoteTick) -> None:
        if self.instrument is None or not self.is_running:
            return
        net = self.portfolio.net_position(self.config.instrument_id)
        limit = self.config.max_position
        for side, target in self.targets(tick).items():
            allowed = net < limit if side == OrderSide.BUY else net > -limit
            order = self.orders[side]
            if order is not None and order.is_closed:
                order = self.orders[side] = None
            if order is None:
                if allowed and target > 0:
                    self.place(side, target)
                continue
            if order.is_pending_update or order.is_pending_cancel or not order.is_open:
                continue  # wait for the venue's answer (or the acceptance)
            age = (self.clock.timestamp_ns() - order.init_event.ts_init) / 1e9
            if not allowed or age > self.config.max_order_age_secs:
                self.cancel_order(order)
                self.done["cancel_requests"] += 1
            elif abs(order.price.as_decimal() - target) >= self.tick * self.config.requote_ticks:
                self.modify_order(order, price=self.instrument.make_price(target))
                self.done["modify_requests"] += 1

    def place(self, side: OrderSide, price: Decimal) -> None:
        assert self.instrument is not None
        order = self.order_factory.limit(
            instrument_id=self.config.instrument_id,
            order_side=side,
            quantity=self.instrument.make_qty(self.config.trade_size),
            price=self.instrument.make_price(price),
            time_in_force=TimeInForce.GTC,
            post_only=True,
        )
        self.orders[side] = order
        self.submit_order(order)
        self.done["submits"] += 1

    # -- order events -----------------------------------------------------------------------------

    def on_order_event(self, event: OrderEvent) -> None:
        name = type(event).__name__
        self.done[name] += 1
        self.events.append(f"{name} {event.client_order_id}")
        if isinstance(event, OrderRejected | OrderCanceled):
            for side, order in self.orders.items():
                if order is not None and order.client_order_id == event.client_order_id:
                    self.orders[side] = None

    def on_order_filled(self, event: OrderFilled) -> None:
        side, liquidity = event.order_side.name, event.liquidity_side.name
        self.log.info(f"Filled {side} {event.last_qty} @ {event.last_px} ({liquidity})")

    def on_order_accepted(self, event: OrderAccepted) -> None:
        self.log.debug(f"Accepted {event.client_order_id} as {event.venue_order_id}")

    def on_order_updated(self, event: OrderUpdated) -> None:
        self.log.debug(f"Updated {event.client_order_id}: {event.quantity} @ {event.price}")

    # -- reporting --------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Open orders and positions of the venue as the node's cache holds them now."""
        venue = self.config.instrument_id.venue
        return {
            "open_orders": [
                {
                    "client_order_id": o.client_order_id.value,
                    "venue_order_id": o.venue_order_id.value if o.venue_order_id else None,
                    "strategy_id": o.strategy_id.value,
                    "instrument_id": o.instrument_id.value,
                    "side": o.side_string(),
                    "quantity": str(o.quantity),
                    "filled_qty": str(o.filled_qty),
                    "price": str(o.price) if getattr(o, "has_price", False) else None,
                    "status": o.status_string(),
                }
                for o in self.cache.orders_open(venue=venue)
            ],
            "positions": {
                p.instrument_id.value: str(self.portfolio.net_position(p.instrument_id))
                for p in self.cache.positions(venue=venue)
            },
            "accounts": [str(a.id) for a in self.cache.accounts()],
        }

    def report(self) -> dict[str, Any]:
        return {
            "started": bool(self.at_start),
            "at_start": self.at_start,
            "seen": dict(self.seen),
            "done": dict(self.done),
            "events": self.events,
            "at_end": self.snapshot(),
        }
