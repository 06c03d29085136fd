"""Every schema type round-trips, mirrors Nautilus's dict keys, and rejects bad input clearly."""

from __future__ import annotations

import msgspec
import pytest

import schemas as s
from tests.unit.samples import NAUTILUS_KEYS, SAMPLES, TS


def _id(ev: s.Event) -> str:
    return type(ev).__name__


@pytest.mark.parametrize("event", SAMPLES, ids=_id)
def test_round_trip_encode_decode(event: s.Event) -> None:
    data = s.encode(event)
    back = s.decode(data)
    assert type(back) is type(event)
    assert back == event
    assert s.encode(back) == data


@pytest.mark.parametrize("event", SAMPLES, ids=_id)
def test_to_dict_round_trip(event: s.Event) -> None:
    d = s.to_dict(event)
    assert d["type"] == type(event).__name__
    assert next(iter(d)) == "type"
    assert s.from_dict(d) == event


def test_every_registered_type_has_a_sample() -> None:
    sampled = {type(e).__name__ for e in SAMPLES}
    assert set(s.TYPES_BY_NAME) <= sampled


@pytest.mark.parametrize("event", [e for e in SAMPLES if type(e).__name__ in NAUTILUS_KEYS], ids=_id)
def test_to_dict_uses_nautilus_key_names(event: s.Event) -> None:
    keys = list(s.to_dict(event))
    expected = NAUTILUS_KEYS[type(event).__name__]
    optional_extras = {"params", "interval", "next_funding_ns"}
    assert [k for k in keys if k not in optional_extras] == expected


def test_optional_fields_left_out_keep_nautilus_keys() -> None:
    minimal = s.FundingRateUpdate(instrument_id="ETH-USD-PERP.PARADEX", rate="0.0001", ts_event=1, ts_init=2)
    assert list(s.to_dict(minimal)) == NAUTILUS_KEYS["FundingRateUpdate"]
    full = s.FundingRateUpdate(
        instrument_id="ETH-USD-PERP.PARADEX", rate="0.0001", ts_event=1, ts_init=2, interval=480, next_funding_ns=5
    )
    assert list(s.to_dict(full))[-2:] == ["interval", "next_funding_ns"]
    canceled = s.OrderCanceled(
        trader_id="T-1",
        strategy_id="S-1",
        instrument_id="ETH-USD-PERP.PARADEX",
        client_order_id="c1",
        event_id="097faffb-c29b-4d5f-b7ae-abccd80b3fa4",
        ts_event=1,
        ts_init=1,
    )
    d = s.to_dict(canceled)
    assert d["venue_order_id"] is None and d["account_id"] is None
    assert list(d) == NAUTILUS_KEYS["OrderCanceled"]


def test_report_enums_are_ints_and_event_enums_are_names() -> None:
    report = next(e for e in SAMPLES if isinstance(e, s.OrderStatusReport))
    d = s.to_dict(report)
    assert d["order_side"] == 1 and d["order_status"] == 13 and d["time_in_force"] == 1
    fill = next(e for e in SAMPLES if isinstance(e, s.OrderFilled))
    assert s.to_dict(fill)["order_side"] == "BUY"
    assert s.to_dict(fill)["liquidity_side"] == "MAKER"


def _trade(**over: object) -> bytes:
    base: dict[str, object] = {
        "type": "TradeTick",
        "instrument_id": "BTC-USD-PERP.PARADEX",
        "price": "65000.1",
        "size": "0.001",
        "aggressor_side": "BUYER",
        "trade_id": "1",
        "ts_event": TS,
        "ts_init": TS,
    }
    base.update(over)
    return msgspec.msgpack.encode(base)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\xc1\x00not msgpack", "malformed"),
        (msgspec.msgpack.encode([1, 2, 3]), "Expected `object`"),
        (msgspec.msgpack.encode({"type": "NoSuchEvent"}), "unknown message type 'NoSuchEvent'"),
        (msgspec.msgpack.encode({"price": "1"}), "missing required field `type`"),
        (_trade(trade_id="ordé"), "$.trade_id"),
        (_trade(instrument_id="BTC-USD-PERP.PARADÉX"), "$.instrument_id"),
        (_trade(instrument_id="BTC USD.PARADEX"), "$.instrument_id"),
        (_trade(price=65000.1), "Expected `str`, got `float` - at `$.price`"),
        (_trade(size="1e5"), "$.size"),
        (_trade(size="-1"), "$.size"),
        (_trade(price="NaN"), "$.price"),
        (_trade(trade_id="x" * 37), "$.trade_id"),
        (_trade(ts_event=-1), "$.ts_event"),
        (_trade(ts_event=1.5), "$.ts_event"),
        (_trade(aggressor_side="BUY"), "$.aggressor_side"),
        (_trade(trade_id="1").replace(b"\xa11", b"\xa1\xff"), "invalid UTF-8"),
    ],
)
def test_bad_input_gives_clear_decode_error(data: bytes, needle: str) -> None:
    with pytest.raises(s.DecodeError) as exc:
        s.decode(data)
    assert needle in str(exc.value)


def test_decode_as_rejects_wrong_type() -> None:
    data = s.encode(SAMPLES[0])
    with pytest.raises(s.DecodeError):
        s.decode_as(data, s.QuoteTick)
    assert s.decode_as(data, s.TradeTick) == SAMPLES[0]


def test_identifier_rules() -> None:
    base = {
        "trader_id": "TRADER-001",
        "strategy_id": "S-1",
        "instrument_id": "BTC-USD-PERP.PARADEX",
        "event_id": "097faffb-c29b-4d5f-b7ae-abccd80b3fa4",
        "ts_event": 1,
        "ts_init": 1,
        "reason": "x",
    }
    ok = s.from_dict({"type": "OrderDenied", **base, "client_order_id": "O-1"})
    assert ok.client_order_id == "O-1"
    for bad in ("has.dot", "sp ace", "star*", "é", "", "x" * 65):
        with pytest.raises(s.DecodeError):
            s.from_dict({"type": "OrderDenied", **base, "client_order_id": bad})
    with pytest.raises(s.DecodeError, match="trader_id"):
        s.from_dict({"type": "OrderDenied", **base, "trader_id": "TRADER", "client_order_id": "O-1"})


def test_empty_collections_rejected() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        s.OrderBookDeltas(instrument_id="BTC-USD-PERP.PARADEX", deltas=[])
    bad = msgspec.msgpack.encode({"type": "OrderBookDeltas", "instrument_id": "BTC-USD-PERP.PARADEX", "deltas": []})
    with pytest.raises(s.DecodeError, match="must not be empty"):
        s.decode(bad)


def test_instrument_precision_must_match_increment() -> None:
    d = s.to_dict(next(e for e in SAMPLES if isinstance(e, s.CryptoPerpetual)))
    d["price_precision"] = 2
    with pytest.raises(s.DecodeError, match="precision"):
        s.from_dict(d)


def test_json_line_is_nautilus_dict() -> None:
    ev = SAMPLES[0]
    assert msgspec.json.decode(s.to_json(ev)) == s.to_dict(ev)
