"""Router crashes and replacement, and the two orders in which a REST reply and a WS update can arrive.

Crash points are made reachable deterministically with ``ROUTER_TEST_CRASH_AT`` (``after_sign``:
signature in hand and OrderSubmitted stored, POST not sent; ``after_submit``: the venue answered the
POST, nothing of the answer processed) -- the router calls ``os._exit(137)`` there, like a kill -9.
A standby router (same durable consumer, waiting for the account's lease) takes over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

import schemas as s
from tests.order_router.conftest import MKT, Stack, count, has, kinds, seed_book
from tests.order_router.proxy import DelayProxy


def _price(mark: Decimal, factor: str) -> str:
    return str((mark * Decimal(factor)).quantize(Decimal("0.1")))


@pytest.fixture
async def st(bare_stack: Stack) -> AsyncIterator[Stack]:
    yield bare_stack
    for p in bare_stack.procs:
        if p.alive:
            p.term()
    bare_stack.procs.clear()


async def _exited(p, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while p.alive and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not p.alive, "router did not exit"
    return p.proc.returncode


async def test_kill9_between_sign_and_submit(st: Stack) -> None:
    mark = await seed_book(st.admin)
    await st.start_router(ROUTER_TEST_CRASH_AT="after_sign", ROUTER_TEST_CRASH_COID="CRASHSIGN")
    standby = st.spawn_router()  # same durable, waits for the lease
    ok = st.trader.limit(MKT, "BUY", "0.001", _price(mark, "0.98"))
    assert kinds(await st.trader.submit(ok, until="rest"))[-1] == "OrderAccepted"
    crash = st.trader.limit(MKT, "BUY", "0.001", _price(mark, "0.97"), client_order_id="CRASHSIGN-1")
    await st.trader.send(crash)
    assert await _exited(st.router) == 137
    evs = await st.events("CRASHSIGN-1")
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted"]  # signed, stored, never sent
    await standby.wait_healthy(st.nc, "order-router", "Running", timeout=20)
    evs = await st.wait_events("CRASHSIGN-1", has("OrderRejected"), timeout=20)
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderRejected"]
    assert evs[-1].reason.startswith("NOT_PLACED")
    assert await st.venue_orders("CRASHSIGN-1") == []
    await st.assert_agree([ok.order.client_order_id, "CRASHSIGN-1"])


async def test_kill9_between_submit_and_reply(st: Stack) -> None:
    mark = await seed_book(st.admin)
    await st.start_router(ROUTER_TEST_CRASH_AT="after_submit", ROUTER_TEST_CRASH_COID="CRASHSUB")
    rest = st.trader.limit(MKT, "BUY", "0.001", _price(mark, "0.98"), client_order_id="CRASHSUB-rest")
    await st.trader.send(rest)
    assert await _exited(st.router) == 137
    await st.start_router(ROUTER_TEST_CRASH_AT="after_submit", ROUTER_TEST_CRASH_COID="CRASHSUB-take")
    evs = await st.wait_events("CRASHSUB-rest", has("OrderAccepted"), timeout=20)
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
    # A marketable order placed (and filled) while the router died: fills recovered once.
    take = st.trader.limit(MKT, "BUY", "0.002", _price(mark, "1.002"), client_order_id="CRASHSUB-take")
    await st.trader.send(take)
    assert await _exited(st.router) == 137
    await st.start_router()
    evs = await st.wait_events("CRASHSUB-take", has("OrderFilled"), timeout=20)
    await asyncio.sleep(1.0)
    evs = await st.events("CRASHSUB-take")
    (v,) = await st.venue_orders("CRASHSUB-take")
    vfills = await st.venue_fills(v["id"])
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"] + ["OrderFilled"] * len(vfills)
    assert {e.trade_id for e in evs if isinstance(e, s.OrderFilled)} == {f["id"] for f in vfills}
    for coid in ("CRASHSUB-rest", "CRASHSUB-take"):
        assert len(await st.venue_orders(coid)) == 1
    await st.assert_agree(["CRASHSUB-rest", "CRASHSUB-take"])


async def test_kill9_under_load_then_replacement(st: Stack) -> None:
    mark = await seed_book(st.admin, size="5")
    router = await st.start_router()
    cmds = []
    for i in range(40):
        factor = "1.002" if i % 4 == 0 else str(Decimal("0.99") - Decimal(i) / 10000)
        cmds.append(st.trader.limit(MKT, "BUY" if i % 2 else "SELL", "0.001", _price(mark, factor)
                                    if i % 2 else _price(mark, str(2 - Decimal(factor)))))
    sends = [asyncio.ensure_future(st.trader.send(c)) for c in cmds]
    await asyncio.sleep(0.15)
    router.kill()  # SIGKILL mid-stream
    await asyncio.gather(*sends)
    await st.start_router()
    coids = [c.order.client_order_id for c in cmds]
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        proj = await st.projection()
        if all(proj.order(c) is not None and proj.order(c).status not in ("INITIALIZED", "SUBMITTED") for c in coids):
            break
        await asyncio.sleep(0.3)
    proj = await st.projection()
    stuck = {c: proj.order(c).status for c in coids if proj.order(c) is None or proj.order(c).status == "SUBMITTED"}
    assert not stuck, stuck
    await asyncio.sleep(1.0)
    await st.assert_agree(coids)
    assert proj.problems.get("duplicate_fill", 0) == 0


async def test_ws_update_before_rest_reply(st: Stack) -> None:
    mark = await seed_book(st.admin)
    proxy = await DelayProxy(st.sim.rest_url, delay=0.5).start()
    try:
        await st.start_router(PARADEX_REST_URL=proxy.url)
        c = st.trader.limit(MKT, "BUY", "0.001", _price(mark, "0.98"))
        evs = await st.trader.submit(c, until="rest", timeout=15)
        assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
        # Accepted came from the WebSocket, well before the (delayed) REST reply.
        assert evs[2].ts_init - evs[1].ts_init < 0.45e9
        take = st.trader.limit(MKT, "BUY", "0.001", _price(mark, "1.002"))
        evs = await st.trader.submit(take, until="final", timeout=15)
        assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted", "OrderFilled"]
        assert evs[3].ts_init - evs[1].ts_init < 0.45e9
        await asyncio.sleep(0.8)  # the delayed REST replies arrive: nothing more is emitted
        for cmd, n in ((c, 3), (take, 4)):
            assert len(await st.events(cmd.order.client_order_id)) == n
        await st.assert_agree([c.order.client_order_id, take.order.client_order_id])
    finally:
        await proxy.stop()


async def test_rest_reply_before_ws_update(st: Stack) -> None:
    mark = await seed_book(st.admin)
    proxy = await DelayProxy(st.sim.ws_url, delay=0.5).start()
    try:
        await st.start_router(PARADEX_WS_URL=proxy.url)
        c = st.trader.limit(MKT, "BUY", "0.001", _price(mark, "0.98"))
        evs = await st.trader.submit(c, until="rest", timeout=15)
        assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
        assert evs[2].ts_init - evs[1].ts_init >= 0.45e9  # REST said NEW; OPEN came later by WS
        take = st.trader.limit(MKT, "BUY", "0.001", _price(mark, "1.002"))
        evs = await st.trader.submit(take, until="final", timeout=15)
        assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted", "OrderFilled"]
        await asyncio.sleep(0.8)
        assert count(await st.events(take.order.client_order_id), "OrderFilled") == 1
        await st.assert_agree([c.order.client_order_id, take.order.client_order_id])
    finally:
        await proxy.stop()


async def test_earlier_modify_outcome_is_not_taken_for_a_later_one(st: Stack) -> None:
    # The venue repeats the last modify's outcome (request_info) on later order updates. With the
    # WS delayed 0.25 s and REST replies 0.5 s, a fill's update carrying the *first* modify's
    # SUCCESS arrives while the second modify is pending and before its PUT reply: it must not
    # settle the second modify.
    mark = await seed_book(st.admin)
    rest_proxy = await DelayProxy(st.sim.rest_url, delay=0.5).start()
    ws_proxy = await DelayProxy(st.sim.ws_url, delay=0.25).start()
    try:
        await st.start_router(PARADEX_REST_URL=rest_proxy.url, PARADEX_WS_URL=ws_proxy.url)
        best = _price(mark, "0.9995")
        c = st.trader.limit(MKT, "BUY", "0.002", _price(mark, "0.99"))
        coid = c.order.client_order_id
        await st.trader.submit(c, until="rest", timeout=15)
        async with st.trader.watch(coid) as w:
            await st.trader.send(st.trader.modify_cmd(coid, MKT, price=best))
            await w.wait(has("OrderUpdated"), timeout=10)
            await st.admin.cross(MKT, "SELL", "0.0005", best)
            await st.trader.send(st.trader.modify_cmd(coid, MKT, quantity="0.003", price=_price(mark, "0.98")))
            evs = await w.wait(lambda e: count(e, "OrderUpdated") == 2 and has("OrderFilled")(e), timeout=15)
        updates = [e for e in evs if isinstance(e, s.OrderUpdated)]
        assert (updates[-1].quantity, updates[-1].price) == ("0.00300", _price(mark, "0.98"))
        await asyncio.sleep(1.0)
        assert count(await st.events(coid), "OrderUpdated") == 2
        o = (await st.projection()).order(coid)
        assert o.quantity == Decimal("0.003") and o.price == _price(mark, "0.98")
    finally:
        await rest_proxy.stop()
        await ws_proxy.stop()
