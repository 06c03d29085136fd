"""Printing a ``ChaosResult``: the schedule, recovery times, publish stalls, counters, the verdict.

Plain text (it goes to terminals and CI logs alike); ``--json`` prints ``ChaosResult.to_dict()``.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict

from services.chaos.runner import ChaosResult

# Counters worth reading after a chaos run: everything that counts a problem, a repair or a retry.
INTERESTING = re.compile(
    r"problems_total|dup|retr|drop|reject|gap|resync|backfill|reconnect|connects|malformed|undecod|redeliver|"
    r"correct|unknown|stale|overflow|timeout|fail|invalid|inferred|lost|refus|gave_up|error",
    re.I,
)


def recovery_summary(result: ChaosResult) -> dict[tuple[str, str], list[float]]:
    """``{(fault kind[/service], measure): [seconds, ...]}`` over the schedule."""
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for ev in result.schedule:
        kind = ev.kind
        if kind in ("kill", "term"):
            kind = f"{kind} {ev.target.rsplit('-', 1)[0]}"
        for measure, value in ev.recovery.items():
            out[(kind, measure)].append(value)
    return dict(out)


def _fmt_s(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def render(result: ChaosResult, *, max_violations: int = 12) -> str:
    cfg = result.config
    lines: list[str] = []
    lines.append("=" * 100)
    lines.append(
        f"pdx chaos: {'PASS' if result.ok else 'FAIL'} -- {cfg.duration:.0f} s of faults, seed {cfg.seed}, "
        f"{'3-node JetStream cluster (R3)' if cfg.cluster else 'single NATS server'}, account {result.account or '?'}"
    )
    t = result.timings
    lines.append(
        f"startup {t.get('startup', 0):.1f} s, total {t.get('total', 0):.1f} s, invariant checks "
        f"{result.check_attempts}"
        + (
            f", converged {result.converged_after_s:.1f} s after the quiet period"
            if result.converged_after_s is not None
            else ""
        )
    )
    lines.append(f"logs and stores: {result.base_dir}" + ("" if result.ok else " (kept)"))
    lines.append("")
    lines.append("schedule (t = seconds into the fault phase):")
    for ev in result.schedule:
        rec = " ".join(f"{k}={v:.2f}s" for k, v in ev.recovery.items())
        extra = " ".join(f"{k}={v}" for k, v in ev.params.items() if k not in ("wall_ns",))
        line = f"  t={ev.at:6.1f}  {ev.kind:<13} {ev.target:<22} {extra}"
        if ev.detail:
            line += f"  | {ev.detail}"
        if rec:
            line += f"  | recovery {rec}"
        if ev.recovery_note:
            line += f"  | {ev.recovery_note}"
        if ev.error:
            line += f"  | ERROR {ev.error}"
        lines.append(line)
    summary = recovery_summary(result)
    if summary:
        lines.append("")
        lines.append("recovery times (seconds; one value, or min / median / max):")
        for (kind, measure), values in sorted(summary.items()):
            lines.append(f"  {kind:<24} {measure:<18} {_fmt_s(values):<22} (n={len(values)})")
    if result.stream_stalls or result.probe:
        lines.append("")
        lines.append("publish stall during NATS faults (longest gap between acknowledged/stored messages):")
        for ev in result.schedule:
            if ev.kind in ("nats_restart", "leader_kill") and "publish_stall" in ev.recovery:
                lines.append(
                    f"  {ev.kind} {ev.target}: probe producer {ev.recovery['publish_stall']:.2f} s"
                    + (f", new EXEC leader after {ev.recovery['election']:.2f} s" if "election" in ev.recovery else "")
                    + (f", streams led: {ev.params.get('streams_led')}" if ev.params.get("streams_led") else "")
                )
        for row in result.stream_stalls:
            lines.append(f"  {row['fault']}: MD gap {row.get('MD')} s, EXEC gap {row.get('EXEC')} s")
        if result.probe:
            p = result.probe
            lines.append(
                f"  probe: {p.get('acked')} acked, {p.get('errors')} failed attempts retried with the same Msg-Id "
                f"{p.get('error_kinds')}, {p.get('duplicates')} deduplicated; stream check: "
                + ("exactly 1..N" if not p.get("problems") else "; ".join(p["problems"]))
            )
    if result.counters:
        lines.append("")
        lines.append("counters (ServiceHealth, summed over instances and restarts; problems, repairs, retries):")
        for service, counters in sorted(result.counters.items()):
            shown = {k: v for k, v in counters.items() if v and INTERESTING.search(k)}
            if not shown:
                continue
            lines.append(f"  {service}:")
            items = sorted(shown.items())
            for i in range(0, len(items), 3):
                lines.append("    " + "  ".join(f"{k}={v}" for k, v in items[i : i + 3]))
    if result.workload:
        w = result.workload
        lines.append("")
        lines.append(
            f"workload: sent {w.get('sent')}, send retries {w.get('send_retries')}, unconfirmed sends "
            f"{w.get('send_failed')}, EXEC events seen {w.get('events_seen')}"
        )
    lines.append("")
    if result.invariants is not None:
        lines.append(result.invariants.render(max_violations))
    else:
        lines.append("invariants: not checked")
    problems = result.problems
    if problems:
        lines.append("")
        lines.append("run problems:")
        for p in problems:
            lines.append(f"  - {p}")
        for ex in result.unexpected_exits:
            tail = "\n".join(ex.get("log_tail", "").splitlines()[-12:])
            lines.append(f"  last log lines of {ex['instance']} (pid {ex['pid']}):\n" + _indent(tail, 6))
    lines.append("=" * 100)
    return "\n".join(lines)


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line for line in text.splitlines())
