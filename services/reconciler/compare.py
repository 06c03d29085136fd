"""The comparison: venue truth (a ``Snapshot`` of REST reads) against the ``EXEC`` projection, and
the plan of corrective events that brings the bus to the venue's state. Pure and synchronous: no
I/O, so the projection cannot change under it and every decision is unit-testable.

For each venue order (open list, history since the watermark, single-order lookups, and every
order a fill since the watermark belongs to):

1. resolve its client order id: the venue ``client_id`` when the bus knows that order (and not as a
   different venue order), else the bus's venue-order-id index, else a ``SubmitOrder`` of ours in
   ``CMD`` whose events never reached ``EXEC`` (router killed mid-submit), else an external order
   (``EXTERNAL``; the venue client id if usable, else ``EXT-<venue order id>``);
2. emit what the bus lacks, in lifecycle order, each event checked against a scratch copy of the
   order's state machine (the shared ``ExecProjection``) so only legal transitions go out:
   OrderInitialized (from the command, or as external) → OrderSubmitted → OrderAccepted |
   OrderRejected → OrderUpdated (size/price changed by a modify) → OrderTriggered → OrderFilled for
   every venue fill whose trade id no order on the bus carries → an inferred OrderFilled only when
   the venue's ``filled_qty`` exceeds every fill record read (the fills reach back to the order's
   creation) → OrderCanceled / OrderExpired when the venue closed it;
3. anything that cannot be made equal by copying venue-confirmed facts is *unresolved*: an order
   open at the venue but closed on the bus, more filled on the bus than at the venue, an order the
   bus holds open that the venue lookup could not answer (network error, 5xx, 429 = unknown) or does
   not know. Nothing is ever cancelled, rejected or closed by inference.

Orders the venue or the bus changed within the grace window are left for the next run (the router
is probably publishing the same facts right now); they are counted as deferred and hold the
watermarks back so they are read again.
"""

from __future__ import annotations

import copy
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import schemas as s
from bus import msgid
from bus.msgid import event_uuid
from services.execution.projection import (
    ACCEPTED,
    INITIALIZED,
    PARTIALLY_FILLED,
    PENDING_CANCEL,
    PENDING_UPDATE,
    SUBMITTED,
    TRIGGERED,
    ExecProjection,
    OrderView,
    inferred_trade_id,
)
from services.reconciler.build import (
    CANCELED,
    EXPIRED,
    EXTERNAL_STRATEGY,
    FILLED,
    REJECTED,
    EventBuilder,
    OrderIdentity,
    closed_kind,
    external_client_order_id,
    nautilus_type,
    valid_client_order_id,
)
from services.reconciler.venue import (
    NEW,
    OPEN,
    TRADE_FILL_TYPES,
    TRIGGER_ORDER_TYPES,
    ZERO,
    VenueFill,
    VenueOrder,
    VenuePosition,
)

INFERRED_PREFIX = "INF-"
# Statuses from which an OrderAccepted the bus never got may still be stored (a late accept after a
# pending request, a trigger or a fill changes nothing but records the venue order id), as the
# router does.
ACCEPTABLE = frozenset({INITIALIZED, SUBMITTED, PENDING_UPDATE, PENDING_CANCEL, TRIGGERED, PARTIALLY_FILLED})


@dataclass
class Snapshot:
    """What one run read from the venue. ``None`` means the read failed (unknown), never "empty"."""

    now_ms: int
    open_orders: list[VenueOrder] | None = None
    history: list[VenueOrder] | None = None
    fills: list[VenueFill] | None = None
    fills_since_ms: int | None = None  # fills before this were not read (None = the whole history)
    lookups: dict[str, VenueOrder] = field(default_factory=dict)  # venue order id -> order
    lookup_unknown: set[str] = field(default_factory=set)  # client order ids / venue ids: lookup failed
    lookup_missing: set[str] = field(default_factory=set)  # client order ids / venue ids: venue says no such order
    extra_fills: list[VenueFill] = field(default_factory=list)  # targeted reads further back
    fills_complete_since: dict[str, int] = field(default_factory=dict)  # market -> earliest ms read by targeted reads
    positions: list[VenuePosition] | None = None


@dataclass
class OrderPlan:
    client_order_id: str
    venue: VenueOrder
    origin: str  # "bus" | "command" | "external"
    events: list[tuple[str, Any]] = field(default_factory=list)  # (Nats-Msg-Id, event)
    closed_kind: str | None = None


@dataclass
class Plan:
    orders: list[OrderPlan] = field(default_factory=list)
    fill_reports: list[s.FillReport] = field(default_factory=list)
    order_reports: list[s.OrderStatusReport] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    unresolved: list[str] = field(default_factory=list)
    problems: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    confirmed_fill_ids: set[str] = field(default_factory=set)
    hold_fills_ms: int | None = None  # the fills watermark must not pass this
    hold_orders_ms: int | None = None  # the orders watermark must not pass this
    clients: dict[str, str] = field(default_factory=dict)  # venue order id -> client order id
    follow_up: bool = False  # something was deferred: run again after the grace window

    def problem(self, kind: str, **ctx: object) -> None:
        self.counts[kind] += 1
        self.problems.append((kind, ctx))

    def unresolve(self, kind: str, text: str, **ctx: object) -> None:
        self.counts["unresolved"] += 1
        self.unresolved.append(text)
        self.problem(kind, **ctx)

    def hold_fills(self, ms: int) -> None:
        self.hold_fills_ms = ms if self.hold_fills_ms is None else min(self.hold_fills_ms, ms)

    def hold_orders(self, ms: int) -> None:
        self.hold_orders_ms = ms if self.hold_orders_ms is None else min(self.hold_orders_ms, ms)

    @property
    def event_count(self) -> int:
        return sum(len(p.events) for p in self.orders)

    def merge(self, other: Plan) -> None:
        """Take over an order's sub-plan (what ``plan_order`` found for one venue order)."""
        self.orders.extend(other.orders)
        self.fill_reports.extend(other.fill_reports)
        self.order_reports.extend(other.order_reports)
        self.counts.update(other.counts)
        self.unresolved.extend(other.unresolved)
        self.problems.extend(other.problems)
        self.confirmed_fill_ids |= other.confirmed_fill_ids
        self.clients.update(other.clients)
        if other.hold_fills_ms is not None:
            self.hold_fills(other.hold_fills_ms)
        if other.hold_orders_ms is not None:
            self.hold_orders(other.hold_orders_ms)
        self.follow_up = self.follow_up or other.follow_up


@dataclass
class PlanContext:
    builder: EventBuilder
    grace_ms: int
    overlap_ms: int
    recently_active: Callable[[str], bool]  # bus activity on this client order id within the grace window
    command: Callable[[str], s.OrderInitialized | None]  # our SubmitOrder's OrderInitialized by client order id


# -- helpers shared with the runner ------------------------------------------------------------


def merge_orders(snap: Snapshot) -> dict[str, VenueOrder]:
    """Every venue order read, by venue id, keeping the latest state of each."""
    merged: dict[str, VenueOrder] = {}
    for src in (snap.history or [], snap.open_orders or [], list(snap.lookups.values())):
        for o in src:
            cur = merged.get(o.id)
            if cur is None or o.newer_than(cur):
                merged[o.id] = o
    return merged


def split_fills(snap: Snapshot, plan: Plan) -> dict[str, list[VenueFill]]:
    """Trade fills by venue order id (deduplicated by fill id); other row types counted and skipped."""
    by_order: dict[str, list[VenueFill]] = defaultdict(list)
    seen: set[str] = set()
    for f in [*(snap.fills or []), *snap.extra_fills]:
        if f.id in seen:
            continue
        seen.add(f.id)
        if f.fill_type not in TRADE_FILL_TYPES:
            plan.unresolve(
                "fill_type_unknown",
                f"fill {f.id}: unknown fill_type {f.fill_type!r} not taken as a trade",
                fill_id=f.id,
                fill_type=f.fill_type,
            )
            continue
        by_order[f.order_id].append(f)
    for fills in by_order.values():
        fills.sort(key=lambda f: (f.created_at, f.id))
    return by_order


def trade_index(proj: ExecProjection) -> dict[str, str]:
    """trade id -> client order id for every fill on the bus (across orders)."""
    out: dict[str, str] = {}
    for o in proj.orders.values():
        for t in o.trade_ids:
            out[t] = o.client_order_id
    return out


def resolve_client_order_id(
    proj: ExecProjection, order: VenueOrder, command: Callable[[str], s.OrderInitialized | None]
) -> tuple[str, str]:
    """``(client_order_id, origin)`` with origin ``bus``, ``command`` or ``external``."""
    cid = order.client_id
    if cid:
        o = proj.order(cid)
        if o is not None and o.venue_order_id in (None, order.id):
            return cid, "bus"
    o = proj.by_venue(order.id)
    if o is not None:
        return o.client_order_id, "bus"
    if cid and valid_client_order_id(cid) and proj.order(cid) is None:
        return cid, "command" if command(cid) is not None else "external"
    ext = external_client_order_id(order.id)
    return ext, "bus" if proj.order(ext) is not None else "external"


def bus_order_covered(o: OrderView, merged: dict[str, VenueOrder], by_client: dict[str, VenueOrder]) -> bool:
    if o.venue_order_id and o.venue_order_id in merged:
        return True
    v = by_client.get(o.client_order_id)
    return v is not None and (o.venue_order_id in (None, v.id))


def lookups_needed(
    proj: ExecProjection, snap: Snapshot, fills_by_order: dict[str, list[VenueFill]]
) -> tuple[list[OrderView], list[str]]:
    """Bus-open orders the bulk reads did not cover, and venue order ids of fills not yet read."""
    merged = merge_orders(snap)
    by_client = {v.client_id: v for v in merged.values() if v.client_id}
    bus_open = [o for o in proj.open_orders() if not bus_order_covered(o, merged, by_client)]
    fill_orders = [oid for oid in fills_by_order if oid not in merged]
    return bus_open, fill_orders


def older_fills_needed(
    proj: ExecProjection, snap: Snapshot, fills_by_order: dict[str, list[VenueFill]], overlap_ms: int
) -> dict[str, int]:
    """market -> earliest ms to read fills from, for orders whose venue ``filled_qty`` exceeds the
    fills on the bus plus those read, and that were created before the fills window."""
    if snap.fills_since_ms is None:
        return {}
    tidx = trade_index(proj)
    out: dict[str, int] = {}
    for v in merge_orders(snap).values():
        if v.filled == 0 or v.created_at >= snap.fills_since_ms:
            continue
        coid = proj.by_venue_id.get(v.id) or (v.client_id if proj.order(v.client_id or "") else None)
        on_bus = proj.orders[coid].filled_qty if coid and coid in proj.orders else ZERO
        new = sum((f.size for f in fills_by_order.get(v.id, []) if f.id not in tidx), ZERO)
        if v.filled > on_bus + new:
            start = max(0, v.created_at - overlap_ms)
            out[v.market] = min(out.get(v.market, start), start)
    return out


# -- the plan ----------------------------------------------------------------------------------


class _Scratch:
    """A private copy of one order's state machine to check each planned event. The bus's view is
    copied only when the first event is applied (most orders need none)."""

    def __init__(self, view: OrderView | None) -> None:
        self.original = view
        self.p: ExecProjection | None = None

    def view(self, coid: str) -> OrderView | None:
        return self.p.order(coid) if self.p is not None else self.original

    def apply(self, ev: Any) -> str | None:
        if self.p is None:
            self.p = ExecProjection()
            v = self.original
            if v is not None:
                c = copy.copy(v)
                c.trade_ids, c.history, c.commissions = set(v.trade_ids), list(v.history), list(v.commissions)
                self.p.orders[v.client_order_id] = c
                if v.venue_order_id:
                    self.p.by_venue_id[v.venue_order_id] = v.client_order_id
        res = self.p.apply(ev)
        return None if res.ok else (res.problem or "refused")


def _identity(
    view: OrderView | None, init: s.OrderInitialized | None, v: VenueOrder, coid: str, ctx: PlanContext
) -> OrderIdentity:
    if init is not None:
        return OrderIdentity(
            init.trader_id, init.strategy_id, init.instrument_id, coid, init.order_side, init.order_type
        )
    if view is not None:
        strategy = view.strategy_id or EXTERNAL_STRATEGY
        return OrderIdentity(
            view.trader_id or ctx.builder.trader_id,
            strategy,
            view.instrument_id or s.instrument_id(v.market),
            coid,
            view.side or v.side,
            view.order_type or nautilus_type(v.type),
        )
    return ctx.builder.external_identity(v, coid)


def _accepted_on_bus(view: OrderView | None) -> bool:
    return view is not None and ("OrderAccepted" in view.history or view.filled_qty > 0)


def _differs(view: OrderView, v: VenueOrder) -> bool:
    if v.size != view.quantity:
        return True
    if v.is_open and v.price is not None and view.price is not None and v.type not in ("MARKET",):
        try:
            return Decimal(view.price) != v.price
        except ArithmeticError:
            return False
    return False


def _inferred_px(view: OrderView, v: VenueOrder, qty: Decimal) -> Decimal:
    """Nautilus's rule: the first fill at avg_px, later ones from the cost difference (§2.5)."""
    if v.avg_fill_price is not None:
        if view.filled_qty == 0:
            return v.avg_fill_price
        px = (v.avg_fill_price * v.filled - view.notional) / qty
        if px > 0:
            return px
    return v.price if v.price is not None else (v.avg_fill_price or ZERO)


def plan_order(
    proj: ExecProjection,
    v: VenueOrder,
    fills: list[VenueFill],
    tidx: dict[str, str],
    snap: Snapshot,
    ctx: PlanContext,
    plan: Plan,
) -> OrderPlan | None:
    coid, origin = resolve_client_order_id(proj, v, ctx.command)
    plan.clients[v.id] = coid
    view = proj.order(coid)
    b = ctx.builder
    account = b.account
    op = OrderPlan(coid, v, origin)
    scratch = _Scratch(view)

    def mid_of(kind: str, disc: int | str = 0) -> tuple[str, str]:
        """The router's Msg-Id of this fact and the event id derived from it."""
        mid = msgid.order_event(account, coid, kind, disc)
        return mid, event_uuid(mid)

    def add(kind: str, ev: Any, mid: str) -> bool:
        problem = scratch.apply(ev)
        if problem is not None:
            plan.unresolve(
                "correction_refused",
                f"{coid}: {kind} would be {problem} on the bus (bus {status()})",
                client_order_id=coid,
                event=kind,
                problem=problem,
            )
            return False
        op.events.append((mid, ev))
        return True

    def status() -> str:
        cur = scratch.view(coid)
        return cur.status if cur is not None else INITIALIZED

    missing = []
    for f in fills:
        owner = tidx.get(f.id)
        if owner is None:
            missing.append(f)
            continue
        plan.counts["fills_matched"] += 1
        plan.confirmed_fill_ids.add(f.id)
        if owner != coid:
            plan.problem("fill_on_other_order", fill_id=f.id, bus_order=owner, venue_order=coid)

    init: s.OrderInitialized | None = None
    if view is None:
        if origin == "external" and v.status == NEW:
            _defer(plan, v, coid, "external order still NEW at the venue")
            return None
        if origin == "command":
            init = ctx.command(coid)
            if init is not None:
                init = copy.copy(init)
    ident = _identity(view, init, v, coid, ctx)

    if view is None:
        if init is not None:
            add("OrderInitialized", init, mid_of("OrderInitialized")[0])
        else:
            mid, eid = mid_of("OrderInitialized")
            add("OrderInitialized", b.initialized_external(ident, v, eid), mid)

    accepted = _accepted_on_bus(view)
    kind = closed_kind(v, accepted) if v.is_closed else None
    op.closed_kind = kind
    external = ident.strategy_id == EXTERNAL_STRATEGY

    if status() == INITIALIZED and not external:
        mid, eid = mid_of("OrderSubmitted")
        add("OrderSubmitted", b.submitted(ident, v, eid), mid)

    if kind == REJECTED:
        cur = scratch.view(coid)
        if cur is None or not cur.is_closed:
            mid, eid = mid_of("OrderRejected")
            add("OrderRejected", b.rejected(ident, v, eid), mid)
    else:
        cur = scratch.view(coid)
        history = cur.history if cur is not None else []
        if status() in ACCEPTABLE and v.status != NEW and "OrderAccepted" not in history:
            mid, eid = mid_of("OrderAccepted")
            add("OrderAccepted", b.accepted(ident, v, eid), mid)
        cur = scratch.view(coid)
        if cur is not None and not cur.is_closed and _differs(cur, v):
            mid, eid = mid_of("OrderUpdated", v.last_updated_at)
            add("OrderUpdated", b.updated(ident, v, eid), mid)
        cur = scratch.view(coid)
        if (
            v.type in TRIGGER_ORDER_TYPES
            and (v.status == OPEN or v.filled > 0)
            and cur is not None
            and cur.status == ACCEPTED
            and "OrderTriggered" not in cur.history
        ):
            mid, eid = mid_of("OrderTriggered")
            add("OrderTriggered", b.triggered(ident, v, eid), mid)

        has_inferred = any(t.startswith(INFERRED_PREFIX) for t in (view.trade_ids if view else ()))
        for f in missing:
            cur = scratch.view(coid)
            bus_filled = cur.filled_qty if cur is not None else ZERO
            if has_inferred and bus_filled + f.size > v.filled:
                plan.problem("fill_superseded_by_inferred", fill_id=f.id, client_order_id=coid)
                plan.confirmed_fill_ids.add(f.id)
                continue
            mid = msgid.fill(account, f.id)
            if add("OrderFilled", b.filled(ident, f, event_uuid(mid)), mid):
                plan.counts["fills_emitted"] += 1
                plan.fill_reports.append(b.fill_report(f, coid))

        cur = scratch.view(coid)
        bus_filled = cur.filled_qty if cur is not None else ZERO
        if v.filled > bus_filled:
            reach = snap.fills_complete_since.get(v.market)
            window_ok = snap.fills is not None and (
                snap.fills_since_ms is None
                or v.created_at >= snap.fills_since_ms
                or (reach is not None and reach <= v.created_at)
            )
            if not window_ok:
                plan.unresolve(
                    "fills_not_read",
                    f"{coid}: venue filled {v.filled}, bus {bus_filled}; fills not readable",
                    client_order_id=coid,
                )
                plan.hold_fills(v.created_at)
            elif cur is not None:
                qty = v.filled - bus_filled
                tid = inferred_trade_id(v.id, str(v.filled))
                if tid in tidx:
                    plan.unresolve(
                        "inferred_fill_repeat", f"{coid}: inferred fill {tid} already on the bus", client_order_id=coid
                    )
                else:
                    mid = msgid.fill(account, tid)
                    ev = b.inferred_fill(ident, v, tid, qty, _inferred_px(cur, v, qty), event_uuid(mid))
                    if add("OrderFilled", ev, mid):
                        plan.problem("fills_inferred", client_order_id=coid, qty=str(qty), trade_id=tid)
                        plan.fill_reports.append(b.inferred_fill_report(op.events[-1][1]))
        elif v.filled < bus_filled:
            plan.unresolve(
                "bus_overfilled",
                f"{coid}: bus filled {bus_filled} > venue filled {v.filled}",
                client_order_id=coid,
                bus=str(bus_filled),
                venue=str(v.filled),
            )

        cur = scratch.view(coid)
        if v.is_closed and cur is not None and not cur.is_closed:
            if kind == EXPIRED:
                mid, eid = mid_of("OrderExpired")
                add("OrderExpired", b.expired(ident, v, eid), mid)
            elif kind == CANCELED:
                mid, eid = mid_of("OrderCanceled")
                add("OrderCanceled", b.canceled(ident, v, eid), mid)
            elif kind == FILLED:
                plan.unresolve(
                    "filled_not_reached",
                    f"{coid}: filled at the venue, {cur.status} on the bus",
                    client_order_id=coid,
                )

    cur = scratch.view(coid)
    if v.is_open and cur is not None and cur.is_closed:
        plan.unresolve(
            "closed_on_bus_open_at_venue",
            f"{coid}: {cur.status} on the bus but {v.status} at the venue",
            client_order_id=coid,
            venue_order_id=v.id,
        )
    return op


def _defer(plan: Plan, v: VenueOrder, coid: str, why: str) -> None:
    plan.follow_up = True
    plan.hold_orders(v.created_at)
    plan.hold_fills(v.created_at)
    plan.problem("deferred", client_order_id=coid, why=why)


def plan_corrections(proj: ExecProjection, snap: Snapshot, ctx: PlanContext) -> Plan:
    plan = Plan()
    merged = merge_orders(snap)
    fills_by_order = split_fills(snap, plan)
    tidx = trade_index(proj)
    in_grace_before = snap.now_ms - ctx.grace_ms

    for oid, fills in fills_by_order.items():
        if oid not in merged:
            if oid in snap.lookup_unknown:
                plan.unresolve(
                    "fill_order_unknown",
                    f"order {oid} of {len(fills)} fill(s): lookup failed (unknown)",
                    venue_order_id=oid,
                )
            else:
                plan.unresolve(
                    "fill_order_not_found",
                    f"order {oid} of {len(fills)} fill(s): not found at the venue",
                    venue_order_id=oid,
                )
            for f in fills:
                if f.id in tidx:
                    plan.confirmed_fill_ids.add(f.id)
            plan.hold_fills(min(f.created_at for f in fills))

    for v in sorted(merged.values(), key=lambda o: (o.created_at, o.id)):
        plan.counts["orders_checked"] += 1
        sub = Plan()
        op = plan_order(proj, v, fills_by_order.get(v.id, []), tidx, snap, ctx, sub)
        plan.confirmed_fill_ids |= sub.confirmed_fill_ids
        plan.clients.update(sub.clients)
        if op is None:  # deferred inside
            plan.merge(sub)
            continue
        if not op.events and not sub.unresolved:
            plan.counts["orders_matched"] += 1
            plan.counts["fills_matched"] += sub.counts["fills_matched"]
            for kind, pctx in sub.problems:
                plan.problem(kind, **pctx)
            continue
        # Changed within the grace window, or during this run's reads (the fills read may not match
        # the order read then): the next run decides.
        recent = v.updated_at >= in_grace_before or ctx.recently_active(op.client_order_id)
        if recent:
            plan.counts["fills_matched"] += sub.counts["fills_matched"]
            _defer(plan, v, op.client_order_id, "changed within the grace window")
            continue
        if op.events:
            sub.orders.append(op)
            sub.counts["orders_corrected"] += 1
            if op.origin == "external":
                sub.problem("external_orders", client_order_id=op.client_order_id, venue_order_id=v.id)
            elif op.origin == "command":
                sub.problem("orders_from_commands", client_order_id=op.client_order_id, venue_order_id=v.id)
            for _, ev in op.events:
                sub.counts[f"emit_{type(ev).__name__}"] += 1
            if any(not isinstance(ev, s.OrderFilled) for _, ev in op.events):
                # A status the bus lacked; fill-only corrections are reported by their FillReports.
                sub.order_reports.append(ctx.builder.order_report(v, op.client_order_id, op.closed_kind))
        plan.merge(sub)

    by_client = {v.client_id: v for v in merged.values() if v.client_id}
    for o in proj.open_orders():
        if bus_order_covered(o, merged, by_client):
            continue
        coid = o.client_order_id
        keys = {coid, o.venue_order_id or ""}
        if keys & snap.lookup_unknown:
            plan.unresolve(
                "orders_unknown",
                f"{coid}: {o.status} on the bus, venue state unknown (REST failed)",
                client_order_id=coid,
            )
        elif keys & snap.lookup_missing:
            if ctx.recently_active(coid) or o.ts_last // 1_000_000 > in_grace_before:
                plan.problem("deferred", client_order_id=coid, why="not at the venue yet, changed recently")
                plan.follow_up = True
                continue
            plan.unresolve(
                "orders_missing",
                f"{coid}: {o.status} on the bus, the venue has no such order (left as is)",
                client_order_id=coid,
            )
        else:
            plan.unresolve(
                "orders_unchecked",
                f"{coid}: {o.status} on the bus, not looked up this run (budget)",
                client_order_id=coid,
            )
    return plan
