"""WebSocket channel names (paradex-api.md §5.6, §5.7): parse and validate a subscribed name into
what it means, and say which hub key carries it.

Public channels are keyed by their own name; private ones by ``<account>|<name>`` so two accounts
subscribed to ``orders.ALL`` never share a frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from services.paradex_sim.util import is_multiple, parse_decimal

PRIVATE_KINDS = frozenset(("orders", "fills", "positions", "account", "funding_payments", "balance_events"))
SNAPSHOT_RATES = {"50ms": 50, "100ms": 100}


class ChannelError(Exception):
    def __init__(self, code: int, message: str, data: str) -> None:
        super().__init__(data)
        self.code = code
        self.message = message
        self.data = data


def _invalid(data: str) -> ChannelError:
    return ChannelError(-32602, "Invalid parameters", data)


@dataclass(frozen=True)
class Channel:
    name: str
    kind: str  # trades, bbo, book_snapshot, book_deltas, markets_summary, funding_data, markets, + private
    market: str | None = None  # a symbol, "ALL" or None
    period_ms: int = 0
    tick: Decimal | None = None

    @property
    def private(self) -> bool:
        return self.kind in PRIVATE_KINDS

    def key(self, account: str | None) -> str:
        return f"{account}|{self.name}" if self.private else self.name


def _market(token: str, markets: dict[str, object], allow_all: bool) -> str:
    if token == "ALL" and allow_all:
        return token
    if token not in markets:
        raise _invalid(f"unknown market {token!r}")
    return token


def _tick(token: str, market_tick: Decimal) -> Decimal:
    tick = parse_decimal(token.replace("_", ".")) if len(token) <= 20 else None
    if tick is None:
        raise _invalid(f"invalid price_tick {token!r}")
    if tick <= 0 or tick < market_tick or not is_multiple(tick, market_tick):
        raise _invalid(f"price_tick {token!r} is not a multiple of the market tick {market_tick}")
    return tick


def parse_channel(name: object, markets: dict[str, object], ticks: dict[str, Decimal]) -> Channel:
    if not isinstance(name, str) or not name or len(name) > 200:
        raise _invalid("channel must be a non-empty string")
    if name in ("positions", "account", "balance_events", "markets", "markets_summary"):
        return Channel(name, name)
    head, _, rest = name.partition(".")
    if head in ("trades", "bbo", "funding_data", "orders", "fills", "funding_payments", "markets_summary"):
        if not rest or "." in rest or "@" in rest:
            raise _invalid(f"unknown channel {name!r}")
        return Channel(name, head, _market(rest, markets, allow_all=True))
    if head == "markets":
        return Channel(name, "markets", _market(rest, markets, allow_all=False))
    if head == "order_book":
        market, _, feed = rest.partition(".")
        market = _market(market, markets, allow_all=False)
        kind, *params = feed.split("@")
        if kind == "deltas":
            if params and (len(params) != 2 or params[0] != "15" or params[1] not in SNAPSHOT_RATES):
                raise ChannelError(-32600, "invalid subscribe request", "no parameters expected for deltas topic.")
            return Channel(name, "book_deltas", market)
        if kind == "snapshot":
            if len(params) not in (2, 3):
                raise _invalid(f"expected order_book.{market}.snapshot@15@<50ms|100ms>[@<price_tick>]")
            if params[0] != "15":
                raise ChannelError(-32600, "invalid subscribe request", "Expecting depth=15")
            if params[1] not in SNAPSHOT_RATES:
                raise _invalid("refresh rate must be 50ms or 100ms")
            tick = _tick(params[2], ticks[market]) if len(params) == 3 else None
            return Channel(name, "book_snapshot", market, SNAPSHOT_RATES[params[1]], tick)
        raise _invalid(f"unknown order_book feed {feed!r}")
    raise _invalid(f"unknown channel {name!r}")
