"""Accounts: cash balance, positions, open-order exposure, history, and the margin figures of
``GET /account`` (paradex-api.md §4.6).

Cross margin only. IMR = Σ imf x mark x max(|pos + open buys|, |pos - open sells|) (open = NEW or
OPEN orders); MMR = Σ imf x mmf_factor x mark x |pos|; account value = USDC balance + unrealized
PnL (incl. unrealized funding); free collateral = account value - IMR; margin cushion = account
value - MMR. Internal accounts (background flow, admin market maker) skip all of this.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from services.paradex_sim.markets import MarketSpec
from services.paradex_sim.models import ZERO, Fill, FundingPayment, Order, Position
from services.paradex_sim.util import dstr

Q8 = Decimal("0.00000001")


class Account:
    def __init__(self, address: str, public_key: int | None, balance: Decimal, now_ms: int,
                 internal: bool = False) -> None:
        self.address = address
        self.public_key = public_key
        self.internal = internal
        self.balance = balance
        self.created_at = now_ms
        self.updated_at = now_ms
        self.balance_updated_at = now_ms
        self.seq_no = 0
        self.positions: dict[str, Position] = {}
        self.open_orders: dict[str, Order] = {}
        self.open_by_cid: dict[str, Order] = {}
        self.open_count: dict[str, int] = {}
        self.open_buy: dict[str, Decimal] = {}
        self.open_sell: dict[str, Decimal] = {}
        self.history: list[Order] = []  # every order, creation order (hseq ascending)
        self.fills: list[Fill] = []
        self.funding_payments: list[FundingPayment] = []

    def position_size(self, market: str) -> Decimal:
        pos = self.positions.get(market)
        return pos.size if pos is not None else ZERO

    def active_markets(self) -> set[str]:
        out = {m for m, p in self.positions.items() if p.size}
        out.update(m for m, v in self.open_buy.items() if v)
        out.update(m for m, v in self.open_sell.items() if v)
        return out

    def add_exposure(self, market: str, side: str, delta: Decimal) -> None:
        book = self.open_buy if side == "BUY" else self.open_sell
        book[market] = book.get(market, ZERO) + delta


class MarginView:
    """Margin arithmetic over an account, given market specs and price lookups."""

    def __init__(self, specs: dict[str, MarketSpec], mark: Callable[[str], Decimal],
                 funding_index: Callable[[str], Decimal]) -> None:
        self.specs = specs
        self.mark = mark
        self.funding_index = funding_index

    def unrealized(self, acct: Account) -> Decimal:
        total = ZERO
        for m, pos in acct.positions.items():
            if pos.size:
                total += pos.unrealized_pnl(self.mark(m), self.funding_index(m))
        return total

    def account_value(self, acct: Account) -> Decimal:
        return acct.balance + self.unrealized(acct)

    def market_imr(self, acct: Account, market: str, extra_buy: Decimal = ZERO, extra_sell: Decimal = ZERO) -> Decimal:
        spec = self.specs[market]
        pos = acct.position_size(market)
        buys = acct.open_buy.get(market, ZERO) + extra_buy
        sells = acct.open_sell.get(market, ZERO) + extra_sell
        worst = max(abs(pos + buys), abs(pos - sells))
        return spec.imf * self.mark(market) * worst

    def imr(self, acct: Account) -> Decimal:
        return sum((self.market_imr(acct, m) for m in acct.active_markets()), ZERO)

    def mmr(self, acct: Account) -> Decimal:
        total = ZERO
        for m, pos in acct.positions.items():
            if pos.size:
                total += self.specs[m].mmf * self.mark(m) * abs(pos.size)
        return total

    def summary(self, acct: Account) -> dict[str, object]:
        value = self.account_value(acct)
        imr = self.imr(acct)
        mmr = self.mmr(acct)
        return {
            "account": acct.address,
            "account_value": dstr(value.quantize(Q8)),
            "free_collateral": dstr((value - imr).quantize(Q8)),
            "initial_margin_requirement": dstr(imr.quantize(Q8)),
            "maintenance_margin_requirement": dstr(mmr.quantize(Q8)),
            "margin_cushion": dstr((value - mmr).quantize(Q8)),
            "seq_no": acct.seq_no,
            "settlement_asset": "USDC",
            "status": "ACTIVE",
            "total_collateral": dstr(acct.balance.quantize(Q8)),
            "updated_at": acct.updated_at,
        }

    def balance_json(self, acct: Account) -> dict[str, object]:
        return {"token": "USDC", "size": dstr(acct.balance), "last_updated_at": acct.balance_updated_at}

    def position_json(self, acct: Account, pos: Position) -> dict[str, object]:
        return pos.to_json(self.mark(pos.market), self.funding_index(pos.market), self.account_value(acct))
