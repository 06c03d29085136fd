"""Service-level messages: ``ServiceHealth`` heartbeats and ``ctl.*`` control requests.

These are ours (not Nautilus types) but follow the same conventions: tagged structs, int ns
timestamps, no floats for anything a trader would compare exactly.
"""

from __future__ import annotations

import msgspec

from schemas.base import Event, InstrumentIdStr, UnixNanos


class ServiceHealth(Event, kw_only=True):
    """Heartbeat of one process instance on ``svc.<service>.<instance>.health`` and KV ``health``.

    ``state`` is the connection state machine's state (e.g. ``Connected``, ``Degraded``);
    ``subscriptions`` maps a venue channel or bus consumer to its state; ``counters`` holds the
    process's monotonic counters (messages in/out, drops, rejects); ``details`` carries anything
    else worth showing in ``pdx status`` (owned markets, last reconciliation, lag).
    """

    service: str
    instance: str
    state: str
    pid: int = 0
    started_ns: UnixNanos = 0
    subscriptions: dict[str, str] = msgspec.field(default_factory=dict)
    counters: dict[str, int] = msgspec.field(default_factory=dict)
    details: dict[str, str] = msgspec.field(default_factory=dict)
    ts_event: UnixNanos
    ts_init: UnixNanos


class ResyncRequest(Event, kw_only=True):
    """Ask the feed handler to resubscribe a market's book feed (``ctl.resync.<MKT>``)."""

    instrument_id: InstrumentIdStr
    reason: str
    requested_by: str
    ts_init: UnixNanos


class ReconcileRequest(Event, kw_only=True):
    """Ask the reconciler for a run (``ctl.reconcile.<ACCOUNT>``); ``reply`` carries the summary."""

    account: str
    reason: str
    requested_by: str
    ts_init: UnixNanos


SERVICE_TYPES: tuple[type[Event], ...] = (ServiceHealth, ResyncRequest, ReconcileRequest)
