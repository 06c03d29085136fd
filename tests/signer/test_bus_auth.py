"""Bus isolation (``bus.auth``) on a real nats-server started with the generated authorization block:
a downstream ``consumer`` reads market data but is refused when it publishes a command, requests a
signature or listens on ``signer.>``/another user's private inbox; the order router gets signatures
from a real signer process that itself runs with the restricted ``signer`` user (provisioning,
health, audit and replies all inside its permissions); the reconciler may fetch JWTs but not
signatures. Also: the credential files are 0600 and reused."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

from bus import NatsSettings, auth, connect, ensure_streams, jetstream, subjects
from bus.embedded import EmbeddedNats
from services.paradex_sim import Simulator
from services.signer.client import SignerClient, SignerRefused, SignerUnavailable
from tests.fixtures.signer import wait_whoami


class Conn:
    """A raw nats-py connection as one user, recording permission errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: NATS | None = None

    async def open(self, url: str, user: str, password: str) -> Conn:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        self.nc = await nats.connect(
            url, user=user, password=password, error_cb=on_error, name=user, allow_reconnect=False
        )
        return self

    async def violations(self, needle: str, timeout: float = 3.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [e for e in self.errors if "permissions violation" in e.lower() and needle.lower() in e.lower()]
            if got:
                return got
            await asyncio.sleep(0.02)
        return []


@pytest.fixture
def creds(tmp_path: Path) -> dict[str, str]:
    return auth.write_stack_auth(tmp_path / "nats-auth").credentials


@pytest.fixture
def secured_nats(tmp_path: Path, creds: dict[str, str]) -> Any:
    srv = EmbeddedNats(
        store_dir=tmp_path / "nats", extra_config=auth.authorization_block(creds), log_file=tmp_path / "nats.log"
    ).start()
    try:
        yield srv
    finally:
        srv.kill()


def test_credential_files_are_private_and_stable(tmp_path: Path) -> None:
    first = auth.write_stack_auth(tmp_path / "n")
    assert set(first.credentials) == set(auth.ROLES)
    for p in (first.users_path, first.conf_path):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    again = auth.write_stack_auth(tmp_path / "n")
    assert again.credentials == first.credentials  # passwords survive restarts
    creds, files = auth.prepare_stack_auth(tmp_path / "n")
    assert creds["admin"] == ("admin", first.credentials["admin"]) and Path(files["config"]).exists()
    users = json.loads(first.users_path.read_text())
    assert users["admin"]["user"] == "admin"  # the shape services/cli reads
    assert len({pw for pw in first.credentials.values()}) == len(auth.ROLES)
    assert auth.service_env("order-router", "pw")["NATS_PRIVATE_INBOX"] == "_PRIV.order-router"


def test_role_permissions_shape() -> None:
    consumer = auth.permissions_for("consumer")
    assert "cmd.>" in consumer.publish_deny and "cmd.>" in consumer.subscribe_deny
    # Signature requests are denied; only the public ``whoami`` is allowed.
    assert "signer.paradex.*.>" in consumer.publish_deny and "signer.>" in consumer.subscribe_deny
    assert "signer.paradex.whoami" in consumer.publish_allow
    assert "md.>" in consumer.subscribe_allow and "book.paradex.snapshot.>" in consumer.publish_allow
    assert not any(s.startswith("$JS.API.CONSUMER.DELETE") for s in consumer.publish_allow)
    signer = auth.permissions_for("signer")
    assert signer.allow_responses and "audit.>" in signer.publish_allow
    assert not any(s.startswith(("cmd.", "exec.", "md.", "signer.")) for s in signer.publish_allow)
    who_may_sign = [r for r in auth.ROLES if any(s in ("signer.>", ">") for s in auth.permissions_for(r).publish_allow)]
    assert sorted(who_may_sign) == ["admin", "order-router"]
    assert "_INBOX_feed-handler.>" in auth.permissions_for("feed-handler", shared_inbox=False).subscribe_allow
    with pytest.raises(KeyError):
        auth.permissions_for("nobody")


async def test_consumer_refused_router_and_signer_work(
    secured_nats: EmbeddedNats, creds: dict[str, str], sim: Simulator, spawn: Any, tmp_path: Path
) -> None:
    url = secured_nats.url
    admin = await connect("admin", NatsSettings(servers=(url,), user="admin", password=creds["admin"]))
    await ensure_streams(jetstream(admin), replicas=1)

    # A wrong password is refused outright.
    with pytest.raises(nats.errors.Error):
        await asyncio.wait_for(
            nats.connect(url, user="consumer", password="wrong", allow_reconnect=False, connect_timeout=2), 10
        )

    # The signer runs as the restricted "signer" user.
    env = {
        "NATS_URL": url,
        "NATS_USER": "signer",
        "NATS_PASSWORD": creds["signer"],
        "PARADEX_ENV": "sim",
        "PARADEX_REST_URL": sim.rest_url,
        "SIGNER_KEY_DIR": str(tmp_path / "keys"),
        "METRICS_PORT": "0",
    }
    proc = spawn("services.signer", env, name="signer-auth")
    me = await wait_whoami(admin, proc)
    account = me.account

    consumer = await Conn().open(url, "consumer", creds["consumer"])
    feed = await Conn().open(url, "feed-handler", creds["feed-handler"])
    router_nc = await connect(
        "router", NatsSettings(servers=(url,), user="order-router", password=creds["order-router"])
    )
    recon_nc = await connect("recon", NatsSettings(servers=(url,), user="reconciler", password=creds["reconciler"]))
    assert consumer.nc is not None and feed.nc is not None
    try:
        # consumer may read market data (core and JetStream)...
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_md(m: Any) -> None:
            got.put_nowait(m.data)

        await consumer.nc.subscribe("md.>", cb=on_md)
        await consumer.nc.flush()
        await feed.nc.publish(subjects.md("trades", "BTC-USD-PERP"), b"tick")
        assert await asyncio.wait_for(got.get(), 5) == b"tick"
        await jetstream(feed.nc).publish(subjects.md("trades", "BTC-USD-PERP"), b"stored")
        js_sub = await jetstream(consumer.nc).subscribe("md.>", ordered_consumer=True)
        # Both publishes were captured by the MD stream; the consumer replays them.
        assert [(await js_sub.next_msg(timeout=5)).data for _ in range(2)] == [b"tick", b"stored"]
        await js_sub.unsubscribe()
        assert not consumer.errors

        # ...but publishing a command is refused and nobody receives it.
        seen_cmd: list[bytes] = []

        async def on_cmd(m: Any) -> None:
            seen_cmd.append(m.data)

        await admin.subscribe("cmd.>", cb=on_cmd)
        await admin.flush()
        await consumer.nc.publish(subjects.cmd(account, "BTC-USD-PERP"), b"SubmitOrder")
        assert await consumer.violations('Publish to "cmd.')

        # Requesting a signature is refused: no signature, the caller sees SignerUnavailable.
        as_consumer = SignerClient(consumer.nc, account, timeout=1.0, reply_prefix="_INBOX")
        with pytest.raises(SignerUnavailable):
            await as_consumer.sign_order("BTC-USD-PERP", "BUY", "LIMIT", "0.001", "60000", int(time.time() * 1000))
        assert await consumer.violations('Publish to "signer.')
        await as_consumer.close()

        # Listening to signer traffic or the router's private reply inbox is refused too.
        await consumer.nc.subscribe("signer.>")
        assert await consumer.violations('Subscription to "signer.>"')
        await consumer.nc.subscribe(f"{auth.private_inbox('order-router')}.>")
        assert await consumer.violations(f'Subscription to "{auth.private_inbox("order-router")}')
        # Nor may it open a JetStream consumer on the CMD stream.
        with pytest.raises(Exception):  # noqa: B017 - the API request is dropped: timeout/no responders
            await jetstream(consumer.nc, timeout=1.0).subscribe("cmd.>", ordered_consumer=True)

        # The order router gets signatures on its private inbox; the signer's audit is stored.
        router = SignerClient(
            router_nc, account, timeout=5.0, reply_prefix=auth.private_inbox("order-router"), requester="order-router"
        )
        sig = await router.sign_order("BTC-USD-PERP", "BUY", "LIMIT", "0.001", "60000", int(time.time() * 1000))
        assert sig.signature.startswith('["')
        assert (await router.get_jwt()).jwt
        await router.close()
        info = await jetstream(admin).stream_info("AUDIT")
        assert info.state.messages >= 2

        # The reconciler may fetch the JWT, not signatures.
        recon = SignerClient(recon_nc, account, timeout=1.0, reply_prefix=auth.private_inbox("reconciler"))
        assert (await recon.get_jwt()).jwt
        with pytest.raises((SignerUnavailable, SignerRefused)):
            await recon.sign_order("BTC-USD-PERP", "BUY", "LIMIT", "0.001", "60000", int(time.time() * 1000))
        await recon.close()

        # The signer user itself cannot emit commands.
        signer_conn = await Conn().open(url, "signer", creds["signer"])
        assert signer_conn.nc is not None
        await signer_conn.nc.publish(subjects.cmd(account, "BTC-USD-PERP"), b"x")
        assert await signer_conn.violations('Publish to "cmd.')
        await signer_conn.nc.close()

        await asyncio.sleep(0.2)
        assert seen_cmd == []
        # The signer ran its whole start-up, health and serving without a single permission error.
        health_keys = await (await jetstream(admin).key_value("health")).keys()
        assert any(k.startswith("signer.") for k in health_keys)
        assert proc.term() == 0
        assert "permissions violation" not in proc.log_text().lower()
        server_log = (tmp_path / "nats.log").read_text(errors="replace")
        assert "Violation" in server_log  # the refusals above were logged by the server...
        bad = [ln for ln in server_log.splitlines() if "Violation" in ln and "signer-" in ln]
        assert not bad, bad  # ...and none came from the signer service's own connection
    finally:
        for c in (consumer, feed):
            if c.nc is not None:
                await c.nc.close()
        await router_nc.close()
        await recon_nc.close()
        await admin.close()


async def test_isolated_inbox_variant_is_valid_config(tmp_path: Path, creds: dict[str, str]) -> None:
    block = auth.authorization_block(creds, shared_inbox=False)
    srv = EmbeddedNats(store_dir=tmp_path / "iso", extra_config=block).start()
    try:
        nc = await nats.connect(
            srv.url, user="consumer", password=creds["consumer"], allow_reconnect=False, inbox_prefix="_INBOX_consumer"
        )

        async def echo(m: Any) -> None:
            await m.respond(b"pong")

        admin = await nats.connect(srv.url, user="admin", password=creds["admin"], allow_reconnect=False)
        await admin.subscribe("book.paradex.snapshot.>", cb=echo)
        await admin.flush()
        # Replies come back on the consumer's own inbox prefix, the only inbox it may read.
        reply = await nc.request("book.paradex.snapshot.BTC-USD-PERP", b"", timeout=5)
        assert reply.data == b"pong"
        await nc.close()
        await admin.close()
    finally:
        srv.kill()
