"""Execution reports (reconciliation inputs and outputs) in Nautilus ``to_dict`` form.

Nautilus writes report enums as *ints* (nautilus-model.md §2.3), so these structs use the
``*Code`` IntEnums. ``ReconciliationSummary`` is ours: the reconciler's per-run counts.
"""

from __future__ import annotations

import msgspec

from schemas.base import (
    AccountIdStr,
    DecimalStr,
    Event,
    Identifier,
    InstrumentIdStr,
    MoneyStr,
    PriceStr,
    QuantityStr,
    TradeIdStr,
    UnixNanos,
    UUIDStr,
)
from schemas.enums import (
    ContingencyTypeCode,
    LiquiditySideCode,
    OrderSideCode,
    OrderStatusCode,
    OrderTypeCode,
    PositionSideCode,
    TimeInForceCode,
    TrailingOffsetTypeCode,
    TriggerTypeCode,
)
from schemas.events import ClientOrderIdStr


class OrderStatusReport(Event, kw_only=True):
    account_id: AccountIdStr
    instrument_id: InstrumentIdStr
    venue_order_id: Identifier
    order_side: OrderSideCode
    order_type: OrderTypeCode
    time_in_force: TimeInForceCode
    order_status: OrderStatusCode
    quantity: QuantityStr
    filled_qty: QuantityStr
    report_id: UUIDStr
    ts_accepted: UnixNanos
    ts_last: UnixNanos
    ts_init: UnixNanos
    client_order_id: ClientOrderIdStr | None = None
    order_list_id: Identifier | None = None
    venue_position_id: Identifier | None = None
    linked_order_ids: list[ClientOrderIdStr] | None = None
    parent_order_id: ClientOrderIdStr | None = None
    contingency_type: ContingencyTypeCode = ContingencyTypeCode.NO_CONTINGENCY
    expire_time: UnixNanos | None = None
    price: PriceStr | None = None
    trigger_price: PriceStr | None = None
    trigger_type: TriggerTypeCode = TriggerTypeCode.NO_TRIGGER
    limit_offset: DecimalStr | None = None
    trailing_offset: DecimalStr | None = None
    trailing_offset_type: TrailingOffsetTypeCode = TrailingOffsetTypeCode.NO_TRAILING_OFFSET
    avg_px: DecimalStr | None = None
    display_qty: QuantityStr | None = None
    post_only: bool = False
    reduce_only: bool = False
    cancel_reason: str | None = None
    ts_triggered: UnixNanos = 0


class FillReport(Event, kw_only=True):
    account_id: AccountIdStr
    instrument_id: InstrumentIdStr
    venue_order_id: Identifier
    trade_id: TradeIdStr
    order_side: OrderSideCode
    last_qty: QuantityStr
    last_px: PriceStr
    commission: MoneyStr
    liquidity_side: LiquiditySideCode
    report_id: UUIDStr
    ts_event: UnixNanos
    ts_init: UnixNanos
    client_order_id: ClientOrderIdStr | None = None
    venue_position_id: Identifier | None = None


class PositionStatusReport(Event, kw_only=True):
    account_id: AccountIdStr
    instrument_id: InstrumentIdStr
    position_side: PositionSideCode
    quantity: QuantityStr
    report_id: UUIDStr
    ts_last: UnixNanos
    ts_init: UnixNanos
    venue_position_id: Identifier | None = None
    avg_px_open: DecimalStr | None = None


class ExecutionMassStatus(Event, kw_only=True):
    client_id: Identifier
    account_id: AccountIdStr
    venue: Identifier
    report_id: UUIDStr
    ts_init: UnixNanos
    order_reports: dict[str, OrderStatusReport] = msgspec.field(default_factory=dict)
    fill_reports: dict[str, list[FillReport]] = msgspec.field(default_factory=dict)
    position_reports: dict[str, list[PositionStatusReport]] = msgspec.field(default_factory=dict)


class ReconciliationSummary(Event, kw_only=True):
    """One reconciliation run: what matched, what was corrected, what is still unresolved."""

    account_id: AccountIdStr
    run_id: UUIDStr
    trigger: str
    ok: bool
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    unresolved: list[str] = msgspec.field(default_factory=list)
    rest_calls: int = 0
    duration_ns: int = 0
    ts_event: UnixNanos
    ts_init: UnixNanos


REPORT_TYPES: tuple[type[Event], ...] = (
    OrderStatusReport,
    FillReport,
    PositionStatusReport,
    ExecutionMassStatus,
    ReconciliationSummary,
)
