"""WebSocket JSON-RPC protocol: errors for malformed input (the connection survives), auth codes,
subscription rules, deltas contiguity and snapshot cadence under background flow, server pings."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import aiohttp

from services.paradex_sim.testclient import SimWs

M = "BTC-USD-PERP"


async def test_malformed_input_gets_errors_and_connection_survives(sim):
    async with SimWs(sim.ws_url) as ws:
        async def raw(text: str) -> dict:
            ws.replies.pop(None, None)
            await ws.send_raw(text)
            return await ws.reply(None)

        assert (await raw("{not json"))["error"]["code"] == -32700
        assert (await raw("[1, 2]"))["error"]["code"] == -32600
        assert (await raw('"just a string"'))["error"]["code"] == -32600
        assert (await raw(json.dumps({"method": "subscribe"})))["error"]["code"] == -32600
        r = await ws.call("no_such_method")
        assert r["error"] == {"code": -32601, "message": "method does not exist", "data": "no_such_method"}
        assert {"usIn", "usOut", "usDiff", "id", "jsonrpc"} <= set(r)
        assert (await ws.call("subscribe", {"chanel": "x"}))["error"]["code"] == -32602
        assert (await ws.call("subscribe", ["trades.BTC-USD-PERP"]))["error"]["code"] == -32602
        assert (await ws.call("subscribe", {"channel": "nope.BTC-USD-PERP"}))["error"]["code"] == -32602
        assert (await ws.call("subscribe", {"channel": "trades.NOPE-USD-PERP"}))["error"]["code"] == -32602
        r = await ws.call("subscribe", {"channel": f"order_book.{M}.snapshot@20@100ms"})
        assert r["error"] == {"code": -32600, "message": "invalid subscribe request", "data": "Expecting depth=15"}
        r = await ws.call("subscribe", {"channel": f"order_book.{M}.deltas@10@1s"})
        assert r["error"]["code"] == -32600
        too_fine = f"order_book.{M}.snapshot@15@100ms@0_01"  # finer than BTC's 0.1 tick
        assert (await ws.call("subscribe", {"channel": too_fine}))["error"]["code"] == -32602
        assert (await ws.call("unsubscribe", {"channel": f"trades.{M}"}))["error"]["code"] == -32600
        assert (await ws.call("order.create", {"market": M}))["error"]["code"] == 40300
        await ws.ws.send_bytes(b"\xff\xfe")
        assert (await ws.reply(None))["error"]["code"] == -32700
        # still alive and serving
        ok = await ws.subscribe(f"trades.{M}")
        assert ok["result"] == {"channel": f"trades.{M}"}
        dup = await ws.subscribe(f"trades.{M}")
        assert dup["error"]["code"] == -32600
        assert (await ws.call("unsubscribe", {"channel": f"trades.{M}"}))["result"] == {"channel": f"trades.{M}"}
        assert not ws.closed.is_set()


async def test_auth_errors_and_private_channels(sim, sim_trader):
    async with SimWs(sim.ws_url) as ws:
        r = await ws.subscribe("orders.ALL")
        assert r["error"]["code"] == 40300
        assert (await ws.call("auth", {"bearer": "garbage"}))["error"]["code"] == 40110
        forged = sim_trader.jwt[:-4] + ("AAAA" if not sim_trader.jwt.endswith("AAAA") else "BBBB")
        assert (await ws.call("auth", {"bearer": forged}))["error"]["code"] == 40111
        # after a failed auth, private subscribe reports the auth error (paradex-py #116 behaviour)
        assert (await ws.subscribe("orders.ALL"))["error"]["code"] == 40111
        assert (await ws.call("auth", {"bearer": sim_trader.jwt}))["result"]["node_id"]
        assert (await ws.subscribe("orders.ALL"))["result"] == {"channel": "orders.ALL"}
        # notifications carry the exact subscribed name
        await sim_trader.place(M, "BUY", "0.001", "60000")
        note = await ws.next("orders.ALL")
        assert note["market"] == M
        assert ws.notes["orders.ALL"] is not None and f"orders.{M}" not in ws.notes


async def test_other_account_does_not_see_my_orders(sim, sim_trader):
    from services.paradex_sim.testclient import SimTrader

    other = await SimTrader(sim.rest_url, private_key=0x1111).login()
    try:
        async with SimWs(sim.ws_url) as mine, SimWs(sim.ws_url) as theirs:
            await mine.call("auth", {"bearer": sim_trader.jwt})
            await theirs.call("auth", {"bearer": other.jwt})
            await mine.subscribe("orders.ALL")
            await theirs.subscribe("orders.ALL")
            await sim_trader.place(M, "BUY", "0.001", "60000")
            await mine.next("orders.ALL", where=lambda o: o["status"] == "OPEN")
            await asyncio.sleep(0.1)
            assert not theirs.notes["orders.ALL"]
    finally:
        await other.close()


async def test_deltas_contiguous_and_snapshots_throttled_under_flow(sim_factory):
    from services.paradex_sim.admin_client import AdminClient

    sim = await sim_factory(flow_enabled=True, flow_rate=1500, markets=("BTC-USD-PERP",))
    async with SimWs(sim.ws_url) as ws, AdminClient(sim.admin_url) as admin:
        for ch in (f"order_book.{M}.deltas", f"order_book.{M}.deltas@15@100ms",
                   f"order_book.{M}.snapshot@15@50ms", f"order_book.{M}.snapshot@15@100ms@1"):
            assert "result" in await ws.subscribe(ch)
        await asyncio.sleep(1.0)
        await admin.pause_flow()
        truth = await admin.book(M)
        await asyncio.sleep(0.25)
        for name in (f"order_book.{M}.deltas", f"order_book.{M}.deltas@15@100ms"):
            msgs = [n["params"]["data"] for n in ws.notes[name]]
            assert len(msgs) > 300, len(msgs)
            assert msgs[0]["update_type"] == "s" and all(m["update_type"] == "d" for m in msgs[1:])
            seqs = [m["seq_no"] for m in msgs]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "gap or reorder in deltas"
            assert seqs[-1] == truth["seq_no"]
        snaps = [n["params"]["data"] for n in ws.notes[f"order_book.{M}.snapshot@15@50ms"]]
        assert 5 <= len(snaps) <= 1.25 / 0.05 + 2, len(snaps)
        assert all(s["update_type"] == "s" and not s["updates"] and not s["deletes"] for s in snaps)
        last = snaps[-1]
        assert last["seq_no"] == truth["seq_no"]
        expected = [{"side": "BUY", "price": p, "size": q} for p, q in truth["bids"][:15]]
        expected += [{"side": "SELL", "price": p, "size": q} for p, q in truth["asks"][:15]]
        assert last["inserts"] == expected
        grouped = [n["params"]["data"] for n in ws.notes[f"order_book.{M}.snapshot@15@100ms@1"]]
        assert 3 <= len(grouped) <= 1.25 / 0.1 + 2
        assert all(Decimal(i["price"]) % 1 == 0 for g in grouped for i in g["inserts"])


async def test_deltas_replay_matches_ground_truth(sim_factory):
    from services.paradex_sim.admin_client import AdminClient

    sim = await sim_factory(flow_enabled=True, flow_rate=800, markets=("ETH-USD-PERP",))
    m = "ETH-USD-PERP"
    async with SimWs(sim.ws_url) as ws, AdminClient(sim.admin_url) as admin:
        await ws.subscribe(f"order_book.{m}.deltas")
        await asyncio.sleep(0.6)
        await admin.pause_flow()
        truth = await admin.book(m)
        await ws.wait_for(lambda: ws.notes[f"order_book.{m}.deltas"][-1]["params"]["data"]["seq_no"] == truth["seq_no"])
        msgs = [n["params"]["data"] for n in ws.notes[f"order_book.{m}.deltas"]]
        book = {(i["side"], i["price"]): i["size"] for i in msgs[0]["inserts"]}
        for msg in msgs[1:]:
            for item in msg["inserts"] + msg["updates"]:
                book[(item["side"], item["price"])] = item["size"]
            for item in msg["deletes"]:
                book.pop((item["side"], item["price"]))
        expected = {("BUY", p): s for p, s in truth["bids"]} | {("SELL", p): s for p, s in truth["asks"]}
        assert book == expected


async def test_server_pings_and_closes_silent_clients(sim_factory):
    sim = await sim_factory(ws_ping_interval_s=0.2, ws_pong_timeout_s=0.2)
    # a well-behaved client (a reader that answers pings) survives several ping rounds
    async with SimWs(sim.ws_url) as good:
        await asyncio.sleep(1.0)
        assert (await good.subscribe("markets"))["result"] == {"channel": "markets"}
    # a client that never answers pings is closed with 1011
    async with aiohttp.ClientSession() as s, s.ws_connect(sim.ws_url, autoping=False) as bad:
        got_ping = False
        while True:
            msg = await bad.receive(timeout=3)
            if msg.type == aiohttp.WSMsgType.PING:
                got_ping = True
                continue
            break
        assert got_ping
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert bad.close_code == 1011 or msg.data == 1011


async def test_markets_summary_scoped_and_channel_spellings(sim):
    async with SimWs(sim.ws_url) as ws:
        r = await ws.subscribe("markets_summary", markets=["ETH-USD-PERP"])
        assert r["result"] == {"channel": "markets_summary"}
        assert "result" in await ws.subscribe("markets_summary.ALL")
        assert "result" in await ws.subscribe("markets_summary.SOL-USD-PERP")
        assert "result" in await ws.subscribe("funding_data.BTC-USD-PERP")
        await ws.wait_for(lambda: len(ws.notes["markets_summary.ALL"]) >= 6, timeout=4)
        assert {n["params"]["data"]["symbol"] for n in ws.notes["markets_summary"]} == {"ETH-USD-PERP"}
        assert {n["params"]["data"]["symbol"] for n in ws.notes["markets_summary.SOL-USD-PERP"]} == {"SOL-USD-PERP"}
        fd = await ws.next("funding_data.BTC-USD-PERP")
        assert set(fd) == {"market", "funding_index", "funding_premium", "funding_rate", "funding_rate_8h",
                           "funding_period_hours", "impact_premium_rate", "created_at"}
        r = await ws.call("modify_subscription", {"channel": "markets_summary", "add": ["BTC-USD-PERP"], "remove": []})
        assert r["result"] == {"channel": "markets_summary", "add": ["BTC-USD-PERP"], "remove": []}


async def test_pipelined_auth_then_subscribe(sim, sim_trader):
    """paradex-py sends subscribe right after auth without waiting: frames are handled in order."""
    async with SimWs(sim.ws_url) as ws:
        for rid, (method, params) in enumerate(
            [("auth", {"bearer": sim_trader.jwt}), ("subscribe", {"channel": "account"}),
             ("subscribe", {"channel": "fills.ETH-USD-PERP"})], start=1
        ):
            await ws.ws.send_str(json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": rid}))
        replies = [await ws.reply(i) for i in (1, 2, 3)]
        assert "node_id" in replies[0]["result"]
        assert replies[1]["result"] == {"channel": "account"}
        assert replies[2]["result"] == {"channel": "fills.ETH-USD-PERP"}


async def test_markets_channel_announces_spec_changes(sim, sim_admin):
    async with SimWs(sim.ws_url) as ws:
        await ws.subscribe("markets")
        await ws.subscribe("markets.SOL-USD-PERP")
        await sim_admin.patch_market("SOL-USD-PERP", min_notional="20", max_open_orders=75)
        event = await ws.next("markets")
        assert event["symbol"] == "SOL-USD-PERP" and event["event_type"] == "UPDATED"
        assert event["changed_fields"] == {"min_notional": "20", "max_open_orders": "75"}
        assert (await ws.next("markets.SOL-USD-PERP")) == event


async def test_private_funding_and_balance_channels(sim, sim_trader, sim_admin):
    t = sim_trader
    e = "ETH-USD-PERP"
    async with SimWs(sim.ws_url) as ws:
        await ws.call("auth", {"bearer": t.jwt})
        await ws.subscribe(f"funding_payments.{e}")
        await ws.subscribe("balance_events")
        await sim_admin.mm_order(e, "SELL", "1", "3500")
        await t.place(e, "BUY", "1", "3500")
        ev = await ws.next("balance_events")
        assert ev["type"] == "TRANSACTION_FILL" and Decimal(ev["fees"]) > 0
        assert Decimal(ev["settlement_asset_balance_before"]) - Decimal(ev["fees"]) == Decimal(
            ev["settlement_asset_balance_after"])
        await sim_admin.funding(e, rate="-0.002", accrue_seconds=4 * 3600, settle=True)
        pay = await ws.next(f"funding_payments.{e}")
        assert pay["payment"] == "3.5" and pay["fill_id"] == ""  # shorts pay longs when the rate is negative
