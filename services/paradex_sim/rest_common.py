"""Helpers every REST handler module uses: the simulator context of a request and the
authenticated account of a private endpoint (401 bodies as the venue sends them, §2/§4.9)."""

from __future__ import annotations

from aiohttp import web

from services.paradex_sim.accounts import Account
from services.paradex_sim.context import SimContext
from services.paradex_sim.errors import ApiError
from services.paradex_sim.jwt_tokens import Claims, TokenError

CTX_KEY = web.AppKey("ctx", SimContext)
CLAIMS_KEY = web.RequestKey("claims", Claims)
AUTH_ERROR_KEY = web.RequestKey("auth_error", TokenError)


def ctx_of(request: web.Request) -> SimContext:
    return request.app[CTX_KEY]


def unauthorized(ctx: SimContext, message: str) -> ApiError:
    code = "UNAUTHORIZED_ERROR" if ctx.cfg.jwt_error_body == "api_error" else ""
    return ApiError(401, code, message)


def account_of(request: web.Request) -> Account:
    """The authenticated account of a private endpoint, or 401 like the venue."""
    ctx = ctx_of(request)
    claims = request.get(CLAIMS_KEY)
    if claims is None:
        err = request.get(AUTH_ERROR_KEY) or TokenError("malformed", "missing or malformed jwt")
        raise unauthorized(ctx, err.message)
    acct = ctx.exchange.accounts.get(claims.account)
    if acct is None or acct.internal:
        raise unauthorized(ctx, "invalid bearer jwt: unknown account")
    return acct
