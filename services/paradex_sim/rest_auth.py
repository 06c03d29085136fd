"""Onboarding and authentication (paradex-api.md §3): ``POST /onboarding`` verifies the
``Constant{action:"Onboarding"}`` signature and registers public key <-> account address (derived
from the class hashes of ``/system/config``, §6.6) with the starting balance; ``POST /auth`` and
``POST /auth/{public_key}`` verify the ``Request`` signature and its timestamps and return a JWT.
"""

from __future__ import annotations

from aiohttp import web

from services.paradex import signing
from services.paradex_sim.errors import ApiError, bad_request
from services.paradex_sim.http_util import json_response, read_json
from services.paradex_sim.markets import ACCOUNT_CLASS_HASH, PROXY_CLASS_HASH
from services.paradex_sim.rest_common import ctx_of

MAX_EXPIRATION_S = 7 * 24 * 3600
DEFAULT_EXPIRATION_S = 30 * 60
FUTURE_SKEW_S = 300


def _hex_int(value: str | None) -> int | None:
    if not value:
        return None
    try:
        v = int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        return None
    return v if 0 < v < signing.FIELD_PRIME else None


def canonical(address: int) -> str:
    return hex(address)


def _signature(request: web.Request) -> tuple[int, int]:
    raw = request.headers.get("PARADEX-STARKNET-SIGNATURE", "")
    try:
        return signing.parse_signature(raw)
    except (ValueError, TypeError):
        msg = "PARADEX-STARKNET-SIGNATURE must be a JSON array [r, s]"
        raise bad_request("INVALID_STARKNET_SIGNATURE", msg) from None


async def post_onboarding(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    eth = request.headers.get("PARADEX-ETHEREUM-ACCOUNT", "")
    if not (eth.startswith("0x") and len(eth) == 42 and _hex_int(eth) is not None):
        raise bad_request("INVALID_ETHEREUM_ADDRESS", "PARADEX-ETHEREUM-ACCOUNT must be a 0x-prefixed address")
    address = _hex_int(request.headers.get("PARADEX-STARKNET-ACCOUNT"))
    if address is None:
        raise bad_request("INVALID_STARKNET_ADDRESS", "PARADEX-STARKNET-ACCOUNT is missing or invalid")
    r, s = _signature(request)
    body = await read_json(request)
    raw_key = body.get("public_key") if isinstance(body, dict) else None
    pub = _hex_int(raw_key) if isinstance(raw_key, str) else None
    if pub is None:
        raise bad_request("PUBLIC_KEY_INVALID", "public_key must be a 0x-prefixed Stark public key")
    if signing.account_address(pub, ACCOUNT_CLASS_HASH, PROXY_CLASS_HASH) != address:
        raise bad_request("INVALID_STARKNET_ADDRESS", "account address does not derive from public_key")
    if ctx.cfg.verify_signatures and not signing.verify(
        signing.onboarding_hash(ctx.cfg.starknet_chain_id, address), r, s, pub
    ):
        raise bad_request("STARKNET_SIGNATURE_VERIFICATION_FAILED", "onboarding signature verification failed")
    existing = ctx.exchange.accounts.get(canonical(address))
    if existing is None:
        ctx.exchange.open_account(canonical(address), pub, ctx.cfg.starting_balance)
        ctx.count("onboarded")
    return web.Response(status=200)


async def get_onboarding(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    pub = _hex_int(request.query.get("public_key"))
    if pub is None:
        raise bad_request("PUBLIC_KEY_INVALID", "public_key query parameter is required")
    address = canonical(signing.account_address(pub, ACCOUNT_CLASS_HASH, PROXY_CLASS_HASH))
    return json_response({
        "account_signer_type": "starknet",
        "address": address,
        "exists": address in ctx.exchange.accounts,
        "derivation_info": {"class_hash": hex(ACCOUNT_CLASS_HASH), "proxy_class_hash": hex(PROXY_CLASS_HASH)},
    })


async def post_auth(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    address = _hex_int(request.headers.get("PARADEX-STARKNET-ACCOUNT"))
    if address is None:
        raise bad_request("INVALID_STARKNET_ADDRESS", "PARADEX-STARKNET-ACCOUNT is missing or invalid")
    acct = ctx.exchange.accounts.get(canonical(address))
    if acct is None or acct.internal or acct.public_key is None:
        raise bad_request("NOT_ONBOARDED", f"account {canonical(address)} is NOT_ONBOARDED")
    try:
        ts = int(request.headers.get("PARADEX-TIMESTAMP", ""))
    except ValueError:
        raise bad_request("INVALID_TIMESTAMP", "PARADEX-TIMESTAMP must be unix seconds") from None
    exp_raw = request.headers.get("PARADEX-SIGNATURE-EXPIRATION")
    try:
        expiration = int(exp_raw) if exp_raw else ts + DEFAULT_EXPIRATION_S
    except ValueError:
        raise bad_request("INVALID_TIMESTAMP", "PARADEX-SIGNATURE-EXPIRATION must be unix seconds") from None
    now = ctx.clock.now_s()
    if ts > now + FUTURE_SKEW_S:
        raise bad_request("INVALID_TIMESTAMP", "PARADEX-TIMESTAMP is in the future")
    if expiration <= now:
        raise bad_request("INVALID_TIMESTAMP", "signature has expired (PARADEX-SIGNATURE-EXPIRATION)")
    if expiration - ts > MAX_EXPIRATION_S:
        raise bad_request("INVALID_TIMESTAMP", "signature expiration is more than one week after the timestamp")
    key = acct.public_key
    path_key = request.match_info.get("public_key")
    if path_key is not None:
        pk = _hex_int(path_key)
        if pk is None or pk != acct.public_key:
            raise bad_request("PUBLIC_KEY_INVALID", "public key is not registered for this account")
        key = pk
    r, s = _signature(request)
    if ctx.cfg.verify_signatures and not signing.verify(
        signing.auth_hash(ctx.cfg.starknet_chain_id, address, ts, expiration), r, s, key
    ):
        raise ApiError(401, "STARKNET_SIGNATURE_VERIFICATION_FAILED", "auth signature verification failed")
    ctx.count("auth_issued")
    return json_response({"jwt_token": ctx.jwt.issue(acct.address)})


ROUTES = [
    ("POST", "/onboarding", post_onboarding),
    ("GET", "/onboarding", get_onboarding),
    ("POST", "/auth", post_auth),
    ("POST", "/auth/{public_key}", post_auth),
]
