"""HTTP plumbing shared by the REST and admin apps: JSON responses, query-parameter parsing and
cursor pagination with the venue's ``{"next","prev","results"}`` envelope (paradex-api.md §2).

Cursors are opaque base64 tokens naming a position in an append-only, sequence-ordered list, so
pages stay stable while new items arrive. Results are newest first; ``next`` walks to older items,
``prev`` back to newer ones.
"""

from __future__ import annotations

import base64
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from services.paradex_sim.errors import ApiError
from services.paradex_sim.util import dumps, loads

T = TypeVar("T")


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(obj), status=status, content_type="application/json", headers=headers)


def error_response(err: ApiError, headers: Mapping[str, str] | None = None) -> web.Response:
    return json_response(err.body(), status=err.status, headers=headers)


def bad_param(message: str) -> ApiError:
    return ApiError(400, "INVALID_REQUEST_PARAMETER", message)


async def read_json(request: web.Request, allow_empty: bool = False) -> Any:
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return None
        raise ApiError(400, "BINDING_ERROR", "request body is empty")
    try:
        return loads(raw)
    except msgspec.DecodeError:
        raise ApiError(400, "BINDING_ERROR", "request body is not valid JSON") from None


def int_param(query: Mapping[str, str], name: str, default: int | None = None, lo: int | None = None,
              hi: int | None = None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise bad_param(f"{name} must be an integer") from None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise bad_param(f"{name} must be between {lo} and {hi}")
    return v


def _encode_cursor(direction: str, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{direction}:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        direction, seq = raw.split(":", 1)
        if direction not in ("n", "p"):
            raise ValueError(direction)
        return direction, int(seq)
    except (ValueError, UnicodeDecodeError):
        raise bad_param("invalid cursor") from None


def paginate(
    items: Sequence[T],
    query: Mapping[str, str],
    *,
    seq: Callable[[T], int],
    ts: Callable[[T], int],
    to_json: Callable[[T], dict[str, object]],
    match: Callable[[T], bool] | None = None,
    max_page: int = 5000,
) -> dict[str, object]:
    """``items`` ascending by ``seq``; filters ``start_at``/``end_at`` (ms) and ``match``."""
    page_size = int_param(query, "page_size", 100, 1, max_page)
    assert page_size is not None
    start_at = int_param(query, "start_at")
    end_at = int_param(query, "end_at")

    def ok(item: T) -> bool:
        t = ts(item)
        if start_at is not None and t < start_at:
            return False
        if end_at is not None and t > end_at:
            return False
        return match is None or match(item)

    cursor = query.get("cursor") or None
    direction, anchor = _decode_cursor(cursor) if cursor else ("", 0)
    picked: list[T] = []
    if direction in ("", "n"):
        i = len(items) - 1 if not direction else bisect_left(items, anchor, key=seq) - 1
        while i >= 0 and len(picked) <= page_size:
            if ok(items[i]):
                picked.append(items[i])
            i -= 1
        more_older = len(picked) > page_size
        results = picked[:page_size]
        more_newer = bool(direction and results) and _any(
            items, bisect_right(items, seq(results[0]), key=seq), 1, ok)
    else:
        i = bisect_right(items, anchor, key=seq)
        while i < len(items) and len(picked) <= page_size:
            if ok(items[i]):
                picked.append(items[i])
            i += 1
        more_newer = len(picked) > page_size
        results = list(reversed(picked[:page_size]))
        more_older = bool(results) and _any(items, bisect_left(items, seq(results[-1]), key=seq) - 1, -1, ok)
    return {
        "next": _encode_cursor("n", seq(results[-1])) if results and more_older else None,
        "prev": _encode_cursor("p", seq(results[0])) if results and more_newer else None,
        "results": [to_json(x) for x in results],
    }


def _any(items: Sequence[T], start: int, step: int, ok: Callable[[T], bool]) -> bool:
    i = start
    while 0 <= i < len(items):
        if ok(items[i]):
            return True
        i += step
    return False
