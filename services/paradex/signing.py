"""Paradex message hashing and STARK-curve signatures (paradex-api.md §6).

Starknet typed data, revision 0: Pedersen hash chains over felts, ``starknet_keccak`` type hashes.
Hashing and the elliptic-curve work run natively (``fast-stark-crypto``, Rust); the RFC-6979 nonce
uses the ``ecdsa`` package with extra entropy ``seed=32`` exactly as paradex-py and starknet-py do,
so our (r, s) equal theirs bit for bit (tests prove it against starknet-py).

This module is pure: it holds no key. The signer process owns the key and calls ``sign``; the
simulator calls ``verify``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

import fast_stark_crypto as fsc
from Crypto.Hash import keccak
from ecdsa.rfc6979 import generate_k

EC_ORDER = 0x800000000000010FFFFFFFFFFFFFFFFB781126DCAE7B2321E66A241ADC64D2F
FIELD_PRIME = 2**251 + 17 * 2**192 + 1
N_ELEMENT_BITS_ECDSA = 251
MASK_250 = 2**250 - 1
QUANTUM = Decimal(10) ** 8  # Paraclear decimals: sizes and prices are signed as value * 10^8

STARKNET_MESSAGE = int.from_bytes(b"StarkNet Message", "big")


def starknet_keccak(data: bytes) -> int:
    k = keccak.new(digest_bits=256)
    k.update(data)
    return int.from_bytes(k.digest(), "big") & MASK_250


def short_string(text: str) -> int:
    """Cairo short string: ASCII bytes read big-endian (at most 31 characters)."""
    raw = text.encode("ascii")
    if len(raw) > 31:
        raise ValueError(f"short string longer than 31 characters: {text!r}")
    return int.from_bytes(raw, "big")


def felt(value: int | str) -> int:
    """Revision-0 ``parse_felt``: int; ``0x`` hex; all-digit decimal; else a short string."""
    if isinstance(value, int):
        return value
    if value.startswith("0x"):
        return int(value, 16)
    if value.isdigit():
        return int(value)
    return short_string(value)


def pedersen(a: int, b: int) -> int:
    return int(fsc.rs_compute_pedersen_hash(hex(a), hex(b)))


def hash_chain_from(state: int, items: list[int], total_len: int) -> int:
    for x in items:
        state = pedersen(state, x)
    return pedersen(state, total_len)


def compute_hash_on_elements(items: list[int]) -> int:
    return hash_chain_from(0, items, len(items))


def type_hash(name: str, fields: tuple[str, ...]) -> int:
    return starknet_keccak(f"{name}({','.join(f'{f}:felt' for f in fields)})".encode())


DOMAIN_FIELDS = ("name", "chainId", "version")
ORDER_FIELDS = ("timestamp", "market", "side", "orderType", "size", "price")
MODIFY_FIELDS = (*ORDER_FIELDS, "id")
REQUEST_FIELDS = ("method", "path", "body", "timestamp", "expiration")
CONSTANT_FIELDS = ("action",)

DOMAIN_TYPE_HASH = type_hash("StarkNetDomain", DOMAIN_FIELDS)
ORDER_TYPE_HASH = type_hash("Order", ORDER_FIELDS)
MODIFY_TYPE_HASH = type_hash("ModifyOrder", MODIFY_FIELDS)
REQUEST_TYPE_HASH = type_hash("Request", REQUEST_FIELDS)
CONSTANT_TYPE_HASH = type_hash("Constant", CONSTANT_FIELDS)

# pedersen(0, type_hash) starts every struct hash; computing it once saves one hash per message.
_ORDER_PREFIX = pedersen(0, ORDER_TYPE_HASH)
_MODIFY_PREFIX = pedersen(0, MODIFY_TYPE_HASH)


def chain_id_felt(starknet_chain_id: str) -> int:
    """``PRIVATE_SN_POTC_SEPOLIA`` -> its ASCII bytes read big-endian (may exceed 31 chars' felt? no:
    chain ids are short strings)."""
    return int.from_bytes(starknet_chain_id.encode("ascii"), "big")


@lru_cache(maxsize=16)
def domain_hash(starknet_chain_id: str) -> int:
    return compute_hash_on_elements([DOMAIN_TYPE_HASH, short_string("Paradex"), chain_id_felt(starknet_chain_id), 1])


@lru_cache(maxsize=4096)
def _message_prefix(starknet_chain_id: str, account: int) -> int:
    """Hash-chain state after ("StarkNet Message", domain, account): constant per account."""
    state = pedersen(0, STARKNET_MESSAGE)
    state = pedersen(state, domain_hash(starknet_chain_id))
    return pedersen(state, account)


def message_hash(starknet_chain_id: str, account: int, struct_hash: int) -> int:
    state = pedersen(_message_prefix(starknet_chain_id, account), struct_hash)
    return pedersen(state, 4)


def side_felt(side: str) -> int:
    """BUY -> 1, SELL -> 2 (signed as the decimal strings "1"/"2")."""
    s = side.upper()
    if s == "BUY":
        return 1
    if s == "SELL":
        return 2
    raise ValueError(f"side must be BUY or SELL, got {side!r}")


def quantize(value: str | Decimal) -> int:
    """Decimal string -> integer in 10^-8 units, truncating as paradex-py does (``int(scaleb(8))``)."""
    d = Decimal(value) if isinstance(value, str) else value
    if not d.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    return int(d * QUANTUM)


@dataclass(frozen=True, slots=True)
class OrderFields:
    """What a Paradex order signature covers (trigger price, client id, flags are not signed)."""

    market: str
    side: str
    order_type: str
    size: str
    price: str | None
    timestamp_ms: int

    def felts(self) -> list[int]:
        price = 0 if self.order_type == "MARKET" or not self.price else quantize(self.price)
        return [
            self.timestamp_ms,
            short_string(self.market),
            side_felt(self.side),
            short_string(self.order_type),
            quantize(self.size),
            price,
        ]


def order_struct_hash(order: OrderFields) -> int:
    return hash_chain_from(_ORDER_PREFIX, order.felts(), len(ORDER_FIELDS) + 1)


def modify_struct_hash(order: OrderFields, order_id: str) -> int:
    return hash_chain_from(_MODIFY_PREFIX, [*order.felts(), felt(order_id)], len(MODIFY_FIELDS) + 1)


def order_hash(chain: str, account: int, order: OrderFields) -> int:
    return message_hash(chain, account, order_struct_hash(order))


def modify_hash(chain: str, account: int, order: OrderFields, order_id: str) -> int:
    return message_hash(chain, account, modify_struct_hash(order, order_id))


def auth_struct_hash(
    timestamp_s: int, expiration_s: int, method: str = "POST", path: str = "/v1/auth", body: str = ""
) -> int:
    return compute_hash_on_elements(
        [REQUEST_TYPE_HASH, felt(method), felt(path), felt(body) if body else 0, timestamp_s, expiration_s]
    )


def auth_hash(chain: str, account: int, timestamp_s: int, expiration_s: int) -> int:
    return message_hash(chain, account, auth_struct_hash(timestamp_s, expiration_s))


def onboarding_hash(chain: str, account: int) -> int:
    return message_hash(chain, account, compute_hash_on_elements([CONSTANT_TYPE_HASH, short_string("Onboarding")]))


# --- ECDSA on the STARK curve ----------------------------------------------------------------------


def public_key(private_key: int) -> int:
    return int(fsc.rs_get_public_key(hex(private_key)))


def _rfc6979_k(msg_hash: int, private_key: int, seed: int | None) -> int:
    # Same padding and entropy encoding as starknet-py / cairo-lang (elliptic.js compatibility).
    if 1 <= msg_hash.bit_length() % 8 <= 4 and msg_hash.bit_length() >= 248:
        msg_hash *= 16
    extra = b"" if seed is None else seed.to_bytes(math.ceil(seed.bit_length() / 8), "big")
    return generate_k(
        EC_ORDER,
        private_key,
        hashlib.sha256,
        msg_hash.to_bytes(math.ceil(msg_hash.bit_length() / 8), "big"),
        extra_entropy=extra,
    )


def sign(msg_hash: int, private_key: int, seed: int | None = 32) -> tuple[int, int]:
    """Deterministic ECDSA (RFC 6979 with ``seed`` as extra entropy), identical to starknet-py's
    ``message_signature``: r = x(k*G), s = k^-1 (z + r*d) mod n."""
    if not 0 <= msg_hash < 2**N_ELEMENT_BITS_ECDSA:
        raise ValueError("message hash out of range")
    while True:
        k = _rfc6979_k(msg_hash, private_key, seed)
        seed = 1 if seed is None else seed + 1
        r = public_key(k)  # x-coordinate of k*G, computed natively
        if not 1 <= r < 2**N_ELEMENT_BITS_ECDSA:
            continue
        zrd = (msg_hash + r * private_key) % EC_ORDER
        if zrd == 0:
            continue
        w = (k * pow(zrd, -1, EC_ORDER)) % EC_ORDER
        if not 1 <= w < 2**N_ELEMENT_BITS_ECDSA:
            continue
        return r, pow(w, -1, EC_ORDER)


def verify(msg_hash: int, r: int, s: int, pub_key: int) -> bool:
    try:
        return bool(fsc.rs_verify_signature(hex(pub_key), hex(msg_hash), hex(r), hex(s)))
    except BaseException:  # noqa: BLE001 - the Rust binding panics (PanicException) on out-of-range input
        return False


def format_signature(r: int, s: int) -> str:
    """Venue wire format: a JSON array string of two decimal integers."""
    return json.dumps([str(r), str(s)], separators=(",", ":"))


def parse_signature(text: str) -> tuple[int, int]:
    """Accepts ``["r","s"]`` with decimal or 0x-hex elements (and the C++ signer's spacing)."""
    values = json.loads(text)
    if not isinstance(values, list) or len(values) != 2:
        raise ValueError("signature must be a JSON array of two integers")
    out = []
    for v in values:
        text = str(v).strip()
        out.append(int(text, 16) if text.lower().startswith("0x") else int(text))
    return out[0], out[1]


# --- account address and key derivation ----------------------------------------------------------

ADDR_BOUND = 2**251 - 256
CONTRACT_ADDRESS_PREFIX = short_string("STARKNET_CONTRACT_ADDRESS")
INITIALIZE_SELECTOR = starknet_keccak(b"initialize")


def account_address(public_key_int: int, account_class_hash: int, proxy_class_hash: int) -> int:
    """Paradex account address from the Stark public key and the two class hashes in
    ``/system/config`` (paradex-api.md §6.6)."""
    calldata = [account_class_hash, INITIALIZE_SELECTOR, 2, public_key_int, 0]
    return (
        compute_hash_on_elements(
            [CONTRACT_ADDRESS_PREFIX, 0, public_key_int, proxy_class_hash, compute_hash_on_elements(calldata)]
        )
        % ADDR_BOUND
    )


def grind_key(seed: int) -> int:
    """StarkEx key grinding of an L1 signature's r (paradex-api.md §6.2.5)."""
    limit = 2**256 - (2**256 % EC_ORDER)

    def be(x: int) -> bytes:
        h = format(x, "x")
        return bytes.fromhex(h if len(h) % 2 == 0 else "0" + h)

    i = 0
    while True:
        key = int.from_bytes(hashlib.sha256(be(seed) + be(i)).digest(), "big")
        if key < limit:
            return key % EC_ORDER
        i += 1


def l2_key_from_eth_key(eth_private_key: str, l1_chain_id: int) -> int:
    """Derive the Paradex L2 private key from an Ethereum key by signing the EIP-712
    ``Constant{action:"STARK Key"}`` message and grinding its r."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    message = {
        "domain": {"name": "Paradex", "chainId": l1_chain_id, "version": "1"},
        "primaryType": "Constant",
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
            ],
            "Constant": [{"name": "action", "type": "string"}],
        },
        "message": {"action": "STARK Key"},
    }
    signed = Account.sign_message(encode_typed_data(full_message=message), eth_private_key)
    r = int.from_bytes(bytes(signed.signature)[:32], "big")
    return grind_key(r)
