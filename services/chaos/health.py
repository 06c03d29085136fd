"""Following every ``ServiceHealth`` heartbeat (``svc.*.*.health``) during a chaos run.

The monitor keeps, per instance, the newest report and when it arrived, and per process life
(instance + pid) the last counters, so counters can be summed over restarts (each process starts
its counters at zero). ``wait_ready(proc)`` waits for a report *from the process's current pid*
in one of its ready states; ``wait(predicate)`` for any condition over the current reports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from schemas import DecodeError, ServiceHealth, decode_as


@dataclass
class Seen:
    health: ServiceHealth
    at: float  # monotonic receive time


@dataclass
class StateChange:
    instance: str
    pid: int
    state: str
    at: float


class HealthMonitor:
    def __init__(self) -> None:
        self.latest: dict[str, Seen] = {}  # instance -> newest report
        self.lives: dict[tuple[str, int], ServiceHealth] = {}  # (instance, pid) -> newest report
        self.changes: list[StateChange] = []
        self.undecodable = 0
        self._sub: object | None = None
        self._changed = asyncio.Event()

    async def start(self, nc: NATS) -> HealthMonitor:
        self._sub = await nc.subscribe("svc.*.*.health", cb=self._on_msg)
        return self

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - the connection may already be closed
                pass
            self._sub = None

    async def _on_msg(self, msg: Msg) -> None:
        try:
            h = decode_as(msg.data, ServiceHealth)
        except DecodeError:
            self.undecodable += 1
            return
        prev = self.latest.get(h.instance)
        if prev is None or prev.health.state != h.state or prev.health.pid != h.pid:
            self.changes.append(StateChange(h.instance, h.pid, h.state, time.monotonic()))
        self.latest[h.instance] = Seen(h, time.monotonic())
        self.lives[(h.instance, h.pid)] = h
        self._changed.set()

    def state(self, instance: str) -> str | None:
        s = self.latest.get(instance)
        return s.health.state if s else None

    def current(self, instance: str, pid: int | None = None, since: float = 0.0) -> ServiceHealth | None:
        """The newest report of ``instance`` (from ``pid`` if given) received after ``since``."""
        s = self.latest.get(instance)
        if s is None or s.at < since or (pid is not None and s.health.pid != pid):
            return None
        return s.health

    async def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.25))
            except TimeoutError:
                pass  # no new health yet: check the deadline and wait again

    async def wait_ready(self, proc: object, timeout: float) -> float:
        """Seconds until ``proc`` (a ``ManagedProcess``) reports a ready state from its current pid."""
        started = time.monotonic()

        def ready() -> bool:
            if not proc.alive:  # type: ignore[attr-defined]
                return True  # stop waiting: reported below
            pid = proc.pid  # type: ignore[attr-defined]
            h = self.current(proc.instance, pid)  # type: ignore[attr-defined]
            return h is not None and h.state in proc.ready_states  # type: ignore[attr-defined]

        waited = await self.wait(ready, timeout)
        if not proc.alive:  # type: ignore[attr-defined]
            raise RuntimeError(
                f"{proc.instance} (pid {proc.pid}) exited while starting:\n{proc.log_tail(2500)}"  # type: ignore[attr-defined]
            )
        if not waited:
            h = self.latest.get(proc.instance)  # type: ignore[attr-defined]
            state = f"{h.health.state} (pid {h.health.pid})" if h else "no report"
            raise TimeoutError(
                f"{proc.instance} (pid {proc.pid}) not ready in {timeout:.0f} s; last: {state}\n"  # type: ignore[attr-defined]
                f"{proc.log_tail(2000)}"  # type: ignore[attr-defined]
            )
        return time.monotonic() - started

    def counters_by_service(self) -> dict[str, dict[str, int]]:
        """Counters summed over every instance and process life of each service."""
        out: dict[str, dict[str, int]] = {}
        for h in self.lives.values():
            acc = out.setdefault(h.service, {})
            for k, v in h.counters.items():
                acc[k] = acc.get(k, 0) + v
        return out


@dataclass
class Ownership:
    """Which markets the feed handlers serve right now (from their health ``details``)."""

    owned: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, monitor: HealthMonitor, instances: list[str], max_age: float = 3.0) -> Ownership:
        now = time.monotonic()
        owned: dict[str, set[str]] = {}
        for inst in instances:
            s = monitor.latest.get(inst)
            if s is None or now - s.at > max_age or s.health.state in ("Stopping", "Stopped"):
                continue
            markets = s.health.details.get("owned_markets", "")
            owned[inst] = {m for m in markets.split(",") if m}
        return cls(owned)

    def covered(self) -> set[str]:
        return set().union(*self.owned.values()) if self.owned else set()
