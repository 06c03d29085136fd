"""WebSocket order management methods (paradex-api.md §5.8): ``order.create``, ``order.create_batch``,
``order.modify``, ``order.cancel``, ``order.cancel_batch``, ``order.cancel_all``,
``order.cancel_on_disconnect``. Same validation, signatures and rate-limit counters as REST; venue
errors come back as JSON-RPC error 100 with the venue error code as ``message``.
"""

from __future__ import annotations

from typing import Any

from services.paradex_sim.accounts import Account
from services.paradex_sim.context import SimContext
from services.paradex_sim.errors import ApiError, validation
from services.paradex_sim.hub import Conn


def _order_result(ctx: SimContext, order_json: dict[str, object]) -> dict[str, object]:
    return {"order": order_json, "created_at": order_json["created_at"], "received_at": ctx.clock.now_ns()}


def create(ctx: SimContext, conn: Conn, acct: Account, params: Any) -> dict[str, object]:
    order = ctx.orders.create(acct, params)
    return _order_result(ctx, order.to_json())


def create_batch(ctx: SimContext, conn: Conn, acct: Account, params: Any) -> dict[str, object]:
    bodies = params.get("orders") if isinstance(params, dict) else params  # spec: {"orders"}; paradex-py: bare list
    orders, errors = ctx.orders.create_batch(acct, bodies)
    results: list[dict[str, object]] = [_order_result(ctx, o.to_json()) for o in orders]
    results += [{"error": str(e.get("message", e.get("error")))} for e in errors]
    return {"results": results}


def modify(ctx: SimContext, conn: Conn, acct: Account, params: Any) -> dict[str, object]:
    if not isinstance(params, dict) or not isinstance(params.get("id"), str | int):
        raise validation("id is required")
    order = ctx.orders.modify(acct, str(params["id"]), params)
    return {"order": order.to_json()}


def cancel(ctx: SimContext, conn: Conn, acct: Account, params: Any) -> dict[str, object]:
    if not isinstance(params, dict):
        raise validation("params must be an object")
    if params.get("id"):
        order = ctx.orders.cancel(acct, str(params["id"]))
    elif params.get("client_id"):
        order = ctx.orders.cancel_by_client_id(acct, str(params["client_id"]), params.get("market") or None)
    else:
        raise validation("id or client_id is required")
    return {"order_id": order.id, "status": "QUEUED_FOR_CANCELLATION"}


def cancel_batch(ctx: SimContext, conn: Conn, acct: Account, params: Any) -> dict[str, object]:
    if not isinstance(params, dict):
        raise validation("params must be an object")
    results = ctx.orders.cancel_batch(acct, params.get("order_ids"), params.get("client_order_ids"))
    return {"results": results}


def cancel_all(ctx: SimContext, conn: Conn, acct: Account, params: Any) -> dict[str, object]:
    market = params.get("market") if isinstance(params, dict) else None
    ctx.orders.cancel_all(acct, market or None)
    return {"status": "ok"}


def cancel_on_disconnect(ctx: SimContext, conn: Conn, acct: Account, params: Any) -> dict[str, object]:
    if not isinstance(params, dict) or not isinstance(params.get("enabled"), bool):
        raise validation("enabled must be true or false")
    conn.cancel_on_disconnect = params["enabled"]
    return {"enabled": conn.cancel_on_disconnect}


METHODS = {
    "order.create": create,
    "order.create_batch": create_batch,
    "order.modify": modify,
    "order.cancel": cancel,
    "order.cancel_batch": cancel_batch,
    "order.cancel_all": cancel_all,
    "order.cancel_on_disconnect": cancel_on_disconnect,
}
# Methods that count against the shared REST/WS order rate limit.
RATE_LIMITED = frozenset(METHODS) - {"order.cancel_on_disconnect"}


def api_error_to_rpc(exc: ApiError) -> tuple[int, str, str]:
    return 100, exc.code or "UNAUTHORIZED_ERROR", exc.message
