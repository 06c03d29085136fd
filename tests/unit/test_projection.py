"""The EXEC projection follows Nautilus's order state machine and refuses duplicate fills."""

from __future__ import annotations

from decimal import Decimal

import schemas as s
from services.execution.projection import ExecProjection, inferred_trade_id

IID = "ETH-USD-PERP.PARADEX"
U = "097faffb-c29b-4d5f-b7ae-abccd80b3fa4"
ACCT = "PARADEX-0xabc"
BASE = {"trader_id": "T-1", "strategy_id": "S-1", "instrument_id": IID, "client_order_id": "c1"}


def init(qty: str = "1.0") -> s.OrderInitialized:
    return s.OrderInitialized(**BASE, order_side="BUY", order_type="LIMIT", quantity=qty, time_in_force="GTC",
                              options=s.OrderOptions(price="100.00"), event_id=U, ts_init=1, ts_event=1)


def fill(tid: str, qty: str, px: str = "100.00") -> s.OrderFilled:
    return s.OrderFilled(**BASE, venue_order_id="v1", account_id=ACCT, trade_id=tid, order_side="BUY",
                         order_type="LIMIT", last_qty=qty, last_px=px, currency="USD", commission="0.01 USDC",
                         liquidity_side="MAKER", event_id=U, ts_event=5, ts_init=5)


def ev(cls: type, **kw: object) -> s.Event:
    return cls(**BASE, event_id=U, ts_event=2, ts_init=2, **kw)


def test_lifecycle_to_filled_with_partial_fills() -> None:
    p = ExecProjection()
    assert p.apply(init()).ok
    assert p.apply(ev(s.OrderSubmitted, account_id=ACCT)).ok
    assert p.apply(ev(s.OrderAccepted, venue_order_id="v1", account_id=ACCT)).ok
    assert p.order("c1").status == "ACCEPTED"
    assert p.by_venue("v1").client_order_id == "c1"
    assert p.apply(fill("f1", "0.4", "100.00")).ok
    assert p.order("c1").status == "PARTIALLY_FILLED"
    dup = p.apply(fill("f1", "0.4"))
    assert not dup.ok and dup.problem == "duplicate_fill"
    assert p.apply(fill("f2", "0.6", "101.00")).ok
    o = p.order("c1")
    assert o.status == "FILLED" and o.filled_qty == Decimal("1.0")
    assert o.avg_px == Decimal("100.60")
    assert p.positions[IID].net_qty == Decimal("1.0")
    assert not p.open_orders()


def test_pending_states_return_to_previous() -> None:
    p = ExecProjection()
    for e in (init(), ev(s.OrderSubmitted, account_id=ACCT), ev(s.OrderAccepted, venue_order_id="v1", account_id=ACCT)):
        p.apply(e)
    p.apply(ev(s.OrderPendingUpdate, venue_order_id="v1", account_id=ACCT))
    assert p.order("c1").status == "PENDING_UPDATE"
    p.apply(ev(s.OrderUpdated, venue_order_id="v1", account_id=ACCT, quantity="2.0", price="99.00"))
    o = p.order("c1")
    assert o.status == "ACCEPTED" and o.quantity == Decimal("2.0") and o.price == "99.00"
    p.apply(ev(s.OrderPendingCancel, venue_order_id="v1", account_id=ACCT))
    p.apply(ev(s.OrderCancelRejected, venue_order_id="v1", account_id=ACCT, reason="ORDER_IS_CLOSED"))
    assert p.order("c1").status == "ACCEPTED"
    p.apply(ev(s.OrderPendingCancel, venue_order_id="v1", account_id=ACCT))
    assert p.apply(ev(s.OrderCanceled, venue_order_id="v1", account_id=ACCT)).ok
    assert p.order("c1").status == "CANCELED"


def test_illegal_transitions_are_refused() -> None:
    p = ExecProjection()
    p.apply(init())
    p.apply(ev(s.OrderDenied, reason="off tick"))
    bad = p.apply(ev(s.OrderAccepted, venue_order_id="v1", account_id=ACCT))
    assert not bad.ok and bad.problem == "illegal_transition"
    assert p.order("c1").status == "DENIED"
    assert p.problems == {"illegal_transition": 1}


def test_external_order_seen_first_through_events() -> None:
    p = ExecProjection()
    e = s.OrderAccepted(trader_id="T-1", strategy_id="EXTERNAL", instrument_id=IID, client_order_id="EXT-9",
                        venue_order_id="9", account_id=ACCT, event_id=U, ts_event=1, ts_init=1)
    assert p.apply(e).ok
    o = p.order("EXT-9")
    assert o.external and o.is_open


def test_inferred_trade_id_is_deterministic_and_short() -> None:
    a = inferred_trade_id("123", "0.50")
    assert a == inferred_trade_id("123", "0.5")
    assert a != inferred_trade_id("123", "0.6")
    assert len(a) <= 36
