"""The processes ``make up`` supervises and the supervisord configuration that runs them.

A service appears only once its package exists (``python -m services.<pkg>`` is runnable), so the
stack grows as components land. Each program restarts on crash with supervisord's back-off and
writes its log to ``.run/logs/<program>.log``.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field

from bus import auth
from services.stack.layout import ROOT, StackLayout


@dataclass(frozen=True)
class Program:
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    numprocs: int = 1
    priority: int = 500
    stopwaitsecs: int = 20

    @property
    def process_names(self) -> list[str]:
        if self.numprocs == 1:
            return [self.name]
        return [f"{self.name}-{i}" for i in range(self.numprocs)]


def runnable(module: str) -> bool:
    try:
        return importlib.util.find_spec(f"{module}.__main__") is not None
    except ModuleNotFoundError:
        return False


def programs(layout: StackLayout, creds: dict[str, tuple[str, str]] | None = None) -> list[Program]:
    """Every program of the local stack; ``creds`` maps a service to its NATS (user, password)."""
    py = sys.executable
    base = {
        "NATS_URL": layout.nats_url,
        "PARADEX_ENV": "sim",
        "PARADEX_REST_URL": layout.rest_url,
        "PARADEX_WS_URL": layout.ws_url,
        "LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
        "PDX_RUN_DIR": str(layout.run_dir),
    }
    out = [
        Program(
            "nats",
            [
                py,
                "-m",
                "bus.embedded",
                "--store-dir",
                str(layout.nats_dir),
                "--port",
                str(layout.nats_port),
                "--http-port",
                str(layout.nats_http_port),
            ]
            + (["--extra-config", str(layout.nats_dir / "auth.conf")] if creds else []),
            priority=10,
            stopwaitsecs=30,
        )
    ]
    if runnable("services.paradex_sim"):
        out.append(
            Program(
                "paradex-sim",
                [
                    py,
                    "-m",
                    "services.paradex_sim",
                    "--rest-port",
                    str(layout.sim_rest_port),
                    "--ws-port",
                    str(layout.sim_ws_port),
                    "--admin-port",
                    str(layout.sim_admin_port),
                    "--flow-rate",
                    str(layout.sim_flow_rate),
                ],
                priority=20,
            )
        )
    services = [
        ("signer", "services.signer", 1, {"SIGNER_KEY_DIR": str(layout.run_dir / "signer")}),
        (
            "feed-handler",
            "services.feed_handler",
            layout.feed_handlers,
            {"FEED_CACHE_DIR": str(layout.run_dir / "feed_handler" / "cache")},
        ),
        ("book-builder", "services.book_builder", 1, {}),
        ("order-router", "services.order_router", 1, {}),
        ("reconciler", "services.reconciler", 1, {"RECON_STATE_DIR": str(layout.run_dir / "reconciler")}),
    ]
    port = layout.metrics_base_port
    for name, module, n, extra in services:
        if not runnable(module):
            continue
        env = {**base, **extra, "METRICS_PORT": str(port)}
        if creds and name in creds:
            env.update(auth.service_env(*creds[name]))
        out.append(Program(name, [py, "-m", module], env=env, numprocs=n, priority=100 + len(out)))
        port += max(n, 1) * 2
    return out


def supervisord_config(layout: StackLayout, progs: list[Program]) -> str:
    lines = [
        "[unix_http_server]",
        f"file={layout.supervisor_sock}",
        "",
        "[supervisord]",
        f"logfile={layout.logs / 'supervisord.log'}",
        f"pidfile={layout.supervisor_pid}",
        f"directory={ROOT}",
        "logfile_maxbytes=10MB",
        "loglevel=info",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{layout.supervisor_sock}",
        "",
    ]
    for p in progs:
        env = ",".join(f'{k}="{v}"' for k, v in sorted(p.env.items()))
        lines += [
            f"[program:{p.name}]",
            "command=" + " ".join(p.command),
            f"directory={ROOT}",
            f"priority={p.priority}",
            "autostart=true",
            "autorestart=true",
            # supervisord waits 1 s, 2 s, 3 s ... between restart attempts (its back-off).
            "startsecs=1",
            "startretries=1000",
            "stopsignal=TERM",
            f"stopwaitsecs={p.stopwaitsecs}",
            "redirect_stderr=true",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=2",
        ]
        if p.numprocs > 1:
            lines += [
                f"numprocs={p.numprocs}",
                "process_name=%(program_name)s-%(process_num)d",
                f"stdout_logfile={layout.logs}/%(program_name)s-%(process_num)d.log",
                "environment=" + (env + "," if env else "") + 'INSTANCE_ID="%(program_name)s-%(process_num)d"',
            ]
        else:
            lines += [
                f"stdout_logfile={layout.logs / (p.name + '.log')}",
                "environment=" + (env + "," if env else "") + f'INSTANCE_ID="{p.name}"',
            ]
        lines.append("")
    return "\n".join(lines)
