"""Venue payloads → schema events (services.paradex.normalize / instruments) and the book sequencer.

Every event produced is round-tripped through the bus codec, whose decoder validates decimal
strings, identifiers and timestamps exactly as a consumer would.
"""

from __future__ import annotations

import msgspec
import pytest

from schemas import decode, encode
from schemas.enums import AggressorSide, BookAction, MarketStatusAction, OrderSide
from services.feed_handler.book_seq import BookSequencer, Verdict
from services.paradex.instruments import FeeDefaults, crypto_perpetual, fingerprint, market_spec, market_status
from services.paradex.normalize import (
    MarketSpec,
    NormalizeError,
    book_deltas,
    fixed,
    funding_update,
    quote_tick,
    rate,
    summary_updates,
    trade_tick,
)
from services.paradex.venue_types import (
    bbo_decoder,
    book_decoder,
    funding_decoder,
    summary_decoder,
    trade_decoder,
)

SPEC = MarketSpec("BTC-USD-PERP", "BTC-USD-PERP.PARADEX", 1, 5, 480)
TS = 1_700_000_000_123_456_789


def rt(obj):
    """Encode + decode with the bus codec (validates every constrained field)."""
    out = decode(encode(obj))
    assert out == obj
    return out


def j(obj) -> bytes:
    return msgspec.json.encode(obj)


@pytest.mark.parametrize(
    ("value", "precision", "expected"),
    [
        ("65000", 1, "65000.0"),
        ("65000.1", 1, "65000.1"),
        ("65000.10", 1, "65000.1"),
        ("0.026", 5, "0.02600"),
        ("1.25", 1, "1.3"),  # half away from zero, as Nautilus rounds
        ("-1.25", 1, "-1.3"),
        ("68465.17449906", 1, "68465.2"),
        ("7", 0, "7"),
        ("7.000", 0, "7"),
        ("-0.04", 1, "0.0"),
    ],
)
def test_fixed(value: str, precision: int, expected: str) -> None:
    assert fixed(value, precision) == expected


@pytest.mark.parametrize("bad", ["", "abc", "1e5", "1,000", "NaN", "1.2.3", " 1", "--1"])
def test_fixed_rejects(bad: str) -> None:
    with pytest.raises(NormalizeError):
        fixed(bad, 2)
    with pytest.raises(NormalizeError):
        fixed("-1", 2, signed=False)


def test_rate_keeps_venue_digits_up_to_16() -> None:
    assert rate("0.01629574927887") == "0.01629574927887"
    assert rate("-0.00001") == "-0.00001"
    assert rate("0.12345678901234567891") == "0.1234567890123457"


def test_trade_tick() -> None:
    raw = j(
        {
            "id": "1718154353750201703989430001",
            "market": "BTC-USD-PERP",
            "side": "BUY",
            "size": "0.026",
            "price": "69578",
            "created_at": 1718154353750,
            "trade_type": "FILL",
            "extra": [1],
        }
    )
    t = rt(trade_tick(trade_decoder.decode(raw), SPEC, TS))
    assert t.instrument_id == "BTC-USD-PERP.PARADEX"
    assert (t.price, t.size, t.aggressor_side) == ("69578.0", "0.02600", AggressorSide.BUYER)
    assert t.trade_id == "1718154353750201703989430001"
    assert (t.ts_event, t.ts_init) == (1718154353750 * 1_000_000, TS)
    sell = trade_decoder.decode(raw.replace(b'"BUY"', b'"SELL"'))
    assert trade_tick(sell, SPEC, TS).aggressor_side is AggressorSide.SELLER


@pytest.mark.parametrize(
    "patch",
    [{"side": "UP"}, {"size": "0"}, {"price": "x"}, {"id": "x" * 37}, {"created_at": 0}, {"size": "-1"}],
)
def test_trade_tick_rejects(patch: dict) -> None:
    base = {"id": "1", "market": "BTC-USD-PERP", "side": "BUY", "size": "1", "price": "1", "created_at": 1}
    with pytest.raises(NormalizeError):
        trade_tick(trade_decoder.decode(j({**base, **patch})), SPEC, TS)


def test_trade_payload_missing_fields_is_a_decode_error() -> None:
    with pytest.raises(msgspec.ValidationError):
        trade_decoder.decode(j({"id": "1", "market": "BTC-USD-PERP"}))
    with pytest.raises(msgspec.ValidationError):
        trade_decoder.decode(j({"id": 1, "market": "M", "side": "BUY", "size": 1.5, "price": "1", "created_at": 1}))


def test_quote_tick_and_one_sided() -> None:
    raw = {
        "market": "BTC-USD-PERP",
        "bid": "30112.2",
        "bid_size": "0.04",
        "ask": "30130",
        "ask_size": "0.05",
        "last_updated_at": 1681493939981,
        "seq_no": 20784,
    }
    q = rt(quote_tick(bbo_decoder.decode(j(raw)), SPEC, TS))
    assert (q.bid_price, q.ask_price, q.bid_size, q.ask_size) == ("30112.2", "30130.0", "0.04000", "0.05000")
    assert q.ts_event == 1681493939981 * 1_000_000
    assert quote_tick(bbo_decoder.decode(j({**raw, "ask": "", "ask_size": "0"})), SPEC, TS) is None


def test_book_snapshot_clear_adds_flags() -> None:
    raw = {
        "seq_no": 20784,
        "market": "BTC-USD-PERP",
        "last_updated_at": 1681462770100,
        "update_type": "s",
        "deletes": [],
        "updates": [],
        "inserts": [
            {"side": "BUY", "price": "1908.2", "size": "69.379"},
            {"side": "SELL", "price": "1909", "size": "18.465"},
        ],
    }
    d = rt(book_deltas(book_decoder.decode(j(raw)), SPEC, TS))
    acts = [(x.action, x.order.side, x.order.price, x.order.size, x.flags, x.sequence) for x in d.deltas]
    assert acts == [
        (BookAction.CLEAR, OrderSide.NO_ORDER_SIDE, "0.0", "0.00000", 32, 20784),
        (BookAction.ADD, OrderSide.BUY, "1908.2", "69.37900", 32, 20784),
        (BookAction.ADD, OrderSide.SELL, "1909.0", "18.46500", 160, 20784),
    ]
    assert d.ts_event == 1681462770100 * 1_000_000 and d.flags == 160
    empty = book_deltas(book_decoder.decode(j({**raw, "inserts": []})), SPEC, TS)
    assert [(x.action, x.flags) for x in empty.deltas] == [(BookAction.CLEAR, 160)]


def test_book_delta_actions() -> None:
    raw = {
        "seq_no": 20785,
        "market": "BTC-USD-PERP",
        "last_updated_at": 1681462770115,
        "update_type": "d",
        "deletes": [{"side": "SELL", "price": "1909.16", "size": "0"}],
        "inserts": [{"side": "BUY", "price": "1900", "size": "1"}, {"side": "BUY", "price": "1901", "size": "0"}],
        "updates": [{"side": "BUY", "price": "1908.2", "size": "42.95"}],
    }
    d = rt(book_deltas(book_decoder.decode(j(raw)), SPEC, TS))
    acts = [(x.action, x.order.side, x.order.price, x.order.size, x.flags, x.sequence) for x in d.deltas]
    assert acts == [
        (BookAction.DELETE, OrderSide.SELL, "1909.2", "0.00000", 0, 20785),
        (BookAction.UPDATE, OrderSide.BUY, "1908.2", "42.95000", 0, 20785),
        (BookAction.ADD, OrderSide.BUY, "1900.0", "1.00000", 0, 20785),
        (BookAction.DELETE, OrderSide.BUY, "1901.0", "0.00000", 128, 20785),  # size 0 on an insert removes
    ]
    assert book_deltas(book_decoder.decode(j({**raw, "deletes": [], "inserts": [], "updates": []})), SPEC, TS) is None
    with pytest.raises(NormalizeError):
        book_deltas(book_decoder.decode(j({**raw, "update_type": "x"})), SPEC, TS)
    with pytest.raises(NormalizeError):
        bad = {**raw, "deletes": [{"side": "LEFT", "price": "1", "size": "0"}]}
        book_deltas(book_decoder.decode(j(bad)), SPEC, TS)


def test_summary_and_funding() -> None:
    raw = {
        "symbol": "BTC-USD-PERP",
        "oracle_price": "68465.17449906",
        "mark_price": "68465.17449906",
        "last_traded_price": "68495.1",
        "bid": "68477.6",
        "ask": "69578.2",
        "created_at": 1718170156580,
        "underlying_price": "67367.37268422",
        "open_interest": "162.272",
        "funding_rate": "0.01629574927887",
    }
    mark, index, funding = summary_updates(summary_decoder.decode(j(raw)), SPEC, TS)
    assert rt(mark).value == "68465.2" and rt(index).value == "67367.4"
    f = rt(funding)
    assert (f.rate, f.interval, f.ts_event) == ("0.01629574927887", 480, 1718170156580 * 1_000_000)
    assert summary_updates(summary_decoder.decode(j({"symbol": "X", "created_at": 5})), SPEC, TS) == (None, None, None)
    fd = {
        "market": "BTC-USD-PERP",
        "funding_index": "12.5",
        "funding_premium": "0.1",
        "funding_rate": "0.0001",
        "funding_rate_8h": "0.0001",
        "funding_period_hours": 1,
        "created_at": 1718170156999,
    }
    u = rt(funding_update(funding_decoder.decode(j(fd)), SPEC, TS))
    assert (u.rate, u.interval) == ("0.0001", 60)
    with pytest.raises(NormalizeError):
        funding_update(funding_decoder.decode(j({**fd, "funding_period_hours": 0.001})), SPEC, TS)


MARKET = {
    "symbol": "BTC-USD-PERP",
    "base_currency": "BTC",
    "quote_currency": "USD",
    "settlement_currency": "USDC",
    "asset_kind": "PERP",
    "order_size_increment": "0.00001",
    "price_tick_size": "0.1",
    "min_notional": "10",
    "open_at": 1_700_000_000_000,
    "expiry_at": 0,
    "max_order_size": "100",
    "position_limit": "300",
    "max_open_orders": 150,
    "funding_period_hours": 8,
    "delta1_cross_margin_params": {"imf_base": "0.02", "imf_factor": "0", "imf_shift": "0", "mmf_factor": "0.5"},
    "fee_config": {
        "api_fee": {
            "maker_fee": {"fee": "-0.00005", "fee_cap": "", "fee_floor": ""},
            "taker_fee": {"fee": "0.0002", "fee_cap": "", "fee_floor": ""},
        }
    },
    "tags": ["MAJOR"],
}


def test_crypto_perpetual_mapping() -> None:
    inst = rt(crypto_perpetual(MARKET, TS))
    assert inst.id == "BTC-USD-PERP.PARADEX" and inst.raw_symbol == "BTC-USD-PERP"
    assert (inst.base_currency, inst.quote_currency, inst.settlement_currency) == ("BTC", "USD", "USDC")
    assert (inst.price_precision, inst.price_increment, inst.size_precision, inst.size_increment) == (
        1,
        "0.1",
        5,
        "0.00001",
    )
    assert (inst.min_quantity, inst.max_quantity, inst.min_notional) == ("0.00001", "100.00000", "10.00 USD")
    assert (inst.margin_init, inst.margin_maint) == ("0.02", "0.01")
    assert (inst.maker_fee, inst.taker_fee) == ("-0.00005", "0.0002")
    assert inst.info["fee_source"] == "fee_config.api_fee"
    assert inst.info["delta1_cross_margin_params.mmf_factor"] == "0.5"
    assert inst.info["open_at"] == "1700000000000" and inst.info["tags"] == ["MAJOR"]
    spec = market_spec(inst)
    assert (spec.price_precision, spec.size_precision, spec.funding_interval_min) == (1, 5, 480)
    no_fees = {k: v for k, v in MARKET.items() if k != "fee_config"}
    inst2 = crypto_perpetual(no_fees, TS, FeeDefaults("0.00003", "0.00045"))
    assert (inst2.maker_fee, inst2.taker_fee, inst2.info["fee_source"]) == ("0.00003", "0.00045", "default")
    # Same content, other timestamps → same fingerprint; any change → another.
    assert fingerprint(crypto_perpetual(MARKET, TS + 5)) == fingerprint(inst)
    assert fingerprint(crypto_perpetual({**MARKET, "max_order_size": "101"}, TS)) != fingerprint(inst)


@pytest.mark.parametrize(
    "patch",
    [
        {"price_tick_size": "0"},
        {"price_tick_size": "abc"},
        {"base_currency": "B"},
        {"asset_kind": "OPTION"},
        {"symbol": "A.B"},
        {"delta1_cross_margin_params": {}},
    ],
)
def test_crypto_perpetual_rejects(patch: dict) -> None:
    with pytest.raises(NormalizeError):
        crypto_perpetual({**MARKET, **patch}, TS)


def test_market_status_mapping() -> None:
    now = 1_800_000_000_000
    assert market_status("ok", 1, 0, now)[0] is MarketStatusAction.TRADING
    assert market_status("post_only", 1, 0, now)[:4] == (
        MarketStatusAction.QUOTING,
        "system status post_only",
        False,
        True,
    )
    assert market_status("cancel_only", 1, 0, now)[0] is MarketStatusAction.PAUSE
    assert market_status("maintenance", 1, 0, now)[0] is MarketStatusAction.HALT
    assert market_status("weird", 1, 0, now)[0] is MarketStatusAction.NOT_AVAILABLE_FOR_TRADING
    assert market_status("ok", now + 1, 0, now)[0] is MarketStatusAction.PRE_OPEN
    assert market_status("ok", 1, now - 1, now)[0] is MarketStatusAction.CLOSE


def test_book_sequencer() -> None:
    s = BookSequencer()
    assert s.check("d", 5, True) is Verdict.AWAITING_SNAPSHOT
    assert s.check("s", 10, True) is Verdict.PUBLISH
    s.published(10)
    assert s.check("d", 11, True) is Verdict.PUBLISH
    s.published(11)
    assert s.check("d", 12, False) is Verdict.SKIP_EMPTY
    assert s.prev_published == 11  # the empty delta was not published
    assert s.check("d", 12, True) is Verdict.DUPLICATE
    assert s.check("d", 10, True) is Verdict.DUPLICATE
    assert s.check("d", 13, True) is Verdict.PUBLISH
    s.published(13)
    assert s.check("d", 15, True) is Verdict.GAP
    assert s.check("d", 16, True) is Verdict.AWAITING_SNAPSHOT
    assert s.check("s", 20, True) is Verdict.PUBLISH
    assert s.check("d", 21, True) is Verdict.PUBLISH
    s.invalidate()
    assert s.check("d", 22, True) is Verdict.AWAITING_SNAPSHOT
