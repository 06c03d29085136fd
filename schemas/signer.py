"""Messages of the signer's request/reply API (``signer.paradex.<account>.<op>``,
``signer.paradex.whoami``) and of its audit trail (``audit.signer.<account>``).

These are not stream events of the Nautilus model and are not part of ``schemas.ALL_TYPES``:
encode them with ``schemas.encode`` and decode them with ``schemas.decode_as(data, cls)``, where
``cls`` is the request type, a reply union such as ``SignReply``, or ``SignatureAuditBatch`` (what
the audit stream stores).

Field conventions follow the rest of the bus: tagged structs (``"type"``), decimal strings for sizes
and prices (validated by the signer, so a malformed value gets a structured error reply rather than
a decode failure), integer timestamps (venue units: the order ``timestamp_ms`` is the venue's
``signature_timestamp`` in milliseconds; auth timestamps are Unix seconds as in the
``PARADEX-TIMESTAMP`` header). No message here ever carries a private key.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.base import UnixNanos

# Free text from callers is bounded so a request cannot bloat the audit stream.
ShortText = Annotated[str, msgspec.Meta(max_length=128)]


class SignerMessage(msgspec.Struct, tag_field="type", tag=True, kw_only=True, gc=False):
    """Root of the signer's request, reply and audit messages."""


# --- requests ------------------------------------------------------------------------------------


class SignOrderRequest(SignerMessage, kw_only=True):
    """Sign a venue ``Order`` (POST /orders). ``order_type`` is the venue ``type`` (``LIMIT``,
    ``MARKET``, ``STOP_LIMIT`` ...); ``price`` is required for limit variants and must be absent or
    ``"0"`` for market variants. ``client_ref`` (e.g. the client order id) and ``requester`` (the
    calling service) are recorded in the audit trail; neither is signed."""

    market: ShortText
    side: ShortText
    order_type: ShortText
    size: ShortText
    price: ShortText | None = None
    timestamp_ms: int
    client_ref: ShortText = ""
    requester: ShortText = ""


class SignModifyRequest(SignOrderRequest, kw_only=True):
    """Sign a venue ``ModifyOrder`` (PUT /orders/{order_id}): the order fields plus the venue id."""

    order_id: ShortText


class SignAuthRequest(SignerMessage, kw_only=True):
    """Sign the ``Request`` message of ``POST /auth`` (Unix seconds, as in the headers)."""

    timestamp_s: int
    expiration_s: int
    requester: ShortText = ""


class SignOnboardingRequest(SignerMessage, kw_only=True):
    """Sign the ``Constant{action:"Onboarding"}`` message of ``POST /onboarding``."""

    requester: ShortText = ""


class JwtRequest(SignerMessage, kw_only=True):
    """Ask for the account's current JWT. ``force_refresh`` after the venue answered 401; passing
    the rejected token as ``stale_jwt`` lets the signer hand out a newer one it already has instead
    of authenticating again for every caller that saw the same 401."""

    force_refresh: bool = False
    stale_jwt: str = ""
    requester: ShortText = ""


class WhoamiRequest(SignerMessage, kw_only=True):
    """Ask any signer which account it serves (``signer.paradex.whoami``)."""

    requester: ShortText = ""


# --- replies -------------------------------------------------------------------------------------


class SignatureReply(SignerMessage, kw_only=True):
    """``signature`` is the venue wire format ``["<r>","<s>"]`` (decimal), ready for the
    ``signature`` field of an order or the ``PARADEX-STARKNET-SIGNATURE`` header."""

    signature: str
    message_hash: str
    account: str


class JwtReply(SignerMessage, kw_only=True):
    """The bearer token and when it stops being valid (Unix seconds, venue clock as in the
    token's ``exp``; callers should ask again on a 401 rather than trust the clock)."""

    jwt: str
    expires_at_s: int
    account: str


class WhoamiReply(SignerMessage, kw_only=True):
    account: str
    public_key: str
    chain_id: str
    paradex_env: str
    instance: str


class SignerError(SignerMessage, kw_only=True):
    """A refusal or failure; no signature was issued. ``code`` is one of ``ERROR_CODES``."""

    code: str
    reason: str


ERROR_CODES = (
    "BAD_REQUEST",  # undecodable request or wrong message type for the subject
    "UNKNOWN_MARKET",
    "INVALID_SIDE",
    "INVALID_ORDER_TYPE",
    "INVALID_SIZE",
    "INVALID_PRICE",
    "INVALID_TIMESTAMP",
    "INVALID_ORDER_ID",
    "POLICY_MARKET_NOT_ALLOWED",
    "POLICY_MAX_NOTIONAL",
    "POLICY_RATE_LIMIT",
    "POLICY_AUTH_VALIDITY",
    "NO_REFERENCE_PRICE",  # a priceless (market) order whose notional cannot be checked
    "NOT_READY",  # markets not loaded yet
    "VENUE_UNAVAILABLE",  # JWT could not be obtained from the venue
    "INTERNAL",
)

SignReply = SignatureReply | SignerError
JwtResult = JwtReply | SignerError
WhoamiResult = WhoamiReply | SignerError


# --- audit ---------------------------------------------------------------------------------------


class SignatureAudit(SignerMessage, kw_only=True):
    """One capability issued by the signer (carried in a ``SignatureAuditBatch``).

    ``op`` is ``order``, ``modify``, ``auth``, ``onboarding`` (a signature) or ``jwt`` (a bearer
    token handed out; the token itself is never recorded). ``fields`` holds what was signed as
    strings (market, side, type, size, price, timestamp, order id, auth timestamps);
    ``message_hash`` identifies the signed typed-data message (empty for ``jwt``). ``requester`` and
    ``client_ref`` are as the caller stated them; ``instance`` is the signer instance and ``seq``
    its per-process counter.
    """

    op: str
    account: str
    requester: str = ""
    client_ref: str = ""
    fields: dict[str, str] = msgspec.field(default_factory=dict)
    message_hash: str = ""
    instance: str
    seq: int
    ts_init: UnixNanos


class SignatureAuditBatch(SignerMessage, kw_only=True):
    """What is stored on ``audit.signer.<account>`` (stream ``AUDIT``): the records of the
    signatures one signer instance issued in one event-loop turn (one record when idle, up to a
    few hundred under load). ``batch`` counts this instance's batches; with ``boot`` (random per
    process start) it forms the Msg-Id, so a re-published batch is stored once."""

    account: str
    instance: str
    boot: str
    batch: int
    records: list[SignatureAudit]
    ts_init: UnixNanos


SIGNER_TYPES: tuple[type[SignerMessage], ...] = (
    SignOrderRequest,
    SignModifyRequest,
    SignAuthRequest,
    SignOnboardingRequest,
    JwtRequest,
    WhoamiRequest,
    SignatureReply,
    JwtReply,
    WhoamiReply,
    SignerError,
    SignatureAudit,
    SignatureAuditBatch,
)
