"""The whole stack as real OS processes on free loopback ports, for chaos runs.

``ChaosStack(base_dir, cluster=False)`` starts, in order: NATS (one ``nats-server``, or a 3-node
JetStream cluster whose streams are created with ``replicas=3``) with the per-service users of
``bus.auth``; the simulator (``python -m services.paradex_sim`` with background flow, free ports read
from its first stdout line); the signer (its account is learned with ``whoami``); two feed handlers
(shard mode, KV leases); the book builder; the order router; the reconciler. Every service process
is a ``ManagedProcess``: ``kill()`` is SIGKILL (a crash), ``term()`` SIGTERM (a graceful stop that
must exit 0), ``start()`` starts it again under the same instance id (as supervisord would). A
process that exits without being told to is an *unexpected exit*: recorded with its log tail and
restarted by ``watch_exits``.

Logs: ``<base_dir>/logs/<instance>.log`` (appended across restarts, with a marker line per start);
NATS logs and stores under ``<base_dir>/nats``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bus import NatsSettings, auth, connect, ensure_streams, jetstream
from bus.embedded import EmbeddedNats, NatsCluster
from services.chaos.health import HealthMonitor
from services.paradex_sim.process import SimProcess

ROOT = Path(__file__).resolve().parents[2]

DEFAULT_MARKETS = ("BTC-USD-PERP", "ETH-USD-PERP", "SOL-USD-PERP")

# Timings shortened for a run of minutes (defaults are tuned for days): faster health, faster
# unknown-outcome resolution, more frequent reconciliation. Each one is an ordinary setting.
ROUTER_ENV = {
    "ROUTER_RECV_WINDOW_MS": "3000",
    "ROUTER_UNKNOWN_GRACE_S": "1",
    "ROUTER_INFLIGHT_INTERVAL_S": "0.5",
    "ROUTER_INFLIGHT_THRESHOLD_S": "2",
    "ROUTER_OPEN_CHECK_INTERVAL_S": "5",
    "ROUTER_FILL_GRACE_S": "1",
    "ROUTER_REST_TIMEOUT_S": "3",
    "ROUTER_CMD_ACK_WAIT_S": "5",
    "ROUTER_SYSTEM_STATE_INTERVAL_S": "1",
    "ROUTER_SIGNER_TIMEOUT_S": "2",
}
RECON_ENV = {
    "RECON_ORDERS_INTERVAL_S": "5",
    "RECON_POSITIONS_INTERVAL_S": "20",
    "RECON_GRACE_MS": "2000",
    "RECON_REST_TIMEOUT_S": "3",
}
FEED_ENV = {"FEED_MODE": "shard", "FEED_STATUS_INTERVAL_S": "2", "FEED_REST_TIMEOUT_S": "3"}
SIGNER_ENV = {"SIGNER_MAX_ORDERS_PER_S": "5000", "SIGNER_ORDER_BURST": "5000", "SIGNER_HTTP_TIMEOUT_S": "3"}

# The states in which a service does its job (``Degraded`` is not ready: something is still off).
READY_STATES: dict[str, tuple[str, ...]] = {
    "signer": ("Serving",),
    "feed-handler": ("Connected",),
    "book-builder": ("Running",),
    "order-router": ("Running",),
    "reconciler": ("Connected", "Degraded"),
}


@dataclass
class Exit:
    """One end of a process life: who ended it and how."""

    pid: int
    returncode: int | None
    how: str  # "kill" | "term" | "unexpected" | "stop"
    at: float  # monotonic
    log_tail: str = ""


_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def track(proc: subprocess.Popen[bytes] | None) -> None:
    """Remember a child process so it is killed if the runner exits without stopping it."""
    if proc is not None:
        _LIVE[proc.pid] = proc


@atexit.register
def _kill_leftovers() -> None:
    """Never leave a stack behind (an interrupted run, a crashed runner): SIGKILL what we started."""
    for proc in list(_LIVE.values()):
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()


class ManagedProcess:
    """One service instance (``python -m <module>``) that can be crashed, stopped and restarted."""

    def __init__(self, instance: str, service: str, module: str, env: dict[str, str], log_path: Path) -> None:
        self.instance = instance
        self.service = service
        self.module = module
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.exits: list[Exit] = []
        self.starts: list[tuple[int, float]] = []  # (pid, monotonic)
        self._expected_exit = False
        self._lock = threading.Lock()

    @property
    def ready_states(self) -> tuple[str, ...]:
        return READY_STATES[self.service]

    def start(self) -> int:
        """Start the process (again); a no-op when it is already running, so the runner's watchdog
        and a fault's restart can never start two lives of one instance."""
        with self._lock:
            if self.alive:
                assert self.proc is not None
                return self.proc.pid
            return self._start()

    def _start(self) -> int:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "INSTANCE_ID": self.instance, **self.env}
        with open(self.log_path, "ab") as out:
            out.write(f"\n==== chaos: start {self.instance} at {time.strftime('%H:%M:%S')} ====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our Ctrl-C is not theirs; we stop them ourselves
            )
        self._expected_exit = False
        self.starts.append((self.proc.pid, time.monotonic()))
        _LIVE[self.proc.pid] = self.proc
        return self.proc.pid

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash."""
        self._stop(signal.SIGKILL, "kill", 10.0)

    def term(self, timeout: float = 30.0) -> int | None:
        """SIGTERM: the graceful stop; returns the exit code (SIGKILL after ``timeout``)."""
        return self._stop(signal.SIGTERM, "term", timeout)

    def _stop(self, sig: int, how: str, timeout: float) -> int | None:
        with self._lock:
            return self._stop_locked(sig, how, timeout)

    def _stop_locked(self, sig: int, how: str, timeout: float) -> int | None:
        if not self.alive:
            return None
        assert self.proc is not None
        self._expected_exit = True
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(10)
            how = f"{how}-timeout"
        self.exits.append(Exit(self.proc.pid, rc, how, time.monotonic()))
        return rc

    def check_unexpected_exit(self) -> Exit | None:
        """The process died and nobody told it to: record it (once) and return it. Never blocks
        (it runs on the event loop): while a stop or start holds the lock, the answer is "no"."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self.proc is None or self._expected_exit or self.proc.poll() is None:
                return None
            self._expected_exit = True
            ex = Exit(self.proc.pid, self.proc.returncode, "unexpected", time.monotonic(), self.log_tail())
            self.exits.append(ex)
            return ex
        finally:
            self._lock.release()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - chars))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def ensure_stopped(self) -> None:
        if self.alive:
            self._stop(signal.SIGKILL, "stop", 10.0)


@dataclass
class StackOptions:
    cluster: bool = False
    seed: int = 1
    flow_rate: float = 20.0
    markets: tuple[str, ...] = DEFAULT_MARKETS
    feed_handlers: int = 2
    auth: bool = True
    health_interval: float = 0.5
    extra_env: dict[str, str] = field(default_factory=dict)
    # ``(instance, simulator ws url) -> ws url`` for that instance: lets a test put a WebSocket relay
    # (e.g. one that injects malformed frames) between one process and the venue.
    ws_proxy: Callable[[str, str], Awaitable[str]] | None = None


class ChaosStack:
    def __init__(self, base_dir: Path, options: StackOptions) -> None:
        self.base_dir = Path(base_dir)
        self.opt = options
        self.logs = self.base_dir / "logs"
        self.nats_dir = self.base_dir / "nats"
        self.single: EmbeddedNats | None = None
        self.cluster: NatsCluster | None = None
        self.sim: SimProcess | None = None
        self.procs: dict[str, ManagedProcess] = {}
        self.creds: dict[str, str] = {}
        self.account = ""
        self.replicas = 3 if options.cluster else 1

    # -- NATS -----------------------------------------------------------------------------------

    @property
    def nats_url(self) -> str:
        if self.cluster is not None:
            return self.cluster.url
        assert self.single is not None
        return self.single.url

    @property
    def nats_nodes(self) -> list[EmbeddedNats]:
        if self.cluster is not None:
            return list(self.cluster.nodes)
        return [self.single] if self.single is not None else []

    def user_settings(self, user: str = "admin") -> NatsSettings:
        """Connection settings of one NATS user (``admin`` for the runner, ``trader`` for the
        workload), with the user's own inbox prefix (there is no shared ``_INBOX.>``)."""
        servers = tuple(self.nats_url.split(","))
        if not self.opt.auth:
            return NatsSettings(servers=servers)
        return NatsSettings(
            servers=servers, user=user, password=self.creds[user], inbox_prefix=auth.user_inbox_prefix(user)
        )

    async def connect(self, name: str, user: str = "admin") -> tuple[NATS, JetStreamContext]:
        nc = await connect(name, self.user_settings(user))
        return nc, jetstream(nc)

    def _start_nats(self) -> None:
        extra = ""
        if self.opt.auth:
            sa = auth.write_stack_auth(self.nats_dir, shared_inbox=False)
            self.creds = dict(sa.credentials)
            extra = sa.conf_path.read_text()
        if self.opt.cluster:
            self.cluster = NatsCluster(base_dir=self.nats_dir / "cluster", extra_config=extra).start()
        else:
            self.single = EmbeddedNats(
                store_dir=self.nats_dir / "single", extra_config=extra, log_file=self.nats_dir / "nats.log"
            ).start()
        for node in self.nats_nodes:
            track(node.proc)

    async def _provision(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                nc, js = await self.connect("chaos-provision")
                try:
                    await ensure_streams(js, replicas=self.replicas)
                finally:
                    await nc.close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)  # cluster: the meta leader is still being elected

    # -- services -------------------------------------------------------------------------------

    def _env(self, role: str) -> dict[str, str]:
        assert self.sim is not None
        env = {
            "NATS_URL": self.nats_url,
            "BUS_REPLICAS": str(self.replicas),
            "PARADEX_ENV": "sim",
            "PARADEX_REST_URL": self.sim.rest_url,
            "PARADEX_WS_URL": self.sim.ws_url,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "METRICS_PORT": "0",
            "HEALTH_INTERVAL": str(self.opt.health_interval),
            "DRAIN_TIMEOUT": "8",
        }
        if self.account:
            env["PARADEX_ACCOUNT"] = self.account
        if self.opt.auth:
            env.update(auth.service_env(role, self.creds[role]))
        return env

    async def _add(self, instance: str, service: str, module: str, extra: dict[str, str]) -> ManagedProcess:
        env = {**self._env(service), **extra, **self.opt.extra_env}
        if self.opt.ws_proxy is not None:
            env["PARADEX_WS_URL"] = await self.opt.ws_proxy(instance, env["PARADEX_WS_URL"])
        p = ManagedProcess(instance, service, module, env, self.logs / f"{instance}.log")
        self.procs[instance] = p
        return p

    async def start_bus(self) -> None:
        """NATS (with the users of ``bus.auth``) and the project's streams."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._start_nats)
        await self._provision()

    async def start_services(self, health: HealthMonitor, timeout: float = 90.0) -> None:
        """The simulator, then the signer (its account), then every other service; waits for ready."""
        self.sim = await asyncio.to_thread(
            SimProcess(
                [
                    "--seed",
                    str(self.opt.seed),
                    "--flow-rate",
                    str(self.opt.flow_rate),
                    "--markets",
                    ",".join(self.opt.markets),
                    "--log-format",
                    "json",
                ],
                log_path=self.logs / "paradex-sim.log",
                new_session=True,
            ).start
        )
        track(self.sim.proc)
        deadline = time.monotonic() + timeout
        signer = await self._add(
            "signer-0",
            "signer",
            "services.signer",
            {
                "SIGNER_KEY_DIR": str(self.base_dir / "signer"),
                **SIGNER_ENV,
            },
        )
        signer.start()
        await health.wait_ready(signer, deadline - time.monotonic())
        self.account = await self._whoami()
        for p in self.procs.values():
            p.env["PARADEX_ACCOUNT"] = self.account
        started: list[ManagedProcess] = []
        for i in range(self.opt.feed_handlers):
            started.append(
                await self._add(
                    f"feed-handler-{i}",
                    "feed-handler",
                    "services.feed_handler",
                    {
                        "FEED_CACHE_DIR": str(self.base_dir / f"feed-cache-{i}"),
                        **FEED_ENV,
                    },
                )
            )
        started.append(await self._add("book-builder-0", "book-builder", "services.book_builder", {}))
        started.append(await self._add("order-router-0", "order-router", "services.order_router", ROUTER_ENV))
        started.append(
            await self._add(
                "reconciler-0",
                "reconciler",
                "services.reconciler",
                {
                    "RECON_STATE_DIR": str(self.base_dir / "reconciler"),
                    **RECON_ENV,
                },
            )
        )
        for p in started:
            p.start()
        await asyncio.gather(*(health.wait_ready(p, max(1.0, deadline - time.monotonic())) for p in started))

    async def _whoami(self) -> str:
        from services.signer.client import whoami

        nc, _ = await self.connect("chaos-whoami")
        try:
            return (await whoami(nc, timeout=5)).account.lower()
        finally:
            await nc.close()

    def check_exits(self) -> list[tuple[ManagedProcess, Exit]]:
        """Processes that died on their own since the last call (each reported once)."""
        out = []
        for p in self.procs.values():
            ex = p.check_unexpected_exit()
            if ex is not None:
                out.append((p, ex))
        return out

    async def stop(self) -> None:
        for p in self.procs.values():
            await asyncio.to_thread(p.ensure_stopped)
        if self.sim is not None:
            await asyncio.to_thread(self.sim.stop)
        for n in self.nats_nodes:
            await asyncio.to_thread(n.kill)
