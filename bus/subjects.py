"""Subject names of the bus (DESIGN.md "Subjects"): one builder per family, so no module spells a
subject by hand. Tokens are validated because a ``.``/``*``/``>`` or space inside a market symbol,
account or client order id would silently change which subscribers see a message.
"""

from __future__ import annotations

import re

VENUE = "paradex"

_TOKEN = re.compile(r"^[A-Za-z0-9_\-:+=@#/]+$")

# md.paradex.<channel>.<MKT>
MD_CHANNELS = ("trades", "quotes", "deltas", "mark", "index", "funding", "status")


class SubjectError(ValueError):
    """A subject token contains a character that NATS treats specially."""


def token(value: str) -> str:
    """Return ``value`` if it is a safe single subject token, else raise ``SubjectError``."""
    if not _TOKEN.match(value):
        raise SubjectError(f"{value!r} is not a valid subject token (no dots, spaces, '*' or '>')")
    return value


def md(channel: str, market: str) -> str:
    return f"md.{VENUE}.{channel}.{token(market)}"


def md_all(channel: str = "*") -> str:
    return f"md.{VENUE}.{channel}.>"


def instrument(market: str) -> str:
    return f"ref.{VENUE}.instrument.{token(market)}"


def book_depth10(market: str) -> str:
    return f"book.{VENUE}.depth10.{token(market)}"


def book_quotes(market: str) -> str:
    return f"book.{VENUE}.quotes.{token(market)}"


def book_snapshot(market: str) -> str:
    """Request/reply subject (core NATS, not stored in ``BOOK``)."""
    return f"book.{VENUE}.snapshot.{token(market)}"


def book_status(market: str) -> str:
    """Validity of a built book (valid / invalid with reason), stored in ``BOOK``."""
    return f"book.{VENUE}.status.{token(market)}"


def cmd(account: str, market: str) -> str:
    return f"cmd.{VENUE}.{token(account)}.{token(market)}"


def cmd_all(account: str) -> str:
    return f"cmd.{VENUE}.{token(account)}.>"


def exec_order(account: str, client_order_id: str) -> str:
    return f"exec.{VENUE}.{token(account)}.order.{token(client_order_id)}"


def exec_orders(account: str) -> str:
    return f"exec.{VENUE}.{token(account)}.order.>"


def exec_report(account: str, kind: str) -> str:
    """``kind`` is ``order``, ``fill``, ``position``, ``mass_status`` or ``reconciliation``."""
    return f"exec.{VENUE}.{token(account)}.report.{token(kind)}"


def exec_account(account: str) -> str:
    return f"exec.{VENUE}.{token(account)}.account"


def exec_all(account: str = "*") -> str:
    return f"exec.{VENUE}.{account}.>"


def signer(account: str, op: str) -> str:
    """``op`` is ``order``, ``modify``, ``auth``, ``onboarding`` or ``jwt``."""
    return f"signer.{VENUE}.{token(account)}.{token(op)}"


def audit_signer(account: str) -> str:
    return f"audit.signer.{token(account)}"


def health(service: str, instance: str) -> str:
    return f"svc.{token(service)}.{token(instance)}.health"


def ctl_resync(market: str) -> str:
    return f"ctl.resync.{token(market)}"


def ctl_reconcile(account: str) -> str:
    return f"ctl.reconcile.{token(account)}"


def market_from_subject(subject: str) -> str:
    """The last token, which is the market for ``md.*``, ``book.*`` and ``ref.*`` subjects."""
    return subject.rsplit(".", 1)[-1]
