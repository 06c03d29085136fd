"""The comparison in isolation: a projection and venue rows in, the correction plan out."""

from __future__ import annotations

import time
from decimal import Decimal

import schemas as s
from bus import msgid
from services.execution.projection import ExecProjection, inferred_trade_id
from services.reconciler.build import EventBuilder
from services.reconciler.compare import PlanContext, Snapshot, plan_corrections
from services.reconciler.instruments import Instruments, Precision
from services.reconciler.mass_status import build_mass_status
from services.reconciler.positions import compare_positions
from services.reconciler.venue import parse_fill, parse_order, parse_position

ACCT = "0xabc"
AID = "PARADEX-0xabc"
MKT = "BTC-USD-PERP"
IID = "BTC-USD-PERP.PARADEX"
U = "097faffb-c29b-4d5f-b7ae-abccd80b3fa4"
OLD = 1_700_000_000_000  # venue ms, far outside any grace window


def builder() -> EventBuilder:
    ins = Instruments()
    ins.by_market[MKT] = Precision(1, 3, "USD")
    return EventBuilder(ACCT, "TRADER-001", ins)


def ctx(grace_ms: int = 0, active: set[str] | None = None, commands: dict | None = None) -> PlanContext:
    return PlanContext(
        builder=builder(),
        grace_ms=grace_ms,
        overlap_ms=300_000,
        recently_active=lambda c: c in (active or set()),
        command=(commands or {}).get,
    )


def vorder(
    oid: str = "9001",
    cid: str = "c1",
    status: str = "OPEN",
    size: str = "1",
    remaining: str | None = None,
    reason: str = "",
    updated: int = OLD,
    avg: str = "",
    price: str = "100.0",
    type_: str = "LIMIT",
) -> dict:
    return {
        "id": oid,
        "client_id": cid,
        "market": MKT,
        "side": "BUY",
        "type": type_,
        "size": size,
        "remaining_size": size if remaining is None else remaining,
        "price": price,
        "avg_fill_price": avg,
        "status": status,
        "cancel_reason": reason,
        "instruction": "GTC",
        "flags": [],
        "trigger_price": "0",
        "created_at": OLD - 1000,
        "last_updated_at": updated,
        "seq_no": 1,
    }


def vfill(fid: str, oid: str = "9001", size: str = "0.4", price: str = "100.0", fill_type: str = "FILL") -> dict:
    return {
        "id": fid,
        "order_id": oid,
        "client_id": "c1",
        "market": MKT,
        "side": "BUY",
        "liquidity": "MAKER",
        "price": price,
        "size": size,
        "fee": "0.01",
        "fee_currency": "USDC",
        "fill_type": fill_type,
        "created_at": OLD,
    }


def head(coid: str = "c1", strategy: str = "S-1") -> dict:
    return {"trader_id": "T-1", "strategy_id": strategy, "instrument_id": IID, "client_order_id": coid}


def init(coid: str = "c1", qty: str = "1.000") -> s.OrderInitialized:
    return s.OrderInitialized(
        **head(coid),
        order_side="BUY",
        order_type="LIMIT",
        quantity=qty,
        time_in_force="GTC",
        options=s.OrderOptions(price="100.0"),
        event_id=U,
        ts_init=1,
        ts_event=1,
    )


def bus(*stages: str, coid: str = "c1", fills: tuple[tuple[str, str], ...] = ()) -> ExecProjection:
    p = ExecProjection()
    p.apply(init(coid))
    if "submitted" in stages:
        p.apply(s.OrderSubmitted(**head(coid), account_id=AID, event_id=U, ts_event=2, ts_init=2))
    if "accepted" in stages:
        p.apply(s.OrderAccepted(**head(coid), venue_order_id="9001", account_id=AID, event_id=U, ts_event=3, ts_init=3))
    for tid, qty in fills:
        p.apply(
            s.OrderFilled(
                **head(coid),
                venue_order_id="9001",
                account_id=AID,
                trade_id=tid,
                order_side="BUY",
                order_type="LIMIT",
                last_qty=qty,
                last_px="100.0",
                currency="USD",
                commission="0.01000000 USDC",
                liquidity_side="MAKER",
                event_id=U,
                ts_event=4,
                ts_init=4,
            )
        )
    if "canceled" in stages:
        p.apply(s.OrderCanceled(**head(coid), venue_order_id="9001", account_id=AID, event_id=U, ts_event=5, ts_init=5))
    return p


def snap(orders: list[dict] = (), fills: list[dict] = (), **kw: object) -> Snapshot:
    return Snapshot(
        now_ms=int(time.time() * 1000),
        open_orders=[parse_order(o) for o in orders if o["status"] != "CLOSED"],
        history=[parse_order(o) for o in orders],
        fills=[parse_fill(f) for f in fills],
        **kw,
    )


def kinds(plan) -> list[str]:
    return [type(ev).__name__ for op in plan.orders for _, ev in op.events]


def fold(proj: ExecProjection, plan) -> ExecProjection:
    for op in plan.orders:
        for _, ev in op.events:
            assert proj.apply(ev).ok, ev
    return proj


def test_submitted_order_open_at_venue_gets_accepted_with_the_routers_msg_id() -> None:
    proj = bus("submitted")
    plan = plan_corrections(proj, snap([vorder()]), ctx())
    assert kinds(plan) == ["OrderAccepted"]
    mid, ev = plan.orders[0].events[0]
    assert mid == msgid.order_event(ACCT, "c1", "OrderAccepted", 0)
    assert ev.venue_order_id == "9001" and ev.strategy_id == "S-1" and ev.reconciliation
    assert fold(proj, plan).order("c1").status == "ACCEPTED"
    assert plan.counts["orders_corrected"] == 1 and not plan.unresolved


def test_cancelled_while_nobody_listened() -> None:
    proj = bus("submitted", "accepted")
    plan = plan_corrections(proj, snap([vorder(status="CLOSED", reason="USER_CANCELED")]), ctx())
    assert kinds(plan) == ["OrderCanceled"]
    assert fold(proj, plan).order("c1").status == "CANCELED"


def test_missing_fills_are_emitted_from_rest_and_duplicates_are_not() -> None:
    proj = bus("submitted", "accepted", fills=(("f1", "0.400"),))
    v = vorder(status="CLOSED", remaining="0", avg="100.0")
    fills = [vfill("f1"), vfill("f2", size="0.6"), vfill("f2", size="0.6")]
    plan = plan_corrections(proj, snap([v], fills), ctx())
    assert kinds(plan) == ["OrderFilled"]
    mid, ev = plan.orders[0].events[0]
    assert mid == msgid.fill(ACCT, "f2") and ev.trade_id == "f2" and ev.last_qty == "0.600"
    assert ev.commission == "0.01000000 USDC" and ev.liquidity_side == "MAKER"
    assert plan.counts["fills_matched"] == 1 and plan.counts["fills_emitted"] == 1
    assert [r.trade_id for r in plan.fill_reports] == ["f2"]
    o = fold(proj, plan).order("c1")
    assert o.status == "FILLED" and o.filled_qty == Decimal("1")


def test_fill_inferred_only_without_a_fill_record() -> None:
    proj = bus("submitted", "accepted")
    v = vorder(status="OPEN", remaining="0.7", avg="100.5")
    plan = plan_corrections(proj, snap([v], []), ctx())
    assert kinds(plan) == ["OrderFilled"]
    _, ev = plan.orders[0].events[0]
    assert ev.trade_id == inferred_trade_id("9001", "0.3") and ev.last_qty == "0.300" and ev.last_px == "100.5"
    assert ev.liquidity_side == "NO_LIQUIDITY_SIDE"
    assert plan.counts["fills_inferred"] == 1
    # With the fill record present, the real fill is used instead.
    plan = plan_corrections(bus("submitted", "accepted"), snap([v], [vfill("f9", size="0.3")]), ctx())
    assert [ev.trade_id for op in plan.orders for _, ev in op.events] == ["f9"]


def test_no_inference_when_fills_before_the_window_were_not_read() -> None:
    proj = bus("submitted", "accepted")
    v = vorder(status="OPEN", remaining="0.7")
    plan = plan_corrections(proj, snap([v], [], fills_since_ms=OLD), ctx())
    assert kinds(plan) == []
    assert plan.counts["fills_not_read"] == 1 and plan.unresolved


def test_order_placed_outside_is_external_with_a_derived_client_order_id() -> None:
    proj = ExecProjection()
    plan = plan_corrections(proj, snap([vorder(oid="777", cid="")]), ctx())
    assert kinds(plan) == ["OrderInitialized", "OrderAccepted"]
    init_ev = plan.orders[0].events[0][1]
    assert init_ev.client_order_id == "EXT-777" and init_ev.strategy_id == "EXTERNAL" and init_ev.tags == ["VENUE"]
    assert plan.counts["external_orders"] == 1
    o = fold(proj, plan).order("EXT-777")
    assert o.is_open and o.external and proj.by_venue("777").client_order_id == "EXT-777"
    # Once on the bus, the next comparison matches.
    again = plan_corrections(proj, snap([vorder(oid="777", cid="")]), ctx())
    assert kinds(again) == [] and again.counts["orders_matched"] == 1


def test_router_killed_mid_submit_uses_the_strategys_own_order_from_cmd() -> None:
    proj = ExecProjection()
    cmd_init = init("c7")
    plan = plan_corrections(proj, snap([vorder(cid="c7")]), ctx(commands={"c7": cmd_init}))
    assert kinds(plan) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
    assert plan.orders[0].events[0][1] is cmd_init or plan.orders[0].events[0][1] == cmd_init
    assert plan.orders[0].origin == "command"
    assert fold(proj, plan).order("c7").strategy_id == "S-1"


def test_risk_rejection_before_accept() -> None:
    proj = bus("submitted")
    plan = plan_corrections(proj, snap([vorder(status="CLOSED", reason="NOT_ENOUGH_MARGIN")]), ctx())
    assert kinds(plan) == ["OrderRejected"]
    assert plan.orders[0].events[0][1].reason == "NOT_ENOUGH_MARGIN"


def test_rest_failure_is_unknown_never_missing() -> None:
    proj = bus("submitted", "accepted")
    sn = Snapshot(now_ms=int(time.time() * 1000), open_orders=None, history=None, fills=None)
    sn.lookup_unknown.add("c1")
    plan = plan_corrections(proj, sn, ctx())
    assert kinds(plan) == [] and plan.counts["orders_unknown"] == 1
    assert any("unknown" in u for u in plan.unresolved)
    # Definitely absent at the venue: still nothing closed, only reported.
    sn2 = Snapshot(now_ms=int(time.time() * 1000), open_orders=[], history=[], fills=[])
    sn2.lookup_missing.add("c1")
    plan2 = plan_corrections(proj, sn2, ctx())
    assert kinds(plan2) == [] and plan2.counts["orders_missing"] == 1


def test_recent_changes_are_deferred() -> None:
    proj = bus("submitted", "accepted")
    v = vorder(status="CLOSED", reason="USER_CANCELED", updated=int(time.time() * 1000))
    plan = plan_corrections(proj, snap([v]), ctx(grace_ms=5000))
    assert kinds(plan) == [] and plan.counts["deferred"] == 1 and plan.follow_up
    plan = plan_corrections(
        proj, snap([vorder(status="CLOSED", reason="USER_CANCELED")]), ctx(active={"c1"}, grace_ms=5000)
    )
    assert kinds(plan) == [] and plan.counts["deferred"] == 1


def test_closed_on_the_bus_open_at_the_venue_is_unresolved() -> None:
    proj = bus("submitted", "accepted", "canceled")
    plan = plan_corrections(proj, snap([vorder()]), ctx())
    assert kinds(plan) == [] and plan.counts["closed_on_bus_open_at_venue"] == 1


def test_non_trade_rows_are_not_fills() -> None:
    proj = bus("submitted", "accepted")
    plan = plan_corrections(proj, snap([vorder()], [vfill("x1", fill_type="FUNDING")]), ctx())
    assert kinds(plan) == [] and plan.counts["fill_type_unknown"] == 1


def test_modify_is_applied_before_fills() -> None:
    proj = bus("submitted", "accepted")
    v = vorder(status="CLOSED", size="2", remaining="0")
    plan = plan_corrections(proj, snap([v], [vfill("f1", size="1"), vfill("f2", size="1")]), ctx())
    assert kinds(plan) == ["OrderUpdated", "OrderFilled", "OrderFilled"]
    assert plan.orders[0].events[0][0] == msgid.order_event(ACCT, "c1", "OrderUpdated", OLD)
    o = fold(proj, plan).order("c1")
    assert o.status == "FILLED" and o.quantity == Decimal("2")


def test_positions_compare_net_quantity() -> None:
    proj = bus("submitted", "accepted", fills=(("f1", "0.400"),))
    same = parse_position({"market": MKT, "size": "0.4", "status": "OPEN", "average_entry_price": "100"})
    assert compare_positions(proj, [same]).matched == [MKT]
    short = parse_position({"market": MKT, "size": "-0.4", "status": "OPEN", "average_entry_price": "100"})
    check = compare_positions(proj, [short])
    assert check.mismatched == [(MKT, Decimal("-0.4"), Decimal("0.400"))]
    assert compare_positions(proj, []).mismatched  # venue flat, bus long


def test_stop_order_triggered_and_filled_while_nobody_listened() -> None:
    proj = bus("submitted", "accepted")
    v = vorder(status="OPEN", remaining="0.7", type_="STOP_LIMIT")
    plan = plan_corrections(proj, snap([v], [vfill("s1", size="0.3")]), ctx())
    assert kinds(plan) == ["OrderTriggered", "OrderFilled"]
    assert fold(proj, plan).order("c1").status == "PARTIALLY_FILLED"


def test_external_order_filled_and_closed_before_anyone_saw_it() -> None:
    proj = ExecProjection()
    v = vorder(oid="555", cid="", status="CLOSED", remaining="0")
    plan = plan_corrections(proj, snap([v], [vfill("e1", oid="555", size="1")]), ctx())
    assert kinds(plan) == ["OrderInitialized", "OrderAccepted", "OrderFilled"]
    o = fold(proj, plan).order("EXT-555")
    assert o.status == "FILLED" and o.external and proj.positions[IID].net_qty == Decimal("1")


def test_late_accept_after_a_pending_cancel_then_cancel() -> None:
    proj = bus("submitted")
    proj.apply(s.OrderPendingCancel(**head(), event_id=U, ts_event=3, ts_init=3))
    plan = plan_corrections(proj, snap([vorder(status="CLOSED", reason="USER_CANCELED")]), ctx())
    assert kinds(plan) == ["OrderAccepted", "OrderCanceled"]
    assert fold(proj, plan).order("c1").status == "CANCELED"


def test_mass_status_stays_under_the_payload_cap_and_counts_what_it_leaves_out() -> None:
    proj = ExecProjection()
    orders = [vorder(oid=str(7000 + i), cid="", status="CLOSED", remaining="0") for i in range(200)]
    fills = [vfill(f"m{i}", oid=str(7000 + i), size="1") for i in range(200)]
    sn = snap([*orders, vorder(oid="8000", cid="")], fills)
    plan = plan_corrections(proj, sn, ctx())
    ms, omitted = build_mass_status(builder(), U, sn, plan, [], max_bytes=20_000)
    assert len(s.encode(ms)) <= 20_000
    assert "8000" in ms.order_reports  # open orders go in first
    assert omitted["fills"] + sum(len(v) for v in ms.fill_reports.values()) == 200
    full, none_left = build_mass_status(builder(), U, sn, plan, [], max_bytes=900_000)
    assert not none_left and sum(len(v) for v in full.fill_reports.values()) == 200
