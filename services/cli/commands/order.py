"""``pdx order submit|cancel|cancel-all|list``: orders for people, through the bus.

Commands go to ``CMD`` (the order router executes them) via ``bus.trading``; events come back from
``EXEC``. The account is ``--account`` / ``PARADEX_ACCOUNT``, else the one the signer serves.
Paradex-only types map as ``services.order_router.mapping`` describes (TAKE_PROFIT_LIMIT is a
Nautilus LIMIT_IF_TOUCHED with ``paradex_type`` ...); ``--tif POST_ONLY`` is a post-only GTC order.
"""

from __future__ import annotations

import sys
from decimal import Decimal, InvalidOperation
from typing import Any

import click

import schemas as s
from bus import subjects
from bus.replay import replay
from bus.trading import Trader, TradingTimeout, is_final
from services.cli.common import (
    CliError,
    account_option,
    echo_json_line,
    json_option,
    nats_option,
    open_bus,
    resolve_account,
    run_async,
)
from services.cli.format import clock, summary
from services.execution.projection import OrderView, load

# CLI type -> (Nautilus order type, Paradex type override or None, needs --limit, needs --trigger)
TYPES: dict[str, tuple[str, str | None, bool, bool]] = {
    "LIMIT": ("LIMIT", None, True, False),
    "MARKET": ("MARKET", None, False, False),
    "STOP_LIMIT": ("STOP_LIMIT", None, True, True),
    "STOP_MARKET": ("STOP_MARKET", None, False, True),
    "TAKE_PROFIT_LIMIT": ("LIMIT_IF_TOUCHED", "TAKE_PROFIT_LIMIT", True, True),
    "TAKE_PROFIT_MARKET": ("MARKET_IF_TOUCHED", "TAKE_PROFIT_MARKET", False, True),
    "STOP_LOSS_LIMIT": ("STOP_LIMIT", "STOP_LOSS_LIMIT", True, True),
    "STOP_LOSS_MARKET": ("STOP_MARKET", "STOP_LOSS_MARKET", False, True),
}
_BAD = {"OrderDenied", "OrderRejected", "OrderCancelRejected", "OrderModifyRejected"}


def cli_trader(nc: Any, js: Any, account: str) -> Trader:
    """Commands typed by a person carry the trader/strategy ids ``PDX-CLI`` / ``MANUAL-001``."""
    return Trader(nc, account, js=js, trader_id="PDX-CLI", strategy_id="MANUAL-001")


def _decimal(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise CliError(f"{name} {value!r} is not a number") from None
    if not d.is_finite() or d <= 0:
        raise CliError(f"{name} must be a positive number, got {value!r}")
    return value


def _describe(ev: Any) -> str:
    """The fields of an order event a person looks at first."""
    if isinstance(ev, s.OrderInitialized):
        opts = ev.options
        price = f" @ {opts.price}" if isinstance(opts.price, str) else ""
        trig = f" trigger {opts.trigger_price}" if isinstance(opts.trigger_price, str) else ""
        flags = "".join(f" {f}" for f, on in (("post-only", ev.post_only), ("reduce-only", ev.reduce_only)) if on)
        return (
            f"{ev.client_order_id} {ev.order_side} {ev.quantity} {s.market_of(ev.instrument_id)} "
            f"{ev.order_type}{price}{trig} {ev.time_in_force}{flags}"
        )
    if isinstance(ev, s.OrderFilled):
        return summary(ev)
    parts = [ev.client_order_id]
    for name in ("venue_order_id", "quantity", "price", "trigger_price", "reason"):
        value = getattr(ev, name, None)
        if value:
            parts.append(f"{name}={value}")
    if getattr(ev, "due_post_only", False):
        parts.append("due_post_only")
    return " ".join(parts)


def _print(ev: Any, as_json: bool) -> None:
    if as_json:
        echo_json_line(s.to_json(ev))
        return
    name = type(ev).__name__
    ts = getattr(ev, "ts_event", 0) or getattr(ev, "ts_init", 0)
    colour = "red" if name in _BAD else "cyan"
    click.echo(f"{clock(ts)}  {click.style(name, fg=colour):<20}  {_describe(ev)}")


@click.group("order")
def command() -> None:
    """Submit and cancel orders, and list them (from the EXEC stream)."""


@command.command("submit")
@click.argument("market")
@click.argument("side", type=click.Choice(["buy", "sell"], case_sensitive=False))
@click.argument("size")
@click.option("--limit", "limit_price", default=None, metavar="PRICE", help="Limit price.")
@click.option("--trigger", "trigger_price", default=None, metavar="PRICE", help="Trigger price (stop/TP/SL).")
@click.option(
    "--type",
    "order_type",
    type=click.Choice(list(TYPES), case_sensitive=False),
    default=None,
    help="Order type (default LIMIT with --limit, else MARKET).",
)
@click.option(
    "--tif",
    type=click.Choice(["GTC", "IOC", "POST_ONLY"], case_sensitive=False),
    default="GTC",
    show_default=True,
    help="Time in force; POST_ONLY = a post-only GTC order.",
)
@click.option("--reduce-only", is_flag=True, help="Only reduce the position.")
@click.option("--client-id", default=None, help="Client order id (default: generated).")
@click.option("--wait", is_flag=True, help="Print the order's events until it rests, fills or is rejected.")
@click.option("--timeout", type=float, default=15.0, show_default=True, help="Seconds to wait with --wait.")
@account_option
@json_option
@nats_option
@run_async
async def submit(
    market: str,
    side: str,
    size: str,
    limit_price: str | None,
    trigger_price: str | None,
    order_type: str | None,
    tif: str,
    reduce_only: bool,
    client_id: str | None,
    wait: bool,
    timeout: float,
    account: str | None,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """Submit an order: pdx order submit BTC-USD-PERP buy 0.01 --limit 65000 --wait"""
    _decimal("size", size)
    _decimal("--limit", limit_price)
    _decimal("--trigger", trigger_price)
    kind = (order_type or ("LIMIT" if limit_price else "MARKET")).upper()
    ntype, paradex_type, needs_limit, needs_trigger = TYPES[kind]
    if needs_limit and limit_price is None:
        raise CliError(f"{kind} needs --limit PRICE")
    if not needs_limit and limit_price is not None:
        raise CliError(f"{kind} takes no --limit (use a *_LIMIT type)")
    if needs_trigger and trigger_price is None:
        raise CliError(f"{kind} needs --trigger PRICE")
    if not needs_trigger and trigger_price is not None:
        raise CliError(f"{kind} takes no --trigger (use a stop, take-profit or stop-loss type)")
    tif = tif.upper()
    try:
        subjects.token(market)
        if client_id is not None:
            s.from_dict({**_probe_order(), "client_order_id": client_id})
    except (subjects.SubjectError, s.DecodeError):
        raise CliError("market and --client-id may only contain letters, digits, '-' and '_'") from None
    nc, js = await open_bus(nats_url, "pdx-order")
    try:
        trader = cli_trader(nc, js, await resolve_account(nc, js, account))
        cmd = trader.order(
            market.upper(),
            side.upper(),
            size,
            order_type=ntype,
            price=limit_price,
            trigger_price=trigger_price,
            time_in_force="IOC" if tif == "IOC" else "GTC",
            post_only=tif == "POST_ONLY",
            reduce_only=reduce_only,
            client_order_id=client_id,
            paradex_type=paradex_type,
        )
        coid = cmd.order.client_order_id
        if not wait:
            await trader.send(cmd)
            if as_json:
                echo_json_line(s.to_json(cmd))
            else:
                click.echo(f"submitted {coid} (command {cmd.command_id}); follow it with: pdx order list")
            return
        async with trader.watch(coid) as w:
            await trader.send(cmd)
            try:
                events = await w.wait("rest", timeout, on_event=lambda ev: _print(ev, as_json))
            except TradingTimeout:
                raise CliError(f"{coid}: no final state within {timeout:g} s (the order may still change)") from None
        last = events[-1] if events else None
        if isinstance(last, s.OrderDenied | s.OrderRejected):
            raise CliError(f"{coid} {type(last).__name__[5:].lower()}: {last.reason}")
    finally:
        await nc.close()


def _probe_order() -> dict[str, Any]:
    """A minimal valid OrderInitialized dict, to validate a client order id with the bus schema."""
    return {
        "type": "OrderInitialized",
        "trader_id": "PDX-CLI",
        "strategy_id": "MANUAL-001",
        "instrument_id": "X.PARADEX",
        "order_side": "BUY",
        "order_type": "MARKET",
        "quantity": "1",
        "time_in_force": "GTC",
        "event_id": "00000000-0000-0000-0000-000000000000",
        "ts_init": 0,
        "ts_event": 0,
    }


@command.command("cancel")
@click.argument("client_order_id")
@click.option("--timeout", type=float, default=15.0, show_default=True, help="Seconds to wait for the outcome.")
@account_option
@json_option
@nats_option
@run_async
async def cancel(
    client_order_id: str, timeout: float, account: str | None, as_json: bool, nats_url: str | None
) -> None:
    """Cancel one order by its client order id and print the outcome."""
    nc, js = await open_bus(nats_url, "pdx-order")
    try:
        acct = await resolve_account(nc, js, account)
        try:
            subject = subjects.exec_order(acct, client_order_id)
        except subjects.SubjectError:
            raise CliError(f"{client_order_id!r} is not a client order id") from None
        view = await _order_view(js, subject)
        if view is None:
            raise CliError(f"no order {client_order_id} on the bus for account {acct}")
        if view.is_closed:
            raise CliError(f"{client_order_id} is already {view.status.lower()}")
        trader = Trader(nc, acct, js=js, trader_id="PDX-CLI", strategy_id="MANUAL-001")
        try:
            events = await trader.cancel(
                client_order_id, s.market_of(view.instrument_id), venue_order_id=view.venue_order_id, timeout=timeout
            )
        except TradingTimeout as exc:
            for ev in exc.events:
                _print(ev, as_json)
            raise CliError(f"{client_order_id}: no cancel outcome within {timeout:g} s") from None
        for ev in events:
            _print(ev, as_json)
        rejected = [e for e in events if isinstance(e, s.OrderCancelRejected)]
        if rejected and not is_final(events):
            raise CliError(f"cancel of {client_order_id} rejected: {rejected[-1].reason}")
    finally:
        await nc.close()


async def _order_view(js: Any, subject: str) -> OrderView | None:
    from services.execution.projection import ExecProjection

    proj = ExecProjection()
    async for m in replay(js, subject, stream="EXEC"):
        try:
            proj.apply(m.event, m.stream_seq)
        except s.DecodeError as exc:
            click.echo(f"warning: stored event {m.stream_seq} on {m.subject} is undecodable: {exc}", err=True)
    return next(iter(proj.orders.values()), None)


@command.command("cancel-all")
@click.argument("market", required=False)
@click.option(
    "--side", type=click.Choice(["buy", "sell"], case_sensitive=False), default=None, help="Only orders on this side."
)
@account_option
@json_option
@nats_option
@run_async
async def cancel_all(
    market: str | None, side: str | None, account: str | None, as_json: bool, nats_url: str | None
) -> None:
    """Cancel every open order (of MARKET, or of every market)."""
    nc, js = await open_bus(nats_url, "pdx-order")
    try:
        if market is not None:
            try:
                subjects.token(market)
            except subjects.SubjectError:
                raise CliError(f"{market!r} is not a market symbol") from None
        trader = cli_trader(nc, js, await resolve_account(nc, js, account))
        cmd = await trader.cancel_all(market.upper() if market else None, side)
        if as_json:
            echo_json_line(s.to_json(cmd))
        else:
            click.echo(f"cancel-all sent for {market.upper() if market else 'every market'} (command {cmd.command_id})")
    finally:
        await nc.close()


@command.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include closed orders.")
@account_option
@json_option
@nats_option
@run_async
async def list_orders(show_all: bool, account: str | None, as_json: bool, nats_url: str | None) -> None:
    """Orders of the account as the EXEC stream says (open ones unless --all)."""
    nc, js = await open_bus(nats_url, "pdx-order")
    try:
        acct = await resolve_account(nc, js, account)
        proj = await load(js, acct)
        orders = [o for o in proj.orders.values() if show_all or not o.is_closed]
        orders.sort(key=lambda o: o.ts_last)
        if as_json:
            for o in orders:
                echo_json_line(_order_json(o))
            return
        if not orders:
            click.echo("no open orders" if not show_all else "no orders")
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"orders of {acct[:10]}…{acct[-6:]}" + ("" if show_all else " (open)"))
        columns = ("client order id", "market", "side", "type", "qty", "price", "filled", "status", "venue id", "last")
        for col in columns:
            table.add_column(col, no_wrap=True)
        for o in orders:
            table.add_row(
                o.client_order_id,
                s.market_of(o.instrument_id) if o.instrument_id else "?",
                o.side,
                o.order_type,
                str(o.quantity),
                o.price or (f"trg {o.trigger_price}" if o.trigger_price else "-"),
                str(o.filled_qty),
                o.status,
                o.venue_order_id or "-",
                clock(o.ts_last),
            )
        # Piped output is not cut to 80 columns.
        Console(width=None if sys.stdout.isatty() else 220).print(table)
    finally:
        await nc.close()


def _order_json(o: OrderView) -> str:
    import msgspec

    return msgspec.json.encode(
        {
            "client_order_id": o.client_order_id,
            "instrument_id": o.instrument_id,
            "venue_order_id": o.venue_order_id,
            "side": o.side,
            "order_type": o.order_type,
            "time_in_force": o.time_in_force,
            "quantity": str(o.quantity),
            "price": o.price,
            "trigger_price": o.trigger_price,
            "filled_qty": str(o.filled_qty),
            "avg_px": str(o.avg_px) if o.avg_px is not None else None,
            "status": o.status,
            "post_only": o.post_only,
            "reduce_only": o.reduce_only,
            "reason": o.reason,
            "ts_last": o.ts_last,
        }
    ).decode()
