"""``pdx chaos [--duration S] [--seed N] [--cluster] [--faults LIST] [--json]``: a whole-system chaos
run with the invariant checker (``services.chaos``); ``make chaos`` runs the 5-minute version.

It starts its own stack (real processes, free ports, a temporary directory -- it never touches the
``make up`` stack), trades through the bus while a seeded schedule of faults is applied, lets the
system converge, then compares the bus with the simulator's ground truth. Exit code 0 when every
invariant holds and nothing crashed; 1 otherwise (the logs directory is kept and printed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from services.cli.common import CliError, run_async


@click.command("chaos")
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds of faults.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the fault schedule and workload.")
@click.option("--cluster", is_flag=True, help="A 3-node JetStream cluster (R3 streams) with a stream-leader kill.")
@click.option(
    "--faults",
    default="",
    metavar="LIST",
    help="Comma-separated fault kinds (default: all): kill, term, ws_drop, stale, seq_gap, seq_dup, "
    "private_drop, private_dup, lost_reply, rest_error, rest_timeout, rate_limit, venue_state, outside_order, "
    "nats_restart, leader_kill.",
)
@click.option("--quiet", type=float, default=16.0, show_default=True, help="Seconds to converge after the faults.")
@click.option("--flow-rate", type=float, default=20.0, show_default=True, help="Simulator background flow (events/s).")
@click.option("--rate", "workload_rate", type=float, default=3.0, show_default=True, help="Workload actions/s.")
@click.option("--keep", is_flag=True, help="Keep the run directory (logs, NATS stores) even when the run passes.")
@click.option(
    "--dir",
    "base_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory (default: a new temporary directory).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as one JSON object.")
@run_async
async def command(
    duration: float,
    seed: int,
    cluster: bool,
    faults: str,
    quiet: float,
    flow_rate: float,
    workload_rate: float,
    keep: bool,
    base_dir: Path | None,
    as_json: bool,
) -> None:
    """Kill, stop and disturb every part of a private stack while it trades; then prove nothing was
    lost or doubled (trades, books, orders, fills, commands, positions, balance)."""
    from services.chaos.faults import ALL_KINDS
    from services.chaos.report import render
    from services.chaos.runner import ChaosConfig, run_chaos

    kinds = tuple(k.strip() for k in faults.split(",") if k.strip()) or ALL_KINDS
    unknown = sorted(set(kinds) - set(ALL_KINDS))
    if unknown:
        raise CliError(f"unknown fault kind(s) {', '.join(unknown)}; choose from {', '.join(ALL_KINDS)}")
    if "leader_kill" in kinds and not cluster and faults:
        raise CliError("leader_kill needs --cluster (a single server has no stream leader to lose)")
    if duration < 10:
        raise CliError("--duration must be at least 10 seconds")
    cfg = ChaosConfig(
        duration=duration,
        seed=seed,
        cluster=cluster,
        faults=kinds,
        quiet=quiet,
        flow_rate=flow_rate,
        workload_rate=workload_rate,
        keep=keep,
        base_dir=base_dir,
    )

    def progress(line: str) -> None:
        click.echo(line, err=as_json)

    result = await run_chaos(cfg, progress)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), default=str) + "\n")
    else:
        click.echo(render(result))
    if not result.ok:
        sys.exit(1)
