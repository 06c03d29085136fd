"""Every admin fault, triggered and observed from a client's side."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from services.paradex_sim.admin_client import AdminError
from services.paradex_sim.testclient import SimWs

E = "ETH-USD-PERP"


async def test_drop_all_ws_connections(sim, sim_admin):
    async with SimWs(sim.ws_url) as a, SimWs(sim.ws_url) as b:
        await a.subscribe("markets")
        await b.subscribe("markets")
        assert await sim_admin.drop_ws("abort") == 2
        await asyncio.wait_for(a.closed.wait(), 3)
        await asyncio.wait_for(b.closed.wait(), 3)
    async with SimWs(sim.ws_url) as c:  # reconnecting works
        await c.subscribe("markets")
        assert await sim_admin.drop_ws("close") == 1
        await asyncio.wait_for(c.closed.wait(), 3)
        assert c.ws.close_code == 1011


async def test_stale_channel_keeps_connection_open(sim, sim_admin):
    async with SimWs(sim.ws_url) as ws:
        await ws.subscribe(f"trades.{E}")
        await ws.subscribe(f"bbo.{E}")
        fault = await sim_admin.stale_channel(f"trades.{E}", duration_s=30)
        await sim_admin.mm_order(E, "SELL", "1", "3500")
        await sim_admin.cross(E, "BUY", "0.2", "3500")
        await ws.next(f"bbo.{E}", where=lambda b: b["ask_size"] == "0.8")
        await asyncio.sleep(0.1)
        assert not ws.notes[f"trades.{E}"] and not ws.closed.is_set()
        assert (await sim_admin.faults())[0]["fired"] >= 1
        await sim_admin.remove_fault(fault["id"])
        await sim_admin.cross(E, "BUY", "0.1", "3500")
        assert (await ws.next(f"trades.{E}"))["size"] == "0.1"


async def test_skip_and_duplicate_book_seq(sim, sim_admin):
    ch = f"order_book.{E}.deltas"
    async with SimWs(sim.ws_url) as ws:
        await ws.subscribe(ch)
        s = await ws.next(ch)
        await sim_admin.skip_book_seq(E, count=1)
        await sim_admin.mm_order(E, "SELL", "1", "3500")  # this delta is not sent
        await sim_admin.mm_order(E, "SELL", "1", "3501")
        d = await ws.next(ch)
        assert d["seq_no"] == s["seq_no"] + 2  # gap
        await sim_admin.dup_book_seq(E, count=1)
        await sim_admin.mm_order(E, "SELL", "1", "3502")
        d1, d2 = await ws.next(ch), await ws.next(ch)
        assert d1 == d2 and d1["seq_no"] == d["seq_no"] + 1


@pytest.mark.parametrize("channel", ["orders", "fills"])
async def test_drop_and_duplicate_private_messages(sim, sim_trader, sim_admin, channel):
    t = sim_trader
    async with SimWs(sim.ws_url) as ws:
        await ws.call("auth", {"bearer": t.jwt})
        await ws.subscribe(f"{channel}.ALL")
        await sim_admin.mm_order(E, "SELL", "1", "3500")
        await sim_admin.drop_private(channel, account=t.address, count=1)
        r1 = await t.place(E, "BUY", "0.1", "3500")
        await sim_admin.dup_private(channel, account=t.address, count=1)
        r2 = await t.place(E, "BUY", "0.2", "3500")
        key = "order_id" if channel == "fills" else "id"
        await ws.wait_for(lambda: any(n["params"]["data"][key] == r2.body["id"] for n in ws.notes[f"{channel}.ALL"]))
        await asyncio.sleep(0.1)
        got = [n["params"]["data"] for n in ws.notes[f"{channel}.ALL"]]
        first = [m for m in got if m[key] == r1.body["id"]]
        second = [m for m in got if m[key] == r2.body["id"]]
        if channel == "fills":
            assert first == [] and len(second) == 2 and second[0] == second[1]
        else:  # NEW dropped for the first order; NEW duplicated for the second
            assert [m["status"] for m in first] == ["CLOSED"]
            assert [m["status"] for m in second] == ["NEW", "NEW", "CLOSED"]
        # the truth is intact over REST
        assert len((await t.get("/fills")).body["results"]) == 2


async def test_rest_delay_and_errors(sim, sim_trader, sim_admin):
    t = sim_trader
    await sim_admin.rest_delay("/system/time", 300, count=1)
    start = time.monotonic()
    assert (await t.get("/system/time")).status == 200
    assert time.monotonic() - start >= 0.3
    for status, code in ((500, "INTERNAL_ERROR"), (503, "SERVICE_UNAVAILABLE"), (429, "RATE_LIMIT_EXCEEDED")):
        await sim_admin.rest_error("/orders", status=status, method="POST", count=1)
        r = await t.place(E, "BUY", "0.1", "3000")
        assert (r.status, r.body["error"]) == (status, code)
    assert (await t.get("/orders")).body["results"] == []  # none of them took effect
    assert (await t.place(E, "BUY", "0.1", "3000")).status == 201  # count exhausted


async def test_rest_timeout_has_no_effect(sim, sim_trader, sim_admin):
    t = sim_trader
    await sim_admin.rest_timeout("/orders", seconds=1.5, method="POST", count=1)
    body = t.order_body(E, "BUY", "0.1", "3000")
    async with aiohttp.ClientSession() as s:
        with pytest.raises(TimeoutError):
            async with s.post(t.rest_url + "/orders", json=body, headers={"Authorization": f"Bearer {t.jwt}"},
                              timeout=aiohttp.ClientTimeout(total=0.3)):
                pass
    await asyncio.sleep(1.4)
    assert (await t.get("/orders")).body["results"] == []


async def test_lost_reply_order_is_placed(sim, sim_trader, sim_admin):
    t = sim_trader
    await sim_admin.rest_lost_reply("/orders", mode="drop", method="POST")
    with pytest.raises(aiohttp.ClientError):
        await t.place(E, "BUY", "0.1", "3000", client_id="lost-1")
    await sim_admin.rest_lost_reply("/orders", mode="status", status=504, method="POST")
    r = await t.place(E, "BUY", "0.1", "3001", client_id="lost-2")
    assert r.status == 504
    await asyncio.sleep(0.05)
    open_cids = sorted(o["client_id"] for o in (await t.get("/orders")).body["results"])
    assert open_cids == ["lost-1", "lost-2"]


async def test_system_state_switches(sim, sim_trader, sim_admin):
    t = sim_trader
    resting = await t.place(E, "BUY", "0.1", "3000")
    await sim_admin.set_state("maintenance")
    assert (await t.get("/system/state")).body == {"status": "maintenance"}
    r = await t.place(E, "BUY", "0.1", "3000")
    assert (r.status, r.body["error"]) == (503, "SERVICE_UNAVAILABLE")
    await sim_admin.set_state("cancel_only")
    r = await t.place(E, "BUY", "0.1", "3000")
    assert (r.status, r.body["error"]) == (400, "SYSTEM_STATUS_CANCEL_ONLY")
    assert (await t.cancel(resting.body["id"])).status == 204
    await sim_admin.set_state("post_only", duration_s=0.3)
    r = await t.place(E, "BUY", "0.1", "3000")
    assert (r.status, r.body["error"]) == (400, "SYSTEM_STATUS_POST_ONLY")
    assert (await t.place(E, "BUY", "0.1", "3000", instruction="POST_ONLY")).status == 201
    await asyncio.sleep(0.45)
    assert (await t.get("/system/state")).body == {"status": "ok"}
    assert (await t.place(E, "BUY", "0.1", "3000")).status == 201
    with pytest.raises(AdminError):
        await sim_admin.set_state("broken")


async def test_order_from_outside(sim, sim_trader, sim_admin):
    t = sim_trader
    async with SimWs(sim.ws_url) as ws:
        await ws.call("auth", {"bearer": t.jwt})
        await ws.subscribe(f"orders.{E}")
        placed = await sim_admin.outside_order(t.address, E, "SELL", "0.2", "3900", client_id="ui-1")
        note = await ws.next(f"orders.{E}", where=lambda o: o["status"] == "OPEN")
        assert note["id"] == placed["id"] and note["client_id"] == "ui-1"
    assert [o["id"] for o in (await t.get("/orders")).body["results"]] == [placed["id"]]


async def test_ws_reject(sim, sim_admin):
    await sim_admin.ws_reject(count=1)
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await s.ws_connect(sim.ws_url)
        assert exc.value.status == 503
    async with SimWs(sim.ws_url) as ws:
        assert (await ws.subscribe("markets"))["result"] == {"channel": "markets"}


async def test_fault_validation(sim_admin):
    for bad in ({"kind": "nope"}, {"kind": "ws_stale"}, {"kind": "rest_error", "path": "/x", "status": 404},
                {"kind": "private_drop", "channel": "positions"}):
        with pytest.raises(AdminError) as exc:
            await sim_admin._req("POST", "/faults", bad)
        assert exc.value.status == 400
