"""Bus isolation: one NATS user per service, with publish/subscribe permissions, as an
``authorization { users: [...] }`` block for nats-server (``make up`` and compose).

What the permissions enforce (DESIGN.md "Processes"):

* only ``order-router`` and ``admin`` may publish to ``signer.>`` (ask for signatures); the
  ``reconciler`` may ask for the account's JWT and ``whoami`` only (it reads venue REST truth);
* ``signer`` subscribes to ``signer.paradex.>``, answers requests (``allow_responses``) and publishes
  only ``audit.>`` (plus its health) -- it cannot emit commands, executions or market data;
* ``consumer`` (a downstream strategy, notebook, recorder) reads ``md.>``, ``book.>``, ``exec.>``,
  ``ref.>`` (core subscriptions and JetStream consumers on MD/BOOK/EXEC/REF) and may request book
  snapshots, but cannot publish commands, request signatures, or subscribe to ``cmd.>``,
  ``signer.>``, ``audit.>`` or another user's private reply inbox;
* each service publishes its own data subjects and health only.

JetStream API rights are scoped per stream: every service may provision the project's streams and
buckets (``bus.ensure_streams`` runs at each start: STREAM.INFO/CREATE/UPDATE on those names only,
never DELETE/PURGE) and read/consume the streams it works from; acks go to ``$JS.ACK.<stream>.>``.

Reply inboxes: nats-py's default ``_INBOX.>`` is shared by every user (JetStream API replies need
it), so a user allowed ``_INBOX.>`` could read replies addressed to others. Secrets therefore
travel on private inboxes: each user may also subscribe to ``_PRIV.<user>.>``, which no other user
(except admin) can, and ``services.signer.client.SignerClient`` receives signatures and JWTs there
(its default prefix is ``private_inbox($NATS_USER)``). ``authorization_block(shared_inbox=False)``
drops ``_INBOX.>`` entirely once every service connects with ``inbox_prefix=_INBOX_<user>``.

Credentials: ``ensure_credentials`` keeps random passwords in ``.run/nats/users.json`` (mode 0600,
``{"<user>": {"user": ..., "password": ...}}``; created once, reused afterwards) and
``prepare_stack_auth`` also writes ``auth.conf`` (0600) next to it for ``bus.embedded --extra-config``.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bus.streams import BUCKETS, STREAMS

SERVICE_ROLES = ("feed-handler", "book-builder", "order-router", "reconciler", "signer")
ROLES = (*SERVICE_ROLES, "admin", "consumer", "trader")
USERS_FILE = "users.json"
AUTH_CONF = "auth.conf"
PRIVATE_INBOX_ROOT = "_PRIV"

STREAM_NAMES = tuple(s.name for s in STREAMS)
BUCKET_NAMES = tuple(b.name for b in BUCKETS)


def private_inbox(user: str) -> str:
    """Reply-subject prefix only ``user`` (and admin) may subscribe to."""
    return f"{PRIVATE_INBOX_ROOT}.{user}"


@dataclass(frozen=True)
class Permissions:
    publish_allow: tuple[str, ...] = ()
    publish_deny: tuple[str, ...] = ()
    subscribe_allow: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()
    allow_responses: bool = False

    def merged(self, other: Permissions) -> Permissions:
        return Permissions(
            _uniq(self.publish_allow + other.publish_allow),
            _uniq(self.publish_deny + other.publish_deny),
            _uniq(self.subscribe_allow + other.subscribe_allow),
            _uniq(self.subscribe_deny + other.subscribe_deny),
            self.allow_responses or other.allow_responses,
        )


def _uniq(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# --- JetStream API building blocks ---------------------------------------------------------------


def js_read(*streams: str, manage: bool = True, durable: bool = True) -> tuple[str, ...]:
    """Read a stream: info, direct/message get, ephemeral/ordered consumers, pulls, acks.
    ``durable`` adds durable consumer creation (consumer groups); ``manage`` adds consumer
    deletion (services own their durables; a downstream program must not be able to delete them).
    The only service durable lives on ``CMD`` (the order router's), which downstream users cannot read."""
    out: list[str] = ["$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST"]
    for s in streams:
        out += [
            f"$JS.API.STREAM.INFO.{s}",
            f"$JS.API.STREAM.MSG.GET.{s}",
            f"$JS.API.DIRECT.GET.{s}",
            f"$JS.API.DIRECT.GET.{s}.>",
            f"$JS.API.CONSUMER.CREATE.{s}",
            f"$JS.API.CONSUMER.CREATE.{s}.>",
            f"$JS.API.CONSUMER.INFO.{s}.>",
            f"$JS.API.CONSUMER.MSG.NEXT.{s}.>",
            f"$JS.API.CONSUMER.NAMES.{s}",
            f"$JS.API.CONSUMER.LIST.{s}",
            f"$JS.ACK.{s}.>",
            f"$JS.FC.{s}.>",
        ]
        if durable or manage:
            out.append(f"$JS.API.CONSUMER.DURABLE.CREATE.{s}.>")
        if manage:
            out.append(f"$JS.API.CONSUMER.DELETE.{s}.>")
    return tuple(out)


def js_provision() -> tuple[str, ...]:
    """What ``bus.ensure_streams`` needs: info/create/update of the project's streams and KV
    buckets, by name. Deleting or purging is admin-only."""
    names = [*STREAM_NAMES, *(f"KV_{b}" for b in BUCKET_NAMES)]
    out: list[str] = ["$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST"]
    for n in names:
        out += [f"$JS.API.STREAM.INFO.{n}", f"$JS.API.STREAM.CREATE.{n}", f"$JS.API.STREAM.UPDATE.{n}"]
    return tuple(out)


def kv_rw(*buckets: str) -> tuple[str, ...]:
    """Get/put/watch keys of KV buckets."""
    out: list[str] = []
    for b in buckets:
        out += [f"$KV.{b}.>", *js_read(f"KV_{b}")]
    return tuple(out)


# --- roles ---------------------------------------------------------------------------------------


def _service_base(user: str) -> Permissions:
    """Every service: provisioning, its health (core subject + KV ``health``), reply inboxes."""
    return Permissions(
        publish_allow=(f"svc.{user}.>", *js_provision(), *kv_rw("health")),
        subscribe_allow=("_INBOX.>", f"{private_inbox(user)}.>"),
    )


ROLE_PERMISSIONS: dict[str, Permissions] = {
    "feed-handler": Permissions(
        # ctl.feed.alive.<instance>: instances ask each other "are you alive?" before taking over
        # a silent peer's markets (request/reply between feed handlers only).
        publish_allow=("md.>", "ref.>", "ctl.feed.>", *js_read("MD", "REF"), *kv_rw("leases")),
        subscribe_allow=("ctl.resync.>", "ctl.feed.>"),
        allow_responses=True,
    ),
    "book-builder": Permissions(
        publish_allow=(
            "book.paradex.depth10.>",
            "book.paradex.quotes.>",
            "book.paradex.status.>",
            "ctl.resync.>",
            *js_read("MD", "BOOK", "REF"),
            *kv_rw("book_checkpoints"),
        ),
        subscribe_allow=("book.paradex.snapshot.>",),
        allow_responses=True,
    ),
    "order-router": Permissions(
        publish_allow=(
            "signer.>",
            "exec.>",
            "ctl.reconcile.>",
            *js_read("CMD", "EXEC", "REF", "MD"),
            *kv_rw("leases", "watermarks"),
        ),
        subscribe_allow=("ctl.router.>",),
        allow_responses=True,
    ),
    "reconciler": Permissions(
        publish_allow=(
            "signer.paradex.*.jwt",
            "signer.paradex.whoami",
            "exec.>",
            *js_read("EXEC", "CMD", "REF"),
            *kv_rw("watermarks"),
        ),
        subscribe_allow=("ctl.reconcile.>",),
        allow_responses=True,
    ),
    "signer": Permissions(
        publish_allow=("audit.>",),
        subscribe_allow=("signer.paradex.>",),
        allow_responses=True,
    ),
}

ADMIN = Permissions(publish_allow=(">",), subscribe_allow=(">",), allow_responses=True)

CONSUMER = Permissions(
    publish_allow=(
        "book.paradex.snapshot.>",
        "signer.paradex.whoami",  # the public account address and key, nothing signed
        *js_read("MD", "BOOK", "EXEC", "REF", manage=False),
    ),
    publish_deny=("cmd.>", "signer.paradex.*.>", "ctl.>", "audit.>", "exec.>", "md.>", "ref.>", "$KV.>"),
    subscribe_allow=("md.>", "book.>", "exec.>", "ref.>", "svc.>", "_INBOX.>", f"{private_inbox('consumer')}.>"),
    subscribe_deny=("cmd.>", "signer.>", "audit.>", "ctl.>"),
)


def permissions_for(user: str, *, shared_inbox: bool = True) -> Permissions:
    if user == "admin":
        perms = ADMIN
    elif user == "consumer":
        perms = CONSUMER
    elif user == "trader":
        perms = TRADER
    elif user in ROLE_PERMISSIONS:
        perms = _service_base(user).merged(ROLE_PERMISSIONS[user])
    else:
        raise KeyError(f"unknown NATS role {user!r}; known: {', '.join(ROLES)}")
    if user != "admin":
        # Nobody but the owner reads a private inbox.
        others = tuple(f"{private_inbox(u)}.>" for u in ROLES if u not in (user, "admin"))
        perms = Permissions(
            perms.publish_allow,
            perms.publish_deny,
            perms.subscribe_allow,
            _uniq(perms.subscribe_deny + others),
            perms.allow_responses,
        )
        if not shared_inbox:
            perms = Permissions(
                perms.publish_allow,
                perms.publish_deny,
                tuple(s if s != "_INBOX.>" else f"{user_inbox_prefix(user)}.>" for s in perms.subscribe_allow),
                perms.subscribe_deny,
                perms.allow_responses,
            )
    return perms


# --- config text ---------------------------------------------------------------------------------


def _q(s: str) -> str:
    return json.dumps(s)  # a double-quoted string; nats-server config accepts JSON strings


def _list(items: Iterable[str]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


def _perm_block(p: Permissions) -> str:
    pub = [f"allow: {_list(p.publish_allow)}"] + ([f"deny: {_list(p.publish_deny)}"] if p.publish_deny else [])
    sub = [f"allow: {_list(p.subscribe_allow)}"] + ([f"deny: {_list(p.subscribe_deny)}"] if p.subscribe_deny else [])
    parts = [
        "publish: {" + ", ".join(pub) + "}",
        "subscribe: {" + ", ".join(sub) + "}",
    ]
    if p.allow_responses:
        parts.append("allow_responses: true")
    return "{\n        " + "\n        ".join(parts) + "\n      }"


def authorization_block(credentials: Mapping[str, str], *, shared_inbox: bool = True) -> str:
    """The nats-server ``authorization`` block for ``credentials`` (user -> password)."""
    users = []
    for user, password in credentials.items():
        perms = permissions_for(user, shared_inbox=shared_inbox)
        users.append(f"    {{user: {_q(user)}, password: {_q(password)}, permissions: {_perm_block(perms)}}}")
    return "authorization {\n  users: [\n" + "\n".join(users) + "\n  ]\n}\n"


# --- credentials files ---------------------------------------------------------------------------


@dataclass
class StackAuth:
    """Paths written by ``write_stack_auth`` and the credentials they hold."""

    users_path: Path
    conf_path: Path
    credentials: dict[str, str] = field(default_factory=dict)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def ensure_credentials(users_path: Path | str, roles: Iterable[str] = ROLES) -> dict[str, str]:
    """Load ``users.json`` (user -> {user, password}), add a random password for every missing
    role, rewrite it with mode 0600 and return ``{user: password}``."""
    path = Path(users_path)
    data: dict[str, dict[str, str]] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                data = {k: v for k, v in loaded.items() if isinstance(v, dict) and isinstance(v.get("password"), str)}
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"{path} is unreadable ({exc}); delete it to generate new credentials") from None
    changed = False
    for role in roles:
        if role not in data:
            data[role] = {"user": role, "password": secrets.token_urlsafe(24)}
            changed = True
    if changed or not path.exists() or (path.stat().st_mode & 0o077):
        _write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return {role: data[role]["password"] for role in data if role in ROLES}


def write_stack_auth(nats_dir: Path | str, *, shared_inbox: bool = True) -> StackAuth:
    """Write ``<nats_dir>/users.json`` and ``<nats_dir>/auth.conf`` (both 0600)."""
    d = Path(nats_dir)
    users = d / USERS_FILE
    creds = ensure_credentials(users)
    conf = d / AUTH_CONF
    _write_private(conf, authorization_block(creds, shared_inbox=shared_inbox))
    return StackAuth(users, conf, creds)


def prepare_stack_auth(nats_dir: Path | str) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """What ``services.stack`` calls: writes the files and returns ``({service: (user, password)},
    {"users": path, "config": path})``; every role, including ``admin`` and ``consumer``, is present."""
    sa = write_stack_auth(nats_dir, shared_inbox=False)
    return (
        {user: (user, pw) for user, pw in sa.credentials.items()},
        {"users": str(sa.users_path), "config": str(sa.conf_path)},
    )


def service_env(user: str, password: str) -> dict[str, str]:
    """Environment for a process connecting as ``user`` (``bus.connect`` reads ``NATS_USER`` and
    ``NATS_PASSWORD``; ``NATS_PRIVATE_INBOX`` is where ``SignerClient`` takes replies)."""
    return {
        "NATS_USER": user,
        "NATS_PASSWORD": password,
        "NATS_PRIVATE_INBOX": private_inbox(user),
        "NATS_INBOX_PREFIX": user_inbox_prefix(user),
    }


def user_inbox_prefix(user: str) -> str:
    """The ``inbox_prefix`` a user connects with when the shared ``_INBOX.>`` is not allowed."""
    return f"_INBOX_{user}"

# A strategy process (e.g. a Nautilus TradingNode): everything a consumer may do, plus sending
# commands and asking for a reconciliation -- but never signatures, audit or market-data publishing.
TRADER = Permissions(
    publish_allow=(
        "book.paradex.snapshot.>",
        "cmd.paradex.>",
        "ctl.reconcile.>",
        "signer.paradex.whoami",
        *js_read("MD", "BOOK", "EXEC", "REF", manage=False),
        *js_provision(),
    ),
    publish_deny=("signer.paradex.*.>", "audit.>", "exec.>", "md.>", "ref.>", "$KV.>"),
    subscribe_allow=("md.>", "book.>", "exec.>", "ref.>", "svc.>", "_INBOX.>", f"{private_inbox('trader')}.>"),
    subscribe_deny=("cmd.>", "signer.>", "audit.>"),
)
