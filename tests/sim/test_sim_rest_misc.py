"""Public REST shapes, rate limits and headers, WS order methods, and the simulator as an OS process."""

from __future__ import annotations

import asyncio
import json

from services.paradex_sim.admin_client import AdminClient
from services.paradex_sim.testclient import SimTrader, SimWs

E = "ETH-USD-PERP"
CONFIG_KEYS = {
    "assets_limit_per_account", "block_explorer_url", "bridged_tokens", "dime_staking_contract_address", "environment",
    "l1_chain_id", "l1_core_contract_address", "l1_operator_address", "l1_relayer_address", "l2_relayer_address",
    "liquidation_fee", "oracle_address", "paraclear_account_hash", "paraclear_account_proxy_hash", "paraclear_address",
    "paraclear_decimals", "paraclear_evm_account_hash", "partial_liquidation_buffer",
    "partial_liquidation_share_increment", "starknet_chain_id", "starknet_fullnode_rpc_base_url",
    "starknet_fullnode_rpc_url", "starknet_gateway_url", "universal_deployer_address",
}


async def test_public_shapes(sim_factory):
    sim = await sim_factory(synthetic_markets=3)
    async with SimTrader(sim.rest_url) as anon:
        cfg = (await anon.get("/system/config")).body
        assert set(cfg) == CONFIG_KEYS and cfg["starknet_chain_id"] == "PRIVATE_SN_POTC_SEPOLIA"
        assert set(cfg["bridged_tokens"][0]) == {"name", "symbol", "decimals", "l1_token_address", "l1_bridge_address",
                                                 "l2_token_address", "l2_bridge_address"}
        assert (await anon.get("/system/state")).body == {"status": "ok"}
        assert (await anon.get("/system/time")).body["server_time"].isdigit()
        markets = (await anon.get("/markets")).body["results"]
        by = {m["symbol"]: m for m in markets}
        assert set(by) == {"BTC-USD-PERP", "ETH-USD-PERP", "SOL-USD-PERP", "SYN001-USD-PERP", "SYN002-USD-PERP",
                           "SYN003-USD-PERP"}
        btc = by["BTC-USD-PERP"]
        assert (btc["price_tick_size"], btc["order_size_increment"], btc["min_notional"], btc["max_order_size"],
                btc["position_limit"], btc["max_open_orders"]) == ("0.1", "0.00001", "10", "100", "300", 150)
        assert (await anon.get("/markets", market=E)).body["results"][0]["symbol"] == E
        summary = (await anon.get("/markets/summary", market="ALL")).body["results"]
        assert len(summary) == 6
        assert {"mark_price", "underlying_price", "funding_rate", "open_interest"} <= set(summary[0])
        assert (await anon.get("/markets/summary")).status == 400
        assert set((await anon.get(f"/bbo/{E}")).body) == {"market", "bid", "bid_size", "ask", "ask_size",
                                                             "last_updated_at", "seq_no"}
        assert (await anon.get("/bbo/NOPE")).body["error"] == "MARKET_NOT_FOUND"
        onb = (await anon.get("/onboarding", public_key=hex(anon.public_key))).body
        assert (onb["address"], onb["exists"]) == (anon.address, False)
        r = await anon.request("POST", "/orders", data=b"{oops", headers={"Content-Type": "application/json"})
        assert r.status == 401  # auth is checked before the body
        t = await SimTrader(sim.rest_url).login()
        try:
            r = await t.request("POST", "/orders", data=b"{oops", headers={"Content-Type": "application/json"})
            assert (r.status, r.body["error"]) == (400, "BINDING_ERROR")
            r = await t.request("POST", "/orders", json=["not", "an", "object"])
            assert (r.status, r.body["error"]) == (400, "BINDING_ERROR")
            r = await t.request("PATCH", "/orders")
            assert r.status == 405 and set(r.body) == {"error", "message"}
        finally:
            await t.close()


async def test_rate_limit_headers_and_429(sim, sim_trader, sim_admin):
    t = sim_trader
    r = await t.get("/orders")
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-window"} <= {
        k.lower() for k in r.headers}
    await sim_admin.set_rate_limits(scopes={"orders": [[3, 60]]})
    statuses = [(await t.place(E, "BUY", "0.1", str(3000 + i))).status for i in range(4)]
    assert statuses == [201, 201, 201, 429]
    r = await t.place(E, "BUY", "0.1", "2999")
    assert r.body == {"error": "RATE_LIMIT_EXCEEDED", "message": "rate limit exceeded"}
    h = {k.lower(): v for k, v in r.headers.items()}
    assert h["x-ratelimit-limit"] == "3" and h["x-ratelimit-remaining"] == "0" and int(h["retry-after"]) >= 1
    # WS order methods share the counter
    async with SimWs(sim.ws_url) as ws:
        await ws.call("auth", {"bearer": t.jwt})
        r = await ws.call("order.create", t.order_body(E, "BUY", "0.1", "2998"))
        assert r["error"]["code"] == 42901
    # reads are a different scope
    assert (await t.get("/orders")).status == 200
    await sim_admin.set_rate_limits(enabled=False)
    assert (await t.place(E, "BUY", "0.1", "2997")).status == 201
    await sim_admin.set_rate_limits(enabled=True, reset=True)
    assert (await sim_admin.rate_limits())["scopes"]["orders"] == [[800, 1.0], [17250, 60.0]]


async def test_ws_order_methods(sim, sim_trader, sim_admin):
    t = sim_trader
    async with SimWs(sim.ws_url) as ws:
        await ws.call("auth", {"bearer": t.jwt})
        await ws.subscribe("orders.ALL")
        r = await ws.call("order.create", t.order_body(E, "BUY", "0.1", "3000", client_id="w1"))
        order = r["result"]["order"]
        assert order["status"] == "NEW" and {"created_at", "received_at"} <= set(r["result"])
        await ws.next("orders.ALL", where=lambda o: o["id"] == order["id"] and o["status"] == "OPEN")
        bad = await ws.call("order.create", {**t.order_body(E, "BUY", "0.1", "3000"), "size": "0.2"})
        assert bad["error"]["code"] == 100 and bad["error"]["message"] == "INVALID_ORDER_SIGNATURE"
        batch = await ws.call("order.create_batch", [t.order_body(E, "BUY", "0.1", "2990"),
                                                     t.order_body(E, "BUY", "0.1", "2991", client_id="w1")])
        results = batch["result"]["results"]
        assert "order" in results[0] and "error" in results[1]
        m = await ws.call("order.modify", {**t.modify_body(order["id"], E, "BUY", "0.2", "3002")})
        assert m["result"]["order"]["id"] == order["id"]
        await ws.next("orders.ALL", where=lambda o: o["id"] == order["id"] and o["price"] == "3002")
        c = await ws.call("order.cancel", {"client_id": "w1", "market": E})
        assert c["result"] == {"order_id": order["id"], "status": "QUEUED_FOR_CANCELLATION"}
        cb = await ws.call("order.cancel_batch", {"order_ids": ["nope"]})
        assert cb["result"]["results"] == [{"id": "nope", "status": "NOT_FOUND"}]
        assert (await ws.call("order.cancel_on_disconnect", {"enabled": True}))["result"] == {"enabled": True}
        placed = (await ws.call("order.create", t.order_body(E, "BUY", "0.1", "2980")))["result"]["order"]
        await ws.next("orders.ALL", where=lambda o: o["id"] == placed["id"] and o["status"] == "OPEN")
    # cancel-on-disconnect: the connection closed, every open order goes
    for _ in range(100):
        if not (await t.get("/orders")).body["results"]:
            break
        await asyncio.sleep(0.02)
    assert (await t.get("/orders")).body["results"] == []


async def test_simulator_as_a_process(sim_process):
    with sim_process("--flow-rate", "200", "--synthetic-markets", "2", "--seed", "7") as proc:
        assert proc.ports["rest_port"] and proc.rest_url.startswith("http://127.0.0.1:")
        async with AdminClient(proc.admin_url) as admin:
            assert (await admin.health())["ok"] is True
            await asyncio.sleep(0.5)
            stats = await admin.stats()
            assert stats["flow"]["running"] and stats["flow"]["events"] > 20
            assert len(stats["book_seq"]) == 5
        async with SimWs(proc.ws_url) as ws:
            await ws.subscribe("trades.ALL")
            note = await ws.next("trades.ALL", timeout=5)
            assert note["trade_type"] == "FILL"
        trader = await SimTrader(proc.rest_url).login()
        await trader.close()
    assert proc.proc.returncode == 0
    assert json.loads(json.dumps(proc.ports))["ws_url"].startswith("ws://")


async def test_hostile_inputs_get_4xx_never_5xx(sim, sim_trader):
    t = sim_trader
    base = t.order_body(E, "BUY", "0.1", "3000")
    overrides = [
        {"price": "1e60"}, {"price": "3" + "0" * 80}, {"signature_timestamp": 2**300}, {"signature_timestamp": -1},
        {"size": "NaN"}, {"size": "-1"}, {"size": "1e-30"}, {"price": "Infinity"}, {"client_id": {"a": 1}},
        {"flags": "REDUCE_ONLY"}, {"market": "X" * 100}, {"signature": '["' + "9" * 200 + '","1"]'},
        {"signature": "[1]"}, {"recv_window": -5}, {"recv_window": "abc"}, {"type": None}, {"trigger_price": "5"},
        {"instruction": 5}, {"stp": "X"}, {"price": ["1"]}, {"size": True},
    ]
    for o in overrides:
        r = await t.request("POST", "/orders", json={**base, **o})
        assert 400 <= r.status < 500 and "error" in r.body, (o, r)
    for params in ({"page_size": "abc"}, {"start_at": "x"}, {"cursor": "%%%"}, {"page_size": "0"}):
        r = await t.request("GET", "/trades", params={"market": E, **params})
        assert r.status == 400 and r.body["error"] == "INVALID_REQUEST_PARAMETER", (params, r)
    r = await t.request("GET", f"/orderbook/{E}", params={"price_tick": "1e999999"})
    assert r.status == 400
    r = await t.request("PUT", "/orders/123", json={"id": {"x": 1}})
    assert r.status == 400
    r = await t.request("POST", "/auth", headers={"PARADEX-STARKNET-ACCOUNT": "0x" + "f" * 80}, auth=False)
    assert (r.status, r.body["error"]) == (400, "INVALID_STARKNET_ADDRESS")
    async with SimWs(sim.ws_url) as ws:
        r = await ws.subscribe(f"order_book.{E}.snapshot@15@100ms@1e99999")
        assert r["error"]["code"] == -32602
        r = await ws.call("order.create_batch", {"orders": 5})
        assert r["error"]["code"] == 40300
    assert sim.ctx.problems.counts == {} and sim.exchange.error_count == 0
