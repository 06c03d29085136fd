"""What every ``pdx`` command shares: connecting to NATS (with the local stack's credentials when
present), one-line errors instead of tracebacks, and colour only on a terminal."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bus import NatsSettings, connect, jetstream

T = TypeVar("T")
log = logging.getLogger("pdx")
ROOT = Path(__file__).resolve().parents[2]


class CliError(click.ClickException):
    """A user-facing error: printed as one line (``error: ...``) with what to do next; exit code 1."""

    def show(self, file: Any = None) -> None:
        click.echo(click.style("error: ", fg="red") + self.message, err=True)


def run_dir() -> Path:
    return Path(os.environ.get("PDX_RUN_DIR", str(ROOT / ".run")))


def local_credentials() -> tuple[str, str] | None:
    """The admin credentials ``make up`` generated, when talking to the local stack."""
    users = run_dir() / "nats" / "users.json"
    if os.environ.get("NATS_USER") or not users.exists():
        return None
    try:
        data = json.loads(users.read_text())
        admin = data.get("admin") or data.get("cli")
        return (admin["user"], admin["password"]) if admin else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def nats_settings(url: str | None) -> NatsSettings:
    s = NatsSettings.from_env()
    if url:
        s = dataclasses.replace(s, servers=tuple(u.strip() for u in url.split(",")))
    if not s.user and not s.token and not s.creds_file:
        creds = local_credentials()
        if creds:
            s = dataclasses.replace(s, user=creds[0], password=creds[1])
    return s


async def open_bus(url: str | None, name: str = "pdx") -> tuple[NATS, JetStreamContext]:
    settings = nats_settings(url)
    try:
        nc = await connect(name, settings, max_reconnect_attempts=1)
    except (nats.errors.NoServersError, OSError, TimeoutError) as exc:
        raise CliError(
            f"cannot reach NATS at {','.join(settings.servers)} ({type(exc).__name__}); "
            "is the stack up? run `make up`, or pass --nats URL / set NATS_URL"
        ) from None
    except nats.errors.Error as exc:
        raise CliError(f"NATS refused the connection: {exc}; check NATS_USER/NATS_PASSWORD") from None
    return nc, jetstream(nc)


def run_async(fn: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Run an async click callback; Ctrl-C exits quietly, unexpected errors become one line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return asyncio.run(fn(*args, **kwargs))
        except KeyboardInterrupt:
            sys.exit(130)
        except click.ClickException:
            raise
        except nats.errors.Error as exc:
            raise CliError(f"NATS: {exc}") from None
        except BrokenPipeError:
            sys.exit(0)

    return wrapper


def nats_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--nats",
        "nats_url",
        envvar="NATS_URL",
        default=None,
        metavar="URL",
        help="NATS server URL(s), comma-separated (default $NATS_URL or nats://127.0.0.1:4222).",
    )(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print Nautilus-dict JSON lines (for jq).")(fn)


def echo_json_line(data: bytes | str) -> None:
    sys.stdout.write(data.decode() if isinstance(data, bytes) else data)
    sys.stdout.write("\n")
    sys.stdout.flush()


def account_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--account",
        envvar="PARADEX_ACCOUNT",
        default=None,
        metavar="ADDRESS",
        help="Account address (default $PARADEX_ACCOUNT, else the account the signer or reconciler serves).",
    )(fn)


async def resolve_account(nc: NATS, js: JetStreamContext, account: str | None) -> str:
    """The account to act on: ``account`` if given, else the one the signer serves (``whoami``),
    else the one the running services report in their health."""
    from bus import subjects
    from services.runtime.health import read_health
    from services.signer.client import SignerClientError, whoami

    if account:
        try:
            return subjects.token(account.lower())
        except subjects.SubjectError:
            raise CliError(f"{account!r} is not an account address (0x...)") from None
    try:
        return (await whoami(nc, timeout=2.0)).account.lower()
    except SignerClientError as exc:
        log.debug("no signer answered whoami (%s); asking the services' health", exc)
    try:
        records, _undecodable = await read_health(js)
    except nats.errors.Error:
        records = {}
    found = {h.details["account"].lower() for h in records.values() if h.details.get("account")}
    if len(found) == 1:
        return found.pop()
    if len(found) > 1:
        raise CliError(f"several accounts are served ({', '.join(sorted(found))}); pass --account")
    raise CliError("no account: pass --account or set PARADEX_ACCOUNT (no signer or service reported one)")
