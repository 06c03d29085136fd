"""The publish-stall probe: a producer that behaves like ours and times every acknowledgement.

It publishes ``chaos.probe.<n>`` to its own stream ``CHAOS`` (same replication as the project's
streams) every ``interval`` seconds with ``Nats-Msg-Id = probe:<n>``; a publish that fails (no
responders during a leader election, a timeout, a reconnect) is retried with the **same** ``n`` and
Msg-Id until stored, as ``bus.Publisher.publish_acked`` does. ``stall(t0, t1)`` is the longest time
between two consecutive acknowledgements around a fault -- what a producer experiences during a
NATS restart or a stream-leader election. ``verify()`` reads the stream back: payloads must be
exactly ``1..N`` (nothing lost, nothing stored twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from bus.replay import replay

STREAM = "CHAOS"
SUBJECT = "chaos.probe"


@dataclass
class ProbeStats:
    acked: int = 0
    errors: int = 0
    duplicates: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)


class PublishProbe:
    def __init__(self, nc: NATS, js: JetStreamContext, *, replicas: int, interval: float = 0.02) -> None:
        self.nc, self.js = nc, js
        self.replicas = replicas
        self.interval = interval
        self.acks: list[float] = []  # monotonic time of each acknowledgement, in order
        self.stats = ProbeStats()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.next_n = 1

    async def ensure_stream(self) -> None:
        cfg = StreamConfig(
            name=STREAM,
            subjects=[f"{SUBJECT}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            num_replicas=self.replicas,
            duplicate_window=120.0,
            max_age=3600.0,
        )
        try:
            await self.js.stream_info(STREAM)
        except NotFoundError:
            await self.js.add_stream(cfg)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="chaos-probe")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while not self._stop.is_set():
            n = self.next_n
            try:
                ack = await self.js.publish(
                    f"{SUBJECT}.{n % 16}", str(n).encode(), timeout=1.0, headers={"Nats-Msg-Id": f"probe:{n}"}
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is retried with the same id
                self.stats.errors += 1
                kind = type(exc).__name__
                self.stats.error_kinds[kind] = self.stats.error_kinds.get(kind, 0) + 1
                await asyncio.sleep(0.05)
                continue
            self.acks.append(time.monotonic())
            self.stats.acked += 1
            if ack.duplicate:
                self.stats.duplicates += 1
            self.next_n = n + 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    def stall(self, t0: float, t1: float) -> float:
        """The longest gap between consecutive acks that overlaps ``[t0, t1]`` (monotonic)."""
        worst = 0.0
        for a, b in zip(self.acks, self.acks[1:], strict=False):
            if b < t0 or a > t1:
                continue
            worst = max(worst, b - a)
        return worst

    async def verify(self) -> list[str]:
        """Problems found reading ``CHAOS`` back (empty = exactly 1..N, in order)."""
        expected = 1
        problems: list[str] = []
        async for m in replay(self.js, f"{SUBJECT}.>", stream=STREAM):
            n = int(m.data)
            if n != expected:
                problems.append(f"probe stream: expected {expected}, found {n} at seq {m.stream_seq}")
                if len(problems) > 5:
                    break
            expected = n + 1
        last = self.next_n - 1
        if expected - 1 != last and not problems:
            problems.append(f"probe stream ends at {expected - 1}, last acknowledged {last}")
        return problems
