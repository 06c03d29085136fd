"""Connecting to NATS: one place for reconnect policy, client names and credentials.

Every process connects through ``connect()`` so reconnect behaviour is the same everywhere:
reconnect forever with a short wait, a client name per process (visible in ``/connz``), and
credentials from the environment when configured (user/password, token or a ``.creds`` file).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

log = logging.getLogger("bus.connection")

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


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

    async def _error_cb(exc: Exception) -> None:
        log.warning("nats error (%s): %s", name, exc)

    async def _disconnected_cb() -> None:
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
    return await nats.connect(**options)  # type: ignore[arg-type]


def jetstream(nc: NATS, timeout: float = 5.0) -> JetStreamContext:
    """A JetStream context with a bounded async-publish window (see ``bus.publisher``)."""
    return nc.jetstream(timeout=timeout, publish_async_max_pending=4000)
