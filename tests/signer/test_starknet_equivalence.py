"""Property tests: for random orders (markets, sides, types, sizes and prices on random tick grids,
timestamps), ModifyOrders and auth requests, our typed-data hash equals starknet-py's
``TypedData(...).message_hash(account)`` and our signature verifies with starknet-py's
``verify_message_signature``; on a smaller sample the (r, s) equal ``message_signature`` itself.

starknet-py is slow (~7 ms per hash, ~125 ms per signature here), so the example counts are small.
"""

from __future__ import annotations

import string
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starknet_py.hash.utils import message_signature, private_to_stark_key, verify_message_signature
from starknet_py.utils.typed_data import TypedData

from services.paradex import signing

CHAINS = ("PRIVATE_SN_POTC_SEPOLIA", "PRIVATE_SN_PARACLEAR_MAINNET", "PRIVATE_SN_POTC_MOCK_SEPOLIA")
TYPES = ("LIMIT", "MARKET", "STOP_LIMIT", "STOP_MARKET", "TAKE_PROFIT_LIMIT", "STOP_LOSS_MARKET")
FELT_TYPES = [
    {"name": "name", "type": "felt"},
    {"name": "chainId", "type": "felt"},
    {"name": "version", "type": "felt"},
]


def typed_data(chain: str, primary: str, fields: tuple[str, ...], message: dict[str, str]) -> dict[str, Any]:
    return {
        "domain": {"name": "Paradex", "chainId": hex(signing.chain_id_felt(chain)), "version": "1"},
        "primaryType": primary,
        "types": {"StarkNetDomain": FELT_TYPES, primary: [{"name": f, "type": "felt"} for f in fields]},
        "message": message,
    }


def order_message(o: signing.OrderFields) -> dict[str, str]:
    """What paradex-py puts in the typed data (paradex-api.md §6.2.1)."""
    market_variant = o.order_type == "MARKET" or not o.price
    return {
        "timestamp": str(o.timestamp_ms),
        "market": o.market,
        "side": "1" if o.side == "BUY" else "2",
        "orderType": o.order_type,
        "size": str(int(Decimal(o.size).scaleb(8))),
        "price": "0" if market_variant else str(int(Decimal(o.price).scaleb(8))),
    }


@st.composite
def orders(draw: st.DrawFn) -> signing.OrderFields:
    base = draw(st.text(alphabet=string.ascii_uppercase, min_size=2, max_size=8))
    market = f"{base}-USD-PERP"
    order_type = draw(st.sampled_from(TYPES))
    tick = Decimal(1).scaleb(-draw(st.integers(0, 6))) * draw(st.sampled_from([1, 2, 5]))
    step = Decimal(1).scaleb(-draw(st.integers(0, 8)))
    size = step * draw(st.integers(1, 10**7))
    price = tick * draw(st.integers(1, 10**8))
    return signing.OrderFields(
        market,
        draw(st.sampled_from(["BUY", "SELL"])),
        order_type,
        f"{size.normalize():f}",
        None if order_type.endswith("MARKET") else f"{price.normalize():f}",
        draw(st.integers(1_600_000_000_000, 2_000_000_000_000)),
    )


accounts = st.integers(1, 2**251 - 1)
keys = st.integers(1, signing.EC_ORDER - 1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=orders(), chain=st.sampled_from(CHAINS), account=accounts, key=keys)
def test_order_hash_equals_starknet_py_and_signature_verifies(
    order: signing.OrderFields, chain: str, account: int, key: int
) -> None:
    ours = signing.order_hash(chain, account, order)
    theirs = TypedData.from_dict(typed_data(chain, "Order", signing.ORDER_FIELDS, order_message(order))).message_hash(
        account
    )
    assert ours == theirs
    r, s = signing.sign(ours, key)
    assert verify_message_signature(ours, [r, s], private_to_stark_key(key))
    assert signing.verify(ours, r, s, signing.public_key(key))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=orders(), order_id=st.integers(1, 10**28), chain=st.sampled_from(CHAINS), account=accounts, key=keys)
def test_modify_hash_equals_starknet_py(
    order: signing.OrderFields, order_id: int, chain: str, account: int, key: int
) -> None:
    msg = {**order_message(order), "id": str(order_id)}
    theirs = TypedData.from_dict(typed_data(chain, "ModifyOrder", signing.MODIFY_FIELDS, msg)).message_hash(account)
    ours = signing.modify_hash(chain, account, order, str(order_id))
    assert ours == theirs
    r, s = signing.sign(ours, key)
    assert verify_message_signature(ours, [r, s], private_to_stark_key(key))


@settings(max_examples=10, deadline=None)
@given(ts=st.integers(1_600_000_000, 2_000_000_000), validity=st.integers(1, 7 * 86400), account=accounts)
def test_auth_hash_equals_starknet_py(ts: int, validity: int, account: int) -> None:
    msg = {"method": "POST", "path": "/v1/auth", "body": "", "timestamp": ts, "expiration": ts + validity}
    theirs = TypedData.from_dict(typed_data("PRIVATE_SN_POTC_SEPOLIA", "Request", signing.REQUEST_FIELDS, msg))
    assert signing.auth_hash("PRIVATE_SN_POTC_SEPOLIA", account, ts, ts + validity) == theirs.message_hash(account)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=orders(), account=accounts, key=keys)
def test_signature_is_bit_identical_to_starknet_py(order: signing.OrderFields, account: int, key: int) -> None:
    h = signing.order_hash("PRIVATE_SN_POTC_SEPOLIA", account, order)
    assert signing.sign(h, key) == tuple(message_signature(h, key))
