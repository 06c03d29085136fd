"""Paradex reference data → Nautilus instruments and statuses.

* ``crypto_perpetual(market)``: one ``GET /markets`` item (paradex-api.md §4.3) → ``CryptoPerpetual``
  (nautilus-model.md §1.6). Mapping:

  ============================  =====================================================================
  price_precision / increment   decimals of ``price_tick_size`` (``"0.10"`` counts as 1)
  size_precision / increment    decimals of ``order_size_increment``
  min_quantity / lot_size       ``order_size_increment`` (Paradex has no separate minimum size)
  max_quantity                  ``max_order_size``
  min_notional                  ``min_notional`` as Money in the quote currency, ``"10.00 USD"``
  margin_init                   ``delta1_cross_margin_params.imf_base``
  margin_maint                  ``imf_base x mmf_factor`` (the venue's MMF is a fraction of the IMF:
                                BTC 2% IMF x 50% → 1% MMF)
  maker_fee / taker_fee         ``fee_config.api_fee.{maker,taker}_fee.fee``, else
                                ``chain_details.fee_{maker,taker}``, else the provided defaults
                                (``info["fee_source"]`` says which)
  info                          every venue field as strings; nested objects flattened to dotted keys
  ============================  =====================================================================

* ``market_status(...)``: ``/system/state`` + the market's ``open_at``/``expiry_at`` → the
  ``MarketStatusAction`` and flags of an ``InstrumentStatus``: ``ok`` → TRADING, ``post_only`` →
  QUOTING (resting orders only), ``cancel_only`` → PAUSE, ``maintenance`` → HALT, not yet open →
  PRE_OPEN, expired → CLOSE, anything else → NOT_AVAILABLE_FOR_TRADING.

* ``fingerprint(instrument)``: a content hash that ignores timestamps, for Msg-Ids that store an
  unchanged definition once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from schemas import CryptoPerpetual, InstrumentStatus, encode, instrument_id
from schemas.enums import MarketStatusAction
from services.paradex.normalize import MarketSpec, NormalizeError, fixed, funding_interval_minutes

_CCY = re.compile(r"[A-Z0-9]{2,12}")
_MAX_PRECISION = 16
# Money precision of the quote currencies Paradex uses (Nautilus: USD 2, USDC 8).
_CCY_PRECISION = {"USD": 2, "USDC": 8, "USDT": 8}


@dataclass(frozen=True)
class FeeDefaults:
    maker: str = "0"
    taker: str = "0"


def precision_of(step: str) -> int:
    """Decimals needed to express ``step`` (``"0.10"`` → 1, ``"5"`` → 0, ``"0.00001"`` → 5)."""
    try:
        d = Decimal(step)
    except (InvalidOperation, TypeError) as exc:
        raise NormalizeError(f"not a decimal step: {step!r}") from exc
    if not d.is_finite() or d <= 0:
        raise NormalizeError(f"step must be positive: {step!r}")
    exp = d.normalize().as_tuple().exponent
    assert isinstance(exp, int)
    p = max(0, -exp)
    if p > _MAX_PRECISION:
        raise NormalizeError(f"step {step!r} needs {p} decimals (max {_MAX_PRECISION})")
    return p


def dec_str(d: Decimal) -> str:
    """A Decimal as a plain string without exponent or trailing zeros (``0.0100`` → ``0.01``)."""
    out = f"{d:f}"
    if "." in out:
        out = out.rstrip("0").rstrip(".")
    return out or "0"


def _decimal(value: Any, name: str) -> Decimal:
    try:
        d = Decimal(str(value))
    except (InvalidOperation, TypeError) as exc:
        raise NormalizeError(f"{name}: not a decimal: {value!r}") from exc
    if not d.is_finite():
        raise NormalizeError(f"{name}: not finite: {value!r}")
    return d


def _currency(code: Any, name: str) -> str:
    if not isinstance(code, str):
        raise NormalizeError(f"{name}: missing")
    up = code.upper()
    if not _CCY.fullmatch(up):
        raise NormalizeError(f"{name} {code!r} is not a Nautilus currency code (2-12 of A-Z0-9)")
    return up


def flatten_info(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Venue fields as strings; nested objects flattened to ``a.b.c`` keys; lists as list[str]."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_info(v, key + "."))
        elif isinstance(v, list):
            out[key] = [x if isinstance(x, str) else msgspec.json.encode(x).decode() for x in v]
        elif v is None:
            out[key] = None
        elif isinstance(v, bool):
            out[key] = "true" if v else "false"
        elif isinstance(v, str):
            out[key] = v
        else:
            # ints and (rare) JSON numbers: their JSON text, never a Python float repr
            out[key] = msgspec.json.encode(v).decode()
    return out


def _fees(m: dict[str, Any], defaults: FeeDefaults) -> tuple[str, str, str]:
    api = ((m.get("fee_config") or {}).get("api_fee")) or {}
    maker = (api.get("maker_fee") or {}).get("fee")
    taker = (api.get("taker_fee") or {}).get("fee")
    if maker not in (None, "") and taker not in (None, ""):
        return dec_str(_decimal(maker, "maker_fee")), dec_str(_decimal(taker, "taker_fee")), "fee_config.api_fee"
    chain = m.get("chain_details") or {}
    if chain.get("fee_maker") not in (None, "") and chain.get("fee_taker") not in (None, ""):
        return (
            dec_str(_decimal(chain["fee_maker"], "fee_maker")),
            dec_str(_decimal(chain["fee_taker"], "fee_taker")),
            "chain_details",
        )
    return defaults.maker, defaults.taker, "default"


def crypto_perpetual(m: dict[str, Any], ts_init: int, fees: FeeDefaults | None = None) -> CryptoPerpetual:
    """One ``/markets`` item → ``CryptoPerpetual``; raises ``NormalizeError`` if it cannot be one."""
    symbol = m.get("symbol")
    if not isinstance(symbol, str) or not symbol or "." in symbol or " " in symbol:
        raise NormalizeError(f"bad symbol {symbol!r}")
    kind = m.get("asset_kind")
    if kind not in ("PERP", None):
        raise NormalizeError(f"{symbol}: asset_kind {kind!r} is not a perpetual")
    tick = m.get("price_tick_size")
    step = m.get("order_size_increment")
    if not isinstance(tick, str) or not isinstance(step, str):
        raise NormalizeError(f"{symbol}: price_tick_size/order_size_increment missing")
    pp, sp = precision_of(tick), precision_of(step)
    quote = _currency(m.get("quote_currency"), "quote_currency")
    margin = m.get("delta1_cross_margin_params") or {}
    imf = _decimal(margin.get("imf_base"), "imf_base")
    mmf = _decimal(margin.get("mmf_factor"), "mmf_factor")
    maker, taker, fee_source = _fees(m, fees or FeeDefaults())
    min_notional = m.get("min_notional")
    max_size = m.get("max_order_size")
    info = flatten_info(m)
    info["fee_source"] = fee_source
    return CryptoPerpetual(
        id=instrument_id(symbol),
        raw_symbol=symbol,
        base_currency=_currency(m.get("base_currency"), "base_currency"),
        quote_currency=quote,
        settlement_currency=_currency(m.get("settlement_currency") or quote, "settlement_currency"),
        is_inverse=False,
        price_precision=pp,
        price_increment=fixed(dec_str(_decimal(tick, "price_tick_size")), pp, signed=False),
        size_precision=sp,
        size_increment=fixed(dec_str(_decimal(step, "order_size_increment")), sp, signed=False),
        multiplier="1",
        lot_size=fixed(dec_str(_decimal(step, "order_size_increment")), sp, signed=False),
        max_quantity=fixed(dec_str(_decimal(max_size, "max_order_size")), sp, signed=False)
        if max_size not in (None, "")
        else None,
        min_quantity=fixed(dec_str(_decimal(step, "order_size_increment")), sp, signed=False),
        min_notional=_money(min_notional, quote) if min_notional not in (None, "") else None,
        margin_init=dec_str(imf),
        margin_maint=dec_str(imf * mmf),
        maker_fee=maker,
        taker_fee=taker,
        ts_event=ts_init,
        ts_init=ts_init,
        info=info,
    )


def _money(amount: Any, currency: str) -> str:
    d = _decimal(amount, "min_notional")
    return f"{fixed(dec_str(d), _CCY_PRECISION.get(currency, 8))} {currency}"


def market_spec(inst: CryptoPerpetual) -> MarketSpec:
    """What the market-data normaliser needs from an instrument."""
    hours = (inst.info or {}).get("funding_period_hours")
    return MarketSpec(
        market=inst.raw_symbol,
        instrument_id=inst.id,
        price_precision=inst.price_precision,
        size_precision=inst.size_precision,
        funding_interval_min=funding_interval_minutes(hours if isinstance(hours, str | int) else None),
    )


def fingerprint(inst: CryptoPerpetual) -> str:
    """Hash of the definition without its timestamps (same content → same Msg-Id)."""
    body = encode(msgspec.structs.replace(inst, ts_event=0, ts_init=0))
    return hashlib.blake2b(body, digest_size=10).hexdigest()


# -- status ------------------------------------------------------------------------------------

_SYSTEM_STATUS: dict[str, tuple[MarketStatusAction, bool, bool]] = {
    "ok": (MarketStatusAction.TRADING, True, True),
    "post_only": (MarketStatusAction.QUOTING, False, True),
    "cancel_only": (MarketStatusAction.PAUSE, False, False),
    "maintenance": (MarketStatusAction.HALT, False, False),
}


def market_status(
    system_status: str, open_at_ms: int, expiry_at_ms: int, now_ms: int
) -> tuple[MarketStatusAction, str, bool, bool]:
    """``(action, reason, is_trading, is_quoting)`` for one market."""
    if expiry_at_ms and now_ms >= expiry_at_ms:
        return MarketStatusAction.CLOSE, "expired", False, False
    if open_at_ms and now_ms < open_at_ms:
        return MarketStatusAction.PRE_OPEN, "not yet open", False, False
    found = _SYSTEM_STATUS.get(system_status)
    if found is None:
        return MarketStatusAction.NOT_AVAILABLE_FOR_TRADING, f"system status {system_status!r}", False, False
    action, trading, quoting = found
    return action, f"system status {system_status}", trading, quoting


def instrument_status(
    market: str, system_status: str, open_at_ms: int, expiry_at_ms: int, now_ns: int
) -> InstrumentStatus:
    action, reason, trading, quoting = market_status(system_status, open_at_ms, expiry_at_ms, now_ns // 1_000_000)
    return InstrumentStatus(
        instrument_id=instrument_id(market),
        action=action,
        reason=reason,
        trading_event=system_status,
        is_trading=trading,
        is_quoting=quoting,
        is_short_sell_restricted=False,
        ts_event=now_ns,
        ts_init=now_ns,
    )


def int_field(m: dict[str, Any], name: str) -> int:
    v = m.get(name)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0
