"""``make up`` end to end: supervisord + NATS + whichever services exist, on free ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bus.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack_env(tmp_path: Path):
    env = {
        **os.environ,
        "PDX_RUN_DIR": str(tmp_path / "run"),
        "PDX_NATS_PORT": str(free_port()),
        "PDX_NATS_HTTP_PORT": str(free_port()),
        "SIM_REST_PORT": str(free_port()),
        "SIM_WS_PORT": str(free_port()),
        "SIM_ADMIN_PORT": str(free_port()),
        "PDX_METRICS_BASE_PORT": str(free_port()),
        "PDX_FEED_HANDLERS": "1",
    }
    env["NATS_URL"] = f"nats://127.0.0.1:{env['PDX_NATS_PORT']}"
    yield env
    subprocess.run(
        [sys.executable, "-m", "services.stack", "down"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_make_up_brings_up_nats_and_supervisor(stack_env) -> None:
    started = time.monotonic()
    up = subprocess.run(
        [sys.executable, "-m", "services.stack", "up"],
        env=stack_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert up.returncode == 0, up.stdout + up.stderr
    assert "nats" in up.stdout and "RUNNING" in up.stdout
    assert "pdx status" in up.stdout  # tells the user what to run next
    assert elapsed < 60, f"make up took {elapsed:.1f}s"
    print(f"make up took {elapsed:.1f} s")
    status = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "status", "--json"],
        env=stack_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert {s["name"] for s in data["streams"]} == {"MD", "BOOK", "REF", "CMD", "EXEC", "AUDIT"}
    assert not any(s.get("missing") for s in data["streams"])
    again = subprocess.run(
        [sys.executable, "-m", "services.stack", "up"],
        env=stack_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "already running" in again.stdout
    down = subprocess.run(
        [sys.executable, "-m", "services.stack", "down"],
        env=stack_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "stopped" in down.stdout
