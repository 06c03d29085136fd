"""``pdx reconcile``: ask the reconciler for a run now (``ctl.reconcile.<account>``) and print its
summary: what matched, what was corrected, what is unresolved, REST calls used, duration."""

from __future__ import annotations

import sys
import time

import click
import nats.errors

from bus import subjects
from schemas import DecodeError, ReconcileRequest, ReconciliationSummary, decode, encode, to_json
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

EXIT_UNRESOLVED = 2


def render(sm: ReconciliationSummary) -> None:
    status = click.style("ok", fg="green") if sm.ok else click.style("UNRESOLVED", fg="red")
    click.echo(
        f"reconciliation {status}  account={sm.account_id}  trigger={sm.trigger}  "
        f"rest_calls={sm.rest_calls}  duration={sm.duration_ns / 1e6:.0f} ms  run_id={sm.run_id}"
    )
    groups = {
        "matched": ("orders_matched", "fills_matched", "positions_matched", "balance_matched"),
        "corrected": ("orders_corrected", "fills_emitted", "fills_inferred", "external_orders", "balance_corrected"),
    }
    shown: set[str] = set()
    for title, keys in groups.items():
        parts = [f"{k}={sm.counts[k]}" for k in keys if sm.counts.get(k)]
        shown.update(keys)
        click.echo(f"  {title:<10} {', '.join(parts) if parts else '-'}")
    rest = [f"{k}={v}" for k, v in sorted(sm.counts.items()) if k not in shown and not k.startswith("ms_")]
    if rest:
        click.echo(f"  {'counts':<10} {', '.join(rest)}")
    timing = [f"{k[3:]}={v} ms" for k, v in sm.counts.items() if k.startswith("ms_")]
    if timing:
        click.echo(f"  {'timing':<10} {', '.join(timing)}")
    for item in sm.unresolved:
        click.echo("  " + click.style("unresolved", fg="red") + f" {item}")


@click.command("reconcile")
@account_option
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for the run.")
@json_option
@nats_option
@run_async
async def command(account: str | None, timeout: float, as_json: bool, nats_url: str | None) -> None:
    """Run a reconciliation now and print its summary.

    Exit status 0 when everything matched or was corrected, 2 when the run left unresolved items.
    """
    nc, js = await open_bus(nats_url, "pdx-reconcile")
    try:
        acct = await resolve_account(nc, js, account)
        try:
            subject = subjects.ctl_reconcile(acct)
        except ValueError as exc:
            raise CliError(f"bad account {acct!r}: {exc}") from None
        req = ReconcileRequest(account=acct, reason="operator", requested_by="pdx", ts_init=time.time_ns())
        try:
            reply = await nc.request(subject, encode(req), timeout=timeout)
        except nats.errors.NoRespondersError:
            raise CliError(f"no reconciler serves account {acct}; is it running? (`pdx status`)") from None
        except nats.errors.TimeoutError:
            raise CliError(f"no answer within {timeout:.0f} s; the run may still finish (see `pdx status`)") from None
    finally:
        await nc.close()
    try:
        sm = decode(reply.data)
    except DecodeError as exc:
        raise CliError(f"unreadable reply from the reconciler: {exc}") from None
    if not isinstance(sm, ReconciliationSummary):
        raise CliError(f"unexpected reply {type(sm).__name__} from the reconciler")
    if as_json:
        echo_json_line(to_json(sm))
    else:
        render(sm)
    if not sm.ok:
        sys.exit(EXIT_UNRESOLVED)
