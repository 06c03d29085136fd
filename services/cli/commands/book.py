"""``pdx book <MKT>``: a live L2 ladder in the terminal, built like any consumer would build it:
the book builder's snapshot, then every deltas message after it (``bus.book_client.book_stream``),
plus the last trades, the spread, the venue sequence and how stale the book is."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from decimal import Decimal
from typing import Any

import click
import msgspec
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from bus import subjects
from bus.book_client import BookUnavailable, LocalBook, book_stream, fetch_snapshot
from bus.replay import last_message, last_per_subject
from schemas import TradeTick, decode_as, to_dict
from services.cli.common import CliError, json_option, nats_option, open_bus, run_async


async def known_markets(js: Any) -> list[str]:
    return sorted(s.rsplit(".", 1)[-1] for s in await last_per_subject(js, "ref.paradex.instrument.*", stream="REF"))


async def check_market(js: Any, market: str) -> None:
    try:
        subjects.token(market)
    except subjects.SubjectError:
        raise CliError(f"{market!r} is not a market symbol (like BTC-USD-PERP)") from None
    if await last_message(js, "REF", subjects.instrument(market)) is None:
        known = await known_markets(js)
        hint = (
            f"known markets: {', '.join(known[:12])}{' …' if len(known) > 12 else ''}"
            if known
            else ("no instruments are published yet; is the feed handler running? (pdx status)")
        )
        raise CliError(f"unknown market {market!r}; {hint}")


def ladder(book: LocalBook, depth: int, trades: deque[TradeTick], sequence_note: str = "") -> Group:
    bids, asks = book.depth(depth)
    table = Table(box=None, pad_edge=False, expand=False)
    table.add_column("bid size", justify="right")
    table.add_column("bid", justify="right", style="green")
    table.add_column("ask", justify="left", style="red")
    table.add_column("ask size", justify="left")
    for i in range(max(len(bids), len(asks), 1)):
        b = bids[i] if i < len(bids) else ("", "")
        a = asks[i] if i < len(asks) else ("", "")
        table.add_row(b[1], b[0], a[0], a[1])
    top = book.top()
    if top:
        bid, _, ask, _ = top
        spread = Decimal(ask) - Decimal(bid)
        mid = (Decimal(ask) + Decimal(bid)) / 2
        bps = spread / mid * 10_000 if mid else Decimal(0)
        head = f"{book.market}  spread {spread} ({bps:.2f} bps)"
    else:
        head = f"{book.market}  (one side empty)"
    age = (time.time_ns() - book.ts_event) / 1e9 if book.ts_event else float("nan")
    state = book.state.value if book.valid else f"{book.state.value}: {book.reason}"
    meta = Text(
        f"seq {book.sequence}  md_seq {book.md_stream_seq}  age {age:.1f}s  {state}{sequence_note}",
        style="dim" if book.valid else "bold red",
    )
    trade_lines = Table(box=None, title="last trades", title_justify="left", show_header=False)
    for t in list(trades)[-8:][::-1]:
        colour = "green" if t.aggressor_side == "BUYER" else "red"
        trade_lines.add_row(Text(t.aggressor_side, style=colour), t.size, t.price, t.trade_id)
    return Group(Text(head, style="bold"), meta, table, trade_lines)


class LadderView:
    """Rendered on every refresh, so the book's age keeps ticking even when nothing changes."""

    def __init__(self, depth: int, trades: deque[TradeTick]) -> None:
        self.depth, self.trades = depth, trades
        self.book: LocalBook | None = None

    def __rich__(self) -> Group | Text:
        if self.book is None:
            return Text("waiting for the book snapshot…", style="dim")
        return ladder(self.book, self.depth, self.trades)


def plain_ladder(book: LocalBook, depth: int) -> str:
    bids, asks = book.depth(depth)
    rows = [
        f"{book.market} seq={book.sequence} md_seq={book.md_stream_seq} state={book.state.value}",
        f"{'bid size':>14} {'bid':>14} | {'ask':<14} {'ask size':<14}",
    ]
    for i in range(max(len(bids), len(asks))):
        b = bids[i] if i < len(bids) else ("", "")
        a = asks[i] if i < len(asks) else ("", "")
        rows.append(f"{b[1]:>14} {b[0]:>14} | {a[0]:<14} {a[1]:<14}")
    return "\n".join(rows)


@click.command("book")
@click.argument("market")
@click.option("--depth", type=click.IntRange(1, 500), default=20, show_default=True, help="Levels per side.")
@click.option("--once", is_flag=True, help="Print the current book once and exit.")
@click.option("--timeout", type=float, default=None, help="Stop the live view after this many seconds.")
@json_option
@nats_option
@run_async
async def command(
    market: str, depth: int, once: bool, timeout: float | None, as_json: bool, nats_url: str | None
) -> None:
    """Show MARKET's order book (snapshot service + deltas), live unless --once or --json."""
    market = market.upper()
    nc, js = await open_bus(nats_url, "pdx-book")
    try:
        await check_market(js, market)
        if once or as_json:
            try:
                snap = await fetch_snapshot(nc, market, depth=depth)
            except BookUnavailable:
                raise CliError(f"no book builder answered for {market}; is it running? (pdx status)") from None
            if as_json:
                click.echo(msgspec.json.encode(to_dict(snap)).decode())
            else:
                click.echo(plain_ladder(LocalBook.from_snapshot(snap), depth))
            return
        await live(nc, js, market, depth, timeout)
    finally:
        await nc.close()


async def live(nc: Any, js: Any, market: str, depth: int, timeout: float | None) -> None:
    trades: deque[TradeTick] = deque(maxlen=50)

    async def on_trade(msg: Any) -> None:
        with contextlib.suppress(Exception):  # a malformed trade only means one line less on screen
            trades.append(decode_as(msg.data, TradeTick))

    sub = await nc.subscribe(subjects.md("trades", market), cb=on_trade)
    console = Console()
    stream = book_stream(nc, js, market)
    screen = LadderView(depth, trades)
    try:
        async with asyncio.timeout(timeout):
            with Live(screen, console=console, refresh_per_second=8, transient=False):
                async for upd in stream:
                    screen.book = upd.book
    except BookUnavailable:
        raise CliError(f"no book builder answered for {market}; is it running? (pdx status)") from None
    except TimeoutError:
        pass  # --timeout reached
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await stream.aclose()  # type: ignore[attr-defined]
