"""Smoke test of ``make bench``: ``pdx bench --quick`` through the real console script.

Runs the whole quick suite (about 1.5 minutes on 2 cores; benches two at a time) into a temporary
results directory and checks that every benchmark ran and reported a table, and that the JSON,
Markdown and plots were written. No timing is asserted: the numbers are for people, not for CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import RESULTS_ENV, SUITE

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_pdx_bench_quick_runs_every_benchmark(tmp_path: Path) -> None:
    pdx = Path(sys.executable).parent / "pdx"
    proc = subprocess.run(
        [str(pdx), "bench", "--quick"],
        cwd=ROOT,
        env={**os.environ, RESULTS_ENV: str(tmp_path), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = (tmp_path / "latest").resolve()
    doc = json.loads((run / "results.json").read_text())
    assert doc["quick"] is True
    assert doc["machine"]["cpu_count"] and doc["machine"]["packages"]
    by_name = {r["bench"]: r for r in doc["results"]}
    assert set(by_name) == {b.name for b in SUITE}
    for name, r in by_name.items():
        assert r["status"] == "ok", f"{name}: {r.get('error', '')[:2000]}"
        assert r["table"], name
        assert all("measurement" in row and "value" in row for row in r["table"]), name
    md = (run / "results.md").read_text()
    assert "| benchmark | measurement | ratio |" in md
    assert list(run.glob("*.png")), "no plots were written"
