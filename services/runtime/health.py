"""Periodic ``ServiceHealth``: published on ``svc.<service>.<instance>.health`` and stored in KV
``health`` under ``<service>.<instance>`` so ``pdx status`` can show every instance, including
ones that stopped reporting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bus import subjects
from bus.kv import Bucket
from schemas import ServiceHealth, encode

log = logging.getLogger("runtime.health")


def health_key(service: str, instance: str) -> str:
    return f"{service}.{instance}"


class HealthReporter:
    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        service: str,
        instance: str,
        snapshot: Callable[[], tuple[str, dict[str, str], dict[str, int], dict[str, str]]],
        interval: float = 2.0,
    ) -> None:
        self.nc, self.js = nc, js
        self.service, self.instance = service, instance
        self.snapshot = snapshot
        self.interval = interval
        self.started_ns = time.time_ns()
        self._task: asyncio.Task[None] | None = None
        self._bucket: Bucket | None = None
        self._subject = subjects.health(service, instance)

    def build(self) -> ServiceHealth:
        state, subs, counters, details = self.snapshot()
        now = time.time_ns()
        return ServiceHealth(
            service=self.service,
            instance=self.instance,
            state=state,
            pid=os.getpid(),
            started_ns=self.started_ns,
            subscriptions=subs,
            counters=counters,
            details=details,
            ts_event=now,
            ts_init=now,
        )

    async def publish_once(self) -> None:
        payload = encode(self.build())
        await self.nc.publish(self._subject, payload)
        try:
            if self._bucket is None:
                self._bucket = await Bucket.open(self.js, "health")
            await self._bucket.put(health_key(self.service, self.instance), payload)
        except Exception as exc:  # noqa: BLE001 - health must never take the service down
            log.debug("health KV put failed: %r", exc)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="health")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            if self.nc.is_connected:
                try:
                    await self.publish_once()
                except Exception as exc:  # noqa: BLE001 - retried next interval
                    log.debug("health publish failed: %r", exc)
            await asyncio.sleep(self.interval)


async def read_health(js: JetStreamContext) -> tuple[dict[str, ServiceHealth], int]:
    """Every instance's last ``ServiceHealth`` from KV ``health`` (keyed ``<service>.<instance>``),
    and how many records could not be decoded (shown by callers, never silently dropped)."""
    from schemas import DecodeError, decode

    out: dict[str, ServiceHealth] = {}
    bad = 0
    for key, raw in (await (await Bucket.open(js, "health")).items()).items():
        try:
            h = decode(raw)
        except DecodeError:
            bad += 1
            continue
        if isinstance(h, ServiceHealth):
            out[key] = h
        else:
            bad += 1
    return out, bad
