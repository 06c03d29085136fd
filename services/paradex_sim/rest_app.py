"""The REST application under ``/v1``: middlewares (errors -> venue JSON bodies, admin-injected
REST faults, rate limits with ``x-ratelimit-*`` headers) and the route table.

Middleware order, outermost first: errors (nothing escapes as a traceback or HTML page), faults
(delay / fail / hang / lose the reply, never touching the handler unless the fault says the call
takes effect), rate limits (keyed by account when the bearer token is valid, else by IP).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from services.paradex_sim import rest_account, rest_auth, rest_orders, rest_public
from services.paradex_sim.context import SimContext
from services.paradex_sim.errors import ApiError
from services.paradex_sim.http_util import error_response, json_response
from services.paradex_sim.jwt_tokens import TokenError
from services.paradex_sim.rest_common import AUTH_ERROR_KEY, CLAIMS_KEY, CTX_KEY, ctx_of

log = logging.getLogger("paradex_sim.rest")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PREFIX = "/v1"
PRIVATE_PREFIXES = ("/account", "/balance", "/positions", "/orders", "/fills", "/funding/payments")


def _relative(path: str) -> str | None:
    if path == PREFIX or path.startswith(PREFIX + "/"):
        return path[len(PREFIX):] or "/"
    return None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = ctx_of(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "NOT_FOUND", 405: "BINDING_ERROR", 413: "BINDING_ERROR"}.get(exc.status, "INTERNAL_ERROR")
        return json_response({"error": code, "message": exc.reason or code}, status=exc.status)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        ctx.problems.report("rest_handler_error", path=request.path, error=repr(exc))
        log.exception("REST handler failed: %s %s", request.method, request.path)
        return json_response({"error": "INTERNAL_ERROR", "message": "internal error"}, status=500)


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = ctx_of(request)
    rel = _relative(request.path)
    if not ctx.faults.rest_active or rel is None:
        return await handler(request)
    fault = ctx.faults.rest_fault(request.method, rel)
    if fault is None:
        return await handler(request)
    ctx.count(f"fault_{fault.kind}")
    if fault.kind == "rest_delay":
        await asyncio.sleep(fault.delay_ms / 1000)
        return await handler(request)
    if fault.kind == "rest_error":
        if fault.status == 429:
            return json_response({"error": "RATE_LIMIT_EXCEEDED", "message": "rate limit exceeded"}, status=429,
                                 headers={"retry-after": "1", "x-ratelimit-remaining": "0"})
        code = "SERVICE_UNAVAILABLE" if fault.status == 503 else "INTERNAL_ERROR"
        return json_response({"error": code, "message": "injected failure"}, status=fault.status)
    if fault.kind == "rest_timeout":
        await asyncio.sleep(fault.seconds)
        return json_response({"error": "SERVICE_UNAVAILABLE", "message": "request timed out"}, status=503)
    # rest_lost_reply: the call takes effect, the client never learns it.
    response = await handler(request)
    if fault.mode == "status":
        code = "SERVICE_UNAVAILABLE" if fault.status == 503 else "INTERNAL_ERROR"
        return json_response({"error": code, "message": "injected failure after the request took effect"},
                             status=fault.status)
    if request.transport is not None:
        request.transport.abort()
    return response


@web.middleware
async def ratelimit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = ctx_of(request)
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        try:
            request[CLAIMS_KEY] = ctx.jwt.verify(header[7:].strip())
        except TokenError as exc:
            request[AUTH_ERROR_KEY] = exc
    rel = _relative(request.path) or request.path
    ip = request.remote or "?"
    claims = request.get(CLAIMS_KEY)
    who = claims.account if claims is not None else ip
    method = request.method
    if method == "POST" and (rel in {"/onboarding", "/auth"} or rel.startswith("/auth/")):
        checks = [("auth", ip)]
    elif rel.startswith("/orders") and method in ("POST", "PUT", "DELETE"):
        checks = [("orders", who)]
    elif rel.startswith(PRIVATE_PREFIXES) or rel == "/orders-history":
        checks = [("private_get", who), ("private_ip", ip)]
    else:
        checks = [("public", ip)]
    decision = ctx.limiter.check(checks)
    headers = decision.headers()
    if not decision.ok:
        ctx.count("rate_limited")
        return json_response({"error": "RATE_LIMIT_EXCEEDED", "message": "rate limit exceeded"}, status=429,
                             headers=headers)
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc)
    response.headers.update(headers)
    return response


def build_rest_app(ctx: SimContext) -> web.Application:
    app = web.Application(middlewares=[error_middleware, fault_middleware, ratelimit_middleware],
                          client_max_size=1024 * 1024)
    app[CTX_KEY] = ctx
    for module in (rest_public, rest_auth, rest_account, rest_orders):
        for method, path, handler in module.ROUTES:
            app.router.add_route(method, PREFIX + path, handler)
    return app
