"""Pre-trade checks: what can be known to fail before the venue is called.

``check(spec, inst, ...)`` returns ``None`` (send it) or a reason string (``OrderDenied``). Checked,
in order: venue state (maintenance / cancel_only / post_only), size increment, max order size,
min quantity, price and trigger tick, min notional (size x price, or x mark for market orders;
reduce-only orders are exempt as on the venue), open-order cap (``max_open_orders`` from the
instrument's venue info), and the price band: an aggressive limit order outside
``mark x (1 ± price_bands_width)`` is refused as the venue would (passive ones are fine; trigger
orders are checked by the venue when they trigger). Pure: no I/O.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import schemas as s
from services.order_router.mapping import TRIGGER_TYPES, VenueOrderSpec


def _dec(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def info_decimal(inst: s.CryptoPerpetual, key: str) -> Decimal | None:
    return _dec((inst.info or {}).get(key))


def money_amount(money: str | None) -> Decimal | None:
    return _dec(money.split(" ", 1)[0]) if money else None


def check(
    spec: VenueOrderSpec,
    inst: s.CryptoPerpetual,
    *,
    system_status: str,
    mark: Decimal | None,
    open_orders: int,
) -> str | None:
    if system_status == "maintenance":
        return "venue is in maintenance"
    if system_status == "cancel_only":
        return "venue is in cancel-only mode"
    if system_status == "post_only" and spec.instruction != "POST_ONLY":
        return "venue is in post-only mode: only post-only orders are accepted"
    size = Decimal(spec.size)
    step = Decimal(inst.size_increment)
    if size % step:
        return f"quantity {spec.size} is not a multiple of the size increment {inst.size_increment}"
    max_qty = _dec(inst.max_quantity)
    if max_qty is not None and size > max_qty:
        return f"quantity {spec.size} exceeds the max order size {inst.max_quantity}"
    min_qty = _dec(inst.min_quantity)
    if min_qty is not None and size < min_qty:
        return f"quantity {spec.size} is below the min quantity {inst.min_quantity}"
    tick = Decimal(inst.price_increment)
    price = _dec(spec.price)
    if price is not None and price % tick:
        return f"price {spec.price} is not a multiple of the tick size {inst.price_increment}"
    trigger = _dec(spec.trigger_price)
    if trigger is not None and trigger % tick:
        return f"trigger price {spec.trigger_price} is not a multiple of the tick size {inst.price_increment}"
    min_notional = money_amount(inst.min_notional)
    reduce_only = "REDUCE_ONLY" in spec.flags
    ref_px = price if price is not None else mark
    if spec.is_trigger and trigger is not None and price is None:
        ref_px = trigger
    if min_notional is not None and ref_px is not None and not reduce_only and size * ref_px < min_notional:
        return f"notional {size * ref_px} is below the min notional {inst.min_notional}"
    max_open = info_decimal(inst, "max_open_orders")
    if max_open is not None and open_orders >= max_open:
        return f"{open_orders} open orders in {spec.market}: max_open_orders ({max_open}) reached"
    width = info_decimal(inst, "price_bands_width")
    if (
        width is not None
        and mark is not None
        and price is not None
        and spec.type not in TRIGGER_TYPES
    ):
        upper = (mark * (1 + width)).quantize(tick)
        lower = (mark * (1 - width)).quantize(tick)
        if spec.side == "BUY" and price > upper:
            return f"buy price {spec.price} is above the price band (mark {mark} + {width:%} = {upper})"
        if spec.side == "SELL" and price < lower:
            return f"sell price {spec.price} is below the price band (mark {mark} - {width:%} = {lower})"
    return None
