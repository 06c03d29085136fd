"""Market specifications (``GET /markets`` objects, paradex-api.md §4.3) and the
``GET /system/config`` document (§4.2).

The majors use the published instrument-guide numbers; ``SYNnnn-USD-PERP`` synthetic markets exist
for scale tests. Specs are mutable only through the admin API (which also announces the change on
the ``markets`` channel).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal

from services.paradex_sim.util import dstr

D = Decimal

# symbol -> (tick, step, max order, position limit, initial price, price feed id)
_KNOWN: dict[str, tuple[str, str, str, str, str]] = {
    "BTC-USD-PERP": ("0.1", "0.00001", "100", "300", "65000"),
    "ETH-USD-PERP": ("0.01", "0.0001", "1000", "9000", "3500"),
    "SOL-USD-PERP": ("0.001", "0.01", "10000", "100000", "150"),
    "DOGE-USD-PERP": ("0.000001", "1", "5000000", "50000000", "0.15"),
    "ARB-USD-PERP": ("0.0001", "0.1", "500000", "5000000", "0.8"),
}

OPEN_AT_MS = 1_700_000_000_000


@dataclass
class MarketSpec:
    symbol: str
    price_tick_size: Decimal
    order_size_increment: Decimal
    min_notional: Decimal
    max_order_size: Decimal
    position_limit: Decimal
    max_open_orders: int
    price_bands_width: Decimal
    initial_price: Decimal
    max_funding_rate: Decimal = Decimal("0.02")
    funding_period_hours: int = 8
    imf_base: Decimal = Decimal("0.02")
    mmf_factor: Decimal = Decimal("0.5")
    max_slippage: Decimal = Decimal("0.05")
    oracle_ewma_factor: Decimal = Decimal("0.2")
    tags: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.symbol.split("-")[0]

    @property
    def imf(self) -> Decimal:
        return self.imf_base

    @property
    def mmf(self) -> Decimal:
        return self.imf_base * self.mmf_factor

    def to_json(self) -> dict[str, object]:
        return {
            "symbol": self.symbol,
            "base_currency": self.base,
            "quote_currency": "USD",
            "settlement_currency": "USDC",
            "asset_kind": "PERP",
            "market_kind": "cross",
            "trading_mode": "STANDARD",
            "order_size_increment": dstr(self.order_size_increment),
            "price_tick_size": dstr(self.price_tick_size),
            "min_notional": dstr(self.min_notional),
            "open_at": OPEN_AT_MS,
            "expiry_at": 0,
            "max_order_size": dstr(self.max_order_size),
            "position_limit": dstr(self.position_limit),
            "max_open_orders": self.max_open_orders,
            "price_bands_width": dstr(self.price_bands_width),
            "iv_bands_width": "",
            "max_slippage": dstr(self.max_slippage),
            "funding_period_hours": self.funding_period_hours,
            "funding_multiplier": 1,
            "interest_rate": "0",
            "clamp_rate": "0.0005",
            "max_funding_rate": dstr(self.max_funding_rate),
            "max_funding_rate_change": "0.0005",
            "max_tob_spread": "0.2",
            "oracle_ewma_factor": dstr(self.oracle_ewma_factor),
            "delta1_cross_margin_params": {
                "imf_base": dstr(self.imf_base),
                "imf_factor": "0",
                "imf_shift": "0",
                "mmf_factor": dstr(self.mmf_factor),
            },
            "price_feed_id": f"sim-{self.symbol.lower()}",
            "tags": list(self.tags),
        }


def _spec(symbol: str, tick: str, step: str, max_order: str, limit: str, price: str) -> MarketSpec:
    return MarketSpec(
        symbol=symbol,
        price_tick_size=D(tick),
        order_size_increment=D(step),
        min_notional=D("10"),
        max_order_size=D(max_order),
        position_limit=D(limit),
        max_open_orders=150,
        price_bands_width=D("0.05"),
        initial_price=D(price),
    )


def build_markets(symbols: tuple[str, ...], synthetic: int, seed: int) -> dict[str, MarketSpec]:
    out: dict[str, MarketSpec] = {}
    for sym in symbols:
        if sym in _KNOWN:
            out[sym] = _spec(sym, *_KNOWN[sym])
        else:
            # Unknown majors get a mid-cap shape: 0.001 tick, 0.1 step, price 10.
            if not sym.endswith("-USD-PERP") or len(sym) > 31:
                raise ValueError(f"market symbols look like XXX-USD-PERP (<= 31 chars): {sym!r}")
            out[sym] = _spec(sym, "0.001", "0.1", "1000000", "10000000", "10")
    rng = random.Random(seed)
    for i in range(1, synthetic + 1):
        sym = f"SYN{i:03d}-USD-PERP"
        price = D(rng.choice(["1.5", "12", "48", "150", "870", "2400"]))
        tick = {"1.5": "0.0001", "12": "0.001", "48": "0.001", "150": "0.01", "870": "0.01", "2400": "0.1"}[str(price)]
        step = {"1.5": "1", "12": "0.1", "48": "0.1", "150": "0.01", "870": "0.001", "2400": "0.001"}[str(price)]
        out[sym] = _spec(sym, tick, step, "1000000", "10000000", str(price))
        out[sym].tags = ["SYNTHETIC"]
    return out


# Testnet-shaped /system/config (paradex-api.md §4.2); every key paradex-py requires is present.
_SYSTEM_CONFIG: dict[str, object] = {
    "starknet_gateway_url": "https://potc-testnet-sepolia.starknet.io",
    "starknet_fullnode_rpc_url": "https://pathfinder.api.testnet.paradex.trade/rpc/v0.5",
    "starknet_fullnode_rpc_base_url": "https://pathfinder.api.testnet.paradex.trade/rpc",
    "block_explorer_url": "https://voyager.testnet.paradex.trade/",
    "paraclear_address": "0x286003f7c7bfc3f94e8f0af48b48302e7aee2fb13c23b141479ba00832ef2c6",
    "paraclear_decimals": 8,
    "paraclear_account_proxy_hash": "0x3530cc4759d78042f1b543bf797f5f3d647cde0388c33734cf91b7f7b9314a9",
    "paraclear_account_hash": "0x41cb0280ebadaa75f996d8d92c6f265f6d040bb3ba442e5f86a554f1765244e",
    "paraclear_evm_account_hash": "0x0",
    "oracle_address": "0x2c6a867917ef858d6b193a0ff9e62b46d0dc760366920d631715d58baeaca1f",
    "bridged_tokens": [
        {
            "name": "TEST USDC",
            "symbol": "USDC",
            "decimals": 6,
            "l1_token_address": "0x29A873159D5e14AcBd63913D4A7E2df04570c666",
            "l1_bridge_address": "0x8586e05adc0C35aa11609023d4Ae6075Cb813b4C",
            "l2_token_address": "0x6f373b346561036d98ea10fb3e60d2f459c872b1933b50b21fe6ef4fda3b75e",
            "l2_bridge_address": "0x46e9237f5408b5f899e72125dd69bd55485a287aaf24663d3ebe00d237fc7ef",
        }
    ],
    "l1_core_contract_address": "0x582CC5d9b509391232cd544cDF9da036e55833Af",
    "l1_operator_address": "0x11bACdFbBcd3Febe5e8CEAa75E0Ef6444d9B45FB",
    "l1_chain_id": "11155111",
    "l1_relayer_address": "0x0000000000000000000000000000000000000000",
    "l2_relayer_address": "0x0",
    "liquidation_fee": "0.2",
    "partial_liquidation_buffer": "0.2",
    "partial_liquidation_share_increment": "0.05",
    "universal_deployer_address": "0x41a78e741e5af2fec34b695679bc6891742439f7afb8484ecd7766661ad02bf",
    "dime_staking_contract_address": "0x0",
    "assets_limit_per_account": 100,
    "environment": "testnet",
}

ACCOUNT_CLASS_HASH = int(str(_SYSTEM_CONFIG["paraclear_account_hash"]), 16)
PROXY_CLASS_HASH = int(str(_SYSTEM_CONFIG["paraclear_account_proxy_hash"]), 16)


def system_config(starknet_chain_id: str) -> dict[str, object]:
    return {**_SYSTEM_CONFIG, "starknet_chain_id": starknet_chain_id}
