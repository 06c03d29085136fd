"""``pdx status``: services and their connection/subscription states, streams, consumer lag,
feed-handler market ownership and the last reconciliation result, in one screen."""

from __future__ import annotations

import collections
import contextlib
import time
from typing import Any

import click
import msgspec
from nats.js import JetStreamContext
from rich.console import Console
from rich.table import Table

from bus.kv import Bucket
from bus.replay import last_per_subject
from bus.streams import STREAMS
from schemas import ReconciliationSummary, to_dict
from services.cli.common import json_option, nats_option, open_bus, run_async
from services.runtime.health import read_health

STALE_AFTER_S = 10.0


async def gather(js: JetStreamContext) -> dict[str, Any]:
    now = time.time_ns()
    services: list[dict[str, Any]] = []
    records, undecodable = await read_health(js)
    for key, h in sorted(records.items()):
        age = (now - h.ts_event) / 1e9
        services.append({**to_dict(h), "age_s": round(age, 1), "stale": age > STALE_AFTER_S, "key": key})
    streams: list[dict[str, Any]] = []
    consumers: list[dict[str, Any]] = []
    for spec in STREAMS:
        try:
            info = await js.stream_info(spec.name)
        except Exception:  # noqa: BLE001 - a missing stream is shown as such
            streams.append({"name": spec.name, "missing": True})
            continue
        st = info.state
        streams.append(
            {
                "name": spec.name,
                "messages": st.messages,
                "bytes": st.bytes,
                "first_seq": st.first_seq,
                "last_seq": st.last_seq,
                "consumers": st.consumer_count,
            }
        )
        if st.consumer_count:
            for ci in await js.consumers_info(spec.name):
                if not ci.config.durable_name:
                    continue
                consumers.append(
                    {
                        "stream": spec.name,
                        "name": ci.name,
                        "pending": ci.num_pending,
                        "ack_pending": ci.num_ack_pending,
                        "redelivered": ci.num_redelivered,
                        "waiting": ci.num_waiting,
                    }
                )
    owners: dict[str, list[str]] = collections.defaultdict(list)
    try:
        leases = await Bucket.open(js, "leases")
        for market, raw in (await leases.items()).items():
            owner = raw.decode(errors="replace")
            with contextlib.suppress(msgspec.DecodeError, UnicodeDecodeError):  # then shown as raw text
                obj = msgspec.json.decode(raw) if raw[:1] == b"{" else msgspec.msgpack.decode(raw)
                owner = str(obj.get("owner", owner)) if isinstance(obj, dict) else owner
            owners[owner].append(market)
    except Exception:  # noqa: BLE001 - no leases bucket yet
        pass
    recon: list[dict[str, Any]] = []
    try:
        for subject, ev in (await last_per_subject(js, "exec.paradex.*.report.reconciliation")).items():
            if isinstance(ev, ReconciliationSummary):
                recon.append({"subject": subject, **to_dict(ev)})
    except Exception:  # noqa: BLE001 - EXEC not provisioned yet
        pass
    return {
        "services": services,
        "undecodable_health_records": undecodable,
        "streams": streams,
        "consumers": consumers,
        "ownership": {k: sorted(v) for k, v in owners.items()},
        "reconciliation": recon,
    }


def _subs_summary(subs: dict[str, str]) -> str:
    if not subs:
        return "-"
    counts = collections.Counter(subs.values())
    return ", ".join(f"{n} {state}" for state, n in counts.most_common())


def render(data: dict[str, Any], console: Console) -> None:
    if data.get("undecodable_health_records"):
        console.print(f"[red]{data['undecodable_health_records']} health records could not be decoded[/]")
    t = Table(title="services", title_justify="left")
    for col in ("service", "instance", "state", "age", "subscriptions", "details"):
        t.add_column(col)
    if not data["services"]:
        t.add_row("-", "-", "no service has reported health yet", "", "", "")
    for sv in data["services"]:
        state = sv["state"]
        style = (
            "red"
            if sv["stale"] or state in ("Degraded", "Disconnected", "Stopped")
            else ("yellow" if state in ("Reconnecting", "Connecting", "Starting") else "green")
        )
        details = ", ".join(f"{k}={v}" for k, v in sorted(sv["details"].items()))
        t.add_row(
            sv["service"],
            sv["instance"],
            f"[{style}]{state}{' (stale)' if sv['stale'] else ''}[/]",
            f"{sv['age_s']}s",
            _subs_summary(sv["subscriptions"]),
            details[:80],
        )
    console.print(t)
    t = Table(title="streams", title_justify="left")
    for col in ("stream", "messages", "bytes", "first seq", "last seq", "consumers"):
        t.add_column(col, justify="right" if col != "stream" else "left")
    for st in data["streams"]:
        if st.get("missing"):
            t.add_row(st["name"], "[red]missing[/]", "", "", "", "")
        else:
            t.add_row(
                st["name"],
                str(st["messages"]),
                _bytes(st["bytes"]),
                str(st["first_seq"]),
                str(st["last_seq"]),
                str(st["consumers"]),
            )
    console.print(t)
    if data["consumers"]:
        t = Table(title="consumer lag", title_justify="left")
        for col in ("stream", "consumer", "pending", "ack pending", "redelivered", "waiting"):
            t.add_column(col)
        for c in data["consumers"]:
            lag_style = "red" if c["pending"] > 1000 else "green"
            t.add_row(
                c["stream"],
                c["name"],
                f"[{lag_style}]{c['pending']}[/]",
                str(c["ack_pending"]),
                str(c["redelivered"]),
                str(c["waiting"]),
            )
        console.print(t)
    if data["ownership"]:
        t = Table(title="feed-handler market ownership", title_justify="left")
        t.add_column("owner")
        t.add_column("markets")
        for owner, markets in sorted(data["ownership"].items()):
            t.add_row(owner, f"{len(markets)}: " + ", ".join(markets[:8]) + (" …" if len(markets) > 8 else ""))
        console.print(t)
    for r in data["reconciliation"]:
        ok = "[green]ok[/]" if r["ok"] else "[red]UNRESOLVED[/]"
        counts = ", ".join(f"{k}={v}" for k, v in sorted(r["counts"].items()))
        console.print(f"last reconciliation ({r['account_id']}, {r['trigger']}): {ok} {counts}")


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} TiB"


@click.command("status")
@json_option
@nats_option
@run_async
async def command(as_json: bool, nats_url: str | None) -> None:
    """Show services, connection and subscription states, streams, consumer lag and ownership."""
    nc, js = await open_bus(nats_url, "pdx-status")
    try:
        data = await gather(js)
    finally:
        await nc.close()
    if as_json:
        click.echo(msgspec.json.encode(data).decode())
    else:
        render(data, Console())
