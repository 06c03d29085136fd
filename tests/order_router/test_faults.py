"""Venue faults against a running router: lost REST replies, 429 storms, 5xx/timeouts, WebSocket
drops, duplicated and dropped private messages. In every case the venue and EXEC agree and no
client order id is placed twice."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import schemas as s
from bus import subjects
from tests.order_router.conftest import MKT, count, has, kinds, seed_book


def _price(mark: Decimal, factor: str) -> str:
    return str((mark * Decimal(factor)).quantize(Decimal("0.1")))


async def test_lost_rest_reply_places_exactly_once(stack) -> None:
    st = stack
    mark = await seed_book(st.admin)
    # The order is placed, then the connection is cut before the reply (and: a 504 after the effect).
    await st.admin.rest_lost_reply("/orders", method="POST", mode="drop", count=1)
    c1 = st.trader.limit(MKT, "BUY", "0.001", _price(mark, "0.98"))
    evs = await st.trader.submit(c1, until="rest", timeout=15)
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
    await st.admin.rest_lost_reply("/orders", method="POST", mode="status", status=504, count=1)
    c2 = st.trader.limit(MKT, "BUY", "0.001", _price(mark, "0.97"))
    evs = await st.trader.submit(c2, until="rest", timeout=15)
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
    # A marketable order whose reply is lost: the fills still arrive exactly once.
    await st.admin.rest_lost_reply("/orders", method="POST", mode="drop", count=1)
    c3 = st.trader.limit(MKT, "BUY", "0.002", _price(mark, "1.002"))
    evs = await st.trader.submit(c3, until="final", timeout=15)
    assert kinds(evs)[:3] == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
    assert count(evs, "OrderFilled") == len(await st.venue_fills(evs[2].venue_order_id)) >= 1
    for c in (c1, c2, c3):
        assert len(await st.venue_orders(c.order.client_order_id)) == 1
    await asyncio.sleep(0.5)
    await st.assert_agree([c.order.client_order_id for c in (c1, c2, c3)])
    counters = await st.router_counters()
    assert counters.get("unknown_submits_resolved_total{outcome=found}", 0) >= 3


async def test_429_storm_is_retried_never_rejected(stack) -> None:
    st = stack
    mark = await seed_book(st.admin)
    await st.admin.rest_error("/orders", status=429, method="POST", count=3)
    c = st.trader.limit(MKT, "BUY", "0.001", _price(mark, "0.98"))
    evs = await st.trader.submit(c, until="rest", timeout=20)
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
    assert len(await st.venue_orders(c.order.client_order_id)) == 1
    counters = await st.router_counters()
    assert counters.get("submit_retries_total{reason=RateLimited}", 0) >= 3
    assert counters.get("ratelimit_orders_blocked_by_venue", 0) >= 1
    # 429s on a cancel are retried too.
    await st.admin.rest_error("/orders/*", status=429, method="DELETE", count=2)
    evs = await st.trader.cancel(c.order.client_order_id, MKT, timeout=15)
    assert kinds(evs) == ["OrderPendingCancel", "OrderCanceled"]


async def test_5xx_and_timeout_are_unknown_then_resolved_from_venue_truth(stack) -> None:
    st = stack
    mark = await seed_book(st.admin)
    # A 500 / a hang that never reached the matching engine: looked up, absent after the signature's
    # recv_window -> rejected as never placed, and nothing at the venue.
    await st.admin.rest_error("/orders", status=500, method="POST", count=1)
    c1 = st.trader.limit(MKT, "BUY", "0.001", _price(mark, "0.98"))
    evs = await st.trader.submit(c1, until="final", timeout=15)
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderRejected"]
    assert evs[-1].reason.startswith("NOT_PLACED")
    await st.admin.rest_timeout("/orders", seconds=3, method="POST", count=1)
    c2 = st.trader.limit(MKT, "BUY", "0.001", _price(mark, "0.97"))
    evs = await st.trader.submit(c2, until="final", timeout=20)
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderRejected"]
    for c in (c1, c2):
        assert await st.venue_orders(c.order.client_order_id) == []
    # A cancel whose reply is a 5xx stays pending until the venue shows the outcome.
    c3 = st.trader.limit(MKT, "BUY", "0.001", _price(mark, "0.96"))
    await st.trader.submit(c3, until="rest")
    await st.admin.rest_error("/orders/*", status=503, method="DELETE", count=1)
    evs = await st.trader.cancel(c3.order.client_order_id, MKT, timeout=15)
    # Not effective at first (the 503 had no effect): re-sent by the in-flight check, then cancelled.
    assert kinds(evs) == ["OrderPendingCancel", "OrderCanceled"]
    await st.assert_agree([c.order.client_order_id for c in (c1, c2, c3)])


async def test_ws_drop_between_submit_and_fill(stack) -> None:
    st = stack
    mark = await seed_book(st.admin)
    price = _price(mark, "0.9995")  # best bid: the cross below fills it
    c = st.trader.limit(MKT, "BUY", "0.002", price)
    await st.trader.submit(c, until="rest")
    reconcile = await st.nc.subscribe(subjects.ctl_reconcile(st.account))
    await st.admin.ws_reject(duration_s=1.0)  # the reconnect fails for a while
    assert await st.admin.drop_ws() >= 1
    await st.admin.cross(MKT, "SELL", "0.0015", price)  # fills while the router is disconnected
    await st.admin.cross(MKT, "SELL", "0.0005", price)
    evs = await st.wait_events(c.order.client_order_id, lambda e: count(e, "OrderFilled") == 2, timeout=20)
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted", "OrderFilled", "OrderFilled"]
    (v,) = await st.venue_orders(c.order.client_order_id)
    assert {e.trade_id for e in evs if isinstance(e, s.OrderFilled)} == {f["id"] for f in await st.venue_fills(v["id"])}
    req = s.decode((await reconcile.next_msg(timeout=10)).data)
    await reconcile.unsubscribe()
    assert isinstance(req, s.ReconcileRequest) and req.account == st.account and "reconnect" in req.reason
    await asyncio.sleep(1.0)
    assert await st.events(c.order.client_order_id) == evs  # nothing more, nothing twice
    await st.assert_agree([c.order.client_order_id])


async def test_duplicated_private_messages_are_dropped(stack) -> None:
    st = stack
    mark = await seed_book(st.admin)
    await st.admin.dup_private("orders", count=None, duration_s=10)
    await st.admin.dup_private("fills", count=None, duration_s=10)
    price = _price(mark, "0.9995")
    c = st.trader.limit(MKT, "BUY", "0.002", price)
    await st.trader.submit(c, until="rest")
    await st.admin.cross(MKT, "SELL", "0.001", price)
    await st.admin.cross(MKT, "SELL", "0.001", price)
    evs = await st.wait_events(c.order.client_order_id, lambda e: count(e, "OrderFilled") == 2)
    await asyncio.sleep(0.5)
    evs = await st.events(c.order.client_order_id)
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted", "OrderFilled", "OrderFilled"]
    counters = await st.router_counters()
    assert counters.get("problems_total{kind=duplicate_order_update}", 0) >= 1
    assert counters.get("problems_total{kind=duplicate_fill}", 0) >= 1
    await st.assert_agree([c.order.client_order_id])


async def test_dropped_private_messages_are_recovered(stack) -> None:
    st = stack
    mark = await seed_book(st.admin)
    # Every order update of the next submit is lost: the in-flight check finds it open.
    await st.admin.drop_private("orders", count=2)
    c = st.trader.limit(MKT, "BUY", "0.002", _price(mark, "0.9995"))
    evs = await st.trader.submit(c, until="rest", timeout=15)
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
    # A lost fill: the order update shows more filled than the fills we have -> fetched over REST.
    await st.admin.drop_private("fills", count=1)
    await st.admin.cross(MKT, "SELL", "0.001", _price(mark, "0.9995"))
    evs = await st.wait_events(c.order.client_order_id, has("OrderFilled"), timeout=15)
    assert count(evs, "OrderFilled") == 1
    # The fill and the final order update are both lost: the open-order audit catches it.
    await st.admin.drop_private("fills", count=1)
    await st.admin.drop_private("orders", count=1)
    await st.admin.cross(MKT, "SELL", "0.001", _price(mark, "0.9995"))
    evs = await st.wait_events(c.order.client_order_id, lambda e: count(e, "OrderFilled") == 2, timeout=20)
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted", "OrderFilled", "OrderFilled"]
    (v,) = await st.venue_orders(c.order.client_order_id)
    assert {e.trade_id for e in evs if isinstance(e, s.OrderFilled)} == {f["id"] for f in await st.venue_fills(v["id"])}
    await st.assert_agree([c.order.client_order_id])
