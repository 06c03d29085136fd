"""``pdx bench [--quick] [--only NAME]``: run the benchmark suite (bench/harness.py) with a progress bar."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markdown import Markdown
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from services.cli.common import ROOT, CliError


@click.command("bench")
@click.option("--quick", is_flag=True, help="A short smoke run (under 2 minutes) instead of the full suite.")
@click.option("--only", multiple=True, help="Run only these benchmarks (bus, signer, book, feed, orders, ...).")
def command(quick: bool, only: tuple[str, ...]) -> None:
    """Run every benchmark with fixed seeds; write bench/results/<timestamp>/ and print the table."""
    sys.path.insert(0, str(ROOT))
    try:
        from bench import harness
    except ImportError as exc:
        raise CliError(f"cannot import bench/harness.py from {ROOT}: {exc}") from None
    unknown = set(only) - {n for n, _ in harness.BENCHES}
    if unknown:
        raise CliError(f"unknown benchmark(s) {sorted(unknown)}; choose from {[n for n, _ in harness.BENCHES]}")
    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("benchmarks", total=1)

        def tick(done: int, total: int, name: str) -> None:
            progress.update(task, total=total, completed=done, description=f"bench: {name}")

        out_dir, results = harness.run_all(quick, list(only) or None, tick)
    md = (Path(out_dir) / "results.md").read_text()
    Console().print(Markdown(md))
    click.echo(f"\nresults: {out_dir}/results.json, results.md and plots")
    failed = [r["bench"] for r in results if r.get("status") == "failed"]
    if failed:
        raise CliError(f"benchmark(s) failed: {', '.join(failed)} (see {out_dir}/<name>.log)")
