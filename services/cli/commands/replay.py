"""``pdx replay <pattern> --from T --to T --out FILE``: export a time range of stored messages to
JSON lines (Nautilus dicts, one per line) or Parquet (one file per message type, since each type
has its own columns)."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import click
import msgspec
from nats.js.errors import NotFoundError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bus.replay import replay
from schemas import DecodeError, to_dict
from services.cli.commands.tail import parse_duration
from services.cli.common import CliError, nats_option, open_bus, run_async

_json = msgspec.json.Encoder()


def parse_time(text: str, now_ns: int) -> int:
    """``now``, a duration ago (``10m``), or an ISO-8601 time (UTC when no zone) -> Unix ns."""
    t = text.strip()
    if t == "now":
        return now_ns
    with contextlib.suppress(click.BadParameter):  # not a duration: try an ISO time below
        return now_ns - int(parse_duration(t) * 1e9)
    try:
        when = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not 'now', a duration like 10m, or an ISO time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1e9)


def write_parquet(out: Path, rows_by_type: dict[str, list[dict[str, Any]]]) -> list[Path]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise CliError("Parquet output needs pyarrow: pip install 'paradex-bus[parquet]' (or use .jsonl)") from None
    written = []
    for kind, rows in sorted(rows_by_type.items()):
        path = out if len(rows_by_type) == 1 else out.with_name(f"{out.stem}.{kind}{out.suffix}")
        # Nested values (book levels, options, info) are kept as JSON text: Parquet needs one
        # schema per column, and the decimal strings stay exact.
        flat = [{k: _json.encode(v).decode() if isinstance(v, dict | list) else v for k, v in r.items()} for r in rows]
        pq.write_table(pa.Table.from_pylist(flat), path)
        written.append(path)
    return written


@click.command("replay")
@click.argument("pattern")
@click.option("--from", "start", required=True, help="Start: ISO time (UTC), a duration ago (10m), or now.")
@click.option("--to", "end", default="now", show_default=True, help="End: ISO time, a duration ago, or now.")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file: .jsonl (JSON lines) or .parquet.",
)
@nats_option
@run_async
async def command(pattern: str, start: str, end: str, out: Path, nats_url: str | None) -> None:
    """Export stored messages on PATTERN between --from and --to (by the time JetStream stored them)."""
    now = time.time_ns()
    try:
        t0, t1 = parse_time(start, now), parse_time(end, now)
    except click.BadParameter as exc:
        raise CliError(str(exc.message)) from None
    if t1 < t0:
        raise CliError("--to is before --from")
    if out.suffix not in (".jsonl", ".json", ".parquet"):
        raise CliError(f"unknown output format {out.suffix!r}; use .jsonl or .parquet")
    nc, js = await open_bus(nats_url, "pdx-replay")
    rows_by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    count = bad = 0
    try:
        try:
            stream = await js.find_stream_name_by_subject(pattern)
        except NotFoundError:
            raise CliError(f"no stream stores {pattern!r}; try md.paradex.>, book.paradex.>, exec.paradex.>") from None
        last_seq = (await js.stream_info(stream)).state.last_seq
        fh = open(out, "w") if out.suffix != ".parquet" else None  # noqa: SIM115, ASYNC230 - a local file, closed in finally
        try:
            with Progress(
                TextColumn("[bold]replay"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[at]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            ) as progress:
                task = progress.add_task("replay", total=None, at="")
                async for m in replay(js, pattern, stream=stream, start_time_ns=t0):
                    if m.timestamp_ns > t1 or m.stream_seq > last_seq:
                        break
                    try:
                        d = to_dict(m.event)
                    except DecodeError:
                        bad += 1
                        continue
                    if fh is not None:
                        fh.write(_json.encode(d).decode())
                        fh.write("\n")
                    else:
                        rows_by_type[d["type"]].append(d)
                    count += 1
                    if count % 1000 == 0:
                        progress.update(task, completed=count, at=f"seq {m.stream_seq}")
        finally:
            if fh is not None:
                fh.close()
    finally:
        await nc.close()
    files = [out] if out.suffix != ".parquet" else write_parquet(out, rows_by_type)
    note = f" ({bad} undecodable messages skipped)" if bad else ""
    click.echo(f"{count} messages -> {', '.join(str(f) for f in files)}{note}", err=True)
