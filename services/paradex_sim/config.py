"""Simulator settings: one frozen-at-start dataclass, filled from defaults, ``SIM_*`` environment
variables and command-line flags (flags win over env, env over defaults).

Every knob that decides an ambiguous venue behaviour (paradex-api.md §9) lives here so tests and
other teams can switch readings without touching code.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal

DEFAULT_MARKETS = ("BTC-USD-PERP", "ETH-USD-PERP", "SOL-USD-PERP")


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    rest_port: int = 8000
    ws_port: int = 8001
    admin_port: int = 8002
    seed: int = 1
    markets: tuple[str, ...] = DEFAULT_MARKETS
    synthetic_markets: int = 0
    # Background flow: book events per second summed over all markets (each one is at least one
    # deltas message; trades and bbo messages come on top when they change).
    flow_rate: float = 20.0
    flow_enabled: bool = True
    starting_balance: Decimal = Decimal("100000")
    starknet_chain_id: str = "PRIVATE_SN_POTC_SEPOLIA"
    maker_fee: Decimal = Decimal("0.00003")
    taker_fee: Decimal = Decimal("0.00045")
    jwt_lifetime_s: int = 300
    default_recv_window_ms: int = 300_000
    # Onboarding/auth signatures and order signatures are verified unless this is off (benchmarks
    # that measure the order path without ~1 ms of STARK verification per order).
    verify_signatures: bool = True
    ws_ping_interval_s: float = 55.0
    ws_pong_timeout_s: float = 5.0
    ws_compression: bool = True
    # Frames queued for one connection beyond this and it is closed as a slow consumer (venue: 2000).
    slow_consumer_limit: int = 2000
    rate_limits_enabled: bool = True
    # "async": price-band and min-notional failures come back as 201 NEW then CLOSED with a
    # cancel_reason; "sync": 400 VALIDATION_ERROR on POST /orders.
    risk_reject_mode: str = "async"
    # GET /orders/{id} returns CLOSED orders (ccxt capture) unless this is off (spec text).
    closed_orders_by_id: bool = True
    # Fill "side": "own" = the account's own order side (what clients assume); "taker" = spec text.
    fill_side: str = "own"
    # 401 body for JWT failures: "message" = prod's {"message": ...}; "api_error" adds "error".
    jwt_error_body: str = "message"
    max_batch_size: int = 50
    # Mark/index/funding recomputation and markets_summary / funding_data publication.
    price_interval_s: float = 1.0
    funding_settle_interval_s: float = 60.0
    trade_history_limit: int = 200_000
    # Closed orders kept per user account for /orders-history (oldest dropped beyond this).
    order_history_limit: int = 100_000
    extra: dict[str, str] = field(default_factory=dict)

    def with_overrides(self, **kw: object) -> SimConfig:
        return replace(self, **kw)  # type: ignore[arg-type]

    def validate(self) -> None:
        if self.risk_reject_mode not in ("async", "sync"):
            raise ValueError("risk_reject_mode must be 'async' or 'sync'")
        if self.fill_side not in ("own", "taker"):
            raise ValueError("fill_side must be 'own' or 'taker'")
        if self.jwt_error_body not in ("message", "api_error"):
            raise ValueError("jwt_error_body must be 'message' or 'api_error'")
        if self.flow_rate < 0:
            raise ValueError("flow_rate must be >= 0")
        if self.synthetic_markets < 0 or self.synthetic_markets > 999:
            raise ValueError("synthetic_markets must be in 0..999")
        if not self.markets and not self.synthetic_markets:
            raise ValueError("at least one market is needed")


def _bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


_ENV = {
    "SIM_HOST": ("host", str),
    "SIM_REST_PORT": ("rest_port", int),
    "SIM_WS_PORT": ("ws_port", int),
    "SIM_ADMIN_PORT": ("admin_port", int),
    "SIM_SEED": ("seed", int),
    "SIM_MARKETS": ("markets", lambda v: tuple(x.strip() for x in v.split(",") if x.strip())),
    "SIM_SYNTHETIC_MARKETS": ("synthetic_markets", int),
    "SIM_FLOW_RATE": ("flow_rate", float),
    "SIM_FLOW": ("flow_enabled", _bool),
    "SIM_STARTING_BALANCE": ("starting_balance", Decimal),
    "SIM_CHAIN_ID": ("starknet_chain_id", str),
    "SIM_MAKER_FEE": ("maker_fee", Decimal),
    "SIM_TAKER_FEE": ("taker_fee", Decimal),
    "SIM_JWT_LIFETIME_S": ("jwt_lifetime_s", int),
    "SIM_VERIFY_SIGNATURES": ("verify_signatures", _bool),
    "SIM_WS_PING_INTERVAL_S": ("ws_ping_interval_s", float),
    "SIM_WS_COMPRESSION": ("ws_compression", _bool),
    "SIM_SLOW_CONSUMER_LIMIT": ("slow_consumer_limit", int),
    "SIM_RATE_LIMITS": ("rate_limits_enabled", _bool),
    "SIM_RISK_REJECT_MODE": ("risk_reject_mode", str),
    "SIM_CLOSED_ORDERS_BY_ID": ("closed_orders_by_id", _bool),
    "SIM_FILL_SIDE": ("fill_side", str),
    "SIM_JWT_ERROR_BODY": ("jwt_error_body", str),
    "SIM_PRICE_INTERVAL_S": ("price_interval_s", float),
}


def from_env(env: dict[str, str] | None = None, base: SimConfig | None = None) -> SimConfig:
    e = os.environ if env is None else env
    cfg = base or SimConfig()
    kw: dict[str, object] = {}
    for name, (attr, conv) in _ENV.items():
        raw = e.get(name)
        if raw not in (None, ""):
            kw[attr] = conv(raw)  # type: ignore[operator]
    return replace(cfg, **kw)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m services.paradex_sim",
        description="A local Paradex simulator: REST /v1, WebSocket JSON-RPC /v1, admin API for faults.",
    )
    p.add_argument("--host", help="bind address (default 127.0.0.1, env SIM_HOST)")
    p.add_argument("--rest-port", type=int, help="REST port, 0 = any free port (default 8000)")
    p.add_argument("--ws-port", type=int, help="WebSocket port, 0 = any free port (default 8001)")
    p.add_argument("--admin-port", type=int, help="admin port, 0 = any free port (default 8002)")
    p.add_argument("--seed", type=int, help="seed of the background flow and prices (default 1)")
    p.add_argument("--markets", help="comma-separated markets (default BTC-USD-PERP,ETH-USD-PERP,SOL-USD-PERP)")
    p.add_argument("--synthetic-markets", type=int, help="extra markets SYN001-USD-PERP ... (default 0)")
    p.add_argument("--flow-rate", type=float, help="background book events per second, all markets (default 20)")
    p.add_argument("--no-flow", action="store_true", help="start with the background flow paused")
    p.add_argument("--starting-balance", help="USDC given to each onboarded account (default 100000)")
    p.add_argument("--chain-id", help="starknet_chain_id of the signing domain (default PRIVATE_SN_POTC_SEPOLIA)")
    p.add_argument("--no-rate-limits", action="store_true", help="disable the §4.10 rate limits")
    p.add_argument("--no-verify-signatures", action="store_true", help="accept unverified order signatures")
    p.add_argument("--no-ws-compression", action="store_true", help="refuse permessage-deflate")
    p.add_argument("--slow-consumer-limit", type=int, help="queued frames before a WS client is cut (2000)")
    p.add_argument("--ws-ping-interval", type=float, help="seconds between server WS pings (55)")
    p.add_argument("--risk-reject-mode", choices=("async", "sync"), help="price band / min notional failures")
    p.add_argument("--fill-side", choices=("own", "taker"), help="meaning of a private fill's side")
    p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    p.add_argument("--log-format", default=os.environ.get("LOG_FORMAT", "text"), choices=("text", "json"))
    return p


def from_args(argv: list[str] | None = None, env: dict[str, str] | None = None) -> tuple[SimConfig, argparse.Namespace]:
    ns = build_parser().parse_args(argv)
    cfg = from_env(env)
    kw: dict[str, object] = {}
    simple = {
        "host": "host", "rest_port": "rest_port", "ws_port": "ws_port", "admin_port": "admin_port",
        "seed": "seed", "synthetic_markets": "synthetic_markets", "flow_rate": "flow_rate",
        "slow_consumer_limit": "slow_consumer_limit", "ws_ping_interval": "ws_ping_interval_s",
        "risk_reject_mode": "risk_reject_mode", "fill_side": "fill_side", "chain_id": "starknet_chain_id",
    }
    for arg, attr in simple.items():
        v = getattr(ns, arg)
        if v is not None:
            kw[attr] = v
    if ns.markets is not None:
        kw["markets"] = tuple(x.strip() for x in ns.markets.split(",") if x.strip())
    if ns.starting_balance is not None:
        kw["starting_balance"] = Decimal(ns.starting_balance)
    if ns.no_flow:
        kw["flow_enabled"] = False
    if ns.no_rate_limits:
        kw["rate_limits_enabled"] = False
    if ns.no_verify_signatures:
        kw["verify_signatures"] = False
    if ns.no_ws_compression:
        kw["ws_compression"] = False
    cfg = replace(cfg, **kw)  # type: ignore[arg-type]
    cfg.validate()
    return cfg, ns


def describe(cfg: SimConfig) -> dict[str, str]:
    return {f.name: str(getattr(cfg, f.name)) for f in fields(cfg) if f.name != "extra"}
