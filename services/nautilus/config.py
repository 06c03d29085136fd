"""Configurations of the Paradex bus clients for a Nautilus ``TradingNodeConfig``.

Both clients connect to NATS themselves (``nats_url``, else ``NATS_URL``, else
``nats://127.0.0.1:4222``); credentials come from the environment as for every process of the
project (``NAUTILUS_NATS_USER``/``NAUTILUS_NATS_PASSWORD`` win over ``NATS_USER``/``NATS_PASSWORD``,
``NATS_TOKEN``, ``NATS_CREDS``, ``NATS_INBOX_PREFIX``), else from the local stack's
``.run/nats/users.json`` (``make up`` turns NATS authorization on). Instruments are read from the
``REF`` stream, so ``instrument_provider`` defaults to ``load_all=True``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from nautilus_trader.common.config import InstrumentProviderConfig
from nautilus_trader.live.config import LiveDataClientConfig, LiveExecClientConfig

from bus.connection import NatsSettings

QUOTE_SOURCES = ("venue", "book")
ROOT = Path(__file__).resolve().parents[2]


class ParadexDataClientConfig(LiveDataClientConfig, frozen=True):
    """Market data from the bus.

    quotes_source: ``"venue"`` -- the venue's BBO on ``md.paradex.quotes.<MKT>``; ``"book"`` -- the
        top of the book built by the book builder, ``book.paradex.quotes.<MKT>``.
    instrument_wait_secs: at connect, how long to wait for the feed handler's first instruments on
        ``REF`` before going on without any (they are followed live either way).
    book_snapshot_timeout_secs / book_snapshot_attempts: the book builder's snapshot request used to
        start an order-book subscription (then retried with back-off until a builder answers).
    request_timeout_secs: longest a history request reads a stream (what was read is returned).
    """

    instrument_provider: InstrumentProviderConfig = InstrumentProviderConfig(load_all=True)
    nats_url: str | None = None
    quotes_source: str = "venue"
    instrument_wait_secs: float = 10.0
    book_snapshot_timeout_secs: float = 2.0
    book_snapshot_attempts: int = 3
    request_timeout_secs: float = 30.0


class ParadexExecClientConfig(LiveExecClientConfig, frozen=True):
    """Trading through the bus: commands to ``cmd.paradex.<account>.<MKT>``, events from ``EXEC``.

    account: the Paradex account address (lowercase hex); default ``PARADEX_ACCOUNT``, else the one
        account found on ``exec.paradex.*.account`` (the local stack has exactly one).
    reconcile_before_mass_status: ask the reconciler for a full run (``ctl.reconcile.<account>``)
        before building the mass status, so the reports reflect the venue, not only the bus.
    reconcile_timeout_secs: how long to wait for that run's summary.
    account_state_timeout_secs: how long ``connect`` waits for an ``AccountState`` on the bus.
    command_timeout_secs: how long a command publish is retried (same Msg-Id) until stored.
    """

    instrument_provider: InstrumentProviderConfig = InstrumentProviderConfig(load_all=True)
    nats_url: str | None = None
    account: str | None = None
    reconcile_before_mass_status: bool = True
    reconcile_timeout_secs: float = 30.0
    account_state_timeout_secs: float = 15.0
    command_timeout_secs: float = 10.0


def nats_settings(url: str | None) -> NatsSettings:
    """The project's NATS settings from the environment, with ``url`` (if given) as the servers;
    without credentials in the environment, those ``make up`` generated for the local stack."""
    env = dict(os.environ)
    if url:
        env["NATS_URL"] = url
    settings = NatsSettings.from_env(env, user_prefix="NAUTILUS")
    if not (settings.user or settings.token or settings.creds_file):
        creds = local_stack_credentials(env)
        if creds is not None:
            settings = dataclasses.replace(settings, user=creds[0], password=creds[1])
    return settings


def local_stack_credentials(env: dict[str, str] | None = None) -> tuple[str, str] | None:
    """The NATS user ``make up`` generated for trading (``$PDX_RUN_DIR/nats/users.json``): a
    ``trader`` role when the stack defines one, else ``admin`` (the only role of the local stack
    allowed to publish commands), as ``pdx`` does. None when there is no local stack."""
    e = os.environ if env is None else env
    users = Path(e.get("PDX_RUN_DIR") or ROOT / ".run") / "nats" / "users.json"
    try:
        data = json.loads(users.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for role in ("trader", "admin"):
        entry = data.get(role) if isinstance(data, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get("user"), str) and isinstance(entry.get("password"), str):
            return entry["user"], entry["password"]
    return None
