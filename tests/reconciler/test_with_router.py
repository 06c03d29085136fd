"""Scenarios with the real order router process beside the reconciler (and the real signer,
simulator and nats-server): whichever of the two publishes a venue fact, it is stored once, and the
EXEC-derived state ends equal to the venue's."""

from __future__ import annotations

import asyncio

import schemas as s
from bus import subjects
from tests.reconciler.conftest import MKT, ReconStack


async def _rest(recon: ReconStack, coid: str, side: str, size: str, price: str) -> str:
    """Submit through the router and wait until the order rests; returns its venue order id."""
    cmd = recon.trader.limit(MKT, side, size, price, client_order_id=coid)
    events = await recon.trader.submit(cmd, until="rest", timeout=15)
    acc = [e for e in events if isinstance(e, s.OrderAccepted)]
    assert acc, [type(e).__name__ for e in events]
    return acc[0].venue_order_id


async def _fills_of(recon: ReconStack, coid: str) -> tuple[int, int]:
    counts = await recon.exec_counts()
    proj = await recon.projection()
    return len(proj.order(coid).trade_ids), counts.get(subjects.exec_order(recon.account, coid), 0)


async def test_fills_dropped_from_the_private_stream(recon: ReconStack) -> None:
    await recon.start_reconciler()
    await recon.start_router()
    vid = await _rest(recon, "rt-drop", "BUY", "0.01", "64990")
    await recon.admin.drop_private("fills", account=recon.account, count=None, duration_s=30)
    await recon.admin.drop_private("orders", account=recon.account, count=None, duration_s=30)
    await recon.admin.cross(MKT, "SELL", "0.004", "64990")
    await recon.admin.cross(MKT, "SELL", "0.006", "64990")
    await recon.wait_venue(vid, "CLOSED")
    await asyncio.sleep(0.5)
    proj = await recon.projection()
    assert not proj.order("rt-drop").trade_ids  # the router heard nothing
    sm = await recon.reconcile()
    assert sm.ok, sm.unresolved
    assert sm.counts["fills_emitted"] == 2
    proj = await recon.assert_converged()
    assert proj.order("rt-drop").status == "FILLED" and proj.order("rt-drop").strategy_id == "MM-001"


async def test_duplicate_fills_from_ws_and_rest_are_stored_once(recon: ReconStack) -> None:
    await recon.start_reconciler()
    await recon.start_router()
    vid = await _rest(recon, "rt-dup", "SELL", "0.02", "65010")
    await recon.admin.dup_private("fills", account=recon.account, count=None, duration_s=30)
    await recon.admin.cross(MKT, "BUY", "0.01", "65010")
    await recon.admin.cross(MKT, "BUY", "0.01", "65010")
    await recon.wait_venue(vid, "CLOSED")
    # The reconciler reads the same fills from REST while the router publishes them from the WS
    # (each twice): one stored message per fill, whoever came first.
    answers = await asyncio.gather(recon.reconcile("a"), recon.reconcile("b"))
    assert all(a.ok for a in answers), [a.unresolved for a in answers]
    await asyncio.sleep(1.0)
    proj = await recon.assert_converged()
    assert proj.order("rt-dup").status == "FILLED"
    fills, stored = await _fills_of(recon, "rt-dup")
    assert fills == 2
    assert stored == 3 + 2  # OrderInitialized, OrderSubmitted, OrderAccepted + one per venue fill


async def test_orders_cancelled_and_filled_while_the_router_was_down(recon: ReconStack) -> None:
    await recon.start_reconciler()
    await recon.start_router()
    a = await _rest(recon, "rt-a", "BUY", "0.01", "64900")
    b = await _rest(recon, "rt-b", "SELL", "0.02", "65100")
    await _rest(recon, "rt-c", "BUY", "0.01", "64800")
    recon.router_proc.kill()
    await recon.cancel(a)
    await recon.admin.cross(MKT, "BUY", "0.02", "65100")  # fills b
    await recon.admin.cross(MKT, "SELL", "0.004", "64800")  # fills c partially
    await recon.wait_venue(a, "CLOSED")
    await recon.wait_venue(b, "CLOSED")
    await asyncio.sleep(0.5)
    sm = await recon.reconcile()
    assert sm.ok, sm.unresolved
    assert sm.counts["orders_corrected"] == 3
    proj = await recon.assert_converged()
    assert [proj.order(x).status for x in ("rt-a", "rt-b", "rt-c")] == ["CANCELED", "FILLED", "PARTIALLY_FILLED"]
    before = await recon.exec_counts()
    # The router comes back, rebuilds from EXEC and asks for a reconciliation: nothing is doubled.
    await recon.start_router()
    await asyncio.sleep(1.5)
    after = await recon.exec_counts()
    for coid in ("rt-a", "rt-b", "rt-c"):
        subj = subjects.exec_order(recon.account, coid)
        assert after[subj] == before[subj], (coid, before[subj], after[subj])
    await recon.assert_converged()


async def test_router_killed_mid_submit(recon: ReconStack) -> None:
    await recon.start_reconciler()
    await recon.start_router(ROUTER_TEST_CRASH_AT="after_submit", ROUTER_TEST_CRASH_COID="rt-kill")
    cmd = recon.trader.limit(MKT, "BUY", "0.01", "64950", client_order_id="rt-kill1")
    await recon.trader.send(cmd)
    for _ in range(100):
        if not recon.router_proc.alive:
            break
        await asyncio.sleep(0.1)
    assert not recon.router_proc.alive, "the router did not crash at its test crash point"
    truth = await recon.truth()
    placed = [o for o in truth["orders"] if o["client_id"] == "rt-kill1"]
    assert len(placed) == 1
    await recon.wait_venue(placed[0]["id"], "OPEN")
    await asyncio.sleep(0.5)
    sm = await recon.reconcile()
    assert sm.ok, sm.unresolved
    assert sm.counts["emit_OrderAccepted"] == 1  # the reconciler, not the (dead) router, settled it
    proj = await recon.assert_converged()
    o = proj.order("rt-kill1")
    assert o.status == "ACCEPTED" and o.strategy_id == "MM-001" and not o.external
    # A replacement router resolves its in-flight command against the venue: no second order, and
    # the events the reconciler already stored are not stored again.
    before = await recon.exec_counts()
    await recon.start_router()
    await asyncio.sleep(2.0)
    truth = await recon.truth()
    assert len([x for x in truth["orders"] if x["client_id"] == "rt-kill1"]) == 1
    after = await recon.exec_counts()
    subj = subjects.exec_order(recon.account, "rt-kill1")
    assert after[subj] == before[subj]
    await recon.assert_converged()
