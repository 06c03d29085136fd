"""``make up`` / ``make down``: start or stop the supervised local stack and say what to run next."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time

from bus import NatsSettings, connect, ensure_streams, jetstream
from bus.embedded import wait_port
from services.runtime.health import read_health
from services.stack.layout import StackLayout
from services.stack.programs import programs, supervisord_config


def _supervisorctl(layout: StackLayout, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "supervisorctl"), "-c", str(layout.supervisor_conf), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _running(layout: StackLayout) -> bool:
    if not layout.supervisor_pid.exists():
        return False
    try:
        os.kill(int(layout.supervisor_pid.read_text().strip()), 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return False
    return True


def _nats_creds(layout: StackLayout) -> tuple[dict[str, tuple[str, str]] | None, dict[str, str]]:
    """Per-service NATS users when ``bus.auth`` is available (``PDX_NATS_AUTH=0`` turns it off)."""
    if os.environ.get("PDX_NATS_AUTH", "1") == "0":
        return None, {}
    try:
        from bus import auth
    except ImportError:
        return None, {}
    return auth.prepare_stack_auth(layout.nats_dir)


def _admin_settings(layout: StackLayout, admin: tuple[str, str] | None) -> NatsSettings:
    return NatsSettings(servers=(layout.nats_url,), user=admin[0] if admin else None,
                        password=admin[1] if admin else None)


async def _provision(layout: StackLayout, admin: tuple[str, str] | None) -> dict[str, str]:
    nc = await connect("pdx-stack", _admin_settings(layout, admin), max_reconnect_attempts=5)
    try:
        return await ensure_streams(jetstream(nc), replicas=1)
    finally:
        await nc.close()


WARMING_UP = ("Starting", "Recovering", "Standby", "Connecting")


async def _wait_healthy(layout: StackLayout, admin: tuple[str, str] | None, services: set[str],
                        timeout: float) -> dict[str, str]:
    """Wait until every service has reported health past its start-up states; ``{service: state}``."""
    nc = await connect("pdx-stack", _admin_settings(layout, admin), max_reconnect_attempts=5)
    states: dict[str, str] = {}
    try:
        js = jetstream(nc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records, _undecodable = await read_health(js)
            for h in records.values():
                states[h.service] = h.state
            if services <= states.keys() and not any(states[sv] in WARMING_UP for sv in services):
                break
            await asyncio.sleep(0.5)
    finally:
        await nc.close()
    return states


def up() -> int:
    layout = StackLayout.from_env()
    for d in (layout.run_dir, layout.logs, layout.nats_dir):
        d.mkdir(parents=True, exist_ok=True)
    if _running(layout):
        print(f"stack already running (supervisord pid {layout.supervisor_pid.read_text().strip()}); `make down` first")
        return 0
    started = time.monotonic()
    creds, _ = _nats_creds(layout)
    progs = programs(layout, creds)
    layout.supervisor_conf.write_text(supervisord_config(layout, progs))
    supervisord = os.path.join(os.path.dirname(sys.executable), "supervisord")
    subprocess.run([supervisord, "-c", str(layout.supervisor_conf)], check=True)
    wait_port("127.0.0.1", layout.nats_port, 30)
    admin = creds.get("admin") if creds else None
    actions = asyncio.run(_provision(layout, admin))
    services = {p.name for p in progs if p.name not in ("nats", "paradex-sim")}
    states = asyncio.run(_wait_healthy(layout, admin, services, 45.0))
    status = _supervisorctl(layout, "status").stdout
    print(status.rstrip())
    print("\nhealth: " + ", ".join(f"{sv}={states.get(sv, 'no report yet')}" for sv in sorted(services)))
    print(f"\nstreams: {', '.join(f'{k}={v}' for k, v in actions.items())}")
    print(f"up in {time.monotonic() - started:.1f} s; logs in {layout.logs}/ (make logs)\n")
    print("next:")
    print("  .venv/bin/pdx status                      # services, subscriptions, streams, lag")
    print("  .venv/bin/pdx tail 'md.paradex.>'          # live market data")
    print("  .venv/bin/pdx book BTC-USD-PERP            # a live order book ladder")
    print("  .venv/bin/pdx order submit BTC-USD-PERP buy 0.01 --limit 60000 --wait")
    print("  make down                                  # stop everything")
    return 0


def down() -> int:
    layout = StackLayout.from_env()
    if not _running(layout):
        print("stack is not running")
        return 0
    out = _supervisorctl(layout, "shutdown")
    print(out.stdout.strip() or out.stderr.strip())
    for _ in range(100):
        if not _running(layout):
            break
        time.sleep(0.2)
    print("stopped" if not _running(layout) else "supervisord still running; check .run/logs/supervisord.log")
    return 0


def status() -> int:
    layout = StackLayout.from_env()
    if not _running(layout):
        print("stack is not running (make up)")
        return 1
    print(_supervisorctl(layout, "status").stdout.rstrip())
    return 0


def kill(program: str) -> int:
    """``kill -9`` one supervised process (a crash, for demos and drills); supervisord restarts it."""
    layout = StackLayout.from_env()
    if not _running(layout):
        print("stack is not running (make up)")
        return 1
    out = _supervisorctl(layout, "pid", program).stdout.strip()
    if not out.isdigit() or out == "0":
        names = [line.split()[0] for line in _supervisorctl(layout, "status").stdout.splitlines() if line.strip()]
        print(f"no running process {program!r}; programs: {', '.join(names)}")
        return 1
    os.kill(int(out), signal.SIGKILL)
    print(f"killed {program} (pid {out}) with SIGKILL; supervisord restarts it")
    return 0


def main() -> None:
    logging.getLogger("bus").setLevel(logging.CRITICAL)
    p = argparse.ArgumentParser(prog="python -m services.stack", description=__doc__)
    p.add_argument("action", choices=["up", "down", "status", "kill"])
    p.add_argument("program", nargs="?", help="for kill: a program name (book-builder, feed-handler:feed-handler-0)")
    a = p.parse_args()
    if a.action == "kill":
        if not a.program:
            p.error("kill needs a program name")
        sys.exit(kill(a.program))
    sys.exit({"up": up, "down": down, "status": status}[a.action]())
