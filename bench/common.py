"""Helpers shared by the benchmarks written for ``make bench`` (pipeline, recovery, resources).

What lives here: percentiles and latency summaries, the harness's table row, real OS processes
for the services (optionally under pyinstrument), the simulator as a process, waiting for a
service's ``ServiceHealth``, per-process CPU/RSS sampling with psutil, the time budget the harness
hands each benchmark (``PDX_BENCH_BUDGET_S``), and the common ``--quick/--json/--profile`` command
line with JSON output. Nothing here measures anything by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from schemas import ServiceHealth, decode  # noqa: E402

BUDGET_ENV = "PDX_BENCH_BUDGET_S"


# -- numbers ---------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def lat_stats(ms: list[float]) -> dict[str, float]:
    """n, p50, p90, p99, p99.9 and max of latencies in ms (rounded to µs)."""
    s = sorted(ms)
    out: dict[str, float] = {"n": len(s)}
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
        out[name] = round(pct(s, q), 3)
    out["max"] = round(s[-1], 3) if s else float("nan")
    return out


def thin(values: list[float], n: int = 5000) -> list[float]:
    """At most ``n`` evenly spaced samples (for the CDF plots), rounded to µs."""
    step = max(1, len(values) // n)
    return [round(v, 3) for v in values[::step]]


def row(measurement: str, unit: str, value: float | None, baseline_name: str, baseline: float | None,
        goal: str, *, lower_is_better: bool = False) -> dict[str, Any]:
    """One line of the harness table. ``ratio`` = value / baseline (NaN without a baseline).

    ``lower_is_better`` is recorded so a reader knows which way a ratio is good (latency, seconds,
    MB) without guessing from the unit."""
    ok = isinstance(value, int | float) and isinstance(baseline, int | float) and baseline
    return {
        "measurement": measurement,
        "unit": unit,
        "value": value,
        "baseline_name": baseline_name,
        "baseline": baseline,
        "ratio": (value / baseline) if ok else float("nan"),  # type: ignore[operator]
        "goal": goal,
        "lower_is_better": lower_is_better,
    }


def budget(default: float) -> float:
    """Seconds this benchmark may take (the harness sets ``PDX_BENCH_BUDGET_S``)."""
    try:
        return float(os.environ.get(BUDGET_ENV, "") or default)
    except ValueError:
        return default


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


# -- processes -------------------------------------------------------------------------------------


def base_env(**extra: str) -> dict[str, str]:
    """The environment every service process of a benchmark gets: quiet logs, fast health."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
        "HEALTH_INTERVAL": "0.5",
        "METRICS_PORT": "0",
        **extra,
    }


@dataclass
class Service:
    """One service as a real OS process: ``start`` (again after a kill), ``kill`` (SIGKILL: a
    crash), ``term`` (graceful). With ``profile`` set (a ``.pyisession`` path) it runs under
    pyinstrument, which saves its session there when the process exits after SIGTERM;
    ``render_profiles`` turns the sessions into text."""

    name: str
    module: str
    env: dict[str, str]
    log: Path
    profile: Path | None = None
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> Service:
        self.starts += 1
        out = open(self.log, "ab")  # noqa: SIM115 - owned by the child
        out.write(f"\n=== start {self.starts} at {time.time():.3f}\n".encode())
        out.flush()
        prefix: list[str] = []
        if self.profile is not None:
            prefix = ["-m", "pyinstrument", "-r", "session", "-o", str(self.profile)]
        self.proc = subprocess.Popen(
            [sys.executable, *prefix, "-m", self.module, *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def term(self, timeout: float = 20.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def stop_all(services: list[Service], timeout: float = 20.0) -> None:
    """SIGTERM every live service at once, then wait (kill what does not exit)."""
    live = [s for s in services if s.alive()]
    for s in live:
        assert s.proc is not None
        with contextlib.suppress(ProcessLookupError):
            s.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for s in live:
        assert s.proc is not None
        try:
            s.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait(10)


async def guarded(aw: Coroutine[Any, Any, Any], services: list[Service], what: str) -> Any:
    """Await ``aw`` but fail at once (with the log tail) if one of ``services`` dies meanwhile."""
    task = asyncio.ensure_future(aw)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.2)
            if done:
                return task.result()
            for svc in services:
                if not svc.alive():
                    raise RuntimeError(f"{svc.name} exited while waiting for {what}; log tail:\n{svc.log_tail()}")
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# -- health ----------------------------------------------------------------------------------------


class HealthWatch:
    """The latest ``ServiceHealth`` of every instance (``svc.*.*.health``), updated as they arrive."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.latest: dict[tuple[str, str], ServiceHealth] = {}
        self.arrived: dict[tuple[str, str], float] = {}
        self._sub: Any = None
        self._changed = asyncio.Event()

    async def start(self) -> HealthWatch:
        self._sub = await self.nc.subscribe("svc.*.*.health", cb=self._on)
        return self

    async def _on(self, msg: Any) -> None:
        try:
            h = decode(msg.data)
        except Exception:  # noqa: BLE001 - not ours to judge; ignore what is not a health message
            return
        if isinstance(h, ServiceHealth):
            key = (h.service, h.instance)
            self.latest[key] = h
            self.arrived[key] = time.monotonic()
            self._changed.set()

    async def wait(self, service: str, cond: Callable[[ServiceHealth], bool], timeout: float,
                   instance: str | None = None, after: float = 0.0) -> ServiceHealth:
        """The first health of ``service`` (``instance``) arriving after ``after`` (monotonic)
        that satisfies ``cond``."""
        deadline = time.monotonic() + timeout
        while True:
            for (svc, inst), h in list(self.latest.items()):
                if svc == service and (instance is None or inst == instance) and self.arrived[(svc, inst)] >= after \
                        and cond(h):
                    return h
            left = deadline - time.monotonic()
            if left <= 0:
                seen = {k: v.state for k, v in self.latest.items() if k[0] == service}
                raise TimeoutError(f"{service}/{instance or '*'}: condition not met in {timeout}s; seen {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()


# -- resources -------------------------------------------------------------------------------------


class ProcSampler:
    """CPU % (of one core) and RSS of named processes, sampled every ``interval`` s in a thread.

    ``mark(label)`` starts a new phase; ``summary()`` gives mean/peak CPU and mean/peak RSS per
    process per phase. A process that is gone is skipped (and can be re-attached with ``attach``)."""

    def __init__(self, pids: dict[str, int], interval: float = 0.5) -> None:
        self.interval = interval
        self.procs: dict[str, psutil.Process] = {}
        for name, pid in pids.items():
            self.attach(name, pid)
        self.phase = "start"
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0 = time.monotonic()

    def attach(self, name: str, pid: int) -> None:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            p.cpu_percent(None)
            self.procs[name] = p

    def mark(self, phase: str) -> None:
        self.phase = phase
        for p in self.procs.values():
            with contextlib.suppress(psutil.Error):
                p.cpu_percent(None)

    def start(self) -> ProcSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            t = time.monotonic() - self.t0
            phase = self.phase
            for name, p in list(self.procs.items()):
                try:
                    with p.oneshot():
                        cpu = p.cpu_percent(None)
                        rss = p.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                self.samples.append({"t": round(t, 2), "phase": phase, "proc": name, "cpu": cpu, "rss_mib": rss})

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        out: dict[str, dict[str, dict[str, float]]] = {}
        for s in self.samples:
            d = out.setdefault(s["phase"], {}).setdefault(s["proc"], {"cpu": [], "rss": []})  # type: ignore[dict-item]
            d["cpu"].append(s["cpu"])  # type: ignore[attr-defined]
            d["rss"].append(s["rss_mib"])  # type: ignore[attr-defined]
        res: dict[str, dict[str, dict[str, float]]] = {}
        for phase, procs in out.items():
            res[phase] = {}
            for name, d in procs.items():
                cpu, rss = d["cpu"], d["rss"]
                # The first sample of a phase straddles the previous one; skip it when there are more.
                cpu_ = cpu[1:] if len(cpu) > 2 else cpu  # type: ignore[index]
                res[phase][name] = {
                    "cpu_mean": round(sum(cpu_) / len(cpu_), 1),  # type: ignore[arg-type]
                    "cpu_peak": round(max(cpu_), 1),  # type: ignore[type-var]
                    "rss_mean_mib": round(sum(rss) / len(rss), 1),  # type: ignore[arg-type]
                    "rss_peak_mib": round(max(rss), 1),  # type: ignore[type-var]
                    "samples": len(cpu),  # type: ignore[arg-type]
                }
        return res


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 when it is gone)."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


# -- profiles --------------------------------------------------------------------------------------

IDLE_FRAMES = {("Runner.run", "asyncio/runners.py"), ("select", "selectors.py")}


def _package(path: str) -> str:
    """Who owns a frame: the top-level package of its file (``nats``, ``services``, ``<built-in>``)."""
    if path.startswith("<"):
        return path
    head = path.split("/", 1)[0]
    return head[:-3] if head.endswith(".py") else head


def profile_summary(session_path: Path, top: int = 15) -> dict[str, Any]:
    """Self time per function of a pyinstrument session, as a share of the time the process was busy.

    pyinstrument samples wall time; the time uvloop's loop (C code) spent waiting shows up as the
    self time of ``Runner.run`` in ``asyncio/runners.py``, which is left out of the shares (it
    also holds the loop's own C work, so "busy" slightly undercounts)."""
    from pyinstrument.session import Session

    session = Session.load(str(session_path))
    root = session.root_frame()
    own: dict[tuple[str, str], float] = {}

    def walk(frame: Any, parent: Any) -> None:
        host = parent if (frame.is_synthetic_leaf and parent is not None) else frame
        self_time = frame.time - sum(c.time for c in frame.children)
        name = f"{host.class_name}.{host.function}" if host.class_name else host.function
        key = (name, _short(host.file_path or ""))
        own[key] = own.get(key, 0.0) + max(0.0, self_time)
        for child in frame.children:
            walk(child, frame)

    if root is not None:
        walk(root, None)
    idle = sum(v for k, v in own.items() if any(k[0].endswith(f) and k[1].endswith(p) for f, p in IDLE_FRAMES))
    busy = max(1e-9, sum(own.values()) - idle)
    rows = sorted(((v, k) for k, v in own.items() if v > 0), reverse=True)
    frames = []
    for v, (fn, path) in rows:
        if any(fn.endswith(f) and path.endswith(p) for f, p in IDLE_FRAMES):
            continue
        frames.append({"function": fn, "file": path, "self_s": round(v, 3), "share": round(v / busy, 4)})
        if len(frames) >= top:
            break
    packages: dict[str, float] = {}
    for (fn, path), v in own.items():
        if not any(fn.endswith(f) and path.endswith(p) for f, p in IDLE_FRAMES):
            packages[_package(path)] = packages.get(_package(path), 0.0) + v
    return {
        "duration_s": round(session.duration, 2),
        "cpu_time_s": round(session.cpu_time, 2),
        "idle_s": round(idle, 2),
        "busy_s": round(busy, 2),
        "top_self": frames,
        "by_package": {k: round(v / busy, 4) for k, v in sorted(packages.items(), key=lambda kv: -kv[1])[:12]},
    }


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def render_profiles(directory: Path) -> dict[str, Any]:
    """For each ``*.pyisession`` in ``directory``: a call tree (``.txt``), the flat self-time list
    (``-flat.txt``) and a summary (returned, keyed by file stem)."""
    from pyinstrument.renderers import ConsoleRenderer
    from pyinstrument.session import Session

    out: dict[str, Any] = {}
    for path in sorted(directory.glob("*.pyisession")):
        try:
            session = Session.load(str(path))
            path.with_suffix(".txt").write_text(ConsoleRenderer(show_all=False).render(session))
            path.with_name(path.stem + "-flat.txt").write_text(ConsoleRenderer(flat=True).render(session))
            out[path.stem] = profile_summary(path)
        except Exception as exc:  # noqa: BLE001 - a broken profile must not lose the benchmark's numbers
            out[path.stem] = {"error": repr(exc)}
    return out


# -- command line ----------------------------------------------------------------------------------


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the short smoke-test sizes")
    p.add_argument("--json", dest="json_path", default=None, help="write the results (harness document) here")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="run the hot service processes under pyinstrument; text reports in DIR")
    return p


def run_main(args: argparse.Namespace, coro: Coroutine[Any, Any, dict[str, Any]],
             print_table: Callable[[dict[str, Any]], None]) -> None:
    """Run the benchmark's coroutine with uvloop, print its table, write its JSON."""
    import uvloop

    res = uvloop.run(coro)
    print_table(res)
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(res, indent=2, default=str))
        print(f"wrote {args.json_path}")


def print_rows(title: str, table: list[dict[str, Any]]) -> None:
    print(title)
    print(f"{'measurement':62} {'value':>12} {'unit':8} {'baseline':>12} {'ratio':>7}  goal")
    for r in table:
        v = r["value"]
        b = r["baseline"]
        vs = f"{v:,.2f}" if isinstance(v, int | float) else str(v)
        bs = f"{b:,.2f}" if isinstance(b, int | float) and b else ""
        ratio = r["ratio"]
        rs = f"{ratio:.2f}" if isinstance(ratio, float) and ratio == ratio else ""
        print(f"{r['measurement'][:62]:62} {vs:>12} {r['unit']:8} {bs:>12} {rs:>7}  {r['goal']}"
              + (f"  [{r['baseline_name']}]" if r["baseline_name"] and r["baseline_name"] != "goal" else ""))
