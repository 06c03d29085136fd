"""``pdx account``: the trading account as the bus knows it -- address, balances (the last
AccountState), positions derived from the fills on EXEC next to the venue's own position reports,
and the number of open orders."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.table import Table

from bus import subjects
from bus.replay import last_message, replay, start_seq_for_last
from schemas import AccountState, DecodeError, PositionStatusReport, to_dict
from services.cli.common import account_option, json_option, nats_option, open_bus, resolve_account, run_async
from services.execution.projection import load

_SIDES = {1: "FLAT", 2: "LONG", 3: "SHORT"}


async def venue_positions(js: Any, account: str) -> tuple[dict[str, PositionStatusReport], int]:
    """The newest PositionStatusReport per instrument (from the last 500 reports), and how many
    stored reports could not be decoded."""
    subject = subjects.exec_report(account, "position")
    out: dict[str, PositionStatusReport] = {}
    undecodable = 0
    try:
        start = await start_seq_for_last(js, subject, 500, stream="EXEC")
    except Exception:  # noqa: BLE001 - no EXEC stream yet: no reports
        return out, 0
    async for m in replay(js, subject, stream="EXEC", start_seq=start):
        try:
            ev = m.event
        except DecodeError:
            undecodable += 1
            ev = None
        if isinstance(ev, PositionStatusReport):
            out[ev.instrument_id] = ev
    return out, undecodable


async def gather(js: Any, account: str) -> dict[str, Any]:
    state = await last_message(js, "EXEC", subjects.exec_account(account))
    proj = await load(js, account)
    reports, undecodable = await venue_positions(js, account)
    positions = []
    for iid in sorted(set(proj.positions) | set(reports)):
        mine = proj.positions.get(iid)
        rep = reports.get(iid)
        venue_qty = None
        if rep is not None:
            q = Decimal(rep.quantity)
            venue_qty = -q if rep.position_side == 3 else q
        positions.append(
            {
                "instrument_id": iid,
                "net_qty_from_fills": str(mine.net_qty) if mine else "0",
                "avg_px_open": str(mine.avg_px_open) if mine and mine.net_qty else None,
                "venue_net_qty": str(venue_qty) if venue_qty is not None else None,
                "venue_side": _SIDES.get(int(rep.position_side), "?") if rep else None,
            }
        )
    return {
        "account": account,
        "account_state": to_dict(state) if isinstance(state, AccountState) else None,
        "positions": positions,
        "open_orders": len(proj.open_orders()),
        "orders_known": len(proj.orders),
        "undecodable_messages": undecodable + proj.problems.get("undecodable", 0),
    }


def render(data: dict[str, Any]) -> None:
    console = Console()
    console.print(
        f"[bold]account[/] {data['account']}  open orders: {data['open_orders']} (of {data['orders_known']} known)"
    )
    st = data["account_state"]
    if st:
        t = Table(title="balances", title_justify="left")
        for col in ("currency", "total", "locked", "free"):
            t.add_column(col, justify="right" if col != "currency" else "left")
        for b in st["balances"]:
            t.add_row(b["currency"], b["total"], b["locked"], b["free"])
        console.print(t)
        info = st.get("info") or {}
        extras = {
            k: info[k]
            for k in (
                "account_value",
                "free_collateral",
                "initial_margin_requirement",
                "maintenance_margin_requirement",
                "status",
            )
            if k in info
        }
        if extras:
            console.print("  " + "  ".join(f"{k}={v}" for k, v in extras.items()))
    else:
        console.print("[dim]no AccountState on the bus yet (is the order router running?)[/]")
    if data["positions"]:
        t = Table(title="positions", title_justify="left")
        for col in ("instrument", "net qty (fills on EXEC)", "avg open", "venue net qty"):
            t.add_column(col)
        for p in data["positions"]:
            differs = p["venue_net_qty"] is not None and Decimal(p["venue_net_qty"]) != Decimal(p["net_qty_from_fills"])
            venue = f"[red]{p['venue_net_qty']}[/]" if differs else (p["venue_net_qty"] or "-")
            t.add_row(p["instrument_id"], p["net_qty_from_fills"], p["avg_px_open"] or "-", venue)
        console.print(t)
    else:
        console.print("[dim]no positions[/]")
    if data["undecodable_messages"]:
        console.print(f"[red]{data['undecodable_messages']} stored messages could not be decoded[/]")


@click.command("account")
@account_option
@json_option
@nats_option
@run_async
async def command(account: str | None, as_json: bool, nats_url: str | None) -> None:
    """Show the account's address, balances, positions and open-order count."""
    nc, js = await open_bus(nats_url, "pdx-account")
    try:
        acct = await resolve_account(nc, js, account)
        data = await gather(js, acct)
    finally:
        await nc.close()
    if as_json:
        click.echo(msgspec.json.encode(data).decode())
    else:
        render(data)
