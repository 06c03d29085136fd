"""Trading commands (Nautilus ``SubmitOrder`` ... ``QueryOrder``) as they travel on ``cmd.>``.

``params`` is optional and left out when unset, so a command without venue parameters has exactly
the key set of nautilus_trader 1.221's ``to_dict``. Venue-specific choices (the Paradex order type
for TP/SL variants, STP mode, ``recv_window``) travel in ``params`` as strings.
"""

from __future__ import annotations

from msgspec import UNSET, UnsetType

from schemas.base import (
    Event,
    Identifier,
    InstrumentIdStr,
    PriceStr,
    QuantityStr,
    StrategyIdStr,
    TraderIdStr,
    UnixNanos,
    UUIDStr,
)
from schemas.enums import OrderSide
from schemas.events import ClientOrderIdStr, OrderInitialized


class Command(Event, kw_only=True):
    client_id: Identifier | None = None
    trader_id: TraderIdStr
    strategy_id: StrategyIdStr


class SubmitOrder(Command, kw_only=True):
    order: OrderInitialized
    position_id: Identifier | None = None
    command_id: UUIDStr
    ts_init: UnixNanos
    params: dict[str, str] | UnsetType = UNSET


class ModifyOrder(Command, kw_only=True):
    instrument_id: InstrumentIdStr
    client_order_id: ClientOrderIdStr
    venue_order_id: Identifier | None = None
    quantity: QuantityStr | None = None
    price: PriceStr | None = None
    trigger_price: PriceStr | None = None
    command_id: UUIDStr
    ts_init: UnixNanos
    params: dict[str, str] | UnsetType = UNSET


class CancelOrder(Command, kw_only=True):
    instrument_id: InstrumentIdStr
    client_order_id: ClientOrderIdStr
    venue_order_id: Identifier | None = None
    command_id: UUIDStr
    ts_init: UnixNanos
    params: dict[str, str] | UnsetType = UNSET


class CancelAllOrders(Command, kw_only=True):
    """Cancel every open order of ``instrument_id``; ``ALL.PARADEX`` means every market."""

    instrument_id: InstrumentIdStr
    order_side: OrderSide = OrderSide.NO_ORDER_SIDE
    command_id: UUIDStr
    ts_init: UnixNanos
    params: dict[str, str] | UnsetType = UNSET


class BatchCancelOrders(Command, kw_only=True):
    instrument_id: InstrumentIdStr
    cancels: list[CancelOrder]
    command_id: UUIDStr
    ts_init: UnixNanos
    params: dict[str, str] | UnsetType = UNSET

    def __post_init__(self) -> None:
        if not self.cancels:
            raise ValueError("BatchCancelOrders.cancels must not be empty")


class QueryOrder(Command, kw_only=True):
    instrument_id: InstrumentIdStr
    client_order_id: ClientOrderIdStr
    venue_order_id: Identifier | None = None
    command_id: UUIDStr
    ts_init: UnixNanos
    params: dict[str, str] | UnsetType = UNSET


ALL_MARKETS_INSTRUMENT = "ALL.PARADEX"

COMMAND_TYPES: tuple[type[Event], ...] = (
    SubmitOrder,
    ModifyOrder,
    CancelOrder,
    CancelAllOrders,
    BatchCancelOrders,
    QueryOrder,
)
