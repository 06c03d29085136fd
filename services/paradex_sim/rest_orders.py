"""Order endpoints (paradex-api.md §4.7): create (single and batch), modify, the four cancel
forms, open orders, one order by id or client id, and the paginated order history."""

from __future__ import annotations

from aiohttp import web

from services.paradex_sim.errors import ApiError, validation
from services.paradex_sim.http_util import json_response, paginate, read_json
from services.paradex_sim.models import CLOSED, Order
from services.paradex_sim.rest_common import account_of, ctx_of


async def post_order(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    acct = account_of(request)
    order = ctx.orders.create(acct, await read_json(request))
    return json_response(order.to_json(), status=201)


async def post_batch(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    acct = account_of(request)
    orders, errors = ctx.orders.create_batch(acct, await read_json(request))
    return json_response({"orders": [o.to_json() for o in orders], "errors": errors}, status=201)


async def get_orders(request: web.Request) -> web.Response:
    acct = account_of(request)
    market = request.query.get("market") or None
    orders = [o for o in acct.open_orders.values() if market is None or o.market == market]
    return json_response({"results": [o.to_json() for o in orders]})


async def delete_orders(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    acct = account_of(request)
    ctx.orders.cancel_all(acct, request.query.get("market") or None)
    return json_response({})


async def delete_batch(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    acct = account_of(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise validation("body must be {\"order_ids\": [...], \"client_order_ids\": [...]}")
    results = ctx.orders.cancel_batch(acct, body.get("order_ids"), body.get("client_order_ids"))
    return json_response({"results": results})


async def get_order(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    acct = account_of(request)
    order = ctx.orders.find(acct, request.match_info["order_id"])
    if order.status == CLOSED and not ctx.cfg.closed_orders_by_id:
        raise ApiError(404, "ORDER_ID_NOT_FOUND", f"order {order.id} is not open")
    return json_response(order.to_json())


async def put_order(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    acct = account_of(request)
    order = ctx.orders.modify(acct, request.match_info["order_id"], await read_json(request))
    return json_response(order.to_json())


async def delete_order(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    ctx.orders.cancel(account_of(request), request.match_info["order_id"])
    return web.Response(status=204)


async def get_by_client_id(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    acct = account_of(request)
    order = ctx.orders.find_open_by_client_id(acct, request.match_info["client_id"], request.query.get("market"))
    return json_response(order.to_json())


async def delete_by_client_id(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    ctx.orders.cancel_by_client_id(account_of(request), request.match_info["client_id"],
                                   request.query.get("market") or None)
    return web.Response(status=204)


async def get_history(request: web.Request) -> web.Response:
    acct = account_of(request)
    q = request.query
    filters = {k: q[k] for k in ("client_id", "market", "side", "status", "type") if q.get(k)}

    def match(o: Order) -> bool:
        return all(getattr(o, k) == v for k, v in filters.items())

    return json_response(paginate(acct.history, q, seq=lambda o: o.hseq, ts=lambda o: o.created_at,
                                  to_json=Order.to_json, match=match if filters else None))


ROUTES = [
    ("POST", "/orders/batch", post_batch),
    ("DELETE", "/orders/batch", delete_batch),
    ("GET", "/orders/by_client_id/{client_id}", get_by_client_id),
    ("DELETE", "/orders/by_client_id/{client_id}", delete_by_client_id),
    ("POST", "/orders", post_order),
    ("GET", "/orders", get_orders),
    ("DELETE", "/orders", delete_orders),
    ("GET", "/orders/{order_id}", get_order),
    ("PUT", "/orders/{order_id}", put_order),
    ("DELETE", "/orders/{order_id}", delete_order),
    ("GET", "/orders-history", get_history),
]
