"""The process skeleton every service runs in.

``Service.main()``: structured logs, metrics endpoint, NATS connection, stream provisioning, a
shared ``Publisher``, periodic health, then the subclass's ``setup()`` and ``run()``. On SIGTERM or
SIGINT it stops intake (``stop_intake``), finishes in-flight work (``drain``), flushes the
publisher, reports ``Stopped`` and exits 0 -- so ``kill`` is graceful and only ``kill -9`` is a
crash (which the streams and checkpoints are designed to survive).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

import nats.errors
import uvloop
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bus import Publisher, connect, ensure_streams, jetstream
from services.runtime.health import HealthReporter
from services.runtime.logs import setup_logging
from services.runtime.metrics import Metrics
from services.runtime.problems import Problems
from services.runtime.settings import CommonSettings


class Service:
    """Subclass and override ``setup``, ``run``, ``stop_intake``, ``drain`` as needed."""

    name = "service"

    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        self.log = logging.getLogger(settings.service)
        self.metrics = Metrics(settings.service)
        self.problems = Problems(self.metrics, self.log)
        self.state = "Starting"
        self.subscriptions: dict[str, str] = {}
        self.details: dict[str, str] = {}
        self.nc: NATS = None  # type: ignore[assignment]
        self.js: JetStreamContext = None  # type: ignore[assignment]
        self.publisher: Publisher = None  # type: ignore[assignment]
        self.health: HealthReporter | None = None
        self.stopping = asyncio.Event()
        self.counter_sources: list[Callable[[], dict[str, int]]] = []

    # -- hooks ----------------------------------------------------------------------------------

    async def preflight(self) -> None:
        """Checks that must pass before the process joins the bus (e.g. the signer's key); runs
        before NATS is connected, so a misconfiguration fails fast even while NATS is down."""

    async def setup(self) -> None:
        """Create consumers, connections, state. Runs after NATS is connected."""

    async def run(self) -> None:
        """Main work; the default just waits for a stop signal."""
        await self.stopping.wait()

    async def stop_intake(self) -> None:
        """Stop taking new work (pause consumers, close venue sockets)."""

    async def drain(self) -> None:
        """Finish in-flight work and make its effects durable."""

    async def on_nats_reconnect(self) -> None:
        """Called after NATS reconnects (e.g. to re-issue requests)."""

    # -- health ---------------------------------------------------------------------------------

    def health_snapshot(self) -> tuple[str, dict[str, str], dict[str, int], dict[str, str]]:
        counters = self.metrics.snapshot()
        if self.publisher is not None:
            counters.update(self.publisher.stats.as_counters())
        for src in self.counter_sources:
            counters.update(src())
        return self.state, dict(self.subscriptions), counters, dict(self.details)

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.log.info("state %s -> %s", self.state, state, extra={"ctx": {"from": self.state, "to": state}})
            self.state = state

    # -- lifecycle ------------------------------------------------------------------------------

    async def main(self) -> int:
        s = self.settings
        setup_logging(s.service, s.instance, s.log_level, s.log_format)
        port = self.metrics.serve(s.metrics_port, s.metrics_addr)
        if port:
            self.details["metrics_port"] = str(port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)

        await self.preflight()

        async def reconnected() -> None:
            await self.on_nats_reconnect()

        self.nc = await connect(f"{s.service}-{s.instance}", s.nats, on_reconnect=reconnected)
        self.js = jetstream(self.nc)
        await self._ensure_streams()
        self.publisher = await Publisher(
            self.nc, self.js, name=f"{s.service}-publisher", max_buffer=s.publish_buffer, report=self.problems.report
        ).start()
        self.health = HealthReporter(self.nc, self.js, s.service, s.instance, self.health_snapshot, s.health_interval)
        self.health.start()
        self.log.info("starting", extra={"ctx": {"nats": ",".join(s.nats.servers)}})
        await self.setup()
        run_task = asyncio.create_task(self.run(), name=f"{s.service}-run")
        stop_task = asyncio.create_task(self.stopping.wait())
        done, _ = await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        code = 0
        if run_task in done and run_task.exception() is not None:
            self.log.error("run() failed", exc_info=run_task.exception())
            code = 1
        self.stopping.set()
        await self.shutdown()
        for t in (run_task, stop_task):
            if not t.done():
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        return code

    async def _ensure_streams(self) -> None:
        """Provision streams, riding out a JetStream that is still electing leaders (a cluster
        restart, a node loss): retried with back-off until it works or the process is stopped."""
        delay = 0.25
        while True:
            try:
                await ensure_streams(self.js)
                return
            except (nats.errors.Error, TimeoutError) as exc:
                if self.stopping.is_set():
                    raise
                self.problems.report("ensure_streams_retry", error=repr(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def shutdown(self) -> None:
        self.set_state("Stopping")
        try:
            await asyncio.wait_for(self.stop_intake(), self.settings.drain_timeout)
            await asyncio.wait_for(self.drain(), self.settings.drain_timeout)
        except Exception:
            self.log.exception("error while draining")
        if self.publisher is not None:
            await self.publisher.close(self.settings.drain_timeout)
        self.set_state("Stopped")
        if self.health is not None:
            await self.health.stop()
            with contextlib.suppress(Exception):
                await self.health.publish_once()
        with contextlib.suppress(Exception):
            await self.nc.drain()
        self.log.info("stopped")


def run_service(factory: Callable[[], Service]) -> None:
    """Entry point for ``python -m services.<name>``: uvloop, run, exit with the service's code."""
    svc: Any = None

    async def _main() -> int:
        nonlocal svc
        svc = factory()
        return await svc.main()

    sys.exit(uvloop.run(_main()))
