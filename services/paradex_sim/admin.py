"""The admin API (its own port; never on the Paradex paths): ground truth for tests and the chaos
invariant checker, scripting (market-maker orders, crossing, prices, funding, clock, outside
orders, balances), background-flow control, rate-limit control and fault injection.

Every endpoint takes and returns JSON; errors are ``{"error", "message"}`` with 400/404.
See docs/simulator.md for the endpoint list with examples.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from aiohttp import web

from services.paradex_sim.accounts import Account
from services.paradex_sim.config import describe
from services.paradex_sim.context import SimContext
from services.paradex_sim.engine import SYSTEM_STATUSES
from services.paradex_sim.errors import ApiError, validation
from services.paradex_sim.flow import FlowGenerator, internal_address
from services.paradex_sim.http_util import error_response, json_response, read_json
from services.paradex_sim.models import MARKET_TYPES, Order
from services.paradex_sim.util import dstr, is_multiple, parse_decimal

log = logging.getLogger("paradex_sim.admin")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SPEC_FIELDS = {
    "price_tick_size": Decimal, "order_size_increment": Decimal, "min_notional": Decimal,
    "max_order_size": Decimal, "position_limit": Decimal, "max_open_orders": int, "price_bands_width": Decimal,
    "max_funding_rate": Decimal,
}


def _dec(body: dict[str, Any], name: str, required: bool = True) -> Decimal | None:
    v = body.get(name)
    if v is None and not required:
        return None
    d = parse_decimal(v)
    if d is None:
        raise validation(f"{name} must be a decimal string")
    return d


class Admin:
    def __init__(self, ctx: SimContext, flow: FlowGenerator, urls: Callable[[], dict[str, str]]) -> None:
        self.ctx = ctx
        self.flow = flow
        self.urls = urls
        ex = ctx.exchange
        self.mm = ex.open_account(internal_address("admin-mm"), None, Decimal(0), internal=True)
        self.mm_taker = ex.open_account(internal_address("admin-mm-taker"), None, Decimal(0), internal=True)
        self._state_revert: asyncio.TimerHandle | None = None
        self.on_markets_changed: Callable[[], None] | None = None

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        r = app.router
        r.add_get("/health", self.health)
        r.add_get("/config", self.config)
        r.add_get("/stats", self.stats)
        r.add_get("/state", self.get_state)
        r.add_post("/state", self.set_state)
        r.add_get("/clock", self.get_clock)
        r.add_post("/clock", self.set_clock)
        r.add_patch("/markets/{market}", self.patch_market)
        r.add_post("/markets/{market}/price", self.set_price)
        r.add_post("/markets/{market}/funding", self.funding)
        r.add_get("/truth/book/{market}", self.truth_book)
        r.add_get("/truth/trades", self.truth_trades)
        r.add_get("/truth/prices", self.truth_prices)
        r.add_get("/truth/accounts", self.truth_accounts)
        r.add_get("/truth/accounts/{account}", self.truth_account)
        r.add_post("/accounts/{account}/orders", self.outside_order)
        r.add_post("/accounts/{account}/balance", self.balance)
        r.add_post("/mm/orders", self.mm_order)
        r.add_delete("/mm/orders", self.mm_cancel)
        r.add_post("/mm/cross", self.mm_cross)
        r.add_get("/flow", self.get_flow)
        r.add_post("/flow", self.set_flow)
        r.add_get("/faults", self.list_faults)
        r.add_post("/faults", self.add_fault)
        r.add_delete("/faults", self.clear_faults)
        r.add_delete("/faults/{fault_id}", self.delete_fault)
        r.add_post("/ws/drop", self.ws_drop)
        r.add_get("/ws/connections", self.ws_connections)
        r.add_get("/ratelimits", self.get_limits)
        r.add_post("/ratelimits", self.set_limits)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc)
        except ValueError as exc:
            return json_response({"error": "VALIDATION_ERROR", "message": str(exc)}, status=400)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return json_response({"error": "NOT_FOUND" if exc.status == 404 else "BINDING_ERROR",
                                  "message": exc.reason}, status=exc.status)
        except Exception as exc:
            self.ctx.problems.report("admin_handler_error", path=request.path, error=repr(exc))
            log.exception("admin handler failed")
            return json_response({"error": "INTERNAL_ERROR", "message": repr(exc)}, status=500)

    # -- helpers ------------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        body = await read_json(request, allow_empty=True)
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise validation("body must be a JSON object")
        return body

    def _market(self, name: object) -> str:
        if not isinstance(name, str) or name not in self.ctx.exchange.markets:
            raise ApiError(404, "MARKET_NOT_FOUND", f"market {name!r} not found")
        return name

    def _account(self, address: str) -> Account:
        try:
            key = hex(int(address, 16))
        except ValueError:
            raise ApiError(400, "INVALID_STARKNET_ADDRESS", "account must be 0x hex") from None
        acct = self.ctx.exchange.accounts.get(key)
        if acct is None or acct.internal:
            raise ApiError(404, "ACCOUNT_NOT_FOUND", f"account {key} is not onboarded")
        return acct

    def _order_spec(self, body: dict[str, Any]) -> dict[str, Any]:
        market = self._market(body.get("market"))
        side = body.get("side")
        if side not in ("BUY", "SELL"):
            raise validation("side must be BUY or SELL")
        otype = body.get("type") or "LIMIT"
        spec = self.ctx.exchange.markets[market]
        size = _dec(body, "size")
        price = None if otype in MARKET_TYPES else _dec(body, "price")
        assert size is not None
        if size <= 0 or not is_multiple(size, spec.order_size_increment):
            raise validation(f"size must be a positive multiple of {spec.order_size_increment}")
        if price is not None and (price <= 0 or not is_multiple(price, spec.price_tick_size)):
            raise validation(f"price must be a positive multiple of {spec.price_tick_size}")
        return {"market": market, "side": side, "type": otype, "size": size, "price": price,
                "instruction": body.get("instruction") or "GTC", "client_id": body.get("client_id") or "",
                "flags": body.get("flags") or [], "stp": body.get("stp") or "EXPIRE_TAKER",
                "trigger_price": _dec(body, "trigger_price", required=False)}

    # -- system -------------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return json_response({"ok": True, **self.urls()})

    async def config(self, request: web.Request) -> web.Response:
        return json_response({"config": describe(self.ctx.cfg), **self.urls()})

    async def stats(self, request: web.Request) -> web.Response:
        ctx = self.ctx
        return json_response({
            "ws_connections": len(ctx.hub.conns),
            "ws_frames_published": ctx.hub.frames_published,
            "ws_frames_suppressed": ctx.hub.frames_suppressed,
            "orders_created": ctx.orders.created,
            "orders_rejected": ctx.orders.rejected,
            "rate_limited": ctx.limiter.rejected,
            "engine_errors": ctx.exchange.error_count,
            "book_seq": {m: b.seq_no for m, b in ctx.exchange.books.items()},
            "flow": self.flow.describe(),
            "counters": dict(ctx.counters),
            "problems": dict(ctx.problems.counts),
        })

    async def get_state(self, request: web.Request) -> web.Response:
        return json_response({"status": self.ctx.exchange.system_status})

    async def set_state(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.ctx.exchange.set_system_status(str(body.get("status")))
        if self._state_revert is not None:
            self._state_revert.cancel()
            self._state_revert = None
        duration = body.get("duration_s")
        if duration is not None:
            back = str(body.get("revert_to") or "ok")
            if back not in SYSTEM_STATUSES:
                raise validation(f"revert_to must be one of {', '.join(SYSTEM_STATUSES)}")
            self._state_revert = asyncio.get_running_loop().call_later(
                float(duration), self.ctx.exchange.set_system_status, back)
        return json_response({"status": self.ctx.exchange.system_status})

    async def get_clock(self, request: web.Request) -> web.Response:
        return json_response({"offset_ms": self.ctx.clock.offset_ms, "now_ms": self.ctx.clock.now_ms()})

    async def set_clock(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if "offset_ms" in body:
            self.ctx.clock.offset_ms = int(body["offset_ms"])
        if "advance_ms" in body:
            self.ctx.clock.offset_ms += int(body["advance_ms"])
        return await self.get_clock(request)

    # -- markets, prices, funding ----------------------------------------------------------------

    async def patch_market(self, request: web.Request) -> web.Response:
        market = self._market(request.match_info["market"])
        body = await self._body(request)
        spec = self.ctx.exchange.markets[market]
        changed: dict[str, object] = {}
        for name, value in body.items():
            conv = SPEC_FIELDS.get(name)
            if conv is None:
                raise validation(f"{name} cannot be changed; changeable: {', '.join(SPEC_FIELDS)}")
            v = int(value) if conv is int else parse_decimal(value)
            if v is None or v <= 0:
                raise validation(f"{name} must be positive")
            setattr(spec, name, v)
            changed[name] = value if conv is int else dstr(v)  # type: ignore[arg-type]
        self.ctx.feeds.publish_market_event(market, "UPDATED", changed)
        if self.on_markets_changed is not None:
            self.on_markets_changed()
        return json_response(spec.to_json())

    async def set_price(self, request: web.Request) -> web.Response:
        market = self._market(request.match_info["market"])
        body = await self._body(request)
        index, mark = _dec(body, "index", required=False), _dec(body, "mark", required=False)
        if index is None and mark is None:
            raise validation("index and/or mark is required")
        ex = self.ctx.exchange
        ex.pricing.set_price(market, index, mark)
        ex.on_mark_change(market)
        return json_response(self._prices(market))

    def _prices(self, market: str) -> dict[str, object]:
        p = self.ctx.exchange.pricing.prices[market]
        return {"market": market, "index": dstr(p.index), "mark": dstr(p.mark),
                "funding_index": dstr(p.funding_index), "funding_rate": dstr(p.funding_rate),
                "funding_rate_override": dstr(p.rate_override) if p.rate_override is not None else None}

    async def funding(self, request: web.Request) -> web.Response:
        """{"rate": "0.001"|null, "accrue_seconds": 3600, "settle": true}"""
        market = self._market(request.match_info["market"])
        body = await self._body(request)
        ex = self.ctx.exchange
        p = ex.pricing.prices[market]
        if "rate" in body:
            p.rate_override = _dec(body, "rate", required=False)
        seconds = body.get("accrue_seconds")
        row = None
        if seconds is not None:
            row = ex.pricing.tick_funding(market, Decimal(str(seconds)), self.ctx.clock.now_ms())
            self.ctx.feeds.publish_periodic({market: row})
        settled = ex.settle_funding_all(market) if body.get("settle") else 0
        return json_response({**self._prices(market), "settled_positions": settled})

    # -- ground truth -------------------------------------------------------------------------------

    async def truth_book(self, request: web.Request) -> web.Response:
        market = self._market(request.match_info["market"])
        book = self.ctx.exchange.books[market]
        out: dict[str, object] = {
            "market": market, "seq_no": book.seq_no, "last_updated_at": book.last_updated_at,
            "bids": [[dstr(p), dstr(s)] for p, s in book.levels("BUY")],
            "asks": [[dstr(p), dstr(s)] for p, s in book.levels("SELL")],
        }
        if request.query.get("orders") in ("1", "true"):
            out["orders"] = [
                {"id": o.id, "account": o.account, "side": o.side, "price": dstr(o.price),
                 "remaining_size": dstr(o.remaining), "internal": o.internal}
                for side in (book.bids, book.asks) for lv in side.values() for o in lv.orders.values()
            ]
        return json_response(out)

    async def truth_trades(self, request: web.Request) -> web.Response:
        market = request.query.get("market")
        ex = self.ctx.exchange
        markets = [self._market(market)] if market else list(ex.markets)
        after = int(request.query.get("after_seq", "0") or 0)
        rows = sorted((t for m in markets for t in ex.trades[m] if t.hseq > after), key=lambda t: t.hseq)
        return json_response({"results": [{**t.to_json(), "seq": t.hseq} for t in rows]})

    async def truth_prices(self, request: web.Request) -> web.Response:
        return json_response({"results": [self._prices(m) for m in self.ctx.exchange.markets]})

    async def truth_accounts(self, request: web.Request) -> web.Response:
        ex = self.ctx.exchange
        return json_response({"results": [
            {**ex.margin.summary(a), "public_key": hex(a.public_key or 0), "balance": dstr(a.balance)}
            for a in ex.accounts.values() if not a.internal
        ]})

    async def truth_account(self, request: web.Request) -> web.Response:
        acct = self._account(request.match_info["account"])
        ex = self.ctx.exchange
        return json_response({
            "account": ex.margin.summary(acct),
            "public_key": hex(acct.public_key or 0),
            "balance": ex.margin.balance_json(acct),
            "positions": [ex.margin.position_json(acct, p) for p in acct.positions.values()],
            "open_orders": [o.to_json() for o in acct.open_orders.values()],
            "orders": [o.to_json() for o in acct.history],
            "fills": [f.to_json() for f in acct.fills],
            "funding_payments": [p.to_json() for p in acct.funding_payments],
        })

    # -- scripting ----------------------------------------------------------------------------------

    def _submit(self, acct: Account, spec: dict[str, Any], process_now: bool) -> Order:
        return self.ctx.exchange.submit(acct, timestamp=self.ctx.clock.now_ms(), process_now=process_now, **spec)

    async def outside_order(self, request: web.Request) -> web.Response:
        """An order on a real account that did not come through its API client (web UI)."""
        acct = self._account(request.match_info["account"])
        spec = self._order_spec(await self._body(request))
        order = self._submit(acct, spec, process_now=False)
        return json_response(order.to_json(), status=201)

    async def balance(self, request: web.Request) -> web.Response:
        """{"deposit": "1000"} adds (negative withdraws); {"set": "5000"} sets the USDC balance."""
        acct = self._account(request.match_info["account"])
        body = await self._body(request)
        ex = self.ctx.exchange
        if body.get("set") is not None:
            amount = _dec(body, "set") or Decimal(0)
        elif body.get("deposit") is not None:
            amount = acct.balance + (_dec(body, "deposit") or Decimal(0))
        else:
            raise validation("deposit or set is required")
        ex.set_balance(acct, amount)
        return json_response(ex.margin.balance_json(acct))

    async def mm_order(self, request: web.Request) -> web.Response:
        spec = self._order_spec(await self._body(request))
        order = self._submit(self.mm, spec, process_now=True)
        return json_response(order.to_json(), status=201)

    async def mm_cancel(self, request: web.Request) -> web.Response:
        market = request.query.get("market") or None
        orders = [o for o in list(self.mm.open_orders.values()) if market is None or o.market == market]
        for o in orders:
            self.ctx.exchange.cancel_now(o)
        return json_response({"cancelled": len(orders)})

    async def mm_cross(self, request: web.Request) -> web.Response:
        """Take liquidity: an IOC from the admin taker (a different account from the admin maker)
        at ``price`` (default: the band edge), filling whatever rests, real accounts included."""
        body = await self._body(request)
        market = self._market(body.get("market"))
        ex = self.ctx.exchange
        side = body.get("side")
        if side not in ("BUY", "SELL"):
            raise validation("side must be BUY or SELL")
        price = _dec(body, "price", required=False)
        spec = ex.markets[market]
        if price is None:
            mark = ex.pricing.mark(market)
            band = spec.price_bands_width
            raw = mark * (1 + band) if side == "BUY" else mark * (1 - band)
            price = (raw / spec.price_tick_size).to_integral_value() * spec.price_tick_size
        last_seq = ex.last_seq
        order_spec = self._order_spec({**body, "type": "LIMIT", "price": dstr(price), "instruction": "IOC"})
        order = self._submit(self.mm_taker, order_spec, process_now=True)
        trades = [t for t in ex.trades[market][-1000:] if t.hseq > last_seq]
        return json_response({"order": order.to_json(), "trades": [t.to_json() for t in trades]}, status=201)

    # -- flow, faults, ws, rate limits ------------------------------------------------------------

    async def get_flow(self, request: web.Request) -> web.Response:
        return json_response(self.flow.describe())

    async def set_flow(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        rate = body.get("rate")
        self.flow.set(running=body.get("running"), rate=float(rate) if rate is not None else None)
        return json_response(self.flow.describe())

    async def list_faults(self, request: web.Request) -> web.Response:
        return json_response({"results": self.ctx.faults.list()})

    async def add_fault(self, request: web.Request) -> web.Response:
        fault = self.ctx.faults.add(await self._body(request))
        return json_response(fault.to_json(), status=201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        return json_response({"removed": self.ctx.faults.clear()})

    async def delete_fault(self, request: web.Request) -> web.Response:
        if not self.ctx.faults.remove(request.match_info["fault_id"]):
            raise ApiError(404, "NOT_FOUND", "no such fault")
        return json_response({"removed": 1})

    async def ws_drop(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        mode = body.get("mode") or "abort"
        if mode not in ("abort", "close"):
            raise validation("mode must be 'abort' (no close frame) or 'close' (close frame 1011)")
        n = self.ctx.hub.drop_all(mode)
        self.ctx.count("ws_dropped", n)
        return json_response({"dropped": n, "at": time.time()})

    async def ws_connections(self, request: web.Request) -> web.Response:
        return json_response({"results": [
            {"id": c.id, "peer": c.peer, "account": c.account, "channels": sorted(c.subs), "queued": len(c.queue),
             "sent": c.sent}
            for c in self.ctx.hub.conns.values()
        ]})

    async def get_limits(self, request: web.Request) -> web.Response:
        return json_response(self.ctx.limiter.describe())

    async def set_limits(self, request: web.Request) -> web.Response:
        """{"enabled": bool, "reset": true, "scopes": {"orders": [[5, 1]]}}"""
        body = await self._body(request)
        lim = self.ctx.limiter
        if body.get("reset"):
            lim.reset()
        if "enabled" in body:
            lim.enabled = bool(body["enabled"])
        for scope, limits in (body.get("scopes") or {}).items():
            lim.configure(scope, [(int(n), float(w)) for n, w in limits])
        return json_response(lim.describe())
