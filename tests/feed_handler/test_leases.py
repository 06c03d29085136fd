"""``LeaseManager`` with a real NATS server: split, crash takeover, graceful handover, rebalance.

In-process managers on a dedicated bucket with a 2 s TTL keep this fast; the process-level test
(3 feed-handler processes, SIGKILL) is in ``test_feed_sim.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from nats.js.api import KeyValueConfig, StorageType

from services.feed_handler.leases import MARKET_PREFIX, LeaseManager, hrw_score

TTL = 2.0
MARKETS = [f"M{i:02d}-USD-PERP" for i in range(12)]


class Node:
    def __init__(self, nc, js, name: str, markets: list[str]) -> None:
        self.name = name
        self.events: list[tuple[str, str, str]] = []
        self.mgr = LeaseManager(
            nc=nc,
            js=js,
            instance=name,
            markets=list(markets),
            on_acquire=self.acq,
            on_release=self.rel,
            ttl=TTL,
            scan_interval=0.1,
            orphan_grace=0.5,
            bucket="leases_t",
        )
        self.task: asyncio.Task | None = None

    async def acq(self, market: str, why: str) -> None:
        self.events.append(("acq", market, why))

    async def rel(self, market: str, why: str) -> None:
        self.events.append(("rel", market, why))

    def start(self) -> Node:
        self.task = asyncio.create_task(self.mgr.run())
        return self

    async def crash(self) -> None:
        """Stop renewing without releasing anything (what SIGKILL looks like to the others)."""
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def stop(self) -> None:
        await self.mgr.release_all()
        await self.crash()


async def wait_for(cond, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


def owners(nodes: list[Node]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {m: [] for m in MARKETS}
    for n in nodes:
        for m in n.mgr.owned:
            out[m].append(n.name)
    return out


def exactly_once(nodes: list[Node]) -> bool:
    return all(len(v) == 1 for v in owners(nodes).values())


async def test_split_crash_takeover_handover_and_join(nc, js) -> None:
    await js.create_key_value(KeyValueConfig(bucket="leases_t", history=1, ttl=TTL, storage=StorageType.FILE))
    nodes = [Node(nc, js, f"fh-{i}", MARKETS).start() for i in range(3)]
    try:
        await wait_for(lambda: exactly_once(nodes) and all(len(n.mgr.owned) == 4 for n in nodes), 10, "even split")
        # Preferred owners (rendezvous hash) get most of their markets.
        kv = await js.key_value("leases_t")
        entry = await kv.get(MARKET_PREFIX + MARKETS[0])
        assert entry.value and entry.revision

        # Crash one (its connection's liveness subscription disappears with it): the others see
        # "no responders" and take its markets over well before the TTL, each exactly once.
        dead = nodes[2]
        dead_markets = set(dead.mgr.owned)
        await dead.crash()
        survivors = nodes[:2]
        took = await wait_for(
            lambda: all(any(m in n.mgr.owned for n in survivors) for m in dead_markets), TTL + 3, "takeover"
        )
        print(f"\nlease takeover after a crash: {took:.2f}s (TTL {TTL}s)")
        assert took < TTL
        assert sum(n.mgr.stats.dead_owners for n in survivors) >= 1
        await wait_for(
            lambda: exactly_once(survivors) and sorted(len(n.mgr.owned) for n in survivors) == [6, 6], 5, "6/6"
        )

        # Graceful stop: leases are deleted, so the takeover does not wait for the TTL.
        leaving = survivors[1]
        left = set(leaving.mgr.owned)
        t0 = time.monotonic()
        await leaving.stop()
        await wait_for(lambda: left <= set(survivors[0].mgr.owned), TTL, "graceful handover")
        assert time.monotonic() - t0 < TTL
        assert ("rel", next(iter(left)), "shutdown") in leaving.events

        # A new instance joins: the busy one gives markets back until both hold their share.
        newcomer = Node(nc, js, "fh-new", MARKETS).start()
        nodes.append(newcomer)
        live = [survivors[0], newcomer]
        await wait_for(lambda: sorted(len(n.mgr.owned) for n in live) == [6, 6] and exactly_once(live), 10, "rebalance")
        assert any(e[0] == "rel" and e[2].startswith("rebalance") for e in survivors[0].events)
        await newcomer.stop()
        await survivors[0].stop()
    finally:
        for n in nodes:
            with contextlib.suppress(Exception):
                await n.crash()


async def test_cas_fences_a_stale_owner(nc, js) -> None:
    """Someone else's key under our market: the renewal's CAS fails and we drop the market."""
    await js.create_key_value(KeyValueConfig(bucket="leases_t", history=1, ttl=TTL, storage=StorageType.FILE))
    node = Node(nc, js, "fh-a", MARKETS[:2]).start()
    try:
        await wait_for(lambda: len(node.mgr.owned) == 2, 5, "both owned")
        kv = await js.key_value("leases_t")
        await kv.put(MARKET_PREFIX + MARKETS[0], b"\x93\xa5other\x01\x01")  # another owner wrote it
        await wait_for(lambda: MARKETS[0] not in node.mgr.owned, 3, "lost lease")
        assert ("rel", MARKETS[0], "lease lost") in node.events
        assert node.mgr.stats.lost == 1
    finally:
        await node.crash()


def test_hrw_is_deterministic_and_spread() -> None:
    insts = ["a", "b", "c"]
    prefs = [max(insts, key=lambda i, m=m: hrw_score(m, i)) for m in MARKETS * 1]
    assert prefs == [max(insts, key=lambda i, m=m: hrw_score(m, i)) for m in MARKETS]
    assert len(set(prefs)) == 3


async def test_frozen_owner_that_still_answers_loses_leases_only_after_the_ttl(nc, js) -> None:
    """An owner that stops renewing but whose process still answers the liveness probe (a stuck
    event loop, a partition between it and the KV leader) keeps its leases until the TTL expires."""
    await js.create_key_value(KeyValueConfig(bucket="leases_t", history=1, ttl=TTL, storage=StorageType.FILE))
    a, b = Node(nc, js, "fh-a", MARKETS[:4]).start(), Node(nc, js, "fh-b", MARKETS[:4]).start()
    responder = None
    try:
        await wait_for(lambda: len(a.mgr.owned) == 2 and len(b.mgr.owned) == 2, 10, "split")
        theirs = set(b.mgr.owned)

        async def answer(msg) -> None:
            await nc.publish(msg.reply, b"1")

        responder = await nc.subscribe("ctl.feed.alive.fh-b", cb=answer)
        await b.crash()  # stops renewing; the responder above keeps answering for it
        took = await wait_for(lambda: theirs <= set(a.mgr.owned), TTL + 3, "TTL takeover")
        print(f"\nlease takeover of a frozen owner: {took:.2f}s (TTL {TTL}s)")
        assert took >= TTL - 0.6
        assert a.mgr.stats.dead_owners == 0
    finally:
        if responder is not None:
            await responder.unsubscribe()
        await a.crash()
        await b.crash()
