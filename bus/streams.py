"""Stream and KV bucket definitions (DESIGN.md "Streams and KV") and their idempotent provisioning.

``ensure_streams()`` creates what is missing and updates what drifted, so every process may call it
at start without coordination. Limits are configurable through ``BUS_<NAME>_<FIELD>`` environment
variables (e.g. ``BUS_MD_MAX_AGE=3600``, ``BUS_MD_MAX_BYTES=1073741824``, ``BUS_REPLICAS=3``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

log = logging.getLogger("bus.streams")

GIB = 1024**3
DAY = 86400.0


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    max_age: float = 0.0  # seconds; 0 = forever
    max_bytes: int = -1
    max_msgs_per_subject: int = -1
    duplicate_window: float = 120.0
    allow_direct: bool = True
    description: str = ""

    def config(self, replicas: int) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            description=self.description or None,
            subjects=list(self.subjects),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age or None,
            max_bytes=self.max_bytes,
            max_msgs_per_subject=self.max_msgs_per_subject,
            duplicate_window=self.duplicate_window,
            num_replicas=replicas,
            allow_direct=self.allow_direct,
        )


@dataclass(frozen=True)
class BucketSpec:
    name: str
    history: int = 1
    ttl: float = 0.0  # seconds; 0 = keys never expire
    description: str = ""

    def config(self, replicas: int) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=self.name,
            description=self.description or None,
            history=self.history,
            ttl=self.ttl or None,
            storage=StorageType.FILE,
            replicas=replicas,
        )


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(
        "MD",
        ("md.>",),
        max_age=DAY,
        max_bytes=8 * GIB,
        duplicate_window=120.0,
        description="Paradex market data (trades, quotes, book deltas, mark/index/funding, status)",
    ),
    StreamSpec(
        # Listed subject by subject so the snapshot request subject is never captured by the stream.
        "BOOK",
        ("book.paradex.depth10.>", "book.paradex.quotes.>", "book.paradex.status.>"),
        max_age=3600.0,
        max_bytes=2 * GIB,
        description="Built books: depth10, top-of-book quotes, validity",
    ),
    StreamSpec(
        "REF",
        ("ref.>",),
        max_msgs_per_subject=1,
        description="Reference data, one message per subject (last-value cache)",
    ),
    StreamSpec(
        "CMD",
        ("cmd.>",),
        max_age=7 * DAY,
        duplicate_window=600.0,
        description="Order commands; the router acks only after the outcome is on EXEC",
    ),
    StreamSpec(
        "EXEC",
        ("exec.>",),
        duplicate_window=600.0,
        description="Order events and execution reports: the audit trail of every order",
    ),
    StreamSpec(
        "AUDIT",
        ("audit.>",),
        max_age=30 * DAY,
        description="Signer audit trail (what was signed, for whom, when; never a key)",
    ),
)

BUCKETS: tuple[BucketSpec, ...] = (
    BucketSpec("book_checkpoints", history=1, description="book-builder checkpoints per market"),
    BucketSpec("leases", history=1, ttl=4.0, description="feed-handler market ownership leases"),
    BucketSpec("health", history=1, ttl=300.0, description="last ServiceHealth per instance"),
    BucketSpec("watermarks", history=5, description="reconciler watermarks and dedupe state"),
)


def _env_override(spec: StreamSpec, env: dict[str, str]) -> StreamSpec:
    prefix = f"BUS_{spec.name}_"
    changes: dict[str, object] = {}
    for field, cast in (
        ("max_age", float),
        ("max_bytes", int),
        ("max_msgs_per_subject", int),
        ("duplicate_window", float),
    ):
        raw = env.get(prefix + field.upper())
        if raw:
            changes[field] = cast(raw)
    return replace(spec, **changes) if changes else spec  # type: ignore[arg-type]


def stream_specs(env: dict[str, str] | None = None) -> tuple[StreamSpec, ...]:
    env = dict(os.environ if env is None else env)
    return tuple(_env_override(s, env) for s in STREAMS)


def bucket_specs(env: dict[str, str] | None = None) -> tuple[BucketSpec, ...]:
    env = dict(os.environ if env is None else env)
    out = []
    for b in BUCKETS:
        raw = env.get(f"BUS_KV_{b.name.upper()}_TTL")
        out.append(replace(b, ttl=float(raw)) if raw else b)
    return tuple(out)


def replicas_from_env(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    return int(env.get("BUS_REPLICAS", "1"))


async def ensure_streams(
    js: JetStreamContext,
    *,
    replicas: int | None = None,
    streams: tuple[StreamSpec, ...] | None = None,
    buckets: tuple[BucketSpec, ...] | None = None,
) -> dict[str, str]:
    """Create missing streams/buckets and update drifted ones. Returns ``{name: action}``."""
    r = replicas_from_env() if replicas is None else replicas
    actions: dict[str, str] = {}
    for spec in streams if streams is not None else stream_specs():
        wanted = spec.config(r)
        try:
            info = await js.stream_info(spec.name)
        except NotFoundError:
            await js.add_stream(wanted)
            actions[spec.name] = "created"
            continue
        if _drifted(info.config, wanted):
            # Replica count cannot always change in place; keep the existing one in that case.
            wanted.num_replicas = info.config.num_replicas or wanted.num_replicas
            await js.update_stream(wanted)
            actions[spec.name] = "updated"
        else:
            actions[spec.name] = "ok"
    for b in buckets if buckets is not None else bucket_specs():
        try:
            await js.key_value(b.name)
            actions[f"KV_{b.name}"] = "ok"
        except NotFoundError:  # BucketNotFoundError is a NotFoundError
            await js.create_key_value(b.config(r))
            actions[f"KV_{b.name}"] = "created"
    if any(v != "ok" for v in actions.values()):
        log.info("streams provisioned: %s", actions)
    return actions


def _drifted(have: StreamConfig, want: StreamConfig) -> bool:
    return (
        sorted(have.subjects or []) != sorted(want.subjects or [])
        or (have.max_age or 0) != (want.max_age or 0)
        or (have.max_bytes or -1) != (want.max_bytes or -1)
        or (have.max_msgs_per_subject or -1) != (want.max_msgs_per_subject or -1)
        or (have.duplicate_window or 0) != (want.duplicate_window or 0)
        or bool(have.allow_direct) != bool(want.allow_direct)
    )
