"""One human-readable line per bus message (``pdx tail``): time, subject, type, and the fields a
trader looks at first. Colour is applied by click only when stdout is a terminal."""

from __future__ import annotations

import time
from typing import Any

import click

import schemas as s

_SIDE_COLOURS = {"BUY": "green", "BUYER": "green", "SELL": "red", "SELLER": "red"}
_BAD = {"OrderRejected", "OrderDenied", "OrderCancelRejected", "OrderModifyRejected"}


def clock(ts_ns: int) -> str:
    if not ts_ns:
        return "--:--:--.---"
    return time.strftime("%H:%M:%S", time.gmtime(ts_ns / 1e9)) + f".{(ts_ns // 1_000_000) % 1000:03d}"


def side(value: str) -> str:
    return click.style(value, fg=_SIDE_COLOURS.get(value))


def summary(ev: Any) -> str:
    if isinstance(ev, s.TradeTick):
        return f"{side(ev.aggressor_side)} {ev.size} @ {ev.price}  trade_id={ev.trade_id}"
    if isinstance(ev, s.QuoteTick):
        bid, ask = click.style(ev.bid_price, fg="green"), click.style(ev.ask_price, fg="red")
        return f"{ev.bid_size} @ {bid} | {ask} @ {ev.ask_size}"
    if isinstance(ev, s.OrderBookDeltas):
        snap = any(d.flags & 32 for d in ev.deltas)
        head = " ".join(
            f"{d.action[0]}{'b' if d.order.side == 'BUY' else 'a'} {d.order.price}x{d.order.size}"
            for d in ev.deltas[:4]
            if d.action != "CLEAR"
        )
        more = f" (+{len(ev.deltas) - 4})" if len(ev.deltas) > 4 else ""
        return f"seq={ev.sequence} {'SNAPSHOT ' if snap else ''}{len(ev.deltas)} deltas: {head}{more}"
    if isinstance(ev, s.OrderBookDepth10):
        bid = ev.bids[0] if ev.bids and ev.bids[0].size != "0" else None
        ask = ev.asks[0] if ev.asks and ev.asks[0].size != "0" else None
        b = f"{bid.size} @ {bid.price}" if bid else "-"
        a = f"{ask.price} @ {ask.size}" if ask else "-"
        return f"seq={ev.sequence} {b} | {a}"
    if isinstance(ev, s.MarkPriceUpdate | s.IndexPriceUpdate):
        return ev.value
    if isinstance(ev, s.FundingRateUpdate):
        return f"rate={ev.rate}" + (f" interval={ev.interval}m" if ev.interval else "")
    if isinstance(ev, s.InstrumentStatus):
        return f"{ev.action} trading={ev.is_trading} {ev.reason or ''}".rstrip()
    if isinstance(ev, s.CryptoPerpetual):
        return (
            f"{ev.raw_symbol} tick={ev.price_increment} step={ev.size_increment} "
            f"min_notional={ev.min_notional} fees m={ev.maker_fee} t={ev.taker_fee}"
        )
    if isinstance(ev, s.OrderFilled):
        return (
            f"{ev.client_order_id} {side(ev.order_side)} {ev.last_qty} @ {ev.last_px} "
            f"{ev.liquidity_side} fee={ev.commission} trade_id={ev.trade_id}"
        )
    if isinstance(ev, s.ServiceHealth):
        return f"{ev.service}/{ev.instance} {ev.state}"
    return _generic(ev)


def _generic(ev: Any) -> str:
    d = s.to_dict(ev)
    skip = {
        "type",
        "instrument_id",
        "ts_event",
        "ts_init",
        "event_id",
        "trader_id",
        "strategy_id",
        "report_id",
        "command_id",
        "reconciliation",
    }
    parts = []
    for k, v in d.items():
        if k in skip or v is None or v is False or (isinstance(v, dict | list) and not v):
            continue
        shown = ("{…}" if isinstance(v, dict) else f"[{len(v)}]") if isinstance(v, dict | list) else v
        parts.append(f"{k}={shown}")
    return " ".join(parts)


def line(subject: str, ev: Any) -> str:
    name = type(ev).__name__
    ts = getattr(ev, "ts_event", 0) or getattr(ev, "ts_init", 0)
    colour = "red" if name in _BAD else "cyan"
    return f"{clock(ts)}  {subject}  {click.style(name, fg=colour)}  {summary(ev)}"
