"""The README's 5-minute tour, run literally line by line against a fresh ``make up`` (on free ports),
with every Python example of ``docs/consumers.md`` executed against the same stack before the
tour's final ``make down``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bus.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]


def tour_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## A 5-minute tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README tour has no bash block"
    return [ln.split("  #", 1)[0].strip() for ln in block.group(1).splitlines() if ln.strip()]


def consumer_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "consumers.md").read_text(), re.S)


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
        "SIM_FLOW_RATE": "40",
    }
    env["NATS_URL"] = f"nats://127.0.0.1:{env['PDX_NATS_PORT']}"
    env.pop("NATS_USER", None)
    env.pop("NATS_PASSWORD", None)
    yield env
    subprocess.run([sys.executable, "-m", "services.stack", "down"], env=env, cwd=ROOT, capture_output=True,
                   timeout=120, check=False)


def run(line: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", line], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_readme_tour_and_consumer_examples(stack_env: dict[str, str]) -> None:
    lines = tour_lines()
    assert lines[0] == "make up" and lines[-1] == "make down"
    outputs: dict[str, str] = {}
    for line in lines[:-1]:
        r = run(line, stack_env)
        assert r.returncode == 0, f"tour step failed: {line}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
        outputs[line] = r.stdout
        print(f"$ {line}  [ok]")
    status = next(v for k, v in outputs.items() if "pdx status" in k)
    for service in ("feed-handler", "book-builder", "order-router", "reconciler", "signer"):
        assert service in status, f"{service} missing from pdx status:\n{status}"
    trades = next(v for k, v in outputs.items() if "--count 5" in k)
    assert trades.count("TradeTick") == 5
    json_lines = next(v for k, v in outputs.items() if "--json" in k)
    assert all(json.loads(x)["type"] for x in json_lines.splitlines())
    order = next(v for k, v in outputs.items() if "order submit" in k)
    assert "OrderAccepted" in order
    after_crash = next(v for k, v in outputs.items() if "--once" in k)
    assert "state=VALID" in after_crash

    users = json.loads((Path(stack_env["PDX_RUN_DIR"]) / "nats" / "users.json").read_text())
    trader_env = {
        **stack_env,
        "NATS_USER": "trader",
        "NATS_PASSWORD": users["trader"]["password"],
        "NATS_INBOX_PREFIX": "_INBOX_trader",
    }
    examples = consumer_examples()
    assert len(examples) >= 5
    for i, code in enumerate(examples):
        r = subprocess.run([sys.executable, "-c", code], env=trader_env, cwd=ROOT, capture_output=True, text=True,
                           timeout=90, check=False)
        assert r.returncode == 0, f"docs/consumers.md example {i + 1} failed:\n{code}\n{r.stdout}\n{r.stderr}"
        assert r.stdout.strip(), f"example {i + 1} printed nothing"
        print(f"docs example {i + 1} [ok]")

    r = run(lines[-1], stack_env)
    assert r.returncode == 0 and "stopped" in r.stdout
