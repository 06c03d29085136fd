"""Deterministic ``Nats-Msg-Id`` values built from venue facts.

The same fact published twice -- by two hot feed handlers, by a handler before and after a crash,
or by the order router and the reconciler -- gets the same id, so JetStream stores it once
(within the stream's duplicate window). Every publisher in the project builds its ids here.
"""

from __future__ import annotations

import uuid

# Event ids are derived from Msg-Ids so the same fact carries the same ``event_id`` whoever builds
# it. They are uuid5 digests stamped as version 4, because Nautilus's ``UUID4`` refuses any other
# version (the bits stay deterministic).
EVENT_ID_NAMESPACE = uuid.UUID("9d5f1f5e-6a43-4b51-9a55-5d0f6c1f2a11")


def event_uuid(msg_id: str) -> str:
    """The deterministic ``event_id`` / ``report_id`` of the fact behind ``msg_id``."""
    return str(uuid.UUID(bytes=uuid.uuid5(EVENT_ID_NAMESPACE, msg_id).bytes, version=4))


def trade(market: str, trade_id: str) -> str:
    return f"pdx:trade:{market}:{trade_id}"


def book(market: str, seq_no: int, snapshot: bool = False) -> str:
    """Book deltas by venue ``seq_no``. A snapshot after a resubscribe reuses a seq_no the deltas
    may already have had, so snapshots get their own namespace."""
    return f"pdx:book:{market}:{'s' if snapshot else 'd'}:{seq_no}"


def bbo(market: str, seq_no: int) -> str:
    return f"pdx:bbo:{market}:{seq_no}"


def ticker(kind: str, market: str, venue_ts_ms: int) -> str:
    """markets_summary-derived updates (``mark``, ``index``, ``funding``) keyed by venue time."""
    return f"pdx:{kind}:{market}:{venue_ts_ms}"


def status(market: str, action: str, venue_ts_ms: int) -> str:
    return f"pdx:status:{market}:{action}:{venue_ts_ms}"


def instrument(market: str, fingerprint: str) -> str:
    """Reference data keyed by a hash of its content: an unchanged definition is stored once."""
    return f"pdx:instr:{market}:{fingerprint}"


def order_event(account: str, client_order_id: str, kind: str, discriminator: str | int = 0) -> str:
    """An order lifecycle fact: ``kind`` is the event class (``OrderAccepted`` ...) and
    ``discriminator`` tells repeated facts of the same kind apart (modify number, venue seq)."""
    return f"pdx:ord:{account}:{client_order_id}:{kind}:{discriminator}"


def fill(account: str, fill_id: str) -> str:
    """One venue fill, whoever publishes it (router from WS, reconciler from REST)."""
    return f"pdx:fill:{account}:{fill_id}"


def report(account: str, kind: str, key: str) -> str:
    return f"pdx:rpt:{account}:{kind}:{key}"


def command(command_id: str) -> str:
    return f"pdx:cmd:{command_id}"


def account_state(account: str, venue_seq: int) -> str:
    return f"pdx:acct:{account}:{venue_seq}"
