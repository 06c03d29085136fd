"""The signer as a real process on a real nats-server against the real simulator: what it signs is
accepted by the venue (orders, modifies, auth, onboarding, its own JWTs) and tampering is rejected;
bad requests and policy breaches get structured refusals and no signature; every signature is in
the audit stream; the key never appears in logs, health, audit or replies; a key file others can
read stops the process."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import httpx
import msgspec
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bus import subjects
from schemas import ServiceHealth, decode, decode_as, encode
from schemas.signer import SignatureAudit, SignatureAuditBatch, SignAuthRequest, SignerError, SignReply
from services.paradex import signing
from services.paradex_sim import Simulator
from services.signer.client import SignerClient, SignerRefused, SignerUnavailable
from tests.fixtures.signer import RunningSigner


def now_ms() -> int:
    return int(time.time() * 1000)


async def audit_records(js: JetStreamContext, account: str, expect_at_least: int) -> list[SignatureAudit]:
    """Every ``SignatureAudit`` stored on ``audit.signer.<account>`` (unpacked from the batches)."""
    sub = await js.subscribe(subjects.audit_signer(account), ordered_consumer=True)
    out: list[SignatureAudit] = []
    try:
        deadline = time.monotonic() + 10
        quiet_polls = 0
        while quiet_polls < 2 or (len(out) < expect_at_least and time.monotonic() < deadline):
            try:
                msg = await sub.next_msg(timeout=0.3)
            except TimeoutError:
                quiet_polls += 1
                continue
            batch = decode_as(msg.data, SignatureAuditBatch)
            assert batch.account == account and all(r.account == account for r in batch.records)
            out.extend(batch.records)
    finally:
        await sub.unsubscribe()
    return out


def assert_no_key(text: str | bytes, signer: RunningSigner) -> None:
    blob = text.decode(errors="replace") if isinstance(text, bytes) else text
    for spelling in signer.key_spellings():
        assert spelling not in blob, "private key material leaked"


async def health_payloads(nc: NATS, n: int = 2) -> list[bytes]:
    got: list[bytes] = []
    done = asyncio.Event()

    async def cb(msg: Any) -> None:
        got.append(msg.data)
        if len(got) >= n:
            done.set()

    sub = await nc.subscribe("svc.signer.*.health", cb=cb)
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await sub.unsubscribe()
    return got


async def test_venue_accepts_what_the_signer_signs_and_rejects_tampering(
    sim: Simulator, signer_factory: Any, nc: NATS, js: JetStreamContext
) -> None:
    signer: RunningSigner = await signer_factory(sim.rest_url)
    c = signer.client
    # The account is derived from the key and the venue's class hashes (§6.6), as the venue does.
    async with httpx.AsyncClient() as http:
        cfg = (await http.get(f"{sim.rest_url}/system/config")).json()
    expected = signing.account_address(
        signing.public_key(signer.key),
        int(cfg["paraclear_account_hash"], 16),
        int(cfg["paraclear_account_proxy_hash"], 16),
    )
    assert int(signer.account, 16) == expected
    assert signer.public_key == signing.public_key(signer.key)

    jwt = (await c.get_jwt()).jwt  # the signer onboarded (starting balance) and authenticated itself
    async with httpx.AsyncClient(base_url=sim.rest_url, headers={"Authorization": f"Bearer {jwt}"}) as http:
        acct = (await http.get("/account")).json()
        assert acct["account"] == signer.account and acct["total_collateral"] == "100000"

        # --- order: accepted; tampered size or signature rejected ---
        ts = now_ms()
        sig = await c.sign_order("BTC-USD-PERP", "BUY", "LIMIT", "0.01", "60000", ts, client_ref="t-1")
        assert sig.account == signer.account
        assert int(sig.message_hash, 16) == signing.order_hash(
            "PRIVATE_SN_POTC_SEPOLIA",
            expected,
            signing.OrderFields("BTC-USD-PERP", "BUY", "LIMIT", "0.01", "60000", ts),
        )
        body = {
            "market": "BTC-USD-PERP",
            "side": "BUY",
            "type": "LIMIT",
            "size": "0.01",
            "price": "60000",
            "instruction": "GTC",
            "client_id": "t-1",
            "signature": sig.signature,
            "signature_timestamp": ts,
        }
        r = await http.post("/orders", json=body)
        assert r.status_code == 201, r.text
        order_id = r.json()["id"]
        r = await http.post("/orders", json={**body, "client_id": "t-2", "size": "0.02"})
        assert r.status_code == 400 and r.json()["error"] == "INVALID_ORDER_SIGNATURE"
        rr, ss = signing.parse_signature(sig.signature)
        r = await http.post(
            "/orders", json={**body, "client_id": "t-3", "signature": signing.format_signature(rr, ss + 1)}
        )
        assert r.status_code == 400 and r.json()["error"] == "INVALID_ORDER_SIGNATURE"

        # --- market order (priceless, notional from the venue mark) ---
        ts = now_ms()
        msig = await c.sign_order("ETH-USD-PERP", "SELL", "MARKET", "0.01", None, ts)
        r = await http.post(
            "/orders",
            json={
                "market": "ETH-USD-PERP",
                "side": "SELL",
                "type": "MARKET",
                "size": "0.01",
                "instruction": "IOC",
                "signature": msig.signature,
                "signature_timestamp": ts,
            },
        )
        assert r.status_code == 201, r.text

        # --- modify: accepted; tampered price rejected ---
        ts = now_ms()
        msig = await c.sign_modify(order_id, "BTC-USD-PERP", "BUY", "LIMIT", "0.01", "59000", ts)
        mbody = {
            "id": order_id,
            "market": "BTC-USD-PERP",
            "side": "BUY",
            "type": "LIMIT",
            "size": "0.01",
            "price": "59000",
            "signature": msig.signature,
            "signature_timestamp": ts,
        }
        r = await http.put(f"/orders/{order_id}", json={**mbody, "price": "59000.1"})
        assert r.status_code == 400 and r.json()["error"] == "INVALID_ORDER_SIGNATURE"
        r = await http.put(f"/orders/{order_id}", json=mbody)
        assert r.status_code == 200, r.text

    async with httpx.AsyncClient(base_url=sim.rest_url) as http:
        # --- auth signed through the signer: accepted; tampered expiration rejected ---
        ts = int(time.time())
        asig = await c.sign_auth(ts, ts + 600)
        headers = {
            "PARADEX-STARKNET-ACCOUNT": signer.account,
            "PARADEX-STARKNET-SIGNATURE": asig.signature,
            "PARADEX-TIMESTAMP": str(ts),
            "PARADEX-SIGNATURE-EXPIRATION": str(ts + 600),
        }
        r = await http.post(f"/auth/{hex(signer.public_key)}", headers=headers)
        assert r.status_code == 200 and r.json()["jwt_token"]
        r = await http.post(
            f"/auth/{hex(signer.public_key)}", headers={**headers, "PARADEX-SIGNATURE-EXPIRATION": str(ts + 601)}
        )
        assert r.status_code in (400, 401) and r.json()["error"] == "STARKNET_SIGNATURE_VERIFICATION_FAILED"

        # --- onboarding (idempotent): accepted; signature for another account rejected ---
        osig = await c.sign_onboarding()
        oheaders = {
            "PARADEX-ETHEREUM-ACCOUNT": "0x" + "ab" * 20,
            "PARADEX-STARKNET-ACCOUNT": signer.account,
            "PARADEX-STARKNET-SIGNATURE": osig.signature,
        }
        r = await http.post("/onboarding", headers=oheaders, json={"public_key": hex(signer.public_key)})
        assert r.status_code == 200, r.text
        orr, oss = signing.parse_signature(osig.signature)
        r = await http.post(
            "/onboarding",
            headers={**oheaders, "PARADEX-STARKNET-SIGNATURE": signing.format_signature(orr + 1, oss)},
            json={"public_key": hex(signer.public_key)},
        )
        assert r.status_code == 400

    # --- audit: every signature issued is on audit.signer.<account>, with its hash, never a key ---
    issued = {sig.message_hash, asig.message_hash, osig.message_hash, msig.message_hash}
    records = await audit_records(js, signer.account, expect_at_least=8)
    by_hash = {r.message_hash: r for r in records}
    assert issued <= set(by_hash), (issued, by_hash.keys())
    assert by_hash[sig.message_hash].op == "order" and by_hash[sig.message_hash].client_ref == "t-1"
    assert by_hash[sig.message_hash].fields["size"] == "0.01"
    assert by_hash[sig.message_hash].requester == "pytest"
    assert by_hash[msig.message_hash].fields["order_id"] == order_id
    assert {"auth", "onboarding", "jwt"} <= {r.op for r in records if r.requester in ("signer/jwt", "pytest")}
    assert all(r.account == signer.account for r in records)
    for r in records:
        assert_no_key(msgspec.json.encode(r), signer)

    # --- the key appears nowhere: health, logs ---
    for payload in await health_payloads(nc):
        h = decode(payload)
        assert isinstance(h, ServiceHealth) and h.details["public_key"] == hex(signer.public_key)
        assert_no_key(msgspec.json.encode(h), signer)
    assert signer.proc.term() == 0
    log = signer.proc.log_text()
    assert "serving" in log and "audit" not in log.lower().replace("audit_", "")  # no audit failures
    assert_no_key(log, signer)


async def test_refusals_bad_requests_and_policy(
    sim: Simulator, signer_factory: Any, nc: NATS, js: JetStreamContext
) -> None:
    signer: RunningSigner = await signer_factory(
        sim.rest_url,
        SIGNER_ALLOWED_MARKETS="BTC-USD-PERP,ETH-USD-PERP",
        SIGNER_MAX_ORDER_NOTIONAL="10000",
        SIGNER_MAX_ORDERS_PER_S="1",
        SIGNER_ORDER_BURST="4",
        SIGNER_MAX_TIMESTAMP_SKEW_MS="5000",
    )
    c = signer.client

    async def refused(**kw: Any) -> str:
        args = {
            "market": "BTC-USD-PERP",
            "side": "BUY",
            "order_type": "LIMIT",
            "size": "0.01",
            "price": "60000",
            "timestamp_ms": now_ms(),
            **kw,
        }
        with pytest.raises(SignerRefused) as err:
            await c.sign_order(**args)
        assert err.value.reason
        return err.value.code

    assert await refused(market="NOPE-USD-PERP") == "UNKNOWN_MARKET"
    assert await refused(size="0.000001") == "INVALID_SIZE"
    assert await refused(size="1e-2") == "INVALID_SIZE"
    assert await refused(price="sixty thousand") == "INVALID_PRICE"
    assert await refused(price="60000.05") == "INVALID_PRICE"
    assert await refused(timestamp_ms=now_ms() - 60_000) == "INVALID_TIMESTAMP"
    assert await refused(side="HOLD") == "INVALID_SIDE"
    assert await refused(market="SOL-USD-PERP", size="1", price="150") == "POLICY_MARKET_NOT_ALLOWED"
    assert await refused(size="0.2", price="60000") == "POLICY_MAX_NOTIONAL"  # 12,000 > 10,000
    assert await refused(order_type="MARKET", price=None, size="1") == "POLICY_MAX_NOTIONAL"  # 1 BTC at mark
    with pytest.raises(SignerRefused) as err:
        await c.sign_auth(int(time.time()), int(time.time()) + 10 * 86400)
    assert err.value.code == "POLICY_AUTH_VALIDITY"

    # Garbage and wrong message types get BAD_REQUEST, never a signature.
    for payload in (b"\xc1not msgpack", b"", encode(SignAuthRequest(timestamp_s=1, expiration_s=2))):
        reply = decode_as(
            (await nc.request(subjects.signer(signer.account, "order"), payload, timeout=5)).data, SignReply
        )
        assert isinstance(reply, SignerError) and reply.code == "BAD_REQUEST"

    # Rate limit: a burst of 4, then refusals (1/s refill).
    results = []
    for i in range(8):
        try:
            results.append(
                await c.sign_order("ETH-USD-PERP", "BUY", "LIMIT", "0.01", "3000", now_ms(), client_ref=f"r{i}")
            )
        except SignerRefused as exc:
            results.append(exc.code)
    signed = [r for r in results if not isinstance(r, str)]
    assert 4 <= len(signed) <= 5 and results.count("POLICY_RATE_LIMIT") == 8 - len(signed)

    # Only the signed ones are audited (plus the signer's own auth/onboarding/jwt records).
    records = await audit_records(js, signer.account, expect_at_least=len(signed))
    orders = [r for r in records if r.op == "order"]
    assert sorted(r.message_hash for r in orders) == sorted(s.message_hash for s in signed)

    # Each refusal is counted (health counters) and logged.
    deadline = time.monotonic() + 10
    counters: dict[str, int] = {}
    while time.monotonic() < deadline:
        h = decode((await health_payloads(nc, 1))[0])
        counters = h.counters
        if counters.get("refused_total{code=POLICY_RATE_LIMIT,op=order}", 0) >= 3:
            break
    for code in (
        "UNKNOWN_MARKET",
        "INVALID_SIZE",
        "INVALID_PRICE",
        "INVALID_TIMESTAMP",
        "POLICY_MARKET_NOT_ALLOWED",
        "POLICY_MAX_NOTIONAL",
        "POLICY_RATE_LIMIT",
        "BAD_REQUEST",
    ):
        assert counters.get(f"refused_total{{code={code},op=order}}", 0) >= 1, (code, counters)
    assert counters["refused_total{code=INVALID_SIZE,op=order}"] == 2
    log = signer.proc.log_text()
    assert "refused_policy_max_notional" in log and "refused_unknown_market" in log
    assert_no_key(log, signer)


async def test_jwt_refresh_on_request_and_stale_token(sim: Simulator, signer_factory: Any) -> None:
    signer: RunningSigner = await signer_factory(sim.rest_url, SIGNER_JWT_MIN_FORCE_INTERVAL_S="0")
    c = signer.client
    first = await c.get_jwt()
    assert (await c.get_jwt()).jwt == first.jwt  # cached
    issued = sim.ctx.counters.get("auth_issued", 0)
    # A 401 on a token older than the current one: handed the current one, no new auth.
    same = await c.get_jwt(force_refresh=True, stale_jwt="an.older.token")
    assert same.jwt == first.jwt and sim.ctx.counters.get("auth_issued", 0) == issued
    # A 401 on the current token: re-authenticates at once.
    await asyncio.sleep(1.1)  # the simulator's tokens have 1 s resolution
    fresh = await c.get_jwt(force_refresh=True, stale_jwt=first.jwt)
    assert fresh.jwt != first.jwt and sim.ctx.counters.get("auth_issued", 0) == issued + 1
    async with httpx.AsyncClient(base_url=sim.rest_url) as http:
        r = await http.get("/account", headers={"Authorization": f"Bearer {fresh.jwt}"})
        assert r.status_code == 200


async def test_key_file_readable_by_others_stops_the_signer(nats_url: str, spawn: Any, tmp_path: Any) -> None:
    key = 0x1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF1234567890ABCDE
    path = tmp_path / "l2.key"
    path.write_text(hex(key) + "\n")
    os.chmod(path, 0o644)
    env = {
        "NATS_URL": nats_url,
        "PARADEX_ENV": "testnet",
        "PARADEX_REST_URL": "http://127.0.0.1:9/v1",
        "PARADEX_L2_PRIVATE_KEY_FILE": str(path),
        "METRICS_PORT": "0",
    }
    proc = spawn("services.signer", env, name="signer-badperm")
    await asyncio.to_thread(proc.proc.wait, 30)
    assert proc.proc.returncode == 2
    log = proc.log_text()
    assert "refusing to start" in log and "chmod 600" in log
    for spelling in (hex(key)[2:], str(key)):
        assert spelling not in log

    # No key at all outside simulator mode: refused too, and no dev key is invented.
    env2 = {k: v for k, v in env.items() if k != "PARADEX_L2_PRIVATE_KEY_FILE"}
    env2["SIGNER_KEY_DIR"] = str(tmp_path / "keys")
    proc2 = spawn("services.signer", env2, name="signer-nokey")
    await asyncio.to_thread(proc2.proc.wait, 30)
    assert proc2.proc.returncode == 2
    assert not (tmp_path / "keys").exists()
    assert json.dumps("PARADEX_L2_PRIVATE_KEY_FILE")[1:-1] in proc2.log_text()


async def test_no_audit_no_signature(sim: Simulator, signer_factory: Any, js: JetStreamContext) -> None:
    signer: RunningSigner = await signer_factory(
        sim.rest_url, SIGNER_AUDIT_DEADLINE_S="1", SIGNER_AUDIT_ACK_TIMEOUT_S="1"
    )
    c = signer.client
    await c.sign_order("BTC-USD-PERP", "BUY", "LIMIT", "0.01", "60000", now_ms())
    info = await js.stream_info("AUDIT")
    await js.delete_stream("AUDIT")  # the audit trail cannot be written any more
    with pytest.raises(SignerRefused) as err:
        await c.sign_order("BTC-USD-PERP", "BUY", "LIMIT", "0.01", "60000", now_ms())
    assert err.value.code == "INTERNAL" and "withheld" in err.value.reason
    await js.add_stream(info.config)  # back: signing resumes, every signature audited again
    sig = await c.sign_order("BTC-USD-PERP", "BUY", "LIMIT", "0.01", "60000", now_ms())
    records = await audit_records(js, signer.account, expect_at_least=1)
    assert [r.message_hash for r in records if r.op == "order"] == [sig.message_hash]


async def test_client_without_signer_gets_no_responders_fast(nc: NATS) -> None:
    client = SignerClient(nc, "0xabc", timeout=5.0)
    t0 = time.monotonic()
    with pytest.raises(SignerUnavailable) as err:
        await client.sign_order("BTC-USD-PERP", "BUY", "LIMIT", "0.01", "60000", now_ms())
    assert "no responders" in err.value.reason and time.monotonic() - t0 < 2.0
    with pytest.raises(SignerUnavailable):
        await client.whoami(timeout=0.5)
    await client.close()
