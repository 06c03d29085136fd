"""Order events (Nautilus ``OrderInitialized`` ... ``OrderFilled``) and ``AccountState``.

Key names and order follow nautilus_trader 1.221 ``to_dict`` (nautilus-model.md §2.1). Fields that
newer Nautilus releases added are optional here so either version's dicts decode.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType

from schemas.base import (
    AccountIdStr,
    CurrencyStr,
    DecimalStr,
    Event,
    Identifier,
    InfoDict,
    InstrumentIdStr,
    MoneyStr,
    PriceStr,
    QuantityStr,
    StrategyIdStr,
    TradeIdStr,
    TraderIdStr,
    UnixNanos,
    UUIDStr,
)
from schemas.enums import (
    AccountType,
    ContingencyType,
    LiquiditySide,
    OrderSide,
    OrderType,
    TimeInForce,
    TriggerType,
)

ClientOrderIdStr = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_\-]+$", min_length=1, max_length=64)]
"""Client order ids become NATS subject tokens and Paradex ``client_id`` (<= 64 chars), so they are
restricted to letters, digits, ``-`` and ``_``."""


class OrderOptions(msgspec.Struct, kw_only=True, omit_defaults=False, gc=False):
    """``OrderInitialized.options``: only the keys that apply to the order type are present."""

    price: PriceStr | UnsetType | None = UNSET
    trigger_price: PriceStr | UnsetType | None = UNSET
    trigger_type: TriggerType | UnsetType = UNSET
    limit_offset: PriceStr | UnsetType | None = UNSET
    trailing_offset: PriceStr | UnsetType | None = UNSET
    trailing_offset_type: str | UnsetType = UNSET
    expire_time_ns: UnixNanos | UnsetType = UNSET
    display_qty: QuantityStr | UnsetType | None = UNSET


class OrderEvent(Event, kw_only=True):
    """Fields every order event carries first."""

    trader_id: TraderIdStr
    strategy_id: StrategyIdStr
    instrument_id: InstrumentIdStr
    client_order_id: ClientOrderIdStr


class OrderInitialized(OrderEvent, kw_only=True):
    order_side: OrderSide
    order_type: OrderType
    quantity: QuantityStr
    time_in_force: TimeInForce
    post_only: bool = False
    reduce_only: bool = False
    quote_quantity: bool = False
    options: OrderOptions = msgspec.field(default_factory=OrderOptions)
    emulation_trigger: TriggerType = TriggerType.NO_TRIGGER
    trigger_instrument_id: InstrumentIdStr | None = None
    contingency_type: ContingencyType = ContingencyType.NO_CONTINGENCY
    order_list_id: Identifier | None = None
    linked_order_ids: list[ClientOrderIdStr] | None = None
    parent_order_id: ClientOrderIdStr | None = None
    exec_algorithm_id: Identifier | None = None
    exec_algorithm_params: dict[str, str] | None = None
    exec_spawn_id: ClientOrderIdStr | None = None
    tags: list[str] | None = None
    event_id: UUIDStr
    ts_init: UnixNanos
    ts_event: UnixNanos
    reconciliation: bool = False


class OrderDenied(OrderEvent, kw_only=True):
    reason: str
    event_id: UUIDStr
    ts_event: UnixNanos
    ts_init: UnixNanos


class OrderSubmitted(OrderEvent, kw_only=True):
    account_id: AccountIdStr
    event_id: UUIDStr
    ts_event: UnixNanos
    ts_init: UnixNanos


class OrderAccepted(OrderEvent, kw_only=True):
    venue_order_id: Identifier
    account_id: AccountIdStr
    event_id: UUIDStr
    ts_event: UnixNanos
    ts_init: UnixNanos
    reconciliation: bool = False


class OrderRejected(OrderEvent, kw_only=True):
    account_id: AccountIdStr
    reason: str
    event_id: UUIDStr
    ts_event: UnixNanos
    ts_init: UnixNanos
    reconciliation: bool = False
    due_post_only: bool = False


class _VenueOrderEvent(OrderEvent, kw_only=True):
    venue_order_id: Identifier | None = None
    account_id: AccountIdStr | None = None


class OrderCanceled(_VenueOrderEvent, kw_only=True):
    event_id: UUIDStr
    ts_event: UnixNanos
    ts_init: UnixNanos
    reconciliation: bool = False


class OrderExpired(_VenueOrderEvent, kw_only=True):
    event_id: UUIDStr
    ts_event: UnixNanos
    ts_init: UnixNanos
    reconciliation: bool = False


class OrderTriggered(_VenueOrderEvent, kw_only=True):
    event_id: UUIDStr
    ts_event: UnixNanos
    ts_init: UnixNanos
    reconciliation: bool = False


class OrderPendingUpdate(_VenueOrderEvent, kw_only=True):
    event_id: UUIDStr
    ts_event: UnixNanos
    ts_init: UnixNanos
    reconciliation: bool = False


class OrderPendingCancel(_VenueOrderEvent, kw_only=True):
    event_id: UUIDStr
    ts_event: UnixNanos
    ts_init: UnixNanos
    reconciliation: bool = False


class OrderCancelRejected(_VenueOrderEvent, kw_only=True):
    reason: str
    event_id: UUIDStr
    ts_event: UnixNanos
    ts_init: UnixNanos
    reconciliation: bool = False


class OrderModifyRejected(_VenueOrderEvent, kw_only=True):
    reason: str
    event_id: UUIDStr
    ts_event: UnixNanos
    ts_init: UnixNanos
    reconciliation: bool = False


class OrderUpdated(_VenueOrderEvent, kw_only=True):
    quantity: QuantityStr
    price: PriceStr | None = None
    trigger_price: PriceStr | None = None
    event_id: UUIDStr
    ts_event: UnixNanos
    ts_init: UnixNanos
    reconciliation: bool = False


class OrderFilled(OrderEvent, kw_only=True):
    venue_order_id: Identifier
    account_id: AccountIdStr
    trade_id: TradeIdStr
    position_id: Identifier | None = None
    order_side: OrderSide
    order_type: OrderType
    last_qty: QuantityStr
    last_px: PriceStr
    currency: CurrencyStr
    commission: MoneyStr
    liquidity_side: LiquiditySide
    event_id: UUIDStr
    ts_event: UnixNanos
    ts_init: UnixNanos
    info: InfoDict = msgspec.field(default_factory=dict)
    reconciliation: bool = False


class AccountBalance(msgspec.Struct, tag_field="type", tag=True, kw_only=True, gc=False):
    """Amounts are plain decimals at the currency's precision, as Nautilus writes them."""

    total: DecimalStr
    locked: DecimalStr
    free: DecimalStr
    currency: CurrencyStr


class MarginBalance(msgspec.Struct, tag_field="type", tag=True, kw_only=True, gc=False):
    initial: DecimalStr
    maintenance: DecimalStr
    currency: CurrencyStr
    instrument_id: InstrumentIdStr


class AccountState(Event, kw_only=True):
    account_id: AccountIdStr
    account_type: AccountType = AccountType.MARGIN
    base_currency: CurrencyStr | None = None
    balances: list[AccountBalance]
    margins: list[MarginBalance] = msgspec.field(default_factory=list)
    reported: bool = True
    info: InfoDict = msgspec.field(default_factory=dict)
    event_id: UUIDStr
    ts_event: UnixNanos
    ts_init: UnixNanos


ORDER_EVENT_TYPES: tuple[type[Event], ...] = (
    OrderInitialized,
    OrderDenied,
    OrderSubmitted,
    OrderAccepted,
    OrderRejected,
    OrderCanceled,
    OrderCancelRejected,
    OrderModifyRejected,
    OrderPendingUpdate,
    OrderPendingCancel,
    OrderUpdated,
    OrderTriggered,
    OrderExpired,
    OrderFilled,
)
ACCOUNT_TYPES: tuple[type[Event], ...] = (AccountState,)
