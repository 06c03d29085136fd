"""Exchange behaviour seen through REST: instructions, STP, reduce-only, risk checks with their
cancel reasons, stops, modify, batches, cancels, pagination, PnL and margin arithmetic."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from services.paradex_sim.testclient import SimTrader
from tests.sim.helpers import eventually

E = "ETH-USD-PERP"
B = "BTC-USD-PERP"


async def closed(trader: SimTrader, order_id: str) -> dict:
    out: dict = {}

    async def check() -> bool:
        r = await trader.get(f"/orders/{order_id}")
        out.update(r.body)
        return r.body["status"] == "CLOSED"

    for _ in range(200):
        if await check():
            return out
        await asyncio.sleep(0.01)
    raise AssertionError(f"order {order_id} not closed: {out}")


async def status_of(trader: SimTrader, order_id: str, want: str) -> dict:
    for _ in range(200):
        body = (await trader.get(f"/orders/{order_id}")).body
        if body["status"] == want:
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"order {order_id} never reached {want}: {body}")


async def test_instructions_and_market_orders(sim, sim_trader, sim_admin):
    t = sim_trader
    r = await t.place(E, "BUY", "0.1", "3400", type="MARKET")  # market types may carry no price at all
    assert r.status == 201
    assert (await closed(t, r.body["id"]))["cancel_reason"] == "EMPTY_MARKET"
    await sim_admin.mm_order(E, "SELL", "0.5", "3505")
    r = await t.place(E, "BUY", "0.1", "3505", instruction="POST_ONLY")
    assert (await closed(t, r.body["id"]))["cancel_reason"] == "POST_ONLY_WOULD_CROSS"
    r = await t.place(E, "BUY", "0.8", "3505", instruction="IOC")
    o = await closed(t, r.body["id"])
    assert (o["cancel_reason"], o["remaining_size"], o["avg_fill_price"]) == ("REMAINING_IOC_CANCEL", "0.3", "3505")
    await sim_admin.mm_order(E, "SELL", "1", "3506")
    r = await t.place(E, "BUY", "0.4", type="MARKET")
    o = await closed(t, r.body["id"])
    assert (o["cancel_reason"], o["remaining_size"], o["price"]) == ("", "0", "0")
    bad = await t.place(E, "BUY", "0.1", "3400", type="MARKET", instruction="POST_ONLY")
    assert (bad.status, bad.body["error"]) == (400, "VALIDATION_ERROR")
    bad = await t.place(E, "BUY", "0.1", "3400.001")
    assert (bad.status, bad.body["error"]) == (400, "VALIDATION_ERROR") and "tick" in bad.body["message"]
    bad = await t.place(E, "BUY", "0.00001", "3400")
    assert (bad.status, bad.body["error"]) == (400, "VALIDATION_ERROR")
    bad = await t.place("DOGE-USD-PERP", "BUY", "1", "1")
    assert (bad.status, bad.body["error"]) == (400, "MARKET_NOT_FOUND")
    bad = await t.place(E, "BUY", "0.1", "3400", instruction="RPI")
    assert (bad.status, bad.body["error"]) == (400, "RPI_ACCOUNT_NOT_WHITELISTED")


async def test_self_trade_prevention(sim, sim_trader):
    t = sim_trader
    rest = await t.place(E, "SELL", "0.1", "3500")
    await status_of(t, rest.body["id"], "OPEN")
    r = await t.place(E, "BUY", "0.1", "3500")  # default EXPIRE_TAKER
    assert (await closed(t, r.body["id"]))["cancel_reason"] == "SELF_TRADE"
    assert (await t.get(f"/orders/{rest.body['id']}")).body["status"] == "OPEN"
    r = await t.place(E, "BUY", "0.1", "3500", stp="EXPIRE_MAKER")
    assert (await closed(t, rest.body["id"]))["cancel_reason"] == "SELF_TRADE"
    assert (await status_of(t, r.body["id"], "OPEN"))["remaining_size"] == "0.1"
    r2 = await t.place(E, "SELL", "0.1", "3500", stp="EXPIRE_BOTH")
    assert (await closed(t, r2.body["id"]))["cancel_reason"] == "SELF_TRADE"
    assert (await closed(t, r.body["id"]))["cancel_reason"] == "SELF_TRADE"
    assert (await t.get("/fills")).body["results"] == []


async def test_risk_checks_close_with_reasons(sim, sim_trader, sim_admin):
    t = sim_trader
    await sim_admin.set_price(E, index="3500")
    cases = [
        (dict(side="BUY", size="0.001", price="3500"), "ORDER_SIZE_BELOW_MIN"),         # 3.5 USD < 10
        (dict(side="BUY", size="0.1", price="3700"), "EXCEEDS_MAX_SLIPPAGE"),           # above mark + 5 %
        (dict(side="SELL", size="0.1", price="3300"), "EXCEEDS_MAX_SLIPPAGE"),          # below mark - 5 %
        (dict(side="BUY", size="1", price="3000", flags=["REDUCE_ONLY"]), "REDUCE_ONLY_WILL_INCREASE"),
    ]
    for kw, reason in cases:
        r = await t.place(E, **kw)
        assert r.status == 201 and r.body["status"] == "NEW", (kw, r)
        assert (await closed(t, r.body["id"]))["cancel_reason"] == reason, kw
    # margin: 900 ETH at mark 3500 needs 63k of initial margin
    await sim_admin.set_balance(t.address, "60000")
    r = await t.place(E, "BUY", "900", "3000")
    assert (await closed(t, r.body["id"]))["cancel_reason"] == "NOT_ENOUGH_MARGIN"
    # a passive order far from mark is fine
    r = await t.place(E, "BUY", "0.1", "2000")
    assert (await status_of(t, r.body["id"], "OPEN"))["status"] == "OPEN"
    # position limit: 9000 ETH; with a huge balance the margin check passes but the limit does not
    await sim_admin.set_balance(t.address, "1000000000")
    r = await t.place(E, "BUY", "1000", "2000")
    assert (await status_of(t, r.body["id"], "OPEN"))["status"] == "OPEN"
    await sim_admin.patch_market(E, position_limit="1500")
    r = await t.place(E, "BUY", "600", "2000")
    assert (await closed(t, r.body["id"]))["cancel_reason"] == "ORDER_EXCEEDS_POSITION_LIMIT"


async def test_sync_risk_mode(sim_factory):
    sim = await sim_factory(risk_reject_mode="sync")
    async with SimTrader(sim.rest_url) as t:
        await t.login()
        r = await t.place(E, "BUY", "0.001", "3500")
        assert (r.status, r.body["error"]) == (400, "VALIDATION_ERROR") and "min_notional" in r.body["message"]
        r = await t.place(E, "BUY", "0.1", "3700")
        assert (r.status, r.body["error"]) == (400, "VALIDATION_ERROR") and "band" in r.body["message"]


async def test_positions_pnl_and_margin(sim, sim_trader, sim_admin):
    t = sim_trader
    await sim_admin.set_price(B, index="65000")
    await sim_admin.mm_order(B, "SELL", "0.5", "65000")
    r = await t.place(B, "BUY", "0.5", "65000")
    await closed(t, r.body["id"])
    await sim_admin.mm_order(B, "SELL", "1", "66000")
    await sim_admin.set_price(B, index="66000")  # mark up 1000
    r = await t.place(B, "BUY", "0.5", "66000")
    await closed(t, r.body["id"])
    pos = (await t.get("/positions")).body["results"][0]
    assert (pos["size"], pos["average_entry_price"], pos["side"]) == ("1", "65500", "LONG")
    assert Decimal(pos["unrealized_pnl"]) == Decimal(500)
    acct = (await t.get("/account")).body
    fees = (Decimal("65000") * Decimal("0.5") + Decimal("66000") * Decimal("0.5")) * Decimal("0.00045")
    assert Decimal(acct["total_collateral"]) == Decimal(100000) - fees
    assert Decimal(acct["account_value"]) == Decimal(100000) - fees + 500
    assert Decimal(acct["initial_margin_requirement"]) == Decimal("66000") * Decimal("0.02")
    assert Decimal(acct["maintenance_margin_requirement"]) == Decimal("66000") * Decimal("0.01")
    imr = Decimal(acct["initial_margin_requirement"])
    assert Decimal(acct["free_collateral"]) == Decimal(acct["account_value"]) - imr
    # close half at 67000 through the book: realized (67000 - 65500) * 0.5 = 750
    assert await sim_admin.mm_cancel(B) == 1  # the rest of the 66000 offer
    await sim_admin.mm_order(B, "BUY", "0.5", "67000")
    r = await t.place(B, "SELL", "0.5", "67000", flags=["REDUCE_ONLY"])
    await closed(t, r.body["id"])
    pos = (await t.get("/positions")).body["results"][0]
    assert (pos["size"], pos["realized_positional_pnl"]) == ("0.5", "750")
    fills = (await t.get("/fills")).body["results"]
    assert fills[0]["realized_pnl"] == "750" and fills[0]["liquidity"] == "TAKER"
    # a reduce-only order larger than the position is refused
    r = await t.place(B, "SELL", "0.6", "60000", flags=["REDUCE_ONLY"])
    assert (await closed(t, r.body["id"]))["cancel_reason"] == "REDUCE_ONLY_WILL_INCREASE"


async def test_stop_orders_trigger_on_mark(sim, sim_trader, sim_admin):
    t = sim_trader
    await sim_admin.set_price(E, index="3500")
    await sim_admin.mm_order(E, "SELL", "1", "3560")
    r = await t.place(E, "BUY", "0.1", "3570", type="STOP_LIMIT", trigger_price="3550")
    assert r.status == 201 and r.body["trigger_price"] == "3550"
    assert (await status_of(t, r.body["id"], "UNTRIGGERED"))["status"] == "UNTRIGGERED"
    assert [o["id"] for o in (await t.get("/orders")).body["results"]] == [r.body["id"]]
    await sim_admin.set_price(E, index="3540")
    await asyncio.sleep(0.05)
    assert (await t.get(f"/orders/{r.body['id']}")).body["status"] == "UNTRIGGERED"
    await sim_admin.set_price(E, index="3555")
    o = await closed(t, r.body["id"])
    assert (o["remaining_size"], o["avg_fill_price"]) == ("0", "3560")
    missing = await t.place(E, "BUY", "0.1", "3570", type="STOP_LIMIT")
    assert (missing.status, missing.body["error"]) == (400, "VALIDATION_ERROR")


async def test_modify_batch_and_cancel_forms(sim, sim_trader):
    t = sim_trader
    r = await t.place(E, "BUY", "0.1", "3000", client_id="a")
    oid = r.body["id"]
    await status_of(t, oid, "OPEN")
    dup = await t.place(E, "BUY", "0.1", "3000", client_id="a")
    assert (dup.status, dup.body["error"]) == (400, "DUPLICATED_CLIENT_ID")
    m = await t.modify(oid, E, "BUY", "0.3", "3001")
    assert m.status == 200 and m.body["id"] == oid and m.body["request_info"]["request_type"] == "MODIFY_ORDER"
    await eventually(lambda: True)
    for _ in range(100):
        o = (await t.get(f"/orders/{oid}")).body
        if o["price"] == "3001":
            break
        await asyncio.sleep(0.01)
    got = (o["price"], o["size"], o["remaining_size"], o["request_info"]["status"])
    assert got == ("3001", "0.3", "0.3", "SUCCESS")
    forged = t.modify_body(oid, E, "BUY", "0.3", "3001")
    forged["size"] = "0.4"
    bad = await t.request("PUT", f"/orders/{oid}", json=forged)
    assert (bad.status, bad.body["error"]) == (400, "INVALID_ORDER_SIGNATURE")
    by_cid = await t.get("/orders/by_client_id/a")
    assert by_cid.body["id"] == oid
    assert (await t.request("DELETE", "/orders/by_client_id/a")).status == 204
    await closed(t, oid)
    assert (await t.get("/orders/by_client_id/a")).body["error"] == "CLIENT_ORDER_ID_NOT_FOUND"
    again = await t.cancel(oid)
    assert (again.status, again.body["error"]) == (400, "ORDER_IS_CLOSED")
    assert (await t.cancel("123")).body["error"] == "ORDER_ID_NOT_FOUND"

    batch = [t.order_body(E, "BUY", "0.1", str(2900 + i), client_id=f"b{i}") for i in range(3)]
    r = await t.request("POST", "/orders/batch", json=batch)
    assert r.status == 201 and len(r.body["orders"]) == 3 and r.body["errors"] == []
    dup_batch = [t.order_body(E, "BUY", "0.1", "2800", client_id="b0"),
                 t.order_body(E, "BUY", "0.1", "2801", client_id="c9")]
    r = await t.request("POST", "/orders/batch", json=dup_batch)
    assert [o["client_id"] for o in r.body["orders"]] == ["c9"]
    assert r.body["errors"][0]["error"] == "DUPLICATED_CLIENT_ID"
    tampered = [t.order_body(E, "BUY", "0.1", "2700"), {**t.order_body(E, "BUY", "0.1", "2701"), "size": "0.2"}]
    r = await t.request("POST", "/orders/batch", json=tampered)
    assert (r.status, r.body["error"]) == (400, "INVALID_ORDER_SIGNATURE")
    r = await t.request("POST", "/orders/batch", json=[])
    assert r.body["error"] == "BATCH_SIZE_OUT_OF_RANGE"
    ids = [o["id"] for o in (await t.get("/orders")).body["results"]]
    assert len(ids) == 4
    body = {"order_ids": [ids[0], "999"], "client_order_ids": ["b1", "zz"]}
    r = await t.request("DELETE", "/orders/batch", json=body)
    q = "QUEUED_FOR_CANCELLATION"
    assert [x["status"] for x in r.body["results"]] == [q, "NOT_FOUND", q, "NOT_FOUND"]
    await t.cancel_all(E)
    await eventually(lambda: True)
    for _ in range(100):
        if not (await t.get("/orders")).body["results"]:
            break
        await asyncio.sleep(0.01)
    assert (await t.get("/orders")).body["results"] == []


async def test_max_open_orders_and_history_pagination(sim, sim_trader, sim_admin):
    t = sim_trader
    await sim_admin.patch_market(E, max_open_orders=5)
    for i in range(5):
        assert (await t.place(E, "BUY", "0.01", str(3000 + i))).status == 201
    r = await t.place(E, "BUY", "0.01", "2990")
    assert (r.status, r.body["error"]) == (400, "VALIDATION_ERROR") and "max_open_orders" in r.body["message"]
    await t.cancel_all()
    await asyncio.sleep(0.05)
    seen: list[str] = []
    page = (await t.get("/orders-history", page_size="2")).body
    assert set(page) == {"next", "prev", "results"} and page["prev"] is None
    while True:
        seen += [o["id"] for o in page["results"]]
        if page["next"] is None:
            break
        page = (await t.get("/orders-history", page_size="2", cursor=page["next"])).body
        assert page["prev"] is not None
    assert len(seen) == len(set(seen)) == 5
    back = (await t.get("/orders-history", page_size="2", cursor=page["prev"])).body
    assert [o["id"] for o in back["results"]] == seen[2:4]
    assert (await t.get("/orders-history", status="OPEN")).body["results"] == []
    bad = await t.get("/orders-history", cursor="!!!")
    assert (bad.status, bad.body["error"]) == (400, "INVALID_REQUEST_PARAMETER")


async def test_public_trades_pagination_limits(sim, sim_admin):
    for i in range(5):
        await sim_admin.mm_order(E, "SELL", "0.1", str(3500 + i))
    await sim_admin.cross(E, "BUY", "0.5", "3510")
    async with SimTrader(sim.rest_url) as anon:
        page = (await anon.get("/trades", market=E, page_size="3")).body
        assert [r["price"] for r in page["results"]] == ["3504", "3503", "3502"]
        page2 = (await anon.get("/trades", market=E, page_size="3", cursor=page["next"])).body
        assert [r["price"] for r in page2["results"]] == ["3501", "3500"] and page2["next"] is None
        assert (await anon.get("/trades", market=E, page_size="1000")).status == 200
        bad = await anon.get("/trades", market=E, page_size="1001")
        assert (bad.status, bad.body["error"]) == (400, "INVALID_REQUEST_PARAMETER")
        assert (await anon.get("/trades")).body["error"] == "VALIDATION_ERROR"
        ob = (await anon.get(f"/orderbook/{E}")).body
        assert ob["asks"] == [] and ob["seq_no"] == (await sim_admin.book(E))["seq_no"]


async def test_closed_order_visibility_switch(sim_factory):
    sim = await sim_factory(closed_orders_by_id=False)
    async with SimTrader(sim.rest_url) as t:
        await t.login()
        r = await t.place(E, "BUY", "0.1", "3000")
        await t.cancel(r.body["id"])
        for _ in range(100):
            got = await t.get(f"/orders/{r.body['id']}")
            if got.status == 404:
                break
            await asyncio.sleep(0.01)
        assert (got.status, got.body["error"]) == (404, "ORDER_ID_NOT_FOUND")


async def test_funding_accrues_and_is_paid_not_filled(sim, sim_trader, sim_admin):
    t = sim_trader
    await sim_admin.set_price(E, index="3500")
    await sim_admin.mm_order(E, "SELL", "1", "3500")
    r = await t.place(E, "BUY", "1", "3500")
    await closed(t, r.body["id"])
    fills_before = len((await t.get("/fills")).body["results"])
    await sim_admin.funding(E, rate="0.001", accrue_seconds=8 * 3600)  # one full period at 0.1 %
    pos = (await t.get("/positions")).body["results"][0]
    assert Decimal(pos["unrealized_funding_pnl"]) == Decimal("-3.5")
    await sim_admin.funding(E, settle=True)
    pays = (await t.get("/funding/payments", market=E)).body
    assert [p["payment"] for p in pays["results"]] == ["-3.5"] and set(pays) == {"next", "prev", "results"}
    assert len((await t.get("/fills")).body["results"]) == fills_before
    fd = (await t.get("/funding/data", market=E)).body
    assert fd["results"][0]["funding_rate"] == "0.001"
