"""Connecting to NATS: one place for reconnect policy, client names and credentials.

Every process connects through ``connect()`` so reconnect behaviour is the same everywhere:
reconnect forever with a short wait, a client name per process (visible in ``/connz``), and
credentials from the environment when configured (user/password, token or a ``.creds`` file).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

log = logging.getLogger("bus.connection")

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

# Synchronous callbacks run first when a connection drops, before nats-py reconnects and replays its
# outgoing buffer (the publisher uses this to keep per-subject order across reconnects).
_disconnect_listeners: weakref.WeakKeyDictionary[NATS, list[Callable[[], None]]] = weakref.WeakKeyDictionary()


def _run_listeners(nc: NATS | None) -> None:
    for cb in list(_disconnect_listeners.get(nc, ())) if nc is not None else ():
        try:
            cb()
        except Exception:  # one listener must not stop the others or the reconnect
            log.exception("disconnect listener failed")


def add_disconnect_listener(nc: NATS, cb: Callable[[], None]) -> bool:
    """Run ``cb()`` first whenever ``nc`` loses its connection. Connections made by ``connect``
    support this natively; for others nats-py's (pinned 2.16) callback is chained. Returns False
    when that is impossible (the caller then falls back to polling ``nc.is_connected``)."""
    listeners = _disconnect_listeners.get(nc)
    if listeners is None:
        client: Any = nc
        if not hasattr(client, "_disconnected_cb"):
            return False
        listeners = _disconnect_listeners[nc] = []
        previous = client._disconnected_cb

        async def chained() -> None:
            _run_listeners(nc)
            if previous is not None:
                await previous()

        client._disconnected_cb = chained
    listeners.append(cb)
    return True


@dataclass(frozen=True)
class NatsSettings:
    """Where and how to connect; ``from_env`` reads ``NATS_URL``, ``NATS_USER``/``NATS_PASSWORD``,
    ``NATS_TOKEN``, ``NATS_CREDS`` and ``NATS_INBOX_PREFIX`` (comma-separated URLs form a cluster
    seed list)."""

    servers: tuple[str, ...] = (DEFAULT_NATS_URL,)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds_file: str | None = None
    inbox_prefix: str | None = None
    connect_timeout: float = 2.0
    reconnect_time_wait: float = 0.25
    ping_interval: float = 10.0
    max_outstanding_pings: int = 3

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, *, user_prefix: str | None = None) -> NatsSettings:
        """``user_prefix`` (e.g. ``FEED_HANDLER``) lets each service have its own NATS user:
        ``FEED_HANDLER_NATS_USER`` wins over ``NATS_USER``."""
        env = dict(os.environ if env is None else env)

        def pick(name: str) -> str | None:
            if user_prefix and env.get(f"{user_prefix}_{name}"):
                return env[f"{user_prefix}_{name}"]
            return env.get(name) or None

        urls = tuple(u.strip() for u in (env.get("NATS_URL") or DEFAULT_NATS_URL).split(",") if u.strip())
        return cls(
            servers=urls,
            user=pick("NATS_USER"),
            password=pick("NATS_PASSWORD"),
            token=pick("NATS_TOKEN"),
            creds_file=pick("NATS_CREDS"),
            inbox_prefix=pick("NATS_INBOX_PREFIX"),
        )


async def connect(
    name: str,
    settings: NatsSettings | None = None,
    *,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    max_reconnect_attempts: int = -1,
) -> NATS:
    """Connect with the project's reconnect policy.

    ``max_reconnect_attempts=-1`` keeps trying forever, including the first connect, so a service
    may start before NATS; CLI tools pass a small number so a down server gives a quick, clear
    error (``nats.errors.NoServersError``) instead of a hang.
    """
    s = settings or NatsSettings.from_env()
    created: list[NATS] = []

    async def _error_cb(exc: Exception) -> None:
        log.warning("nats error (%s): %s", name, exc)

    async def _disconnected_cb() -> None:
        _run_listeners(created[0] if created else None)
        log.warning("nats disconnected (%s)", name)
        if on_disconnect is not None:
            await on_disconnect()

    async def _reconnected_cb() -> None:
        log.info("nats reconnected (%s)", name)
        if on_reconnect is not None:
            await on_reconnect()

    options: dict[str, object] = {
        "servers": list(s.servers),
        "name": name,
        "connect_timeout": s.connect_timeout,
        "reconnect_time_wait": s.reconnect_time_wait,
        "max_reconnect_attempts": max_reconnect_attempts,
        "ping_interval": s.ping_interval,
        "max_outstanding_pings": s.max_outstanding_pings,
        "allow_reconnect": True,
        "dont_randomize": True,
        "error_cb": _error_cb,
        "disconnected_cb": _disconnected_cb,
        "reconnected_cb": _reconnected_cb,
        # 8 MiB of outgoing data may be buffered while reconnecting; our publisher keeps its own
        # bounded buffer on top of this, so nothing beyond it is lost silently.
        "pending_size": 8 * 1024 * 1024,
    }
    if s.user:
        options["user"] = s.user
        options["password"] = s.password or ""
    if s.token:
        options["token"] = s.token
    if s.creds_file:
        options["user_credentials"] = s.creds_file
    if s.inbox_prefix:
        # Replies (JetStream API, pull deliveries, requests) then land on a prefix only this user
        # may subscribe to; see bus/auth.py.
        options["inbox_prefix"] = s.inbox_prefix
    nc = await nats.connect(**options)  # type: ignore[arg-type]
    _disconnect_listeners[nc] = []
    created.append(nc)
    return nc


def jetstream(nc: NATS, timeout: float = 5.0) -> JetStreamContext:
    """A JetStream context with a bounded async-publish window (see ``bus.publisher``)."""
    return nc.jetstream(timeout=timeout, publish_async_max_pending=4000)
