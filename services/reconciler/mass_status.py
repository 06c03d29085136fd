"""The start-up ExecutionMassStatus (nautilus-model.md §2.3): every venue position, the open
orders, the orders corrected by the run, and the trade fills read since the watermark.

It travels as one message, so it is kept under ``RECON_MASS_STATUS_MAX_BYTES`` (below NATS's 1 MiB
max payload): open orders first, then corrected orders and fills newest first; whatever does not
fit is left out and counted (``mass_status_orders_omitted`` / ``mass_status_fills_omitted``) --
those facts are on the bus as events and individual reports anyway.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import schemas as s
from bus.msgid import event_uuid
from services.reconciler.build import EventBuilder
from services.reconciler.compare import Plan, Snapshot, merge_orders
from services.reconciler.venue import TRADE_FILL_TYPES


def build_mass_status(
    builder: EventBuilder,
    run_id: str,
    snap: Snapshot,
    plan: Plan,
    positions: list[s.PositionStatusReport],
    max_bytes: int,
) -> tuple[s.ExecutionMassStatus, Counter[str]]:
    """The message and what was left out of it (``{"orders": n, "fills": n}``)."""
    open_reports: dict[str, s.OrderStatusReport] = {}
    corrected = {r.venue_order_id: r for r in plan.order_reports}
    for v in merge_orders(snap).values():
        if v.is_open:
            open_reports[v.id] = corrected.pop(v.id, None) or builder.order_report(v, plan.clients.get(v.id), None)
    by_order: dict[str, list[s.FillReport]] = {}
    seen: set[str] = set()
    for f in [*(snap.fills or []), *snap.extra_fills]:
        if f.id in seen or f.fill_type not in TRADE_FILL_TYPES:
            continue
        seen.add(f.id)
        by_order.setdefault(f.order_id, []).append(builder.fill_report(f, plan.clients.get(f.order_id)))
    ms = s.ExecutionMassStatus(
        client_id="PARADEX",
        account_id=builder.account_id,
        venue="PARADEX",
        report_id=event_uuid(f"mass:{run_id}"),
        ts_init=time.time_ns(),
        position_reports={r.instrument_id: [r] for r in positions},
    )
    budget = max_bytes - len(s.encode(ms))
    omitted = Counter[str]()

    def fit(key: str, value: Any, size: int, target: dict[str, Any], kind: str, n: int = 1) -> None:
        nonlocal budget
        if size + len(key) + 8 <= budget:
            target[key] = value
            budget -= size + len(key) + 8
        else:
            omitted[kind] += n

    for oid, rep in [*open_reports.items(), *sorted(corrected.items(), key=lambda kv: -kv[1].ts_last)]:
        fit(oid, rep, len(s.encode(rep)), ms.order_reports, "orders")
    for oid, reps in sorted(by_order.items(), key=lambda kv: -max(r.ts_event for r in kv[1])):
        fit(oid, reps, sum(len(s.encode(r)) for r in reps), ms.fill_reports, "fills", len(reps))
    return ms, omitted
