"""One active router per account: a lease in the KV bucket ``leases`` (key ``router.<account>``).

Two routers sending for the same account could each decide an order is "not placed" and act on it;
one active instance (plus any number waiting) rules that out. The lease is taken with a CAS
``create`` and renewed with ``update(last=revision)`` every ``renew`` seconds; the bucket's TTL
(4 s) expires it when the holder dies, so a standby takes over within a few seconds of a kill -9.
A graceful stop deletes it at once.

``valid`` fences the holder itself: it is False once the last successful renewal is older than
``TTL - 1 s`` (the key may have expired and been taken), and every venue write is refused then.
A renewal that fails the CAS means another instance holds it: ``lost`` is set and the router stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec
from nats.js import JetStreamContext

from bus.kv import Bucket, CasConflict

log = logging.getLogger("order_router.lease")

BUCKET = "leases"
TTL = 4.0


class LeaseRecord(msgspec.Struct, gc=False):
    owner: str
    since_ns: int
    renewed_ns: int


class RouterLease:
    def __init__(self, js: JetStreamContext, account: str, owner: str, renew: float = 1.0) -> None:
        self.js = js
        self.key = f"router.{account}"
        self.owner = owner
        self.renew = renew
        self.revision = 0
        self.renewed_at = 0.0
        self.lost = asyncio.Event()
        self._bucket: Bucket | None = None
        self._task: asyncio.Task[None] | None = None
        self.holder: str = ""

    @property
    def valid(self) -> bool:
        return self.revision > 0 and not self.lost.is_set() and time.monotonic() - self.renewed_at < TTL - 1.0

    async def acquire(self, on_wait: object = None) -> None:
        """Wait until this instance holds the lease, then keep renewing it in the background."""
        self._bucket = await Bucket.open(self.js, BUCKET)
        logged = False
        while True:
            now = time.time_ns()
            rec = LeaseRecord(self.owner, now, now)
            try:
                self.revision = await self._bucket.create(self.key, msgspec.msgpack.encode(rec))
                self.renewed_at = time.monotonic()
                break
            except CasConflict:
                got = await self._bucket.get(self.key)
                if got is not None:
                    with contextlib.suppress(msgspec.DecodeError):
                        self.holder = msgspec.msgpack.decode(got[0], type=LeaseRecord).owner
                if not logged:
                    log.info("router lease %s held by %s: standing by", self.key, self.holder or "?")
                    logged = True
                await asyncio.sleep(0.25)
        log.info("router lease %s acquired", self.key)
        self._task = asyncio.create_task(self._renew_loop(), name="router-lease")

    async def _renew_loop(self) -> None:
        assert self._bucket is not None
        while not self.lost.is_set():
            await asyncio.sleep(self.renew)
            now = time.time_ns()
            try:
                self.revision = await self._bucket.update(
                    self.key, msgspec.msgpack.encode(LeaseRecord(self.owner, now, now)), self.revision
                )
                self.renewed_at = time.monotonic()
            except CasConflict:
                got = await self._bucket.get(self.key)
                if got is None:
                    # Expired while we were slow (nobody took it): take it again.
                    try:
                        self.revision = await self._bucket.create(
                            self.key, msgspec.msgpack.encode(LeaseRecord(self.owner, now, now))
                        )
                        self.renewed_at = time.monotonic()
                        continue
                    except CasConflict:
                        pass  # someone else created it first: the lease is lost, logged below
                log.error("router lease %s lost to another instance", self.key)
                self.lost.set()
            except Exception as exc:  # noqa: BLE001 - NATS hiccup: retry; ``valid`` fences meanwhile
                log.warning("router lease renewal failed: %r", exc)

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._bucket is not None and self.revision and not self.lost.is_set():
            with contextlib.suppress(Exception):
                await self._bucket.delete(self.key, last=self.revision)
        self.revision = 0
