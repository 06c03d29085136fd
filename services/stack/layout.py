"""Where the local stack keeps its files and which ports it uses (each overridable by env).

Everything lives under ``.run/`` in the project directory (``PDX_RUN_DIR``): NATS data, logs,
the generated supervisord config, the signer's development key, caches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class StackLayout:
    run_dir: Path
    nats_port: int
    nats_http_port: int
    sim_rest_port: int
    sim_ws_port: int
    sim_admin_port: int
    metrics_base_port: int
    feed_handlers: int
    sim_flow_rate: float

    @classmethod
    def from_env(cls) -> StackLayout:
        e = os.environ
        return cls(
            run_dir=Path(e.get("PDX_RUN_DIR", str(ROOT / ".run"))).resolve(),
            nats_port=int(e.get("PDX_NATS_PORT", "4222")),
            nats_http_port=int(e.get("PDX_NATS_HTTP_PORT", "8222")),
            sim_rest_port=int(e.get("SIM_REST_PORT", "8000")),
            sim_ws_port=int(e.get("SIM_WS_PORT", "8001")),
            sim_admin_port=int(e.get("SIM_ADMIN_PORT", "8002")),
            metrics_base_port=int(e.get("PDX_METRICS_BASE_PORT", "9100")),
            feed_handlers=int(e.get("PDX_FEED_HANDLERS", "2")),
            sim_flow_rate=float(e.get("SIM_FLOW_RATE", "20")),
        )

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    @property
    def nats_dir(self) -> Path:
        return self.run_dir / "nats"

    @property
    def supervisor_conf(self) -> Path:
        return self.run_dir / "supervisord.conf"

    @property
    def supervisor_sock(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @property
    def supervisor_pid(self) -> Path:
        return self.run_dir / "supervisord.pid"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_rest_port}/v1"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.sim_ws_port}/v1"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_admin_port}"
