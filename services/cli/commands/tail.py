"""``pdx tail <pattern>``: decoded bus messages, one per line, from a point in history and/or live."""

from __future__ import annotations

import asyncio
import re
import time

import click
from nats.js.errors import NotFoundError

from bus.replay import replay, start_seq_for_last
from schemas import DecodeError, to_json
from services.cli.common import CliError, echo_json_line, json_option, nats_option, open_bus, run_async
from services.cli.format import line

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    m = _DURATION.match(text.strip())
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 10m, 2h or 1d")
    return float(m.group(1)) * _UNITS[m.group(2)]


@click.command("tail")
@click.argument("pattern")
@click.option("--last", "last_n", type=int, default=None, help="Start with the last N stored messages.")
@click.option("--from-seq", type=int, default=None, help="Start at this stream sequence.")
@click.option(
    "--since",
    default=None,
    help="Start this long ago, e.g. 30s, 10m, 2h.",
    callback=lambda _ctx, _param, v: None if v is None else parse_duration(v),
)
@click.option(
    "--follow/--no-follow", default=True, show_default=True, help="Keep printing new messages after the stored ones."
)
@click.option("--count", type=int, default=None, help="Exit after printing this many messages.")
@click.option("--timeout", type=float, default=None, help="Exit after this many seconds.")
@json_option
@nats_option
@run_async
async def command(
    pattern: str,
    last_n: int | None,
    from_seq: int | None,
    since: str | None,
    follow: bool,
    count: int | None,
    timeout: float | None,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """Print decoded messages on PATTERN (NATS wildcards: `md.paradex.>`, `md.paradex.trades.*`).

    With no start option, only new messages are shown (like `tail -f`).
    """
    if sum(x is not None for x in (last_n, from_seq, since)) > 1:
        raise CliError("use only one of --last, --from-seq, --since")
    nc, js = await open_bus(nats_url, "pdx-tail")
    try:
        try:
            stream = await js.find_stream_name_by_subject(pattern)
        except NotFoundError:
            raise CliError(
                f"no stream stores {pattern!r}; try md.paradex.>, book.paradex.>, ref.paradex.>, "
                "exec.paradex.>, cmd.paradex.> or audit.> (see docs/consumers.md)"
            ) from None
        kwargs: dict[str, object] = {"stream": stream}
        if last_n is not None:
            kwargs["start_seq"] = await start_seq_for_last(js, pattern, last_n, stream=stream)
        elif from_seq is not None:
            kwargs["start_seq"] = from_seq
        elif since is not None:
            kwargs["start_time_ns"] = time.time_ns() - int(since * 1e9)
        else:
            kwargs["new_only"] = True
        stored_only = not follow and "new_only" not in kwargs
        printed = 0
        try:
            async with asyncio.timeout(timeout):
                async for m in replay(js, pattern, follow=not stored_only, **kwargs):  # type: ignore[arg-type]
                    try:
                        ev = m.event
                    except DecodeError as exc:
                        click.echo(f"{m.subject} seq={m.stream_seq}: undecodable: {exc}", err=True)
                        continue
                    if as_json:
                        echo_json_line(to_json(ev))
                    else:
                        click.echo(line(m.subject, ev))
                    printed += 1
                    if count is not None and printed >= count:
                        break
        except TimeoutError:
            pass  # --timeout reached: a normal way to stop following
    finally:
        await nc.close()
