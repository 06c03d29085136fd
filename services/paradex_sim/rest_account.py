"""Private account reads (paradex-api.md §4.6, §4.8): ``/account``, ``/account/info``,
``/balance``, ``/positions``, and the paginated ``/fills``, ``/funding/payments``."""

from __future__ import annotations

from aiohttp import web

from services.paradex_sim.errors import bad_request
from services.paradex_sim.http_util import json_response, paginate
from services.paradex_sim.models import Fill, FundingPayment
from services.paradex_sim.rest_common import account_of, ctx_of
from services.paradex_sim.util import dstr


async def get_account(request: web.Request) -> web.Response:
    acct = account_of(request)
    return json_response(ctx_of(request).exchange.margin.summary(acct))


async def get_account_info(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    acct = account_of(request)
    return json_response({"results": [{
        "account": acct.address,
        "created_at": acct.created_at,
        "derivation_path": "",
        "fees": {"maker_rate": dstr(ctx.cfg.maker_fee), "taker_rate": dstr(ctx.cfg.taker_fee)},
        "kind": "main",
        "parent_account": "",
        "public_key": hex(acct.public_key or 0),
        "username": "",
        "isolated_market": "",
    }]})


async def get_balance(request: web.Request) -> web.Response:
    acct = account_of(request)
    return json_response({"results": [ctx_of(request).exchange.margin.balance_json(acct)]})


async def get_positions(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    acct = account_of(request)
    return json_response({"results": [ctx.exchange.margin.position_json(acct, p) for p in acct.positions.values()]})


def _market_filter(request: web.Request) -> str | None:
    market = request.query.get("market") or None
    if market and market not in ctx_of(request).exchange.markets:
        raise bad_request("MARKET_NOT_FOUND", f"market {market!r} not found")
    return market


async def get_fills(request: web.Request) -> web.Response:
    acct = account_of(request)
    market = _market_filter(request)
    return json_response(paginate(
        acct.fills, request.query, seq=lambda f: f.hseq, ts=lambda f: f.created_at, to_json=Fill.to_json,  # type: ignore[arg-type, return-value]
        match=(lambda f: f.market == market) if market else None,
    ))


async def get_funding_payments(request: web.Request) -> web.Response:
    acct = account_of(request)
    market = _market_filter(request)
    return json_response(paginate(
        acct.funding_payments, request.query, seq=lambda p: p.hseq, ts=lambda p: p.created_at,
        to_json=FundingPayment.to_json, match=(lambda p: p.market == market) if market else None,
    ))


ROUTES = [
    ("GET", "/account", get_account),
    ("GET", "/account/info", get_account_info),
    ("GET", "/balance", get_balance),
    ("GET", "/positions", get_positions),
    ("GET", "/fills", get_fills),
    ("GET", "/funding/payments", get_funding_payments),
]
