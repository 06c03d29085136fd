"""Request validation before anything is signed: the venue's market rules (``GET /markets``), strict
decimal parsing, tick/step grids, order types and timestamp skew.

A failure raises ``Refusal(code, reason)`` (codes from ``schemas.signer.ERROR_CODES``); the
handler turns it into a ``SignerError`` reply and no signature is made. Everything here is pure and
synchronous so it runs on the hot path without awaiting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from services.paradex import signing

ORDER_TYPES = frozenset(
    {
        "MARKET",
        "LIMIT",
        "STOP_LIMIT",
        "STOP_MARKET",
        "TAKE_PROFIT_LIMIT",
        "TAKE_PROFIT_MARKET",
        "STOP_LOSS_LIMIT",
        "STOP_LOSS_MARKET",
    }
)
SIDES = frozenset({"BUY", "SELL"})

# Unsigned decimal with at most 18 integer and 18 fractional digits: enough for any venue value,
# small enough that exact Decimal arithmetic below never rounds (precision is raised to 60).
_DECIMAL = re.compile(r"^\d{1,18}(\.\d{1,18})?$")
_ORDER_ID = re.compile(r"^\d{1,60}$|^0x[0-9a-fA-F]{1,62}$")
_PRECISION = 60


class Refusal(Exception):
    """A request the signer will not sign; ``code`` is machine-readable, ``reason`` for humans."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MarketRule:
    symbol: str
    price_tick: Decimal
    size_step: Decimal
    max_order_size: Decimal | None


@dataclass(frozen=True, slots=True)
class ValidOrder:
    """A validated order: the signed fields plus the exact size/price for policy checks."""

    fields: signing.OrderFields
    size: Decimal
    price: Decimal | None  # None for market variants (signed as 0)


def parse_decimal(text: str | None, what: str, code: str) -> Decimal:
    if text is None or not _DECIMAL.match(text):
        raise Refusal(code, f"{what} must be a plain non-negative decimal string, got {text!r}")
    return Decimal(text)


def _on_grid(value: Decimal, step: Decimal) -> bool:
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return step > 0 and value % step == 0


def _quantum_exact(value: Decimal) -> bool:
    """Signed values are ``value * 10^8`` truncated; refuse anything truncation would change."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        scaled = value * signing.QUANTUM
        return scaled == scaled.to_integral_value()


class MarketCatalog:
    """Market rules from ``GET /markets``; replaced wholesale on every refresh."""

    def __init__(self) -> None:
        self.rules: dict[str, MarketRule] = {}
        self.loaded = False

    def update(self, rows: list[dict[str, Any]]) -> list[str]:
        """Replace the rules; returns the symbols of rows that could not be parsed (skipped)."""
        rules: dict[str, MarketRule] = {}
        bad: list[str] = []
        for row in rows:
            symbol = row.get("symbol") if isinstance(row, dict) else None
            try:
                if not isinstance(symbol, str) or not symbol:
                    raise ValueError("no symbol")
                tick = Decimal(str(row["price_tick_size"]))
                step = Decimal(str(row["order_size_increment"]))
                max_raw = row.get("max_order_size")
                max_size = Decimal(str(max_raw)) if max_raw not in (None, "", "0") else None
                if not (tick.is_finite() and step.is_finite() and tick > 0 and step > 0):
                    raise ValueError("non-positive tick or step")
                if max_size is not None and not max_size.is_finite():
                    raise ValueError("bad max_order_size")
            except (KeyError, ValueError, TypeError, InvalidOperation):
                bad.append(str(symbol))
                continue
            rules[symbol] = MarketRule(symbol, tick, step, max_size)
        self.rules = rules
        self.loaded = True
        return bad

    def rule(self, market: str) -> MarketRule:
        if not self.loaded:
            raise Refusal("NOT_READY", "market rules are not loaded yet (venue unreachable?)")
        r = self.rules.get(market)
        if r is None:
            raise Refusal("UNKNOWN_MARKET", f"market {market!r} is not listed by the venue")
        return r


def is_market_variant(order_type: str) -> bool:
    """Types signed with price 0 (paradex-api.md §6.2.1)."""
    return order_type.endswith("MARKET")


def validate_order(
    catalog: MarketCatalog,
    *,
    market: str,
    side: str,
    order_type: str,
    size: str,
    price: str | None,
    timestamp_ms: int,
    now_ms: int,
    max_skew_ms: int,
) -> ValidOrder:
    rule = catalog.rule(market)
    if side not in SIDES:
        raise Refusal("INVALID_SIDE", f"side must be BUY or SELL, got {side!r}")
    if order_type not in ORDER_TYPES:
        raise Refusal("INVALID_ORDER_TYPE", f"order type {order_type!r} is not one of {', '.join(sorted(ORDER_TYPES))}")
    qty = parse_decimal(size, "size", "INVALID_SIZE")
    if qty <= 0:
        raise Refusal("INVALID_SIZE", "size must be positive")
    if not _on_grid(qty, rule.size_step):
        raise Refusal("INVALID_SIZE", f"size {size} is not a multiple of {market}'s increment {rule.size_step}")
    if not _quantum_exact(qty):
        raise Refusal("INVALID_SIZE", f"size {size} has more than 8 decimals")
    if rule.max_order_size is not None and qty > rule.max_order_size:
        raise Refusal("INVALID_SIZE", f"size {size} exceeds {market}'s max order size {rule.max_order_size}")
    px: Decimal | None
    if is_market_variant(order_type):
        if price not in (None, "") and parse_decimal(price, "price", "INVALID_PRICE") != 0:
            raise Refusal("INVALID_PRICE", f"{order_type} orders are signed without a price; got {price!r}")
        px = None
    else:
        px = parse_decimal(price, "price", "INVALID_PRICE")
        if px <= 0:
            raise Refusal("INVALID_PRICE", f"{order_type} orders need a positive price")
        if not _on_grid(px, rule.price_tick):
            raise Refusal("INVALID_PRICE", f"price {price} is not a multiple of {market}'s tick {rule.price_tick}")
        if not _quantum_exact(px):
            raise Refusal("INVALID_PRICE", f"price {price} has more than 8 decimals")
    check_timestamp_ms(timestamp_ms, now_ms, max_skew_ms)
    fields = signing.OrderFields(market, side, order_type, size, None if px is None else price, timestamp_ms)
    return ValidOrder(fields, qty, px)


def check_timestamp_ms(timestamp_ms: int, now_ms: int, max_skew_ms: int) -> None:
    if abs(timestamp_ms - now_ms) > max_skew_ms:
        raise Refusal(
            "INVALID_TIMESTAMP",
            f"timestamp {timestamp_ms} ms is {timestamp_ms - now_ms:+d} ms from the signer's clock "
            f"(allowed +/-{max_skew_ms} ms)",
        )


def validate_order_id(order_id: str) -> str:
    if not _ORDER_ID.match(order_id):
        raise Refusal("INVALID_ORDER_ID", f"order id must be a decimal or 0x-hex venue id, got {order_id!r}")
    if signing.felt(order_id) >= signing.FIELD_PRIME:
        raise Refusal("INVALID_ORDER_ID", "order id does not fit in a felt")
    return order_id


def validate_auth(timestamp_s: int, expiration_s: int, now_s: int, max_skew_s: int, max_validity_s: int) -> None:
    if abs(timestamp_s - now_s) > max_skew_s:
        raise Refusal("INVALID_TIMESTAMP", f"auth timestamp {timestamp_s} s is {timestamp_s - now_s:+d} s from now")
    if expiration_s <= max(timestamp_s, now_s):
        raise Refusal("INVALID_TIMESTAMP", "auth expiration must be after the timestamp and in the future")
    if expiration_s - timestamp_s > max_validity_s:
        raise Refusal(
            "POLICY_AUTH_VALIDITY",
            f"auth signature would be valid {expiration_s - timestamp_s} s; the limit is {max_validity_s} s",
        )
