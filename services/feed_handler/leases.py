"""Market ownership between feed-handler instances through leases in the KV bucket ``leases``.

Keys (the bucket's TTL, 4 s by default, expires a key that is not rewritten):

* ``feed.m.<MKT>`` -- the lease of one market: ``Lease(owner, since_ns, renewed_ns)``. Taken with a
  CAS ``create`` (fails if the key exists), renewed with ``update(last=revision)`` every
  ``renew_interval`` (< TTL), released with ``delete(last=revision)`` on shutdown or rebalance. A
  renewal that fails the CAS means someone else holds it now: the market is dropped at once.
* ``feed.i.<instance>`` -- a membership heartbeat, so every instance knows how many share the work.

Each instance watches ``feed.>`` and keeps a local view (value and *local* time last seen, so clock
skew does not matter). Every ``scan_interval`` it renews what it owns, then tries to ``create`` the
leases of markets that are free -- never seen, deleted, or not renewed for longer than the TTL (the
server expired them: the owner died). It takes up to its fair share ``ceil(markets / live
instances)``, preferring markets whose rendezvous hash picks it, and takes any market that stayed
free longer than ``orphan_grace`` whatever its share, so no market stays unowned. An instance above
its share (a new instance joined) releases one extra market per scan. The CAS on every write fences
a stale owner: two instances never both hold a key.

A crashed instance is noticed faster than its TTL: every instance answers core-NATS requests on
``ctl.feed.alive.<instance>``; a request that gets "no responders" means no connection holds that
subscription any more (NATS knows at once when a process dies), and after two such answers
``probe_interval`` apart its leases are deleted -- with a CAS on the revision we saw, so a live owner
that renewed meanwhile keeps them. A slow answer proves nothing and changes nothing (the TTL still
applies).

If NATS is unreachable the owner keeps serving (publishes go to the bounded buffer) and renews as
soon as it can; when the key expired meanwhile it is re-created, and a key found under another
owner makes it drop the market.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from bus.stats import Counters

log = logging.getLogger("feed_handler.leases")

MARKET_PREFIX = "feed.m."
MEMBER_PREFIX = "feed.i."
ALIVE_PREFIX = "ctl.feed.alive."

Callback = Callable[[str, str], Awaitable[None]]
Reporter = Callable[..., None]


class Lease(msgspec.Struct, gc=False):
    owner: str
    since_ns: int
    renewed_ns: int


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(Lease)


def hrw_score(market: str, instance: str) -> int:
    """Rendezvous hash: the live instance with the highest score is a market's preferred owner."""
    return int.from_bytes(hashlib.blake2b(f"{market}|{instance}".encode(), digest_size=8).digest(), "big")


def safe_key_token(value: str) -> str:
    """KV keys allow ``[-/_=.a-zA-Z0-9]``; anything else becomes ``_``."""
    return "".join(c if c.isalnum() or c in "-_=/" else "_" for c in value)


@dataclass
class _Seen:
    owner: str | None  # None for a deleted key
    revision: int
    seen_at: float  # local monotonic time of the last update we saw


@dataclass
class LeaseStats(Counters):
    prefix: ClassVar[str] = "lease_"

    acquired: int = 0
    released: int = 0
    lost: int = 0
    renew_failures: int = 0
    reacquired: int = 0
    cas_conflicts: int = 0
    dead_owners: int = 0
    dead_owner_releases: int = 0


@dataclass
class LeaseManager:
    """Owns a share of ``markets``; calls ``on_acquire(market, why)`` / ``on_release(market, why)``."""

    nc: NATS
    js: JetStreamContext
    instance: str
    markets: list[str]
    on_acquire: Callback
    on_release: Callback
    ttl: float = 4.0
    renew_interval: float | None = None  # default ttl / 4
    scan_interval: float = 0.1
    orphan_grace: float = 1.0
    conflict_retry: float = 0.1
    probe_interval: float = 0.3
    bucket: str = "leases"
    report: Reporter | None = None
    owned: dict[str, int] = field(default_factory=dict)  # market -> revision
    stats: LeaseStats = field(default_factory=LeaseStats)

    def __post_init__(self) -> None:
        self.instance_key = safe_key_token(self.instance)
        self._kv: KeyValue | None = None
        self._view: dict[str, _Seen] = {}
        self._free_since: dict[str, float] = {}
        self._synced = asyncio.Event()
        self._last_renew = 0.0
        self._last_renew_ok = time.monotonic()
        self._since: dict[str, int] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._alive_sub: Any = None
        self._probe_task: asyncio.Task[None] | None = None
        self._suspects: dict[str, float] = {}  # owner -> monotonic time of its first "no responders"
        self._stopped = False
        if self.renew_interval is None:
            self.renew_interval = self.ttl / 4

    # -- public ----------------------------------------------------------------------------------

    def set_markets(self, markets: list[str]) -> None:
        """Change the set of markets to share (e.g. a market was listed or delisted)."""
        self.markets = list(markets)

    def live_instances(self) -> list[str]:
        now = time.monotonic()
        live = {self.instance_key}
        for key, seen in self._view.items():
            if key.startswith(MEMBER_PREFIX) and seen.owner is not None and now - seen.seen_at <= self.ttl:
                live.add(key[len(MEMBER_PREFIX) :])
        return sorted(live)

    def target(self) -> int:
        return math.ceil(len(self.markets) / max(1, len(self.live_instances()))) if self.markets else 0

    async def run(self) -> None:
        """Watch, renew, acquire and rebalance until cancelled."""
        self._alive_sub = await self.nc.subscribe(ALIVE_PREFIX + self.instance_key, cb=self._answer_alive)
        self._watch_task = asyncio.create_task(self._watch_loop(), name="lease-watch")
        self._probe_task = asyncio.create_task(self._probe_loop(), name="lease-probe")
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._synced.wait(), 5.0)
            while not self._stopped:
                try:
                    await self._tick()
                except Exception as exc:  # noqa: BLE001 - NATS errors: retried next scan
                    self._report("lease_tick_failed", error=repr(exc))
                await asyncio.sleep(self.scan_interval)
        finally:
            children = {self._watch_task, self._probe_task}
            for t in children:
                t.cancel()
            # Bounded: a child stuck in a NATS call (a watcher's unsubscribe during a reconnect)
            # must not keep the owner from stopping.
            await asyncio.wait(children, timeout=2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._alive_sub.unsubscribe(), 2.0)

    async def release_all(self) -> None:
        """Graceful stop: delete our leases so other instances take over at once."""
        self._stopped = True
        kv = self._kv
        owned, self.owned = dict(self.owned), {}
        if kv is not None:
            deletes = [kv.delete(MARKET_PREFIX + m, last=rev) for m, rev in owned.items()]
            deletes.append(kv.delete(MEMBER_PREFIX + self.instance_key))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*deletes, return_exceptions=True), 2.0)
        for market in owned:
            self.stats.released += 1
            await self._call(self.on_release, market, "shutdown")

    # -- internals -------------------------------------------------------------------------------

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.js.key_value(self.bucket)
        return self._kv

    async def _answer_alive(self, msg: Any) -> None:
        if msg.reply:
            await self.nc.publish(msg.reply, b"1")

    async def _probe_loop(self) -> None:
        """Ask every other lease holder whether it is still connected (see the module docstring)."""
        while not self._stopped:
            await asyncio.sleep(self.probe_interval)
            owners = {
                seen.owner
                for key, seen in self._view.items()
                if key.startswith(MARKET_PREFIX) and seen.owner not in (None, "?", self.instance)
            }
            for owner in list(self._suspects):
                if owner not in owners:
                    self._suspects.pop(owner, None)
            for owner in owners:
                assert owner is not None
                try:
                    await self.nc.request(ALIVE_PREFIX + safe_key_token(owner), b"", timeout=self.probe_interval)
                except nats.errors.NoRespondersError:
                    first = self._suspects.setdefault(owner, time.monotonic())
                    if time.monotonic() - first >= self.probe_interval:
                        await self._release_dead(owner)
                    continue
                except Exception as exc:  # noqa: BLE001 - slow or disconnected: proves nothing
                    log.debug("alive probe of %s: %r", owner, exc)
                self._suspects.pop(owner, None)

    async def _release_dead(self, owner: str) -> None:
        """Delete the leases of an instance whose connection is gone (CAS on the revisions seen)."""
        self._suspects.pop(owner, None)
        self.stats.dead_owners += 1
        kv = await self._bucket()
        released = []
        for key, seen in list(self._view.items()):
            if key.startswith(MARKET_PREFIX) and seen.owner == owner:
                try:
                    await kv.delete(key, last=seen.revision)
                except KeyWrongLastSequenceError:
                    continue  # renewed after all, or already taken: leave it
                released.append(key[len(MARKET_PREFIX) :])
                self._view[key] = _Seen(None, seen.revision, time.monotonic())
        # It no longer counts towards the fair share (a live instance re-announces itself at once).
        member = MEMBER_PREFIX + safe_key_token(owner)
        self._view[member] = _Seen(None, 0, time.monotonic())
        with contextlib.suppress(Exception):
            await kv.delete(member)
        self.stats.dead_owner_releases += len(released)
        self._report("lease_owner_dead", owner=owner, released=len(released))

    async def _watch_loop(self) -> None:
        while not self._stopped:
            try:
                kv = await self._bucket()
                watcher = await kv.watch("feed.>")
                try:
                    while True:
                        e = await watcher.updates(timeout=None)
                        if e is None:
                            self._synced.set()
                            continue
                        self._observe(e.key, e.value, e.revision or 0, e.operation)
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(watcher.stop(), 2.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - recreate the watcher after any failure
                self._report("lease_watch_failed", error=repr(exc))
                await asyncio.sleep(0.5)

    def _observe(self, key: str, value: bytes | None, revision: int, operation: str | None) -> None:
        now = time.monotonic()
        if operation in ("DEL", "PURGE") or value is None:
            self._view[key] = _Seen(None, revision, now)
            return
        owner: str | None
        if key.startswith(MEMBER_PREFIX):
            owner = key[len(MEMBER_PREFIX) :]
        else:
            try:
                owner = _dec.decode(value).owner
            except (msgspec.DecodeError, msgspec.ValidationError):
                self._report("lease_malformed", key=key)
                owner = "?"
        self._view[key] = _Seen(owner, revision, now)

    async def _tick(self) -> None:
        kv = await self._bucket()
        now = time.monotonic()
        assert self.renew_interval is not None
        if now - self._last_renew >= self.renew_interval:
            self._last_renew = now
            await kv.put(MEMBER_PREFIX + self.instance_key, b"1")
            await self._renew(kv)
        for market in [m for m in self.owned if m not in self.markets]:
            await self._release(kv, market, "market no longer served")
        target = self.target()
        if len(self.owned) > target:
            await self._rebalance(kv, target)
        await self._acquire(kv, target, now)

    async def _renew(self, kv: KeyValue) -> None:
        now_ns = time.time_ns()
        ok = True
        for market, rev in list(self.owned.items()):
            key = MARKET_PREFIX + market
            value = _enc.encode(Lease(self.instance, self._since.get(market, now_ns), now_ns))
            try:
                self.owned[market] = await kv.update(key, value, last=rev)
                continue
            except KeyWrongLastSequenceError:
                pass  # another instance wrote the key: try to re-create it below, else it is lost
            except Exception as exc:  # noqa: BLE001 - unreachable NATS: keep serving, retry
                ok = False
                self.stats.renew_failures += 1
                self._report("lease_renew_failed", market=market, error=repr(exc))
                continue
            # The key moved on: expired while we could not renew, or someone else owns it.
            holder = await self._holder(kv, key)
            if holder is None:
                try:
                    self.owned[market] = await kv.create(key, value)
                    self.stats.reacquired += 1
                    self._report("lease_reacquired", market=market)
                    continue
                except KeyWrongLastSequenceError:
                    pass  # owned by another instance now: counted as lost below
            self.owned.pop(market, None)
            self.stats.lost += 1
            self._report("lease_lost", market=market, holder=holder)
            await self._call(self.on_release, market, "lease lost")
        if ok:
            self._last_renew_ok = time.monotonic()

    async def _holder(self, kv: KeyValue, key: str) -> str | None:
        """The owner recorded under ``key``, or None when the key is missing or deleted."""
        try:
            e = await kv.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        if not e.value:
            return None
        try:
            return _dec.decode(e.value).owner
        except (msgspec.DecodeError, msgspec.ValidationError):
            return "?"

    async def _rebalance(self, kv: KeyValue, target: int) -> None:
        live = self.live_instances()
        # Release first the markets whose preferred owner is someone else.
        extras = sorted(self.owned, key=lambda m: self._preference_rank(m, live), reverse=True)
        market = extras[0]
        await self._release(kv, market, f"rebalance (own {len(self.owned)} > share {target})")

    async def _release(self, kv: KeyValue, market: str, why: str) -> None:
        rev = self.owned.pop(market, None)
        if rev is None:
            return
        with contextlib.suppress(Exception):
            await kv.delete(MARKET_PREFIX + market, last=rev)
        self.stats.released += 1
        log.info("released %s (%s)", market, why)
        await self._call(self.on_release, market, why)

    def _preference_rank(self, market: str, live: list[str]) -> int:
        """0 when this instance is the market's preferred owner, 1 for second choice, ..."""
        ranked = sorted(live, key=lambda i: hrw_score(market, i), reverse=True)
        return ranked.index(self.instance_key) if self.instance_key in ranked else len(ranked)

    def _is_free(self, market: str, now: float) -> bool:
        seen = self._view.get(MARKET_PREFIX + market)
        if seen is None or seen.owner is None:
            return True
        # Not renewed for longer than the TTL: the server has expired it (or is about to).
        return now - seen.seen_at > self.ttl

    async def _acquire(self, kv: KeyValue, target: int, now: float) -> None:
        live = self.live_instances()
        free = [m for m in self.markets if m not in self.owned and self._is_free(m, now)]
        for m in list(self._free_since):
            if m not in free:
                self._free_since.pop(m, None)
        for m in free:
            self._free_since.setdefault(m, now)
        free.sort(key=lambda m: (self._preference_rank(m, live), m))
        now_ns = time.time_ns()
        for market in free:
            orphan = now - self._free_since[market] >= self.orphan_grace
            if len(self.owned) >= target and not orphan:
                continue
            key = MARKET_PREFIX + market
            try:
                rev = await kv.create(key, _enc.encode(Lease(self.instance, now_ns, now_ns)))
            except KeyWrongLastSequenceError:
                self.stats.cas_conflicts += 1
                # Still there: the server has not expired it yet, or its owner renewed and our
                # view lags. Retry shortly; a live owner's renewals push the retry out again.
                seen = self._view.get(key)
                retry_at = time.monotonic() - self.ttl + self.conflict_retry
                if seen is None or seen.seen_at < retry_at:
                    self._view[key] = _Seen(seen.owner if seen else "?", seen.revision if seen else 0, retry_at)
                continue
            self.owned[market] = rev
            self._since[market] = now_ns
            self._free_since.pop(market, None)
            self.stats.acquired += 1
            log.info("acquired %s%s", market, " (orphan)" if orphan else "")
            await self._call(self.on_acquire, market, "orphan" if orphan else "share")

    async def _call(self, cb: Callback, market: str, why: str) -> None:
        try:
            await cb(market, why)
        except Exception as exc:  # noqa: BLE001 - a callback failure must not stop lease handling
            self._report("lease_callback_failed", market=market, error=repr(exc))

    def _report(self, kind: str, **ctx: object) -> None:
        if self.report is not None:
            self.report(kind, **ctx)
        else:
            log.warning("%s %s", kind, ctx)
