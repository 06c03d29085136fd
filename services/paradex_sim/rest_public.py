"""Public REST endpoints (paradex-api.md §4.1-§4.5, §4.8): system config/state/time, markets and
their summaries, order book, BBO, the public trade tape and funding data."""

from __future__ import annotations

from aiohttp import web

from services.paradex_sim.context import SimContext
from services.paradex_sim.errors import ApiError, bad_request, validation
from services.paradex_sim.http_util import int_param, json_response, paginate
from services.paradex_sim.markets import system_config
from services.paradex_sim.models import Trade
from services.paradex_sim.rest_common import ctx_of
from services.paradex_sim.util import dstr, is_multiple, parse_decimal


def _ctx(request: web.Request) -> SimContext:
    return ctx_of(request)


def _market_or_400(request: web.Request, market: str | None) -> str:
    if not market:
        raise validation("market is required")
    if market not in _ctx(request).exchange.markets:
        raise bad_request("MARKET_NOT_FOUND", f"market {market!r} not found")
    return market


async def get_config(request: web.Request) -> web.Response:
    return json_response(system_config(_ctx(request).cfg.starknet_chain_id))


async def get_state(request: web.Request) -> web.Response:
    return json_response({"status": _ctx(request).exchange.system_status})


async def get_time(request: web.Request) -> web.Response:
    return json_response({"server_time": str(_ctx(request).clock.now_ms())})


async def get_markets(request: web.Request) -> web.Response:
    ex = _ctx(request).exchange
    market = request.query.get("market")
    specs = [s for m, s in ex.markets.items() if not market or m == market]
    return json_response({"results": [s.to_json() for s in specs]})


async def get_summary(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    market = request.query.get("market")
    if not market:
        raise validation("market is required (a symbol or ALL)")
    names = list(ctx.exchange.markets) if market == "ALL" else [_market_or_400(request, market)]
    return json_response({"results": [ctx.feeds.summary_json(m) for m in names]})


async def get_orderbook(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    market = _market_or_400(request, request.match_info["market"])
    depth = int_param(request.query, "depth", 20, 1, 10_000)
    book = ctx.exchange.books[market]
    tick_raw = request.query.get("price_tick")
    if tick_raw:
        tick = parse_decimal(tick_raw.replace("_", "."))
        spec_tick = ctx.exchange.markets[market].price_tick_size
        if tick is None or tick < spec_tick or not is_multiple(tick, spec_tick):
            raise ApiError(400, "INVALID_REQUEST_PARAMETER", "price_tick must be a multiple of the market tick")
        bids, asks = book.grouped_levels("BUY", depth or 20, tick), book.grouped_levels("SELL", depth or 20, tick)
    else:
        bids, asks = book.levels("BUY", depth), book.levels("SELL", depth)
    best_bid = [dstr(bids[0][1])] if bids else []
    best_ask = [dstr(asks[0][1])] if asks else []
    return json_response({
        "market": market,
        "seq_no": book.seq_no,
        "last_updated_at": book.last_updated_at,
        "asks": [[dstr(p), dstr(s)] for p, s in asks],
        "bids": [[dstr(p), dstr(s)] for p, s in bids],
        "best_ask_api": best_ask,
        "best_ask_interactive": best_ask,
        "best_bid_api": best_bid,
        "best_bid_interactive": best_bid,
    })


async def get_bbo(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    market = _market_or_400(request, request.match_info["market"])
    return json_response(ctx.feeds.bbo_json(market))


async def get_trades(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    market = _market_or_400(request, request.query.get("market"))
    trades: list[Trade] = ctx.exchange.trades[market]
    return json_response(paginate(trades, request.query, seq=lambda t: t.hseq, ts=lambda t: t.created_at,
                                  to_json=Trade.to_json, max_page=1000))


async def get_funding_data(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    market = _market_or_400(request, request.query.get("market"))
    rows = ctx.exchange.pricing.funding_history[market]
    return json_response(paginate(rows, request.query, seq=lambda r: r[0], ts=lambda r: int(r[1]["created_at"]),
                                  to_json=lambda r: r[1]))


ROUTES = [
    ("GET", "/system/config", get_config),
    ("GET", "/system/state", get_state),
    ("GET", "/system/time", get_time),
    ("GET", "/markets", get_markets),
    ("GET", "/markets/summary", get_summary),
    ("GET", "/orderbook/{market}", get_orderbook),
    ("GET", "/bbo/{market}", get_bbo),
    ("GET", "/trades", get_trades),
    ("GET", "/funding/data", get_funding_data),
]
