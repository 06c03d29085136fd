"""Types of the Paradex JSON-RPC WebSocket client: states, errors, settings, counters, frames.

Kept apart from ``services.paradex.ws`` so callers can import the vocabulary (``ConnState``,
``SubState``, ``RpcError`` ...) without the machinery, and so the frame structs used on the hot path
are defined once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import msgspec

from bus.stats import Counters


class ConnState(StrEnum):
    """The connection state machine (shown in ``ServiceHealth.state``)."""

    DISCONNECTED = "Disconnected"
    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    AUTHENTICATING = "Authenticating"
    AUTHENTICATED = "Authenticated"
    RECONNECTING = "Reconnecting"
    DEGRADED = "Degraded"  # connected, but some subscription exhausted its fast retries


class SubState(StrEnum):
    """The per-channel subscription state machine (shown in ``ServiceHealth.subscriptions``)."""

    PENDING = "Pending"  # registered; subscribe sent (or to be sent once connected), no ack yet
    ACTIVE = "Active"  # acked by the venue
    FAILED = "Failed"  # error or ack timeout; a retry is scheduled


# -- errors ------------------------------------------------------------------------------------


class WsError(Exception):
    """Base of every error raised by the WebSocket client."""


class NotConnected(WsError):
    """The request was never sent: no connection. Safe to retry; nothing happened at the venue."""


class WsUnknownOutcome(WsError):
    """The request was sent but no answer came (timeout or the connection dropped).

    The venue may or may not have acted on it -- never treat this as a rejection.
    """


class RpcError(WsError):
    """The venue answered with a JSON-RPC error: a definite rejection of the request."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}" + (f" ({data})" if data else ""))
        self.code = code
        self.message = message
        self.data = data


AUTH_ERROR_CODES = frozenset({40110, 40111})
"""``Malformed Bearer Token`` / ``Invalid Bearer Token`` (also sent for expired JWTs)."""


# -- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WsConfig:
    """Timing and retry policy. Every value is in seconds unless named otherwise."""

    open_timeout: float = 10.0
    backoff_initial: float = 0.25
    backoff_max: float = 30.0
    backoff_factor: float = 2.0
    jitter: float = 0.5
    """Each reconnect delay is multiplied by a uniform factor in ``[1 - jitter, 1]``."""
    stable_after: float = 10.0
    """A connection that stayed up this long resets the reconnect backoff."""
    ping_interval: float = 5.0
    """Our own WebSocket pings; their pongs count as received frames for zombie detection."""
    zombie_timeout: float = 20.0
    """No frame at all (data, ack or pong) for this long: the connection is dead; drop it."""
    sub_ack_timeout: float = 5.0
    sub_max_retries: int = 5
    """Fast retries of a failing subscription before the client reports ``Degraded``."""
    sub_retry_initial: float = 0.5
    sub_retry_max: float = 8.0
    degraded_retry_interval: float = 15.0
    """Once fast retries are exhausted the channel is still retried at this interval."""
    call_timeout: float = 10.0
    auth_timeout: float = 10.0
    tick: float = 0.1
    """Resolution of the maintenance loop (ack timeouts, retries, idle and zombie checks)."""
    compression: str | None = None
    """``"deflate"`` for permessage-deflate (worth it over the internet, costly on loopback)."""
    max_size: int | None = 16 * 1024 * 1024
    max_queue: int = 2048
    """Frames buffered by the websockets library before it stops reading the socket."""
    yield_every: int = 16
    """The reader yields to the event loop after this many buffered frames: ``recv()`` does not
    suspend while frames are queued, and without a yield a burst would starve every other task
    (the NATS client reading its acks, the publisher's sender)."""
    user_agent: str = "paradex-bus"


# -- counters ----------------------------------------------------------------------------------


@dataclass
class WsStats(Counters):
    prefix: ClassVar[str] = "ws_"

    frames_in: int = 0
    bytes_in: int = 0
    messages: int = 0
    malformed: int = 0
    unknown_channel: int = 0
    unexpected_frames: int = 0
    late_acks: int = 0
    handler_errors: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    zombies: int = 0
    auth_failures: int = 0
    sub_failures: int = 0
    sub_retries: int = 0
    stale_resubscribes: int = 0
    resubscribes: int = 0
    pings_sent: int = 0
    pongs: int = 0


# -- subscriptions -----------------------------------------------------------------------------

Handler = Callable[[str, msgspec.Raw], None]
"""``handler(channel, data)``: called synchronously, in the reader, for every notification of the
channel. ``data`` is the raw JSON of ``params.data``; decode it with ``msgspec.json`` into your
own struct. Keep it fast and non-blocking (no awaits; enqueue work if you need I/O)."""


@dataclass(eq=False)
class Subscription:
    """One channel's subscription and its state machine."""

    channel: str
    handler: Handler
    params: dict[str, Any]
    idle_timeout: float | None = None
    state: SubState = SubState.PENDING
    failures: int = 0
    """Consecutive failures since the last ack (drives the retry backoff)."""
    exhausted: bool = False
    """Fast retries used up: the client is ``Degraded`` until this channel is acked again."""
    messages: int = 0
    last_msg: float = 0.0
    active_since: float = 0.0
    next_retry_at: float = 0.0
    last_error: str = ""
    req_id: int | None = None
    sent_at: float = 0.0
    busy: bool = False
    """A resubscribe (unsubscribe + subscribe) is in progress."""
    created: float = field(default_factory=time.monotonic)


# -- frames (decoded on the hot path) -------------------------------------------------------------


class RpcErrorBody(msgspec.Struct, gc=False):
    code: int = 0
    message: str = ""
    data: Any = None


class NotificationParams(msgspec.Struct, gc=False):
    channel: str = ""
    data: msgspec.Raw = msgspec.Raw(b"null")


class Frame(msgspec.Struct, gc=False):
    """A JSON-RPC frame from the venue: a notification (``method`` + ``params``) or a response
    (``id`` + ``result``/``error``). Unknown keys (``jsonrpc``, ``usIn`` ...) are ignored."""

    method: str | None = None
    params: NotificationParams | None = None
    id: int | str | None = None
    result: msgspec.Raw = msgspec.Raw(b"")
    """Raw JSON of ``result``; empty when the frame has none."""
    error: RpcErrorBody | None = None
