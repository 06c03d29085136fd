"""The account's execution state as the bus knows it, and the reconciliation reports built from it.

``ExecState`` folds everything on ``exec.paradex.<account>.>``: order events through the shared
``ExecProjection`` (the Nautilus order state machine, duplicate-fill refusal, positions from
fills), each accepted ``OrderFilled``, the newest ``AccountState``, and the reconciler's newest
``PositionStatusReport`` per instrument. From it the execution client answers Nautilus's
``generate_*`` calls with schema reports (converted to Nautilus objects by the caller):

* an ``OrderStatusReport`` per order that has a venue order id (a report without one cannot exist
  in Nautilus); pending states report the status they came from, and ``ACCEPTED``/``TRIGGERED``
  with fills report ``PARTIALLY_FILLED``/``FILLED`` by quantity, as a venue would;
* a ``FillReport`` per ``OrderFilled`` on the bus (the router's from the private stream, the
  reconciler's from REST -- stored once thanks to deterministic Msg-Ids);
* a ``PositionStatusReport`` per instrument: the reconciler's (venue truth) when it is at least as
  new as the newest fill seen for that instrument, else the position folded from the fills.

Pure: no I/O and no Nautilus import, so it is unit-testable without the extra.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import schemas as s
from schemas.enums import (
    LiquiditySideCode,
    OrderSideCode,
    OrderStatusCode,
    OrderTypeCode,
    PositionSideCode,
    TimeInForceCode,
)
from schemas.events import OrderEvent
from services.execution.projection import (
    ACCEPTED,
    CLOSED_STATUSES,
    FILLED,
    INITIALIZED,
    PARTIALLY_FILLED,
    PENDING_CANCEL,
    PENDING_UPDATE,
    SUBMITTED,
    TRIGGERED,
    Applied,
    ExecProjection,
    OrderView,
)


def _dec(d: Decimal) -> str:
    return format(d, "f")


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class ReportFilter:
    """What a ``generate_*`` command asks for (``None`` = no restriction); times are int ns."""

    instrument_id: str | None = None
    client_order_id: str | None = None
    venue_order_id: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    open_only: bool = False

    def keeps(self, instrument_id: str, ts: int) -> bool:
        if self.instrument_id is not None and instrument_id != self.instrument_id:
            return False
        if self.start_ns is not None and ts < self.start_ns:
            return False
        return not (self.end_ns is not None and ts > self.end_ns)


class ExecState:
    """Fold of one account's ``EXEC`` subjects (see the module docstring)."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.projection = ExecProjection()
        self.fills: dict[str, list[s.OrderFilled]] = {}
        self.accepted_ns: dict[str, int] = {}
        self.last_fill_ns: dict[str, int] = {}
        self.reported_positions: dict[str, s.PositionStatusReport] = {}
        self.account_state: s.AccountState | None = None
        self.last_seq = 0
        self.skipped: dict[str, int] = {}

    # -- folding ------------------------------------------------------------------------------

    def apply(self, ev: Any, stream_seq: int = 0) -> Applied | None:
        """Fold one decoded message; returns the projection's verdict for order events."""
        if stream_seq:
            self.last_seq = max(self.last_seq, stream_seq)
        if isinstance(ev, OrderEvent):
            res = self.projection.apply(ev, stream_seq)
            if res.ok and isinstance(ev, s.OrderFilled):
                self.fills.setdefault(ev.client_order_id, []).append(ev)
                self.last_fill_ns[ev.instrument_id] = max(self.last_fill_ns.get(ev.instrument_id, 0), ev.ts_event)
            elif res.ok and isinstance(ev, s.OrderAccepted):
                self.accepted_ns.setdefault(ev.client_order_id, ev.ts_event)
            return res
        if isinstance(ev, s.AccountState):
            if ev.account_id == self.account_id and (
                self.account_state is None or ev.ts_event >= self.account_state.ts_event
            ):
                self.account_state = ev
        elif isinstance(ev, s.PositionStatusReport):
            old = self.reported_positions.get(ev.instrument_id)
            if ev.account_id == self.account_id and (old is None or ev.ts_last >= old.ts_last):
                self.reported_positions[ev.instrument_id] = ev
        return None

    # -- orders -------------------------------------------------------------------------------

    def find(self, client_order_id: str | None, venue_order_id: str | None) -> OrderView | None:
        if client_order_id:
            view = self.projection.order(client_order_id)
            if view is not None:
                return view
        if venue_order_id:
            return self.projection.by_venue(venue_order_id)
        return None

    def order_report(self, view: OrderView, now_ns: int) -> s.OrderStatusReport | None:
        """The venue-style status of one order; None when it cannot be reported (no venue order id,
        unknown side, zero quantity)."""
        if not view.venue_order_id or view.side not in ("BUY", "SELL") or view.quantity <= 0:
            self._skip("order_not_reportable")
            return None
        status = view.status
        if status in (PENDING_UPDATE, PENDING_CANCEL):
            status = view.previous_status or ACCEPTED
        if status in (INITIALIZED, SUBMITTED, PENDING_UPDATE, PENDING_CANCEL):
            status = ACCEPTED  # it has a venue order id: the venue holds it
        if status in (ACCEPTED, TRIGGERED, PARTIALLY_FILLED) and view.filled_qty > 0:
            status = FILLED if view.filled_qty >= view.quantity else PARTIALLY_FILLED
        order_type = view.order_type or ("LIMIT" if view.price else "MARKET")
        avg = view.avg_px
        return s.OrderStatusReport(
            account_id=view.account_id or self.account_id,
            instrument_id=view.instrument_id,
            venue_order_id=view.venue_order_id,
            order_side=OrderSideCode[view.side],
            order_type=OrderTypeCode[order_type],
            time_in_force=TimeInForceCode[view.time_in_force or "GTC"],
            order_status=OrderStatusCode[status],
            quantity=_dec(view.quantity),
            filled_qty=_dec(min(view.filled_qty, view.quantity)),
            report_id=_new_id(),
            ts_accepted=self.accepted_ns.get(view.client_order_id, view.ts_last),
            ts_last=view.ts_last,
            ts_init=now_ns,
            client_order_id=view.client_order_id,
            price=view.price,
            trigger_price=view.trigger_price,
            avg_px=_dec(avg) if avg is not None else None,
            post_only=view.post_only,
            reduce_only=view.reduce_only,
        )

    def order_reports(self, flt: ReportFilter, now_ns: int) -> list[s.OrderStatusReport]:
        out = []
        for view in self.projection.orders.values():
            is_open = view.status not in CLOSED_STATUSES
            if flt.open_only and not is_open:
                continue
            if flt.instrument_id is not None and view.instrument_id != flt.instrument_id:
                continue
            # Open orders are current whatever their age; the time window only limits history.
            if not is_open and not flt.keeps(view.instrument_id, view.ts_last):
                continue
            rep = self.order_report(view, now_ns)
            if rep is not None:
                out.append(rep)
        return out

    # -- fills --------------------------------------------------------------------------------

    def fill_reports(self, flt: ReportFilter, now_ns: int) -> list[s.FillReport]:
        out = []
        for fills in self.fills.values():
            for f in fills:
                if flt.venue_order_id is not None and f.venue_order_id != flt.venue_order_id:
                    continue
                if not flt.keeps(f.instrument_id, f.ts_event):
                    continue
                out.append(
                    s.FillReport(
                        account_id=f.account_id,
                        instrument_id=f.instrument_id,
                        venue_order_id=f.venue_order_id,
                        trade_id=f.trade_id,
                        order_side=OrderSideCode[f.order_side],
                        last_qty=f.last_qty,
                        last_px=f.last_px,
                        commission=f.commission,
                        liquidity_side=LiquiditySideCode[f.liquidity_side],
                        report_id=_new_id(),
                        ts_event=f.ts_event,
                        ts_init=now_ns,
                        client_order_id=f.client_order_id,
                        venue_position_id=f.position_id,
                    )
                )
        return out

    # -- positions ----------------------------------------------------------------------------

    def position_reports(
        self, flt: ReportFilter, now_ns: int, size_precision: Callable[[str], int | None]
    ) -> list[s.PositionStatusReport]:
        instruments = set(self.projection.positions) | set(self.reported_positions)
        out = []
        for iid in sorted(instruments):
            if flt.instrument_id is not None and iid != flt.instrument_id:
                continue
            reported = self.reported_positions.get(iid)
            if reported is not None and reported.ts_last >= self.last_fill_ns.get(iid, 0):
                out.append(reported)
                continue
            pos = self.projection.positions.get(iid)
            if pos is None:
                if reported is not None:
                    out.append(reported)
                continue
            net = pos.net_qty
            precision = size_precision(iid)
            qty = abs(net)
            if precision is not None:
                qty = qty.quantize(Decimal(1).scaleb(-precision))
            side = PositionSideCode.FLAT if net == 0 else PositionSideCode.LONG if net > 0 else PositionSideCode.SHORT
            out.append(
                s.PositionStatusReport(
                    account_id=self.account_id,
                    instrument_id=iid,
                    position_side=side,
                    quantity=_dec(qty),
                    report_id=_new_id(),
                    ts_last=self.last_fill_ns.get(iid, now_ns),
                    ts_init=now_ns,
                    avg_px_open=_dec(pos.avg_px_open) if net != 0 else None,
                )
            )
        return out

    def _skip(self, kind: str) -> None:
        self.skipped[kind] = self.skipped.get(kind, 0) + 1
