"""The scripted end-to-end flow over real HTTP and WebSocket: onboard -> auth -> subscribe public and
private channels -> resting order seen OPEN -> crossed -> fills, position, account -> cancel-all."""

from __future__ import annotations

from decimal import Decimal

from services.paradex_sim.testclient import SimTrader, SimWs
from tests.sim.helpers import (
    ACCOUNT_FIELDS,
    BBO_FIELDS,
    BOOK_FIELDS,
    FILL_FIELDS,
    ORDER_FIELDS,
    POSITION_FIELDS,
    TRADE_FIELDS,
)

M = "ETH-USD-PERP"


async def test_scripted_flow(sim, sim_admin):
    trader = SimTrader(sim.rest_url)
    try:
        # unknown account -> NOT_ONBOARDED, then onboard and auth for real
        r = await trader.auth()
        assert r.status == 400 and r.body["error"] == "NOT_ONBOARDED"
        assert (await trader.onboard()).status == 200
        r = await trader.auth()
        assert r.status == 200 and set(r.body) == {"jwt_token"}
        bal = await trader.get("/balance")
        row = bal.body["results"][0]
        assert bal.body == {"results": [{"token": "USDC", "size": "100000", "last_updated_at": row["last_updated_at"]}]}

        await sim_admin.mm_order(M, "SELL", "1", "3510")
        await sim_admin.mm_order(M, "BUY", "1", "3490")

        async with SimWs(sim.ws_url) as ws:
            auth = await ws.call("auth", {"bearer": trader.jwt})
            assert set(auth["result"]) == {"node_id"} and {"usIn", "usOut", "usDiff"} <= set(auth)
            for ch in (f"trades.{M}", f"bbo.{M}", f"order_book.{M}.deltas", f"order_book.{M}.snapshot@15@50ms",
                       f"orders.{M}", "fills.ALL", "positions", "account", "markets_summary"):
                ack = await ws.subscribe(ch)
                assert ack["result"] == {"channel": ch}, ack

            first = await ws.next(f"order_book.{M}.deltas")
            assert set(first) == BOOK_FIELDS and first["update_type"] == "s"
            assert {"side": "SELL", "price": "3510", "size": "1"} in first["inserts"]
            snap = await ws.next(f"order_book.{M}.snapshot@15@50ms")
            assert snap["update_type"] == "s" and snap["seq_no"] == first["seq_no"]

            placed = await trader.place(M, "BUY", "0.5", "3495", client_id="c-1")
            assert placed.status == 201 and placed.body["status"] == "NEW", placed
            assert set(placed.body) >= ORDER_FIELDS
            oid = placed.body["id"]

            opened = await ws.next(f"orders.{M}", where=lambda d: d["status"] == "OPEN")
            assert opened["id"] == oid and opened["remaining_size"] == "0.5" and opened["client_id"] == "c-1"
            assert set(opened) >= ORDER_FIELDS
            d = await ws.next(f"order_book.{M}.deltas")
            assert d["update_type"] == "d" and d["seq_no"] == first["seq_no"] + 1
            assert d["inserts"] == [{"side": "BUY", "price": "3495", "size": "0.5"}]
            bbo = await ws.next(f"bbo.{M}")
            assert set(bbo) == BBO_FIELDS and bbo["bid"] == "3495"

            acct_before = (await trader.get("/account")).body
            assert set(acct_before) >= ACCOUNT_FIELDS
            assert Decimal(acct_before["initial_margin_requirement"]) > 0  # the open order needs margin

            crossed = await sim_admin.cross(M, "SELL", "0.2", "3495")
            assert [t["size"] for t in crossed["trades"]] == ["0.2"]

            trade = await ws.next(f"trades.{M}")
            assert set(trade) == TRADE_FIELDS and trade["side"] == "SELL" and trade["price"] == "3495"
            fill = await ws.next("fills.ALL")
            assert set(fill) == FILL_FIELDS
            assert (fill["order_id"], fill["liquidity"], fill["side"], fill["size"]) == (oid, "MAKER", "BUY", "0.2")
            assert Decimal(fill["fee"]) == Decimal("3495") * Decimal("0.2") * Decimal("0.00003")
            partial = await ws.next(f"orders.{M}", where=lambda o: o["remaining_size"] == "0.3")
            assert partial["status"] == "OPEN" and partial["avg_fill_price"] == "3495"
            pos = await ws.next("positions")
            assert set(pos) >= POSITION_FIELDS
            got = (pos["side"], pos["size"], pos["average_entry_price"], pos["status"])
            assert got == ("LONG", "0.2", "3495", "OPEN")
            acct = await ws.next("account", where=lambda a: a["seq_no"] > acct_before["seq_no"])
            assert set(acct) >= ACCOUNT_FIELDS
            assert Decimal(acct["total_collateral"]) == Decimal("100000") - Decimal(fill["fee"])

            # REST agrees with what was pushed
            rest_pos = (await trader.get("/positions")).body["results"]
            assert rest_pos[0]["size"] == "0.2" and rest_pos[0]["id"] == f"{trader.address}-{M}"
            fills = (await trader.get("/fills", market=M)).body
            assert set(fills) == {"next", "prev", "results"} and fills["results"][0]["id"] == fill["id"]
            assert (await trader.get(f"/orders/{oid}")).body["remaining_size"] == "0.3"

            r = await trader.cancel_all()
            assert r.status == 200
            closed = await ws.next(f"orders.{M}", where=lambda o: o["status"] == "CLOSED")
            assert closed["id"] == oid and closed["cancel_reason"] == "USER_CANCELED"
            assert (await trader.get("/orders")).body == {"results": []}
            summary = await ws.next("markets_summary", timeout=3, where=lambda s: s["symbol"] == M)
            assert summary["last_traded_price"] == "3495"

            truth = await sim_admin.account(trader.address)
            assert [o["status"] for o in truth["orders"]] == ["CLOSED"]
            assert truth["fills"][0]["id"] == fill["id"]
            assert raw_frames_newline_terminated(ws)
    finally:
        await trader.close()


def raw_frames_newline_terminated(ws: SimWs) -> bool:
    return bool(ws.raw) and all(frame.endswith("\n") for frame in ws.raw)
