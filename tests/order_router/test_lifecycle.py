"""Every command and order type through signer + router + simulator, checked field by field against
the command and the simulator's ground truth (ids, quantities, prices, commission, liquidity side)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import schemas as s
from bus import subjects, trading
from bus.replay import replay
from tests.order_router.conftest import MKT, count, has, kinds, seed_book

SIZE_P = 5  # BTC-USD-PERP size precision (0.00001)
PRICE_P = 1  # tick 0.1


def q(value: str | Decimal, places: int) -> str:
    return f"{Decimal(value):.{places}f}"


def common_ok(ev: Any, cmd: s.SubmitOrder, account: str) -> None:
    assert ev.trader_id == cmd.order.trader_id
    assert ev.strategy_id == cmd.order.strategy_id
    assert ev.instrument_id == cmd.order.instrument_id
    assert ev.client_order_id == cmd.order.client_order_id
    if getattr(ev, "account_id", None) is not None:
        assert ev.account_id == f"PARADEX-{account}"


def fill_ok(ev: s.OrderFilled, venue_fill: dict[str, Any], *, side: str, order_type: str, liquidity: str) -> None:
    assert ev.trade_id == venue_fill["id"]
    assert ev.venue_order_id == venue_fill["order_id"]
    assert ev.last_qty == q(venue_fill["size"], SIZE_P)
    assert ev.last_px == q(venue_fill["price"], PRICE_P)
    assert ev.commission == f"{Decimal(venue_fill['fee']):.8f} USDC"
    assert ev.liquidity_side == liquidity == venue_fill["liquidity"]
    assert ev.order_side == side
    assert ev.order_type == order_type
    assert ev.currency == "USD"
    assert ev.ts_event == venue_fill["created_at"] * 1_000_000


async def test_limit_maker_fills_and_market_taker(stack) -> None:
    st = stack
    mark = await seed_book(st.admin)
    best_bid = Decimal((await st.admin.book(MKT))["bids"][0][0])
    price = best_bid + Decimal("0.5")  # improves the bid: our order is the best bid (maker)
    cmd = st.trader.limit(MKT, "BUY", "0.002", str(price))
    evs = await st.trader.submit(cmd, until="rest")
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
    init, submitted, accepted = evs
    assert submitted.ts_init <= accepted.ts_init
    assert init == cmd.order  # the command's own OrderInitialized, unchanged
    for ev in evs:
        common_ok(ev, cmd, st.account)
    (venue,) = await st.venue_orders(cmd.order.client_order_id)
    assert accepted.venue_order_id == venue["id"]
    assert venue["price"] == str(price) and venue["size"] == "0.002" and venue["type"] == "LIMIT"

    coid = cmd.order.client_order_id
    await st.admin.cross(MKT, "SELL", "0.0012", str(price))
    await st.admin.cross(MKT, "SELL", "0.0008", str(price))
    evs = await st.wait_events(coid, lambda e: count(e, "OrderFilled") == 2)
    fills = [e for e in evs if isinstance(e, s.OrderFilled)]
    vfills = sorted(await st.venue_fills(venue["id"]), key=lambda f: f["created_at"])
    assert len(vfills) == 2
    by_id = {f["id"]: f for f in vfills}
    for ev in fills:
        common_ok(ev, cmd, st.account)
        fill_ok(ev, by_id[ev.trade_id], side="BUY", order_type="LIMIT", liquidity="MAKER")
    assert sum(Decimal(f.last_qty) for f in fills) == Decimal("0.002")
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted", "OrderFilled", "OrderFilled"]

    # Funding paid on the open position is not a fill.
    await st.admin.funding(MKT, rate="0.001", accrue_seconds=3600, settle=True)
    assert [p for p in (await st.admin.account(st.account))["funding_payments"] if p["market"] == MKT]
    await asyncio.sleep(0.5)
    assert count(await st.events(coid), "OrderFilled") == 2

    # A market sell closes the position as taker against the maker's bid.
    mcmd = st.trader.market(MKT, "SELL", "0.002", reduce_only=True)
    evs = await st.trader.submit(mcmd, until="final")
    assert kinds(evs)[:3] == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
    mfills = [e for e in evs if isinstance(e, s.OrderFilled)]
    (mvenue,) = await st.venue_orders(mcmd.order.client_order_id)
    assert mvenue["type"] == "MARKET" and mvenue["flags"] == ["REDUCE_ONLY"]
    mv = {f["id"]: f for f in await st.venue_fills(mvenue["id"])}
    assert {f.trade_id for f in mfills} == set(mv)
    for ev in mfills:
        fill_ok(ev, mv[ev.trade_id], side="SELL", order_type="MARKET", liquidity="TAKER")
    assert sum(Decimal(f.last_qty) for f in mfills) == Decimal("0.002")
    assert mark > 0
    # The venue's account summary became an AccountState with Money in USDC at 8 decimals.
    last = None
    async for m in replay(st.js, subjects.exec_account(st.account), stream="EXEC"):
        last = m.event
    assert isinstance(last, s.AccountState)
    (bal,) = last.balances
    assert bal.currency == "USDC" and " " not in bal.total and len(bal.total.split(".")[1]) == 8
    assert Decimal(bal.total.split()[0]) == Decimal(bal.locked.split()[0]) + Decimal(bal.free.split()[0])


async def test_ioc_post_only_reduce_only_rejections(stack) -> None:
    st = stack
    await seed_book(st.admin)
    book = await st.admin.book(MKT)
    bid, ask = Decimal(book["bids"][0][0]), Decimal(book["asks"][0][0])

    # IOC that cannot fill: closed before it ever rested -> OrderRejected with the venue's reason.
    c1 = st.trader.limit(MKT, "BUY", "0.001", str(bid), time_in_force="IOC")
    evs = await st.trader.submit(c1, until="final")
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderRejected"]
    assert evs[-1].reason == "REMAINING_IOC_CANCEL" and evs[-1].due_post_only is False

    # IOC partially filled: accepted, one fill, then the remainder cancelled.
    await st.admin.mm_order(MKT, "SELL", "0.001", str(ask - Decimal("0.1")))
    c2 = st.trader.limit(MKT, "BUY", "0.003", str(ask - Decimal("0.1")), time_in_force="IOC")
    evs = await st.trader.submit(c2, until="final")
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted", "OrderFilled", "OrderCanceled"]
    assert evs[3].last_qty == "0.00100" and evs[3].liquidity_side == "TAKER"
    assert evs[4].venue_order_id == evs[2].venue_order_id

    # Post-only that would cross: rejected, due_post_only.
    c3 = st.trader.limit(MKT, "BUY", "0.001", str(ask), post_only=True)
    evs = await st.trader.submit(c3, until="final")
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderRejected"]
    assert evs[-1].reason == "POST_ONLY_WOULD_CROSS" and evs[-1].due_post_only is True
    (v3,) = await st.venue_orders(c3.order.client_order_id)
    assert v3["instruction"] == "POST_ONLY"

    # Reduce-only that would increase the (long 0.001) position.
    c4 = st.trader.limit(MKT, "BUY", "0.001", str(bid), reduce_only=True)
    evs = await st.trader.submit(c4, until="final")
    assert kinds(evs)[-1] == "OrderRejected" and evs[-1].reason == "REDUCE_ONLY_WILL_INCREASE"


async def test_pretrade_denials_never_reach_the_venue(stack) -> None:
    st = stack
    mark = await seed_book(st.admin)
    low = (mark * Decimal("0.9")).quantize(Decimal("0.1"))
    cases = {
        "off tick": st.trader.limit(MKT, "BUY", "0.001", str(low + Decimal("0.05"))),
        "size step": st.trader.limit(MKT, "BUY", "0.000015", str(low)),
        "min notional": st.trader.limit(MKT, "BUY", "0.0001", str(low)),
        "max size": st.trader.limit(MKT, "BUY", "101", str(low)),
        "band": st.trader.limit(MKT, "BUY", "0.001", str((mark * Decimal("1.2")).quantize(Decimal("0.1")))),
        "fok": st.trader.limit(MKT, "BUY", "0.001", str(low), time_in_force="FOK"),
        "unknown market": st.trader.limit("NOPE-USD-PERP", "BUY", "1", "1"),
        "bad paradex type": st.trader.limit(MKT, "BUY", "0.001", str(low), paradex_type="STOP_LOSS_MARKET"),
    }
    expect = {
        "off tick": "tick size",
        "size step": "size increment",
        "min notional": "min notional",
        "max size": "max order size",
        "band": "price band",
        "fok": "time in force",
        "unknown market": "unknown instrument",
        "bad paradex type": "paradex_type",
    }
    for name, cmd in cases.items():
        evs = await st.trader.submit(cmd, until="final")
        assert kinds(evs) == ["OrderInitialized", "OrderDenied"], name
        assert expect[name] in evs[-1].reason, (name, evs[-1].reason)
    await st.admin.set_state("cancel_only")
    await asyncio.sleep(1.2)  # the router polls /system/state every 0.5 s in tests
    cmd = st.trader.limit(MKT, "BUY", "0.001", str(low))
    evs = await st.trader.submit(cmd, until="final")
    assert kinds(evs) == ["OrderInitialized", "OrderDenied"] and "cancel-only" in evs[-1].reason
    await st.admin.set_state("ok")
    await asyncio.sleep(1.2)  # let the router see the venue open again before the next test
    all_coids = {c.order.client_order_id for c in cases.values()} | {cmd.order.client_order_id}
    assert not [o for o in await st.venue_orders() if o["client_id"] in all_coids]


async def test_trigger_orders(stack) -> None:
    st = stack
    mark = await seed_book(st.admin)
    tick = Decimal("0.1")
    up = (mark * Decimal("1.01")).quantize(tick)
    # Ask liquidity above the trigger so the triggered market buy fills.
    await st.admin.mm_order(MKT, "SELL", "0.01", str((mark * Decimal("1.012")).quantize(tick)))
    stop = st.trader.order(MKT, "BUY", "0.001", order_type="STOP_MARKET", trigger_price=str(up))
    evs = await st.trader.submit(stop, until="rest")
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
    (v,) = await st.venue_orders(stop.order.client_order_id)
    assert v["type"] == "STOP_MARKET" and v["status"] == "UNTRIGGERED" and Decimal(v["trigger_price"]) == up

    tp = st.trader.order(
        MKT, "SELL", "0.001", order_type="LIMIT_IF_TOUCHED", price=str(up + tick * 20), trigger_price=str(up)
    )
    sl = st.trader.order(
        MKT, "SELL", "0.001", order_type="STOP_MARKET", trigger_price=str((mark * Decimal("0.98")).quantize(tick)),
        paradex_type="STOP_LOSS_MARKET",
    )
    tpm = st.trader.order(
        MKT, "SELL", "0.001", order_type="MARKET_IF_TOUCHED", trigger_price=str((mark * Decimal("1.02")).quantize(tick))
    )
    sll = st.trader.order(
        MKT, "SELL", "0.001", order_type="STOP_LIMIT", price=str((mark * Decimal("0.97")).quantize(tick)),
        trigger_price=str((mark * Decimal("0.975")).quantize(tick)), paradex_type="STOP_LOSS_LIMIT",
    )
    stl = st.trader.order(
        MKT, "BUY", "0.001", order_type="STOP_LIMIT", price=str((mark * Decimal("1.03")).quantize(tick)),
        trigger_price=str((mark * Decimal("1.025")).quantize(tick)),
    )
    for cmd, vtype in ((tp, "TAKE_PROFIT_LIMIT"), (sl, "STOP_LOSS_MARKET"), (tpm, "TAKE_PROFIT_MARKET"),
                       (sll, "STOP_LOSS_LIMIT"), (stl, "STOP_LIMIT")):
        evs = await st.trader.submit(cmd, until="rest")
        assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"], vtype
        (v,) = await st.venue_orders(cmd.order.client_order_id)
        assert v["type"] == vtype and v["status"] == "UNTRIGGERED", v

    # The mark rises through the buy stop's trigger: triggered, then filled as a market order.
    await st.admin.set_price(MKT, index=str(up + tick * 10), mark=str(up + tick * 10))
    coid = stop.order.client_order_id
    evs = await st.wait_events(coid, has("OrderFilled"))
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted", "OrderTriggered", "OrderFilled"]
    assert evs[-1].liquidity_side == "TAKER" and evs[-1].order_type == "STOP_MARKET"
    (vf,) = await st.venue_fills(evs[2].venue_order_id)
    assert evs[-1].trade_id == vf["id"] and evs[-1].last_px == q(vf["price"], PRICE_P)
    # The take-profit limit sell (trigger = the same level) rests after triggering.
    evs = await st.wait_events(tp.order.client_order_id, has("OrderTriggered"))
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted", "OrderTriggered"]
    # An untriggered stop-limit's trigger and limit can be modified.
    new_trigger, new_limit = (mark * Decimal("1.04")).quantize(tick), (mark * Decimal("1.045")).quantize(tick)
    async with st.trader.watch(stl.order.client_order_id) as w:
        await st.trader.send(
            st.trader.modify_cmd(stl.order.client_order_id, MKT, price=str(new_limit), trigger_price=str(new_trigger))
        )
        evs = await w.wait(has("OrderUpdated"), timeout=10)
    assert kinds(evs) == ["OrderPendingUpdate", "OrderUpdated"]
    assert (evs[1].quantity, evs[1].price, evs[1].trigger_price) == ("0.00100", q(new_limit, 1), q(new_trigger, 1))
    (v,) = await st.venue_orders(stl.order.client_order_id)
    assert Decimal(v["trigger_price"]) == new_trigger and v["status"] == "UNTRIGGERED"
    # The others are still untriggered and cancellable.
    for cmd in (sl, tpm, sll, stl):
        evs = await st.trader.cancel(cmd.order.client_order_id, MKT)
        assert kinds(evs) == ["OrderPendingCancel", "OrderCanceled"]
    await st.trader.cancel(tp.order.client_order_id, MKT)
    await st.admin.set_price(MKT, index=str(mark), mark=str(mark))


async def test_modify_cancel_cancel_all_batch_cancel_query(stack) -> None:
    st = stack
    mark = await seed_book(st.admin)
    tick = Decimal("0.1")
    p1 = (mark * Decimal("0.98")).quantize(tick)
    orders = {}
    for i, (market, price) in enumerate(((MKT, p1), (MKT, p1 - tick), (MKT, p1 - 2 * tick), (MKT, p1 - 3 * tick))):
        cmd = st.trader.limit(market, "BUY", "0.001", str(price), client_order_id=f"M{i}-{st.account[-6:]}")
        evs = await st.trader.submit(cmd, until="rest")
        assert kinds(evs)[-1] == "OrderAccepted"
        orders[i] = cmd
    eth_mark = Decimal(next(p["mark"] for p in await st.admin.prices() if p["market"] == "ETH-USD-PERP"))
    eth = st.trader.limit("ETH-USD-PERP", "BUY", "0.01", str((eth_mark * Decimal("0.98")).quantize(Decimal("0.01"))))
    assert kinds(await st.trader.submit(eth, until="rest"))[-1] == "OrderAccepted"

    # Modify price and quantity.
    c0 = orders[0].order.client_order_id
    new_price = p1 - 10 * tick
    async with st.trader.watch(c0) as w:
        await st.trader.send(st.trader.modify_cmd(c0, MKT, quantity="0.002", price=str(new_price)))
        evs = await w.wait(has("OrderUpdated"), timeout=10)
    assert kinds(evs) == ["OrderPendingUpdate", "OrderUpdated"]
    upd = evs[1]
    assert upd.quantity == "0.00200" and upd.price == q(new_price, PRICE_P) and upd.trigger_price is None
    (v0,) = await st.venue_orders(c0)
    assert Decimal(v0["price"]) == new_price and v0["size"] == "0.002"
    assert upd.venue_order_id == v0["id"]

    # A second modify racing a fill whose venue update still carries the first modify's outcome:
    # only the second modify's own outcome settles it.
    best = (mark * Decimal("0.9995")).quantize(tick)
    async with st.trader.watch(c0) as w:
        await st.trader.send(st.trader.modify_cmd(c0, MKT, price=str(best)))
        await w.wait(lambda e: count(e, "OrderUpdated") == 1, timeout=10)
        await st.admin.cross(MKT, "SELL", "0.0005", str(best))
        await st.trader.send(st.trader.modify_cmd(c0, MKT, quantity="0.003", price=str(new_price)))
        evs = await w.wait(lambda e: count(e, "OrderUpdated") == 2 and count(e, "OrderFilled") == 1, timeout=10)
    last = [e for e in evs if isinstance(e, s.OrderUpdated)][-1]
    assert (last.quantity, last.price) == ("0.00300", q(new_price, PRICE_P))
    await asyncio.sleep(0.3)
    o = (await st.projection()).order(c0)
    assert o.quantity == Decimal("0.003") and o.filled_qty == Decimal("0.0005") and o.status == "PARTIALLY_FILLED"
    (v0,) = await st.venue_orders(c0)
    assert v0["size"] == "0.003" and Decimal(v0["price"]) == new_price

    # Cancel one (by client id and venue id), then cancel it again: rejected.
    evs = await st.trader.cancel(c0, MKT, venue_order_id=v0["id"])
    assert kinds(evs) == ["OrderPendingCancel", "OrderCanceled"] and evs[1].venue_order_id == v0["id"]
    evs = await st.trader.cancel(c0, MKT)
    assert kinds(evs) == ["OrderCancelRejected"] and "canceled" in evs[0].reason
    # Modifying a closed order is rejected without a venue call.
    async with st.trader.watch(c0) as w:
        await st.trader.send(st.trader.modify_cmd(c0, MKT, price=str(p1)))
        evs = await w.wait(has("OrderModifyRejected"), timeout=10)
    assert kinds(evs) == ["OrderModifyRejected"]

    # Query: an OrderStatusReport on exec.paradex.<acct>.report.order.
    c1 = orders[1].order.client_order_id
    sub = await st.nc.subscribe(subjects.exec_report(st.account, "order"))
    await st.trader.send(st.trader.query_cmd(c1, MKT))
    msg = await sub.next_msg(timeout=10)
    await sub.unsubscribe()
    rep = s.decode(msg.data)
    (v1,) = await st.venue_orders(c1)
    assert isinstance(rep, s.OrderStatusReport)
    assert rep.client_order_id == c1 and rep.venue_order_id == v1["id"] and rep.order_status == 6  # ACCEPTED
    assert rep.quantity == "0.00100" and rep.filled_qty == "0.00000" and rep.price == q(v1["price"], PRICE_P)

    # Batch cancel two of them.
    c2, c3 = orders[2].order.client_order_id, orders[3].order.client_order_id
    async with st.trader.watch(c2) as w2, st.trader.watch(c3) as w3:
        await st.trader.send(st.trader.batch_cancel_cmd(MKT, [c2, c3]))
        e2 = await w2.wait("final", timeout=10)
        e3 = await w3.wait("final", timeout=10)
    assert kinds(e2) == kinds(e3) == ["OrderPendingCancel", "OrderCanceled"]

    # Cancel-all for BTC leaves ETH alone; cancel-all for every market takes it.
    async with st.trader.watch(c1) as w1:
        await st.trader.cancel_all(MKT)
        assert kinds(await w1.wait("final", timeout=10)) == ["OrderPendingCancel", "OrderCanceled"]
    (ve,) = await st.venue_orders(eth.order.client_order_id)
    assert ve["status"] == "OPEN"
    async with st.trader.watch(eth.order.client_order_id) as we:
        await st.trader.cancel_all()
        assert kinds(await we.wait("final", timeout=10)) == ["OrderPendingCancel", "OrderCanceled"]
    assert not [o for o in await st.venue_orders() if o["status"] != "CLOSED"]


async def test_batch_submit_and_idempotent_commands(stack) -> None:
    st = stack
    mark = await seed_book(st.admin)
    tick = Decimal("0.1")
    base = (mark * Decimal("0.97")).quantize(tick)
    cmds = [
        st.trader.limit(MKT, "BUY", "0.001", str(base - i * tick), params={"batch_id": "B1", "batch_size": "3"})
        for i in range(3)
    ]
    before = await st.router_counters()
    async with st.trader.watch(cmds[0].order.client_order_id) as w0, \
            st.trader.watch(cmds[1].order.client_order_id) as w1, \
            st.trader.watch(cmds[2].order.client_order_id) as w2:
        for c in cmds:
            await st.trader.send(c)
        results = [await w.wait("rest", timeout=10) for w in (w0, w1, w2)]
    for evs in results:
        assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
    after = await st.router_counters()
    batch_key, single_key = "venue_calls_total{op=submit_batch,outcome=ok}", "venue_calls_total{op=submit,outcome=ok}"
    assert after.get(batch_key, 0) - before.get(batch_key, 0) == 1
    assert after.get(single_key, 0) == before.get(single_key, 0)

    # The same command stored twice (different Msg-Ids, as from two publishers) and a second command
    # reusing a client order id: one venue order, events once.
    cmd = st.trader.limit(MKT, "BUY", "0.001", str(base - 10 * tick))
    await st.trader.submit(cmd, until="rest")
    await st.js.publish(st.trader.subject_for(cmd), s.encode(cmd), headers={"Nats-Msg-Id": "other"})
    dup = st.trader.limit(MKT, "SELL", "0.001", str(base), client_order_id=cmd.order.client_order_id)
    await st.trader.send(dup)
    await asyncio.sleep(1.0)
    evs = await st.events(cmd.order.client_order_id)
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
    assert len(await st.venue_orders(cmd.order.client_order_id)) == 1

    # The one-call helpers the SDK delegates to.
    evs = await trading.submit_order(st.nc, st.js, st.account, MKT, "SELL", "0.001", price=str(base + 5000),
                                     strategy_id="SDK-001")
    assert kinds(evs) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"] and evs[0].strategy_id == "SDK-001"
    evs = await trading.cancel_order(st.nc, st.js, st.account, evs[0].client_order_id, MKT)
    assert kinds(evs) == ["OrderPendingCancel", "OrderCanceled"]


