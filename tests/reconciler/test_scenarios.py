"""Scenarios against the real simulator, signer, nats-server and reconciler process; each ends with
the EXEC-derived state equal to the venue's ground truth."""

from __future__ import annotations

import asyncio

import schemas as s
from bus import subjects
from bus.replay import last_message
from services.reconciler.state import Watermarks
from tests.reconciler.conftest import ReconStack


async def test_startup_mass_status_and_external_order(recon: ReconStack) -> None:
    ext = await recon.place("BUY", "0.01", "60000")  # placed from the web UI: no client id
    named = await recon.place("SELL", "0.02", "70000", client_id="web-ui-1")
    await recon.wait_venue(ext["id"], "OPEN")
    marker = await recon.start_reconciler()
    assert marker.ok and marker.mass_status_seq > 0
    ms = await last_message(recon.js, "EXEC", subjects.exec_report(recon.account, "mass_status"))
    assert isinstance(ms, s.ExecutionMassStatus)
    assert set(ms.order_reports) == {ext["id"], named["id"]}
    assert ms.order_reports[ext["id"]].client_order_id == f"EXT-{ext['id']}"
    proj = await recon.assert_converged()
    o = proj.order(f"EXT-{ext['id']}")
    assert o.strategy_id == "EXTERNAL" and o.status == "ACCEPTED" and o.external
    assert proj.order("web-ui-1").strategy_id == "EXTERNAL"
    sm = await last_message(recon.js, "EXEC", subjects.exec_report(recon.account, "reconciliation"))
    assert isinstance(sm, s.ReconciliationSummary) and sm.trigger == "startup" and sm.ok
    assert sm.counts["external_orders"] == 2 and sm.rest_calls > 0
    await asyncio.sleep(0)


async def _accepted_order(recon: ReconStack, coid: str, side: str, size: str, price: str) -> dict:
    """An order the router placed and saw accepted (its events on the bus, the order at the venue)."""
    await recon.router.submit(coid, side, size, price)
    v = await recon.place(side, size, price, client_id=coid)
    await recon.wait_venue(v["id"], "OPEN")
    await recon.router.accepted(coid, v["id"])
    return v


async def test_order_known_only_to_cmd_and_the_venue(recon: ReconStack) -> None:
    """What a router killed mid-submit can leave behind (the real router's crash points are in
    test_with_router.py): (1) the command consumed, the order placed, no event on EXEC at all;
    (2) OrderInitialized/OrderSubmitted stored, the venue's reply lost, and the order filled since."""
    init = recon.router.initialized("c-kill1", "BUY", "0.01", "64950")
    await recon.router.command(init)
    v1 = await recon.place("BUY", "0.01", "64950", client_id="c-kill1")
    await recon.router.submit("c-kill2", "SELL", "0.01", "65050")
    v2 = await recon.place("SELL", "0.01", "65050", client_id="c-kill2")
    await recon.wait_venue(v2["id"], "OPEN")
    await recon.admin.cross("BTC-USD-PERP", "BUY", "0.01", "65050")
    await recon.wait_venue(v1["id"], "OPEN")
    await asyncio.sleep(0.4)
    marker = await recon.start_reconciler()
    assert marker.ok
    proj = await recon.assert_converged()
    o1, o2 = proj.order("c-kill1"), proj.order("c-kill2")
    assert o1.strategy_id == "MM-001" and o1.status == "ACCEPTED" and not o1.external
    assert o1.history[:3] == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
    assert o2.status == "FILLED" and o2.strategy_id == "MM-001"
    # The strategy's own OrderInitialized went on EXEC (same event id as in the command).
    counts = await recon.exec_counts()
    assert counts[subjects.exec_order(recon.account, "c-kill1")] == 3


async def test_funding_payments_are_not_fills(recon: ReconStack) -> None:
    v = await _accepted_order(recon, "c-fund", "BUY", "0.01", "64990")
    await recon.admin.cross("BTC-USD-PERP", "SELL", "0.01", "64990")
    truth = await recon.truth()
    await recon.router.filled("c-fund", next(f for f in truth["fills"] if f["order_id"] == v["id"]))
    await recon.admin.funding("BTC-USD-PERP", rate="0.001", accrue_seconds=3600, settle=True)
    truth = await recon.truth()
    assert truth["funding_payments"], "the simulator settled no funding"
    await recon.start_reconciler()
    sm = await recon.reconcile()
    assert sm.ok, sm.unresolved
    assert sm.counts["funding_payments_seen"] >= 1
    assert not sm.counts.get("fills_emitted") and not sm.counts.get("fills_inferred")
    assert sm.counts["positions_matched"] == 1
    proj = await recon.assert_converged()
    assert sum(len(o.trade_ids) for o in proj.orders.values()) == 1


async def test_rest_failing_during_a_run_closes_nothing(recon: ReconStack) -> None:
    v = await _accepted_order(recon, "c-rest", "BUY", "0.01", "64900")
    await recon.start_reconciler(RECON_REST_TIMEOUT_S="1")
    await recon.cancel(v["id"])  # the bus is now behind the venue
    await recon.wait_venue(v["id"], "CLOSED")
    await asyncio.sleep(0.4)
    for path in ("/orders", "/orders-history", "/orders/*"):
        await recon.admin.rest_error(path, status=503, method="GET", count=None, duration_s=30)
    await recon.admin.rest_error("/fills", status=429, method="GET", count=None, duration_s=30)
    await recon.admin.rest_timeout("/positions", seconds=3, method="GET", count=None, duration_s=30)
    sm = await recon.reconcile()
    assert not sm.ok
    assert any("unknown" in u for u in sm.unresolved), sm.unresolved
    assert sm.counts["positions_unknown"] == 1 and sm.counts["orders_unknown"] == 1
    proj = await recon.projection()
    assert proj.order("c-rest").status == "ACCEPTED"  # unknown is never "missing": nothing closed
    assert not sm.counts.get("orders_corrected")
    await recon.admin.clear_faults()
    sm = await recon.reconcile()
    assert sm.ok, sm.unresolved
    proj = await recon.assert_converged()
    assert proj.order("c-rest").status == "CANCELED"


async def test_restart_does_not_re_emit(recon: ReconStack) -> None:
    await _accepted_order(recon, "c-r1", "BUY", "0.01", "64990")
    ext = await recon.place("SELL", "0.01", "66000")
    await recon.admin.cross("BTC-USD-PERP", "SELL", "0.01", "64990")
    await asyncio.sleep(0.4)
    await recon.start_reconciler()
    await recon.assert_converged()
    before = await recon.exec_counts()
    recon.recon.kill()  # a crash, not a graceful stop
    await recon.start_reconciler()
    sm = await recon.reconcile()
    assert sm.ok and not sm.counts.get("events_published")
    after = await recon.exec_counts()
    wm = await Watermarks.open(recon.js, recon.account)
    assert await wm.get("fills") is not None and await wm.get("orders") is not None
    changed = {k: (before.get(k, 0), v) for k, v in after.items() if before.get(k, 0) != v}
    kinds = {k.rsplit(".", 1)[-1] for k in changed}
    assert kinds <= {"mass_status", "reconciliation"}, changed
    assert after[subjects.exec_order(recon.account, f"EXT-{ext['id']}")] == 2


async def test_position_mismatch_is_reported_not_papered_over(recon: ReconStack) -> None:
    v = await recon.place("BUY", "0.01", "64990", client_id="old-1")
    await recon.admin.cross("BTC-USD-PERP", "SELL", "0.01", "64990")
    await recon.wait_venue(v["id"], "CLOSED")
    await asyncio.sleep(1.2)
    # A first start with a lookback too short for that fill (the default reads the whole history).
    marker = await recon.start_reconciler(RECON_INITIAL_LOOKBACK_S="1")
    assert not marker.ok
    sm = await last_message(recon.js, "EXEC", subjects.exec_report(recon.account, "reconciliation"))
    assert sm.counts["position_mismatch"] == 1 and not sm.counts.get("fills_inferred")
    assert any(u.startswith("position BTC-USD-PERP: venue 0.01, bus 0") for u in sm.unresolved), sm.unresolved
    health = await recon.recon.wait_healthy(recon.nc, "reconciler", "Degraded", timeout=10)
    assert health.details["position_mismatch"] == "1"
    assert health.counters["problems_total{kind=position_mismatch}"] >= 1
    proj = await recon.projection()
    assert not proj.orders and not proj.positions  # nothing synthetic was published
