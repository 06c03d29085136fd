"""The fault catalogue, the seeded schedule, and how each fault is applied and its recovery timed.

Kinds (``pdx chaos --faults kill,ws_drop,...``; default: all that apply):

==================  ==========================================================================  ================
kind                what happens                                                                recovery timed
==================  ==========================================================================  ================
``kill``            SIGKILL a service process, restart it after 0.3-1.5 s (supervisord-like)   kill -> ready
``term``            SIGTERM (must drain and exit 0), restart                                    stop -> ready
``ws_drop``         the simulator cuts every WebSocket (public and private) at once             reconnected
``stale``           one channel family goes silent for 4-8 s (trades, bbo, book, orders, fills) --
``seq_gap``         book deltas of a market skip 1-3 sequence numbers                           snapshot on MD
``seq_dup``         a book delta arrives twice                                                  --
``private_drop``    private ``orders``/``fills`` messages of the account are not sent            --
``private_dup``     private messages arrive twice                                               --
``lost_reply``      POST/PUT/DELETE order calls take effect but the reply is lost (504 / cut)  --
``rest_error``      order calls fail with 5xx and no effect                                     --
``rest_timeout``    an order call hangs past the client timeout, then 503, no effect            --
``rate_limit``      a 429 storm: orders and private GETs limited to 2/s for 3-5 s               --
``venue_state``     the venue goes ``cancel_only`` for 3 s                                       --
``outside_order``   an order placed on the account "from the web UI" (not through the bus)     --
``nats_restart``    SIGTERM a NATS server (a cluster node), start it again after 1-2 s          stall, services
``leader_kill``     (cluster) SIGKILL the node leading ``EXEC``, restart it after 8 s           stall, election
==================  ==========================================================================  ================

``build_schedule`` spreads the events evenly over the fault phase with seeded jitter. Every kind
appears at least once, every variant of ``stale`` (each channel family) and ``lost_reply`` (each
order call) too; ``kill`` hits every process, ``term`` two of them (every one in runs of two minutes
or more, where further random faults fill the time: about one every six seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from decimal import ROUND_UP, Decimal
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext

import schemas as s
from bus import subjects
from bus.replay import last_message
from schemas.enums import BookAction, RecordFlag
from services.chaos.health import HealthMonitor, Ownership
from services.chaos.probe import PublishProbe
from services.chaos.stack import ChaosStack, ManagedProcess, track
from services.paradex_sim.admin_client import AdminClient

ALL_KINDS = (
    "kill",
    "term",
    "ws_drop",
    "stale",
    "seq_gap",
    "seq_dup",
    "private_drop",
    "private_dup",
    "lost_reply",
    "rest_error",
    "rest_timeout",
    "rate_limit",
    "venue_state",
    "outside_order",
    "nats_restart",
    "leader_kill",
)
STALE_CHANNELS = ("trades.*", "bbo.*", "order_book.*", "orders.*", "fills.*")
LOST_REPLY_CALLS = (("/orders", "POST"), ("/orders/*", "PUT"), ("/orders/*", "DELETE"))
RANDOM_WEIGHTS = {
    "kill": 6,
    "term": 3,
    "ws_drop": 3,
    "stale": 3,
    "seq_gap": 3,
    "seq_dup": 2,
    "private_drop": 3,
    "private_dup": 2,
    "lost_reply": 4,
    "rest_error": 2,
    "rest_timeout": 2,
    "rate_limit": 2,
    "venue_state": 1,
    "outside_order": 1,
    "nats_restart": 1,
    "leader_kill": 1,
}


@dataclass
class FaultEvent:
    at: float  # seconds into the fault phase
    kind: str
    target: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    started: float | None = None  # monotonic, when applied
    detail: str = ""
    error: str = ""
    recovery: dict[str, float] = field(default_factory=dict)
    recovery_note: str = ""

    def describe(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind} {self.target} {extra}".strip()

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": round(self.at, 2),
            "kind": self.kind,
            "target": self.target,
            "params": self.params,
            "detail": self.detail,
            "error": self.error,
            "recovery_s": {k: round(v, 3) for k, v in self.recovery.items()},
            "recovery_note": self.recovery_note,
        }


def build_schedule(
    rng: random.Random,
    duration: float,
    kinds: tuple[str, ...],
    instances: list[str],
    markets: tuple[str, ...],
    cluster: bool,
) -> list[FaultEvent]:
    full = duration >= 120
    kinds = tuple(k for k in kinds if k != "leader_kill" or cluster)
    events: list[FaultEvent] = []

    def make(kind: str, variant: int | None = None) -> FaultEvent:
        return _make_event(rng, kind, instances, markets, variant)

    for kind in kinds:
        if kind == "kill":
            events += [FaultEvent(0, "kill", inst, _restart_params(rng)) for inst in instances]
        elif kind == "term":
            chosen = instances if full else rng.sample(instances, min(2, len(instances)))
            events += [FaultEvent(0, "term", inst, _restart_params(rng)) for inst in chosen]
        elif kind == "stale":
            events += [make("stale", i) for i in range(len(STALE_CHANNELS))]
        elif kind == "lost_reply":
            events += [make("lost_reply", i) for i in range(len(LOST_REPLY_CALLS))]
        else:
            events.append(make(kind))
    if full:
        target = int(duration / 6)
        pool = [k for k in kinds if k in RANDOM_WEIGHTS]
        while len(events) < target and pool:
            k = rng.choices(pool, [RANDOM_WEIGHTS[p] for p in pool])[0]
            events.append(make(k))
    rng.shuffle(events)
    # Spread evenly over [3 s, duration - 3 s]; heavy NATS faults not in the last fifth, so the
    # stall and recovery are measured inside the fault phase.
    n = len(events)
    span = max(1.0, duration - 6.0)
    step = span / max(n, 1)
    for i, ev in enumerate(events):
        ev.at = 3.0 + i * step + rng.uniform(0, step * 0.6)
    heavy = [e for e in events if e.kind in ("nats_restart", "leader_kill")]
    latest = 3.0 + span * 0.8
    for e in heavy:
        if e.at > latest:
            e.at = rng.uniform(3.0 + span * 0.3, latest)
    events.sort(key=lambda e: e.at)
    return events


def _restart_params(rng: random.Random) -> dict[str, Any]:
    return {"restart_after_s": round(rng.uniform(0.3, 1.5), 2)}


def _make_event(
    rng: random.Random, kind: str, instances: list[str], markets: tuple[str, ...], variant: int | None
) -> FaultEvent:
    if kind in ("kill", "term"):
        return FaultEvent(0, kind, rng.choice(instances), _restart_params(rng))
    if kind == "ws_drop":
        return FaultEvent(0, kind, "all", {"mode": rng.choice(("abort", "close"))})
    if kind == "stale":
        ch = STALE_CHANNELS[variant if variant is not None else rng.randrange(len(STALE_CHANNELS))]
        return FaultEvent(0, kind, ch, {"duration_s": round(rng.uniform(4, 8), 1)})
    if kind == "seq_gap":
        return FaultEvent(0, kind, rng.choice(markets), {"count": rng.randint(1, 3)})
    if kind == "seq_dup":
        return FaultEvent(0, kind, rng.choice(markets), {"count": rng.randint(1, 2)})
    if kind in ("private_drop", "private_dup"):
        return FaultEvent(0, kind, rng.choice(("orders", "fills")), {"count": rng.randint(1, 3)})
    if kind == "lost_reply":
        path, method = LOST_REPLY_CALLS[variant if variant is not None else rng.randrange(len(LOST_REPLY_CALLS))]
        return FaultEvent(0, kind, f"{method} {path}", {"mode": rng.choice(("drop", "status")), "count": 1})
    if kind == "rest_error":
        return FaultEvent(0, kind, "POST /orders", {"status": rng.choice((500, 502, 503)), "count": rng.randint(1, 3)})
    if kind == "rest_timeout":
        return FaultEvent(0, kind, "POST /orders", {"seconds": 4, "count": 1})
    if kind == "rate_limit":
        return FaultEvent(0, kind, "orders,private_get", {"per_s": 2, "duration_s": round(rng.uniform(3, 5), 1)})
    if kind == "venue_state":
        return FaultEvent(0, kind, "cancel_only", {"duration_s": 3})
    if kind == "outside_order":
        return FaultEvent(0, kind, rng.choice(markets), {"side": rng.choice(("BUY", "SELL"))})
    if kind == "nats_restart":
        return FaultEvent(0, kind, "random-node", {"down_s": round(rng.uniform(1.0, 2.0), 2)})
    if kind == "leader_kill":
        return FaultEvent(0, kind, "EXEC leader", {"restart_after_s": 8})
    raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(ALL_KINDS)}")


class FaultInjector:
    """Applies ``FaultEvent``s to a running ``ChaosStack``; recoveries are timed in background tasks."""

    def __init__(
        self,
        stack: ChaosStack,
        admin: AdminClient,
        health: HealthMonitor,
        js: JetStreamContext,
        nc: Any,
        probe: PublishProbe | None,
        rng: random.Random,
        markets: tuple[str, ...],
    ) -> None:
        self.stack = stack
        self.admin = admin
        self.health = health
        self.js = js
        self.nc = nc
        self.probe = probe
        self.rng = rng
        self.markets = markets
        self.tasks: list[asyncio.Task[None]] = []
        self._locks: dict[str, asyncio.Lock] = {}
        self._nats_lock = asyncio.Lock()
        self.nats_events: list[FaultEvent] = []

    async def apply(self, ev: FaultEvent) -> None:
        ev.started = time.monotonic()
        try:
            handler = getattr(self, f"_{ev.kind}")
            await handler(ev)
        except Exception as exc:  # noqa: BLE001 - a fault that cannot be applied is reported, not fatal
            ev.error = f"{type(exc).__name__}: {exc}"[:300]

    def _bg(self, coro: Any) -> None:
        self.tasks.append(asyncio.create_task(coro))

    async def wait_recoveries(self, timeout: float) -> None:
        pending = [t for t in self.tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        for t in self.tasks:
            if not t.done():
                t.cancel()

    # -- processes ------------------------------------------------------------------------------

    def _lock(self, instance: str) -> asyncio.Lock:
        return self._locks.setdefault(instance, asyncio.Lock())

    async def _kill(self, ev: FaultEvent) -> None:
        self._bg(self._crash_and_restart(ev, graceful=False))

    async def _term(self, ev: FaultEvent) -> None:
        self._bg(self._crash_and_restart(ev, graceful=True))

    async def _crash_and_restart(self, ev: FaultEvent, graceful: bool) -> None:
        p = self.stack.procs[ev.target]
        async with self._lock(ev.target):
            t0 = time.monotonic()
            owners_before = self._feed_instances()
            if graceful:
                rc = await asyncio.to_thread(p.term, 30.0)
                ev.detail = f"exit code {rc} after SIGTERM ({time.monotonic() - t0:.2f} s)"
                ev.params["exit_code"] = rc
            else:
                pid = p.pid
                await asyncio.to_thread(p.kill)
                ev.detail = f"pid {pid} killed"
            stopped = time.monotonic()
            uncovered = asyncio.create_task(self._coverage_gap(t0)) if p.service == "feed-handler" else None
            await asyncio.sleep(float(ev.params.get("restart_after_s", 0.5)))
            restarted = time.monotonic()
            await asyncio.to_thread(p.start)
            deadline = time.monotonic() + 60.0
            while True:
                try:
                    await self.health.wait_ready(p, max(1.0, deadline - time.monotonic()))
                except TimeoutError as exc:
                    ev.recovery_note = f"not ready 60 s after restart: {str(exc).splitlines()[0]}"
                    break
                except RuntimeError:
                    # It died while starting: an unexpected exit, recorded and restarted by the
                    # runner's watchdog; keep timing until a later life is ready.
                    ev.recovery_note = "exited while starting (see unexpected exits)"
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(1.0)
                    continue
                ready = time.monotonic()
                ev.recovery["down"] = ready - t0
                ev.recovery["startup"] = ready - restarted
                if graceful:
                    ev.recovery["drain"] = stopped - t0
                break
            if uncovered is not None and owners_before:
                try:
                    gap = await asyncio.wait_for(uncovered, 30.0)
                    ev.recovery["markets_uncovered"] = gap
                except TimeoutError:
                    ev.recovery_note += " markets not all covered 30 s after the kill"

    def _feed_instances(self) -> list[str]:
        return [i for i, p in self.stack.procs.items() if p.service == "feed-handler"]

    async def _coverage_gap(self, t0: float) -> float:
        """How long some market had no feed handler serving it after ``t0`` (0 if never)."""
        insts = self._feed_instances()
        want = set(self.markets)
        first_gap: float | None = None
        while True:
            covered = Ownership.of(self.health, insts, max_age=1.5).covered()
            now = time.monotonic()
            if not want <= covered:
                if first_gap is None:
                    first_gap = now
            elif first_gap is not None or now - t0 > 8.0:
                return (now - first_gap) if first_gap is not None else 0.0
            await asyncio.sleep(0.1)

    # -- venue WebSockets and feeds -------------------------------------------------------------

    def _ws_clients(self) -> list[ManagedProcess]:
        return [p for p in self.stack.procs.values() if p.service in ("feed-handler", "order-router")]

    async def _ws_drop(self, ev: FaultEvent) -> None:
        base = {}
        for p in self._ws_clients():
            h = self.health.current(p.instance)
            base[p.instance] = h.counters.get("ws_connects", 0) if h is not None else 0
        n = await self.admin.drop_ws(ev.params["mode"])
        ev.detail = f"{n} connection(s) cut"
        self._bg(self._ws_recovery(ev, base))

    async def _ws_recovery(self, ev: FaultEvent, base: dict[str, int]) -> None:
        assert ev.started is not None

        def back() -> bool:
            for p in self._ws_clients():
                h = self.health.current(p.instance, p.pid)
                if h is None or h.state not in p.ready_states:
                    return False
                if h.pid == self._pid_at(p, ev.started) and h.counters.get("ws_connects", 0) <= base.get(p.instance, 0):
                    return False
                if p.service == "feed-handler" and any(v != "Active" for v in h.subscriptions.values()):
                    return False
            return True

        if await self.health.wait(back, 60.0):
            ev.recovery["reconnected"] = time.monotonic() - ev.started
        else:
            ev.recovery_note = "not all WebSocket clients back within 60 s"

    @staticmethod
    def _pid_at(p: ManagedProcess, t: float) -> int | None:
        pid = None
        for spid, at in p.starts:
            if at <= t:
                pid = spid
        return pid

    async def _stale(self, ev: FaultEvent) -> None:
        account = self.stack.account if ev.target in ("orders.*", "fills.*") else None
        f = await self.admin.stale_channel(ev.target, duration_s=ev.params["duration_s"], account=account)
        ev.detail = f"fault {f.get('id', '?')}"

    async def _seq_gap(self, ev: FaultEvent) -> None:
        sub = await self.nc.subscribe(subjects.md("deltas", ev.target), cb=None)
        f = await self.admin.skip_book_seq(ev.target, ev.params["count"])
        ev.detail = f"fault {f.get('id', '?')}"
        self._bg(self._resync_time(ev, sub))

    async def _resync_time(self, ev: FaultEvent, sub: Any) -> None:
        """Time from the gap until a venue snapshot of the market is on MD again."""
        assert ev.started is not None
        deadline = ev.started + 60.0
        try:
            while time.monotonic() < deadline:
                try:
                    msg: Msg = await sub.next_msg(timeout=max(0.1, deadline - time.monotonic()))
                except Exception:  # noqa: BLE001 - nats-py raises its own TimeoutError
                    break
                try:
                    d: s.OrderBookDeltas | None = s.decode_as(msg.data, s.OrderBookDeltas)
                except s.DecodeError:
                    d = None  # the bad-input sweep, not this timer, judges malformed MD messages
                if d is not None and (d.deltas[0].action == BookAction.CLEAR or d.flags & RecordFlag.F_SNAPSHOT):
                    ev.recovery["resynced"] = time.monotonic() - ev.started
                    return
            ev.recovery_note = "no book snapshot on MD within 60 s (gap unnoticed?)"
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _seq_dup(self, ev: FaultEvent) -> None:
        f = await self.admin.dup_book_seq(ev.target, ev.params["count"])
        ev.detail = f"fault {f.get('id', '?')}"

    # -- private stream and REST ----------------------------------------------------------------

    async def _private_drop(self, ev: FaultEvent) -> None:
        f = await self.admin.drop_private(ev.target, account=self.stack.account, count=ev.params["count"])
        ev.detail = f"fault {f.get('id', '?')}"

    async def _private_dup(self, ev: FaultEvent) -> None:
        f = await self.admin.dup_private(ev.target, account=self.stack.account, count=ev.params["count"])
        ev.detail = f"fault {f.get('id', '?')}"

    async def _lost_reply(self, ev: FaultEvent) -> None:
        method, path = ev.target.split(" ", 1)
        f = await self.admin.rest_lost_reply(path, mode=ev.params["mode"], method=method, count=ev.params["count"])
        ev.detail = f"fault {f.get('id', '?')}"

    async def _rest_error(self, ev: FaultEvent) -> None:
        method, path = ev.target.split(" ", 1)
        f = await self.admin.rest_error(path, status=ev.params["status"], method=method, count=ev.params["count"])
        ev.detail = f"fault {f.get('id', '?')}"

    async def _rest_timeout(self, ev: FaultEvent) -> None:
        method, path = ev.target.split(" ", 1)
        f = await self.admin.rest_timeout(path, seconds=ev.params["seconds"], method=method, count=ev.params["count"])
        ev.detail = f"fault {f.get('id', '?')}"

    async def _rate_limit(self, ev: FaultEvent) -> None:
        per_s = int(ev.params["per_s"])
        await self.admin.set_rate_limits(scopes={"orders": [[per_s, 1]], "private_get": [[per_s, 1]]})
        self._bg(self._restore_rate_limits(ev))

    async def _restore_rate_limits(self, ev: FaultEvent) -> None:
        await asyncio.sleep(float(ev.params["duration_s"]))
        await self.admin.set_rate_limits(reset=True)
        ev.detail = "limits restored"

    async def _venue_state(self, ev: FaultEvent) -> None:
        await self.admin.set_state(ev.target, duration_s=float(ev.params["duration_s"]))
        ev.detail = f"{ev.target} for {ev.params['duration_s']} s"

    async def _outside_order(self, ev: FaultEvent) -> None:
        """A resting order 1 % away from the mark, about 2x the minimum notional, placed on the
        account behind the system's back (as from the venue's web UI)."""
        inst = await last_message(self.js, "REF", subjects.instrument(ev.target))
        if not isinstance(inst, s.CryptoPerpetual):
            raise RuntimeError(f"no instrument definition for {ev.target} on REF")
        prices = {p["market"]: p for p in await self.admin.prices()}
        mark = Decimal(str(prices[ev.target]["mark"]))
        side = ev.params["side"]
        tick, step = Decimal(inst.price_increment), Decimal(inst.size_increment)
        px = (mark * (Decimal("0.99") if side == "BUY" else Decimal("1.01")) / tick).to_integral_value() * tick
        min_notional = Decimal((inst.min_notional or "10").split(" ")[0])
        size = max(step, (2 * min_notional / px / step).to_integral_value(ROUND_UP) * step)
        o = await self.admin.outside_order(self.stack.account, ev.target, side, str(size), str(px))
        ev.detail = f"venue order {o.get('id')} {side} {size}@{px}"

    # -- NATS -----------------------------------------------------------------------------------

    async def _nats_restart(self, ev: FaultEvent) -> None:
        nodes = self.stack.nats_nodes
        node = self.rng.choice(nodes)
        ev.target = node.server_name
        self.nats_events.append(ev)
        self._bg(self._restart_node(ev, node, graceful=True, down_s=float(ev.params["down_s"])))

    async def _leader_kill(self, ev: FaultEvent) -> None:
        if self.stack.cluster is None:
            ev.error = "leader_kill needs --cluster"
            return
        leader = (await self.js.stream_info("EXEC")).cluster.leader  # type: ignore[union-attr]
        ev.target = f"{leader} (EXEC leader)"
        if self.probe is not None:
            moved = await self._move_leader("CHAOS", leader)
            ev.params["probe_leader_moved"] = moved
        led = []
        for name in ("MD", "BOOK", "REF", "CMD", "EXEC", "AUDIT", "CHAOS"):
            with contextlib.suppress(Exception):
                if (await self.js.stream_info(name)).cluster.leader == leader:  # type: ignore[union-attr]
                    led.append(name)
        ev.params["streams_led"] = ",".join(led)
        node = self.stack.cluster.node_by_name(str(leader))
        ev.started = time.monotonic()
        self.nats_events.append(ev)
        self._bg(
            self._restart_node(
                ev, node, graceful=False, down_s=float(ev.params["restart_after_s"]), old_leader=str(leader)
            )
        )

    async def _move_leader(self, stream: str, target: str, attempts: int = 6) -> bool:
        """Make ``target`` lead ``stream``: a step-down with ``placement.preferred`` (nats-server
        2.11+), then wait for the election; retried, since an election can pick another peer."""
        body = json.dumps({"placement": {"preferred": target}}).encode()
        for _ in range(attempts):
            try:
                if await self._leader(stream) == target:
                    return True
                await self.nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", body, timeout=3)
            except Exception:  # noqa: BLE001 - an election in progress; look again
                pass
            for _ in range(30):
                await asyncio.sleep(0.1)
                with contextlib.suppress(Exception):
                    if await self._leader(stream) == target:
                        return True
        return False

    async def _leader(self, stream: str) -> str | None:
        reply = await self.nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=1.0)
        return (json.loads(reply.data).get("cluster") or {}).get("leader")

    async def _restart_node(
        self, ev: FaultEvent, node: Any, *, graceful: bool, down_s: float, old_leader: str | None = None
    ) -> None:
        async with self._nats_lock:
            t0 = time.monotonic()
            ev.params["wall_ns"] = time.time_ns()
            if graceful:
                await asyncio.to_thread(node.stop)
            else:
                await asyncio.to_thread(node.kill)
            ev.detail = f"{node.server_name} {'stopped' if graceful else 'killed'}"
            election = asyncio.create_task(self._election(old_leader, t0)) if old_leader else None
            await asyncio.sleep(down_s)
            up = time.monotonic()
            await asyncio.to_thread(node.start)
            track(node.proc)
            if self.stack.cluster is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(node.wait_healthy, 30.0)
            ev.recovery["node_down"] = time.monotonic() - t0
            if election is not None:
                with contextlib.suppress(TimeoutError):
                    ev.recovery["election"] = await asyncio.wait_for(election, 30.0)
            # Every service reported from a live connection after the node came back.
            procs = list(self.stack.procs.values())

            def all_back() -> bool:
                for p in procs:
                    seen = self.health.latest.get(p.instance)
                    if seen is None or seen.at < up or seen.health.state not in p.ready_states:
                        return False
                return True

            if await self.health.wait(all_back, 60.0):
                ev.recovery["services_ready"] = time.monotonic() - t0
            else:
                ev.recovery_note = "not every service ready 60 s after the node came back"
            if self.probe is not None:
                ev.recovery["publish_stall"] = self.probe.stall(t0, time.monotonic())

    async def _election(self, old_leader: str, t0: float) -> float:
        """Seconds until ``EXEC`` reports a leader other than the killed node (short API timeouts, so
        the measurement is not coarsened by requests hanging while the meta leader moves too)."""
        while True:
            with contextlib.suppress(Exception):
                leader = await self._leader("EXEC")
                if leader and leader != old_leader:
                    return time.monotonic() - t0
            await asyncio.sleep(0.1)
