"""Field sets from paradex-api.md and a polling helper shared by the simulator tests (the fixtures
themselves live in tests/fixtures/sim.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

ORDER_FIELDS = {
    "id", "account", "market", "side", "type", "size", "remaining_size", "price", "avg_fill_price", "status",
    "cancel_reason", "client_id", "instruction", "flags", "stp", "trigger_price", "timestamp", "created_at",
    "last_updated_at", "received_at", "published_at", "seq_no",
}
FILL_FIELDS = {
    "id", "account", "market", "order_id", "client_id", "side", "liquidity", "price", "size", "remaining_size",
    "fee", "fee_currency", "fill_type", "flags", "realized_pnl", "realized_funding", "underlying_price",
    "orderbook_seq_no", "created_at",
}
POSITION_FIELDS = {
    "id", "account", "market", "status", "side", "size", "average_entry_price", "average_entry_price_usd",
    "average_exit_price", "cost", "cost_usd", "cached_funding_index", "unrealized_pnl", "unrealized_funding_pnl",
    "realized_positional_pnl", "realized_positional_funding_pnl", "leverage", "liquidation_price", "last_fill_id",
    "seq_no", "created_at", "closed_at", "last_updated_at",
}
ACCOUNT_FIELDS = {
    "account", "account_value", "free_collateral", "initial_margin_requirement", "maintenance_margin_requirement",
    "margin_cushion", "seq_no", "settlement_asset", "status", "total_collateral", "updated_at",
}
TRADE_FIELDS = {"id", "market", "side", "size", "price", "created_at", "trade_type"}
BBO_FIELDS = {"market", "bid", "bid_size", "ask", "ask_size", "last_updated_at", "seq_no"}
BOOK_FIELDS = {"seq_no", "market", "last_updated_at", "update_type", "inserts", "updates", "deletes"}


async def eventually(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
