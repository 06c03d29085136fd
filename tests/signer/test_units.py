"""Pure parts of the signer: key custody (sources, file permissions, dev key, redaction), request
validation (markets, grids, decimals, timestamps, order ids, auth windows) and policy (allowed
markets, notional with and without a mark, token bucket), and the message schemas."""

from __future__ import annotations

import copy
import os
import pickle
import stat
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from schemas import DecodeError, decode_as, encode
from schemas.signer import SignatureReply, SignerError, SignOrderRequest, SignReply
from services.paradex import signing
from services.signer import custody
from services.signer.custody import KeyCustody, KeyLoadError, load_key
from services.signer.policy import MarkCache, Policy, TokenBucket
from services.signer.validation import (
    MarketCatalog,
    Refusal,
    validate_auth,
    validate_order,
    validate_order_id,
)

KEY = 0x543B6CF6C91817A87174AAEA4FB370AC1C694E864D7740D728F8344D53E815
MARKETS = [
    {"symbol": "BTC-USD-PERP", "price_tick_size": "0.1", "order_size_increment": "0.00001", "max_order_size": "100"},
    {"symbol": "ETH-USD-PERP", "price_tick_size": "0.01", "order_size_increment": "0.0001", "max_order_size": "1000"},
    {"symbol": "BROKEN", "price_tick_size": "zero"},
]
NOW = 1_800_000_000_000


# --- custody -------------------------------------------------------------------------------------


def test_key_from_env_is_removed_from_environment_and_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(custody.L2_KEY_ENV, hex(KEY))
    loaded = load_key(paradex_env="prod", key_dir="/nonexistent")
    assert custody.L2_KEY_ENV not in os.environ
    c = loaded.custody
    assert c.public_key == signing.public_key(KEY)
    text = repr(c) + str(c)
    for secret in (hex(KEY), str(KEY), hex(KEY)[2:]):
        assert secret not in text
    assert "redacted" in text
    with pytest.raises(TypeError):
        pickle.dumps(c)
    with pytest.raises(TypeError):
        copy.deepcopy(c)
    with pytest.raises(AttributeError):
        c.__dict__  # noqa: B018 - slots only: no attribute dict to dump
    assert c.sign(123) == signing.sign(123, KEY)


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "l2.key"
    f.write_text(hex(KEY))
    f.chmod(0o644)
    with pytest.raises(KeyLoadError) as err:
        load_key(paradex_env="prod", key_dir=str(tmp_path), env={custody.L2_KEY_FILE_ENV: str(f)})
    assert "chmod 600" in str(err.value)
    assert hex(KEY) not in str(err.value) and hex(KEY)[2:] not in str(err.value)
    f.chmod(0o640)
    with pytest.raises(KeyLoadError):
        load_key(paradex_env="prod", key_dir=str(tmp_path), env={custody.L2_KEY_FILE_ENV: str(f)})
    f.chmod(0o600)
    loaded = load_key(paradex_env="prod", key_dir=str(tmp_path), env={custody.L2_KEY_FILE_ENV: str(f)})
    assert loaded.custody.public_key == signing.public_key(KEY)


def test_bad_key_material_errors_do_not_echo_it(tmp_path: Path) -> None:
    for text in ("0xnothex-but-secret-ish", "secretword"):
        with pytest.raises(KeyLoadError) as err:
            load_key(paradex_env="prod", key_dir=str(tmp_path), env={custody.L2_KEY_ENV: text})
        assert text not in str(err.value)
    with pytest.raises(KeyLoadError):
        load_key(paradex_env="prod", key_dir=str(tmp_path), env={custody.L2_KEY_ENV: hex(signing.EC_ORDER)})


def test_no_key_outside_sim_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError) as err:
        load_key(paradex_env="testnet", key_dir=str(tmp_path), env={})
    assert custody.L2_KEY_FILE_ENV in str(err.value)
    assert not (tmp_path / custody.DEV_KEY_NAME).exists()


def test_dev_key_generated_once_with_mode_0600(tmp_path: Path) -> None:
    d = tmp_path / "signer"
    first = load_key(paradex_env="sim", key_dir=str(d), env={})
    path = d / custody.DEV_KEY_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    again = load_key(paradex_env="sim", key_dir=str(d), env={})
    assert again.custody.public_key == first.custody.public_key
    path.chmod(0o644)
    with pytest.raises(KeyLoadError):
        load_key(paradex_env="sim", key_dir=str(d), env={})


def test_l1_key_derivation(tmp_path: Path) -> None:
    env_key = "0xf8e4d1d772cdd44e5e77615ad11cc071c94e4c06dc21150d903f28e6aa6abdff"
    env = {custody.L1_KEY_ENV: env_key}
    loaded = load_key(paradex_env="testnet", key_dir=str(tmp_path), env=env, l1_chain_id=lambda: 11155111)
    assert loaded.custody.public_key == signing.public_key(KEY)
    # The address of that L1 key (the SDK test passes its own l1_address separately; it is not this one).
    from eth_account import Account

    assert loaded.l1_address == Account.from_key(env_key).address
    assert custody.L1_KEY_ENV not in env


def test_custody_rejects_out_of_range_key() -> None:
    with pytest.raises(KeyLoadError):
        KeyCustody(0, "test")


# --- validation ----------------------------------------------------------------------------------


@pytest.fixture
def catalog() -> MarketCatalog:
    c = MarketCatalog()
    assert c.update(MARKETS) == ["BROKEN"]
    return c


def order(catalog: MarketCatalog, **kw: object) -> object:
    args = {
        "market": "BTC-USD-PERP",
        "side": "BUY",
        "order_type": "LIMIT",
        "size": "0.01",
        "price": "65000.1",
        "timestamp_ms": NOW,
        "now_ms": NOW,
        "max_skew_ms": 30_000,
        **kw,
    }
    return validate_order(catalog, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"market": "XRP-USD-PERP"}, "UNKNOWN_MARKET"),
        ({"side": "buy"}, "INVALID_SIDE"),
        ({"order_type": "ICEBERG"}, "INVALID_ORDER_TYPE"),
        ({"size": "0.000001"}, "INVALID_SIZE"),
        ({"size": "0"}, "INVALID_SIZE"),
        ({"size": "1e-2"}, "INVALID_SIZE"),
        ({"size": "-0.01"}, "INVALID_SIZE"),
        ({"size": "101"}, "INVALID_SIZE"),
        ({"price": "65000.15"}, "INVALID_PRICE"),
        ({"price": "NaN"}, "INVALID_PRICE"),
        ({"price": "65,000"}, "INVALID_PRICE"),
        ({"price": None}, "INVALID_PRICE"),
        ({"price": "0"}, "INVALID_PRICE"),
        ({"order_type": "MARKET", "price": "65000"}, "INVALID_PRICE"),
        ({"timestamp_ms": NOW - 30_001}, "INVALID_TIMESTAMP"),
        ({"timestamp_ms": NOW + 31_000}, "INVALID_TIMESTAMP"),
    ],
)
def test_bad_orders_are_refused(catalog: MarketCatalog, change: dict[str, object], code: str) -> None:
    with pytest.raises(Refusal) as err:
        order(catalog, **change)
    assert err.value.code == code
    assert err.value.reason


def test_good_orders(catalog: MarketCatalog) -> None:
    v = order(catalog)
    assert v.size == Decimal("0.01") and v.price == Decimal("65000.1")  # type: ignore[attr-defined]
    m = order(catalog, order_type="MARKET", price=None, size="1.5")
    assert m.price is None and m.fields.price is None  # type: ignore[attr-defined]
    assert order(catalog, order_type="STOP_MARKET", price="0").fields.price is None  # type: ignore[attr-defined]
    assert order(catalog, timestamp_ms=NOW - 30_000).fields.timestamp_ms == NOW - 30_000  # type: ignore[attr-defined]


def test_catalog_not_loaded_means_not_ready() -> None:
    with pytest.raises(Refusal) as err:
        order(MarketCatalog())
    assert err.value.code == "NOT_READY"


def test_order_id_and_auth_windows() -> None:
    assert validate_order_id("1681462103821101699438490000") == "1681462103821101699438490000"
    for bad in ("abc", "", "12 3", "0x" + "f" * 63):
        with pytest.raises(Refusal):
            validate_order_id(bad)
    validate_auth(1000, 1300, 1000, 30, 86400)
    for ts, exp, code in (
        (1000, 1000, "INVALID_TIMESTAMP"),
        (900, 1200, "INVALID_TIMESTAMP"),
        (1000, 1000 + 86401, "POLICY_AUTH_VALIDITY"),
    ):
        with pytest.raises(Refusal) as err:
            validate_auth(ts, exp, 1000, 30, 86400)
        assert err.value.code == code


# --- policy --------------------------------------------------------------------------------------


def test_policy_markets_and_notional(catalog: MarketCatalog) -> None:
    p = Policy(
        allowed_markets=("BTC-USD-PERP",), max_order_notional=Decimal("10000"), max_orders_per_s=0, order_burst=1
    )
    p.check_market("BTC-USD-PERP")
    with pytest.raises(Refusal) as err:
        p.check_market("ETH-USD-PERP")
    assert err.value.code == "POLICY_MARKET_NOT_ALLOWED"
    small = order(catalog, size="0.1", price="65000")  # 6,500
    big = order(catalog, size="0.2", price="65000")  # 13,000
    p.check_notional(small, None)  # type: ignore[arg-type]
    with pytest.raises(Refusal) as err:
        p.check_notional(big, None)  # type: ignore[arg-type]
    assert err.value.code == "POLICY_MAX_NOTIONAL"
    mkt = order(catalog, order_type="MARKET", price=None, size="0.2")
    assert p.needs_mark(mkt)  # type: ignore[arg-type]
    with pytest.raises(Refusal) as err:
        p.check_notional(mkt, None)  # type: ignore[arg-type]
    assert err.value.code == "NO_REFERENCE_PRICE"
    p.check_notional(mkt, Decimal("40000"))  # type: ignore[arg-type]
    with pytest.raises(Refusal):
        p.check_notional(mkt, Decimal("60000"))  # type: ignore[arg-type]
    unlimited = Policy(allowed_markets=(), max_order_notional=Decimal(0), max_orders_per_s=0, order_burst=1)
    assert not unlimited.needs_mark(mkt)  # type: ignore[arg-type]
    unlimited.check_notional(big, None)  # type: ignore[arg-type]
    unlimited.check_market("ANY")


def test_token_bucket() -> None:
    now = [0.0]
    b = TokenBucket(10, 5, clock=lambda: now[0])
    assert [b.take() for _ in range(6)] == [True] * 5 + [False]
    now[0] += 0.1
    assert b.take() and not b.take()
    now[0] += 10
    assert sum(b.take() for _ in range(10)) == 5  # refills to the burst, not beyond
    assert all(TokenBucket(0, 1).take() for _ in range(1000))


async def test_mark_cache_single_flight_and_errors() -> None:
    calls: list[str] = []

    async def fetch(market: str) -> Decimal | None:
        calls.append(market)
        if market == "BAD":
            raise RuntimeError("venue down")
        return Decimal("100")

    cache = MarkCache(fetch, max_age_s=60)
    import asyncio

    got = await asyncio.gather(*(cache.get("BTC") for _ in range(5)))
    assert got == [Decimal("100")] * 5 and calls == ["BTC"]
    assert cache.fresh("BTC") == Decimal("100")
    with pytest.raises(RuntimeError):
        await cache.get("BAD")
    assert cache.recently_used() == ["BTC", "BAD"] or set(cache.recently_used()) == {"BTC", "BAD"}


# --- schemas -------------------------------------------------------------------------------------


def test_signer_schemas_roundtrip_and_union_replies() -> None:
    req = SignOrderRequest(
        market="BTC-USD-PERP",
        side="BUY",
        order_type="LIMIT",
        size="1",
        price="2",
        timestamp_ms=NOW,
        client_ref="c-1",
        requester="order-router",
    )
    assert decode_as(encode(req), SignOrderRequest) == req
    ok = SignatureReply(signature='["1","2"]', message_hash="0x1", account="0xabc")
    err = SignerError(code="INVALID_SIZE", reason="no")
    assert decode_as(encode(ok), SignReply) == ok
    assert decode_as(encode(err), SignReply) == err
    with pytest.raises(DecodeError):
        decode_as(encode(req), SignReply)
    with pytest.raises(DecodeError):
        decode_as(b"\x00garbage", SignOrderRequest)
    assert msgspec.msgpack.decode(encode(req))["type"] == "SignOrderRequest"
