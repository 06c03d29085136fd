"""The router's pure parts without processes: venue mapping, pre-trade checks, token buckets,
status reports and the latency split."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

import schemas as s
from bus.trading import Trader, is_filled
from services.order_router import pretrade
from services.order_router.latency import LatencyTracker
from services.order_router.mapping import Unsupported, money, order_status_report, venue_order, venue_order_spec
from services.order_router.ratelimit import RateLimiter, TokenBucket
from services.paradex.rest import RateLimitState


class _NC:
    def jetstream(self) -> None:
        return None


T = Trader(_NC(), "0xabc")  # builders only


def spec_of(cmd: s.SubmitOrder):
    return venue_order_spec(cmd.order, cmd.params if isinstance(cmd.params, dict) else None)


def test_type_mapping_and_flags() -> None:
    sp = spec_of(T.limit("BTC-USD-PERP", "BUY", "0.0100", "65000.50", post_only=True, reduce_only=True))
    assert (sp.type, sp.instruction, sp.size, sp.price, sp.flags) == ("LIMIT", "POST_ONLY", "0.01", "65000.5",
                                                                     ("REDUCE_ONLY",))
    body = sp.body("sig", 123, 5000)
    assert body["client_id"] == sp.client_id and body["recv_window"] == 5000 and "trigger_price" not in body
    mk = spec_of(T.market("ETH-USD-PERP", "SELL", "1", time_in_force="IOC"))
    assert (mk.type, mk.instruction, mk.price, mk.signed_price) == ("MARKET", "IOC", None, "0")
    cases = {
        ("STOP_MARKET", None): "STOP_MARKET",
        ("STOP_MARKET", "STOP_LOSS_MARKET"): "STOP_LOSS_MARKET",
        ("STOP_LIMIT", None): "STOP_LIMIT",
        ("STOP_LIMIT", "STOP_LOSS_LIMIT"): "STOP_LOSS_LIMIT",
        ("MARKET_IF_TOUCHED", None): "TAKE_PROFIT_MARKET",
        ("LIMIT_IF_TOUCHED", None): "TAKE_PROFIT_LIMIT",
    }
    for (ntype, ptype), want in cases.items():
        price = "100" if "LIMIT" in ntype else None
        cmd = T.order("BTC-USD-PERP", "BUY", "1", order_type=ntype, price=price, trigger_price="99",
                      paradex_type=ptype, params={"trigger_condition": "below", "stp": "expire_maker"})
        sp = spec_of(cmd)
        assert sp.type == want and sp.trigger_price == "99"
        assert "STOP_CONDITION_BELOW_TRIGGER" in sp.flags and sp.stp == "EXPIRE_MAKER"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"time_in_force": "FOK"}, "time in force"),
        ({"paradex_type": "TAKE_PROFIT_MARKET"}, "paradex_type"),
        ({"params": {"stp": "NOPE"}}, "stp"),
        ({"params": {"trigger_condition": "ABOVE"}}, "trigger_condition"),
        ({"post_only": True, "time_in_force": "IOC"}, "post-only"),
    ],
)
def test_unsupported_orders(kwargs, needle) -> None:
    with pytest.raises(Unsupported, match=needle):
        spec_of(T.limit("BTC-USD-PERP", "BUY", "1", "100", **kwargs))


def _inst() -> s.CryptoPerpetual:
    return s.CryptoPerpetual(
        id="BTC-USD-PERP.PARADEX", raw_symbol="BTC-USD-PERP", base_currency="BTC", quote_currency="USD",
        settlement_currency="USDC", price_precision=1, price_increment="0.1", size_precision=5,
        size_increment="0.00001", max_quantity="100.00000", min_quantity="0.00001", min_notional="10.00 USD",
        margin_init="0.02", margin_maint="0.01", maker_fee="0", taker_fee="0", ts_event=0, ts_init=0,
        info={"max_open_orders": "3", "price_bands_width": "0.05"},
    )


def test_pretrade_checks() -> None:
    inst, mark = _inst(), Decimal(65000)

    def check(cmd: s.SubmitOrder, status: str = "ok", open_orders: int = 0) -> str | None:
        return pretrade.check(spec_of(cmd), inst, system_status=status, mark=mark, open_orders=open_orders)

    assert check(T.limit("BTC-USD-PERP", "BUY", "0.001", "64000")) is None
    assert "tick" in check(T.limit("BTC-USD-PERP", "BUY", "0.001", "64000.05"))
    assert "increment" in check(T.limit("BTC-USD-PERP", "BUY", "0.000015", "64000"))
    assert "notional" in check(T.limit("BTC-USD-PERP", "BUY", "0.0001", "64000"))
    assert check(T.limit("BTC-USD-PERP", "SELL", "0.0001", "64000", reduce_only=True)) is None  # exempt
    assert "notional" in check(T.market("BTC-USD-PERP", "BUY", "0.0001"))  # marked to market
    assert "max order size" in check(T.limit("BTC-USD-PERP", "BUY", "101", "64000"))
    assert "max_open_orders" in check(T.limit("BTC-USD-PERP", "BUY", "0.001", "64000"), open_orders=3)
    assert "above the price band" in check(T.limit("BTC-USD-PERP", "BUY", "0.001", "68300"))
    assert check(T.limit("BTC-USD-PERP", "BUY", "0.001", "50000")) is None  # passive far below: fine
    assert "below the price band" in check(T.limit("BTC-USD-PERP", "SELL", "0.001", "61700"))
    stop = T.order("BTC-USD-PERP", "BUY", "0.001", order_type="STOP_LIMIT", price="70000", trigger_price="69000")
    assert check(stop) is None  # trigger orders: the venue checks the band when they trigger
    assert "maintenance" in check(T.limit("BTC-USD-PERP", "BUY", "0.001", "64000"), "maintenance")
    assert "cancel-only" in check(T.limit("BTC-USD-PERP", "BUY", "0.001", "64000"), "cancel_only")
    assert "post-only" in check(T.limit("BTC-USD-PERP", "BUY", "0.001", "64000"), "post_only")
    assert check(T.limit("BTC-USD-PERP", "BUY", "0.001", "64000", post_only=True), "post_only") is None


def test_money_and_status_report() -> None:
    assert money("0.0975") == "0.09750000 USDC" and money("-0.1", "usdc") == "-0.10000000 USDC"
    v = venue_order({
        "id": "17", "market": "BTC-USD-PERP", "side": "SELL", "type": "STOP_LOSS_LIMIT", "size": "0.5",
        "remaining_size": "0.2", "price": "64000", "status": "CLOSED", "cancel_reason": "USER_CANCELED",
        "client_id": "c1", "instruction": "POST_ONLY", "flags": ["REDUCE_ONLY"], "trigger_price": "64100",
        "avg_fill_price": "64000.5", "created_at": 1000, "last_updated_at": 2000, "seq_no": 5,
    })
    r = order_status_report(v, account_id="PARADEX-0xabc", instrument_id="BTC-USD-PERP.PARADEX",
                            client_order_id="c1", price_precision=1, size_precision=5, ts_init=3)
    assert (r.order_status, r.order_type, r.order_side, r.time_in_force) == (8, 4, 2, 1)  # CANCELED, STOP_LIMIT
    assert (r.quantity, r.filled_qty, r.price, r.trigger_price, r.avg_px) == (
        "0.50000", "0.30000", "64000.0", "64100.0", "64000.5")
    assert r.post_only and r.reduce_only and r.ts_accepted == 1_000_000_000 and r.cancel_reason == "USER_CANCELED"


def test_token_buckets_and_venue_headers() -> None:
    b = TokenBucket(10, 1.0)
    now = time.monotonic()
    for _ in range(10):
        assert b.wait_time(1, now) == 0
        b.take(1)
    assert 0.09 < b.wait_time(1, now) <= 0.11  # refills continuously: 10/s = one every 100 ms

    async def run() -> float:
        rl = RateLimiter(1000, 100_000, 5, 600)
        t0 = time.monotonic()
        for _ in range(7):
            await rl.acquire("private_get")  # 5 at once, then 2 more at 5/s
        waited = time.monotonic() - t0
        state = RateLimitState(remaining=0, reset=time.time() + 0.3, window=1)
        rl.observe("orders", state, rate_limited=False, retry_after=None)
        t1 = time.monotonic()
        await rl.acquire("orders")  # blocked until the venue's reset
        assert 0.2 < time.monotonic() - t1 < 0.6
        rl.observe("orders", RateLimitState(), rate_limited=True, retry_after=0.2)
        assert rl.counters()["ratelimit_orders_blocked_by_venue"] == 2
        return waited

    waited = asyncio.run(run())
    assert 0.3 < waited < 0.7


def test_latency_split_and_fill_helper() -> None:
    lt = LatencyTracker()
    lt.start("c", stored_ns=1_000_000, received_ns=1_200_000)
    for name, t in (("submitted", 1_700_000), ("signed", 2_000_000), ("post_start", 2_000_000),
                    ("post_end", 5_000_000), ("ws_in", 6_000_000), ("built", 6_100_000)):
        lt.mark("c", name, t)
    lt.accepted("c", 6_400_000)
    summ = lt.summary()
    assert summ["lat_total_p50_us"] == "5400" and summ["lat_rest_p50_us"] == "3000"
    assert summ["lat_venue_ws_p50_us"] == "1000" and summ["lat_own_p50_us"] == "1400"
    init = T.limit("BTC-USD-PERP", "BUY", "0.002", "1").order

    def fill(trade: str) -> s.OrderFilled:
        return s.OrderFilled(
            trader_id=init.trader_id, strategy_id=init.strategy_id, instrument_id=init.instrument_id,
            client_order_id=init.client_order_id, venue_order_id="1", account_id="PARADEX-0xabc", trade_id=trade,
            order_side="BUY", order_type="LIMIT", last_qty="0.001", last_px="1.0", currency="USD",
            commission="0.00000000 USDC", liquidity_side="MAKER", event_id=init.event_id, ts_event=1, ts_init=1,
        )

    assert not is_filled([init, fill("a")]) and is_filled([init, fill("a"), fill("b")])
