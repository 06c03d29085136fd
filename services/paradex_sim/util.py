"""Small shared pieces: the simulator clock (with an admin-settable offset), venue-shaped id and
``seq_no`` generators, decimal formatting and the JSON codec.

Everything the venue sends as a decimal is a string (paradex-api.md §2); ``dstr`` is the one place
that turns a ``Decimal`` into that string.
"""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def dumps(obj: Any) -> bytes:
    return _encoder.encode(obj)


def loads(data: bytes | str) -> Any:
    return _decoder.decode(data)


def dstr(d: Decimal | None) -> str:
    """Decimal -> venue string: plain notation, no trailing zeros, ``"0"`` for zero."""
    if d is None:
        return ""
    if not d:
        return "0"
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


MAX_MAGNITUDE = 30  # |adjusted exponent| beyond which no price, size or rate makes sense


def parse_decimal(value: object) -> Decimal | None:
    """A JSON value that should be a decimal (string preferred, numbers tolerated) -> Decimal, or
    None if it is not one, is not finite or is absurdly large/small (keeps arithmetic bounded)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, int | str):
        try:
            d = Decimal(str(value).strip())
        except (InvalidOperation, ValueError):
            return None
        if not d.is_finite() or (d and abs(d.adjusted()) > MAX_MAGNITUDE) or len(d.as_tuple().digits) > 60:
            return None
        return d
    return None


def is_multiple(value: Decimal, step: Decimal) -> bool:
    """``value`` is a whole number of ``step``s (False for anything Decimal cannot divide)."""
    try:
        return not value % step
    except (InvalidOperation, ArithmeticError):
        return False


class Clock:
    """Wall clock plus an offset (ms) the admin API can move, so tests can age JWTs and signature
    timestamps without sleeping."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ns(self) -> int:
        return time.time_ns() + self.offset_ms * 1_000_000

    def now_ms(self) -> int:
        return self.now_ns() // 1_000_000

    def now_us(self) -> int:
        return self.now_ns() // 1_000

    def now_s(self) -> float:
        return self.now_ns() / 1e9


class Ids:
    """Venue-shaped identifiers: 28-digit decimal strings (13-digit ms + 15 digits) for orders,
    fills and trades; ``seq_no`` unique, increasing and non-contiguous (§2)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._counter = 0
        self._last_seq = 0

    def new_id(self) -> str:
        self._counter += 1
        return f"{self.clock.now_ms():013d}2017{self._counter % 10**11:011d}"

    def seq_no(self) -> int:
        # ~ns-looking like the venue's; +1 at least, so strictly increasing even within one ns.
        nxt = max(self._last_seq + 1, self.clock.now_ns())
        self._last_seq = nxt
        return nxt
