"""Durable reconciler state: watermarks and the startup marker in KV ``watermarks`` (shared, so
the router and ``pdx`` can read them), and the dedupe set in a diskcache under ``RECON_STATE_DIR``.

KV keys (subject-safe): ``recon.<account>.fills`` and ``recon.<account>.orders`` -- the newest
venue ``created_at`` (ms) fully reconciled; ``recon.<account>.startup`` -- the ``StartupMarker``
written once the start-up reconciliation and its ExecutionMassStatus are stored (the router may
wait for it before trading: ``read_startup_marker``).

Lookback: a run reads ``/fills`` and ``/orders-history`` from ``watermark - RECON_OVERLAP_S``
(default 60 s), so a row the venue makes visible late, or stamps earlier than the newest one
already seen, is still read; rows read twice are dropped by fill id / trade id. A watermark only
moves forward, only after a run read its feed completely, and never past a row that run had to
leave (unknown outcome, deferred): such rows are read again next time. With no stored watermark
the first run reads ``RECON_INITIAL_LOOKBACK_S`` back (default 0 = the venue's whole history).

The diskcache holds every Msg-Id the reconciler has had stored (expiring after 7 days, far past
the lookback), so a correction the bus stored but the projection refused is never sent again
after the ``EXEC`` duplicate window (600 s) has passed, and the venue sequence of the last
position report per market, so an unchanged position is not reported again after a restart.
"""

from __future__ import annotations

import time
from pathlib import Path

import diskcache
import msgspec
from nats.js import JetStreamContext

from bus.kv import Bucket

BUCKET = "watermarks"
EMITTED_TTL_S = 7 * 86400.0


class Watermark(msgspec.Struct, kw_only=True):
    ts_ms: int
    updated_ns: int
    run_id: str = ""


class StartupMarker(msgspec.Struct, kw_only=True):
    """Written after the start-up run: the router can check it before it starts trading."""

    account: str
    run_id: str
    ok: bool
    ts_ns: int
    mass_status_seq: int = 0
    unresolved: int = 0
    instance: str = ""


def key(account: str, name: str) -> str:
    return f"recon.{account}.{name}"


async def read_startup_marker(js: JetStreamContext, account: str) -> StartupMarker | None:
    """The last start-up reconciliation of ``account`` (None if the reconciler never finished one)."""
    bucket = await Bucket.open(js, BUCKET)
    got = await bucket.get_struct(key(account, "startup"), StartupMarker)
    return got[0] if got else None


class Watermarks:
    def __init__(self, bucket: Bucket, account: str) -> None:
        self.bucket = bucket
        self.account = account

    @classmethod
    async def open(cls, js: JetStreamContext, account: str) -> Watermarks:
        return cls(await Bucket.open(js, BUCKET), account)

    async def get(self, name: str) -> int | None:
        got = await self.bucket.get_struct(key(self.account, name), Watermark)
        return got[0].ts_ms if got else None

    async def advance(self, name: str, ts_ms: int, run_id: str) -> int:
        """Store ``ts_ms`` if it is newer than the stored value; returns the value now stored."""
        current = await self.get(name)
        if current is not None and current >= ts_ms:
            return current
        await self.bucket.put(key(self.account, name), Watermark(ts_ms=ts_ms, updated_ns=time.time_ns(), run_id=run_id))
        return ts_ms

    async def mark_startup(self, marker: StartupMarker) -> None:
        await self.bucket.put(key(self.account, "startup"), marker)


class LocalState:
    """The diskcache part: Msg-Ids we had stored (one entry per run, kept in memory as a set for
    O(1) checks), and per-key report state."""

    def __init__(self, directory: str | Path, account: str) -> None:
        path = Path(directory) / account
        path.mkdir(parents=True, exist_ok=True)
        self.cache = diskcache.Cache(str(path), size_limit=2**30)
        self.cache.expire()
        self._emitted: set[str] = set()
        for k in list(self.cache.iterkeys()):
            if isinstance(k, tuple) and k and k[0] == "m":
                batch = self.cache.get(k)
                if isinstance(batch, list):
                    self._emitted.update(batch)

    def close(self) -> None:
        self.cache.close()

    def emitted(self, msg_id: str) -> bool:
        return msg_id in self._emitted

    def remember_emitted(self, msg_ids: list[str]) -> None:
        fresh = [m for m in msg_ids if m not in self._emitted]
        if not fresh:
            return
        self._emitted.update(fresh)
        self.cache.set(("m", time.time_ns()), fresh, expire=EMITTED_TTL_S)

    def report_state(self, kind: str, name: str) -> str | None:
        v = self.cache.get(("r", kind, name))
        return v if isinstance(v, str) else None

    def set_report_state(self, kind: str, name: str, value: str) -> None:
        self.cache.set(("r", kind, name), value)
