"""The exchange's records and their venue JSON shapes: orders (§4.7.5), fills (§4.8), public
trades (§4.5), positions (§4.6) and funding payments (§4.8).

These are plain mutable objects owned by the engine; ``to_json`` produces the exact field set the
venue sends on REST and WS (decimals as strings, timestamps in ms).
"""

from __future__ import annotations

from decimal import Decimal

from services.paradex_sim.util import dstr

ZERO = Decimal(0)

NEW, UNTRIGGERED, OPEN, CLOSED = "NEW", "UNTRIGGERED", "OPEN", "CLOSED"
OPEN_STATUSES = frozenset((NEW, UNTRIGGERED, OPEN))

ORDER_TYPES = frozenset(
    (
        "MARKET", "LIMIT", "STOP_LIMIT", "STOP_MARKET", "TAKE_PROFIT_LIMIT", "TAKE_PROFIT_MARKET",
        "STOP_LOSS_LIMIT", "STOP_LOSS_MARKET",
    )
)
MARKET_TYPES = frozenset(("MARKET", "STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP_LOSS_MARKET"))
TRIGGER_TYPES = ORDER_TYPES - {"MARKET", "LIMIT"}
INSTRUCTIONS = frozenset(("GTC", "IOC", "POST_ONLY", "RPI"))
STP_MODES = frozenset(("EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"))
FLAGS = frozenset(
    (
        "REDUCE_ONLY", "STOP_CONDITION_BELOW_TRIGGER", "STOP_CONDITION_ABOVE_TRIGGER", "INTERACTIVE",
        "TARGET_STRATEGY_VWAP", "MMP",
    )
)


class Order:
    __slots__ = (
        "account", "avg_fill_price", "cancel_reason", "client_id", "created_at", "exposed", "filled_notional",
        "flags", "hseq", "id", "instruction", "internal", "last_updated_at", "market", "price",
        "published_at", "received_at", "reduce_only", "remaining", "request_info", "seq_no", "side",
        "size", "status", "stp", "timestamp", "trigger_price", "type",
    )

    def __init__(
        self,
        *,
        id: str,
        account: str,
        market: str,
        side: str,
        type: str,
        size: Decimal,
        price: Decimal | None,
        instruction: str,
        client_id: str,
        flags: list[str],
        stp: str,
        trigger_price: Decimal | None,
        timestamp: int,
        now_ms: int,
        internal: bool = False,
    ) -> None:
        self.id = id
        self.account = account
        self.market = market
        self.side = side
        self.type = type
        self.size = size
        self.remaining = size
        self.price = price
        self.instruction = instruction
        self.client_id = client_id
        self.flags = flags
        self.reduce_only = "REDUCE_ONLY" in flags
        self.stp = stp
        self.trigger_price = trigger_price
        self.timestamp = timestamp
        self.created_at = now_ms
        self.received_at = now_ms
        self.last_updated_at = now_ms
        self.published_at = now_ms
        self.status = NEW
        self.cancel_reason = ""
        self.filled_notional = ZERO
        self.avg_fill_price: Decimal | None = None
        self.seq_no = 0
        self.hseq = 0
        self.internal = internal
        self.exposed = ZERO  # remaining size currently counted in the account's open exposure
        self.request_info: dict[str, str] | None = None

    @property
    def is_buy(self) -> bool:
        return self.side == "BUY"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def filled(self) -> Decimal:
        return self.size - self.remaining

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.id,
            "account": self.account,
            "market": self.market,
            "side": self.side,
            "type": self.type,
            "size": dstr(self.size),
            "remaining_size": dstr(self.remaining),
            "price": dstr(self.price) if self.price is not None else "0",
            "avg_fill_price": dstr(self.avg_fill_price),
            "status": self.status,
            "cancel_reason": self.cancel_reason,
            "client_id": self.client_id,
            "instruction": self.instruction,
            "flags": list(self.flags),
            "stp": self.stp,
            "trigger_price": dstr(self.trigger_price) if self.trigger_price is not None else "0",
            "timestamp": self.timestamp,
            "created_at": self.created_at,
            "last_updated_at": self.last_updated_at,
            "received_at": self.received_at,
            "published_at": self.published_at,
            "seq_no": self.seq_no,
        }
        if self.request_info is not None:
            out["request_info"] = dict(self.request_info)
        return out


class Fill:
    __slots__ = (
        "account", "client_id", "created_at", "fee", "hseq", "id", "liquidity", "market", "order_id",
        "orderbook_seq_no", "price", "realized_funding", "realized_pnl", "remaining_size", "side", "size",
        "underlying_price",
    )

    def __init__(self, **kw: object) -> None:
        for k, v in kw.items():
            setattr(self, k, v)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "account": self.account,
            "market": self.market,
            "order_id": self.order_id,
            "client_id": self.client_id,
            "side": self.side,
            "liquidity": self.liquidity,
            "price": dstr(self.price),  # type: ignore[arg-type]
            "size": dstr(self.size),  # type: ignore[arg-type]
            "remaining_size": dstr(self.remaining_size),  # type: ignore[arg-type]
            "fee": dstr(self.fee),  # type: ignore[arg-type]
            "fee_currency": "USDC",
            "fill_type": "FILL",
            "flags": [],
            "realized_pnl": dstr(self.realized_pnl),  # type: ignore[arg-type]
            "realized_funding": dstr(self.realized_funding),  # type: ignore[arg-type]
            "underlying_price": dstr(self.underlying_price),  # type: ignore[arg-type]
            "orderbook_seq_no": self.orderbook_seq_no,
            "created_at": self.created_at,
        }


class Trade:
    __slots__ = ("created_at", "hseq", "id", "market", "price", "side", "size")

    def __init__(self, id: str, market: str, side: str, size: Decimal, price: Decimal, created_at: int) -> None:
        self.id = id
        self.market = market
        self.side = side
        self.size = size
        self.price = price
        self.created_at = created_at
        self.hseq = 0

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "market": self.market,
            "side": self.side,
            "size": dstr(self.size),
            "price": dstr(self.price),
            "created_at": self.created_at,
            "trade_type": "FILL",
        }


class FundingPayment:
    __slots__ = ("account", "created_at", "fill_id", "hseq", "id", "index", "market", "payment")

    def __init__(self, id: str, account: str, market: str, payment: Decimal, index: Decimal, fill_id: str,
                 created_at: int) -> None:
        self.id = id
        self.account = account
        self.market = market
        self.payment = payment
        self.index = index
        self.fill_id = fill_id
        self.created_at = created_at
        self.hseq = 0

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "account": self.account,
            "market": self.market,
            "payment": dstr(self.payment),
            "index": dstr(self.index),
            "fill_id": self.fill_id,
            "created_at": self.created_at,
        }


class Position:
    """One account's position in one market. ``size`` is signed (negative = short)."""

    __slots__ = (
        "account", "avg_entry", "cached_funding_index", "closed_at", "closed_notional", "closed_size",
        "created_at", "last_fill_id", "last_updated_at", "market", "realized_funding", "realized_pnl",
        "seq_no", "size",
    )

    def __init__(self, account: str, market: str, now_ms: int, funding_index: Decimal) -> None:
        self.account = account
        self.market = market
        self.size = ZERO
        self.avg_entry = ZERO
        self.realized_pnl = ZERO
        self.realized_funding = ZERO
        self.cached_funding_index = funding_index
        self.closed_size = ZERO
        self.closed_notional = ZERO
        self.last_fill_id = ""
        self.created_at = now_ms
        self.last_updated_at = now_ms
        self.closed_at = 0
        self.seq_no = 0

    @property
    def id(self) -> str:
        return f"{self.account}-{self.market}"

    def unrealized_funding(self, funding_index: Decimal) -> Decimal:
        # Positive funding index moves are paid by longs (size > 0) to shorts.
        return -(funding_index - self.cached_funding_index) * self.size

    def unrealized_pnl(self, mark: Decimal, funding_index: Decimal) -> Decimal:
        return (mark - self.avg_entry) * self.size + self.unrealized_funding(funding_index)

    def to_json(self, mark: Decimal, funding_index: Decimal, account_value: Decimal) -> dict[str, object]:
        is_open = bool(self.size)
        notional = abs(self.size) * mark
        leverage = (notional / account_value).quantize(Decimal("0.0001")) if is_open and account_value > 0 else ZERO
        avg_exit = (self.closed_notional / self.closed_size) if self.closed_size else None
        return {
            "id": self.id,
            "account": self.account,
            "market": self.market,
            "status": "OPEN" if is_open else "CLOSED",
            "side": "SHORT" if self.size < 0 else "LONG",
            "size": dstr(self.size),
            "average_entry_price": dstr(self.avg_entry),
            "average_entry_price_usd": dstr(self.avg_entry),
            "average_exit_price": dstr(avg_exit) if avg_exit is not None else "0",
            "cost": dstr(self.avg_entry * self.size),
            "cost_usd": dstr(self.avg_entry * self.size),
            "cached_funding_index": dstr(self.cached_funding_index),
            "unrealized_pnl": dstr(self.unrealized_pnl(mark, funding_index)),
            "unrealized_funding_pnl": dstr(self.unrealized_funding(funding_index)),
            "realized_positional_pnl": dstr(self.realized_pnl),
            "realized_positional_funding_pnl": dstr(self.realized_funding),
            "leverage": dstr(leverage),
            "liquidation_price": "",
            "last_fill_id": self.last_fill_id,
            "seq_no": self.seq_no,
            "created_at": self.created_at,
            "closed_at": self.closed_at,
            "last_updated_at": self.last_updated_at,
        }
