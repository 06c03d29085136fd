"""JWTs: the signer authenticates with the venue itself and hands tokens out (paradex-api.md §3.2-3.4).

``POST /auth/{public_key}`` with the four ``PARADEX-*`` headers and the signed ``Request`` message;
if the venue answers ``NOT_ONBOARDED`` the signer onboards first (``POST /onboarding``; on the
simulator this credits the starting balance) and authenticates again. Tokens live 5 minutes; the
background loop refreshes ``SIGNER_JWT_REFRESH_AFTER_S`` (180 s) after issue (or 30 s before
expiry if sooner), and a caller that got a 401 asks with ``force_refresh`` -- refreshes are
single-flight, a caller reporting a token older than the current one gets the current one, and
forced refreshes are at most one per ``SIGNER_JWT_MIN_FORCE_INTERVAL_S``.

Every auth/onboarding signature the signer makes for itself is audited like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import jwt as pyjwt

from services.paradex import signing
from services.paradex.rest import ParadexError, RestClient, UnknownOutcome
from services.signer.audit import AuditUnavailable
from services.signer.custody import KeyCustody

log = logging.getLogger("signer.jwt")

AuditFn = Callable[..., Awaitable[object]]
REQUESTER = "signer/jwt"


class JwtUnavailable(RuntimeError):
    """No token could be obtained; the message is safe to send to callers."""


@dataclass(frozen=True)
class Token:
    jwt: str
    expires_at_s: int  # venue clock (the token's exp)
    obtained_mono: float
    refresh_at_mono: float
    expires_mono: float


class JwtManager:
    def __init__(
        self,
        rest: RestClient,
        custody: KeyCustody,
        *,
        account: str,
        chain_id: str,
        paradex_env: str,
        l1_address: str | None,
        refresh_after_s: float,
        signature_validity_s: int,
        min_force_interval_s: float,
        audit: AuditFn,
        report: Callable[..., None],
    ) -> None:
        self.rest = rest
        self.custody = custody
        self.account = account
        self.account_int = int(account, 16)
        self.chain_id = chain_id
        self.paradex_env = paradex_env
        self.l1_address = l1_address
        self.refresh_after_s = refresh_after_s
        self.signature_validity_s = signature_validity_s
        self.min_force_interval_s = min_force_interval_s
        self.audit = audit
        self.report = report
        self.token: Token | None = None
        self.last_error = ""
        self.refreshes = 0
        self.onboarded = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    # -- public -----------------------------------------------------------------------------------

    def status(self) -> str:
        t = self.token
        if t is None:
            return f"none ({self.last_error})" if self.last_error else "none"
        left = t.expires_mono - time.monotonic()
        return f"valid {left:.0f}s" if left > 0 else "expired"

    async def get(self, *, force_refresh: bool = False, stale_jwt: str = "") -> Token:
        """The current token, authenticating when there is none, it expired, or on a forced refresh."""
        async with self._lock:
            t = self.token
            now = time.monotonic()
            if t is not None:
                if force_refresh:
                    if stale_jwt and stale_jwt != t.jwt:
                        return t  # the caller's 401 was for an older token; this one is newer
                    if now - t.obtained_mono < self.min_force_interval_s:
                        return t
                elif now < t.expires_mono - 5.0:
                    return t
            return await self._authenticate_locked()

    async def run(self, stopping: asyncio.Event) -> None:
        """Keep a fresh token: refresh on schedule; retry failures with backoff."""
        backoff = 1.0
        while not stopping.is_set():
            t = self.token
            wait = 0.0 if t is None else t.refresh_at_mono - time.monotonic()
            if wait <= 0:
                try:
                    async with self._lock:
                        t = self.token
                        if t is None or time.monotonic() >= t.refresh_at_mono:
                            await self._authenticate_locked()
                    backoff = 1.0
                    continue
                except JwtUnavailable:
                    wait = backoff
                    backoff = min(backoff * 2, 15.0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first(stopping.wait(), self._wake.wait()), wait)

    @staticmethod
    async def _first(*aws: Awaitable[object]) -> None:
        tasks = [asyncio.ensure_future(a) for a in aws]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    # -- venue calls ------------------------------------------------------------------------------

    async def _authenticate_locked(self) -> Token:
        try:
            try:
                token = await self._auth_once()
            except ParadexError as exc:
                if exc.code != "NOT_ONBOARDED" and "NOT_ONBOARDED" not in exc.message:
                    raise
                await self._onboard()
                token = await self._auth_once()
        except (ParadexError, UnknownOutcome, AuditUnavailable, JwtUnavailable) as exc:
            self.last_error = str(exc)[:300]
            self.report("jwt_auth_failed", error=self.last_error)
            raise JwtUnavailable(f"authentication failed: {self.last_error}") from None
        self.token = token
        self.last_error = ""
        self.refreshes += 1
        self._wake.set()
        log.info("jwt obtained", extra={"ctx": {"account": self.account, "expires_at_s": token.expires_at_s}})
        return token

    async def _auth_once(self) -> Token:
        ts = int(time.time())
        exp = ts + self.signature_validity_s
        h = signing.auth_hash(self.chain_id, self.account_int, ts, exp)
        r, s = self.custody.sign(h)
        await self.audit(
            "auth", requester=REQUESTER, fields={"timestamp_s": str(ts), "expiration_s": str(exp)}, message_hash=h
        )
        headers = {
            "PARADEX-STARKNET-ACCOUNT": self.account,
            "PARADEX-STARKNET-SIGNATURE": signing.format_signature(r, s),
            "PARADEX-TIMESTAMP": str(ts),
            "PARADEX-SIGNATURE-EXPIRATION": str(exp),
        }
        sent = time.monotonic()
        body = await self.rest.request("POST", f"/auth/{hex(self.custody.public_key)}", headers=headers)
        raw = body.get("jwt_token") if isinstance(body, dict) else None
        if not isinstance(raw, str) or not raw:
            raise UnknownOutcome("POST /auth answered without jwt_token", method="POST", path="/auth")
        return self._token(raw, sent)

    def _token(self, raw: str, obtained: float) -> Token:
        lifetime = 300.0
        exp_s = int(time.time()) + 300
        try:
            claims = pyjwt.decode(raw, options={"verify_signature": False})
            exp, iat = claims.get("exp"), claims.get("iat")
            if isinstance(exp, int):
                exp_s = exp
                if isinstance(iat, int) and 0 < exp - iat <= 86_400:
                    lifetime = float(exp - iat)
        except pyjwt.PyJWTError:
            self.report("jwt_opaque", detail="token is not a decodable JWT; assuming a 300 s lifetime")
        # Timing is relative to our own monotonic clock from when the request was sent, so a skewed
        # venue clock cannot make us use an expired token.
        refresh_in = max(1.0, min(self.refresh_after_s, lifetime - 30.0))
        return Token(raw, exp_s, obtained, obtained + refresh_in, obtained + lifetime)

    def _onboarding_l1_address(self) -> str:
        if self.l1_address:
            return self.l1_address
        if self.paradex_env == "sim":
            # The simulator only checks the header's shape; derive a stable address per key.
            digest = hashlib.sha256(b"paradex-bus-sim-l1:" + hex(self.custody.public_key).encode()).hexdigest()
            return "0x" + digest[:40]
        raise JwtUnavailable("onboarding needs PARADEX_L1_ADDRESS (or an L1 key) on a real venue")

    async def _onboard(self) -> None:
        l1 = self._onboarding_l1_address()
        h = signing.onboarding_hash(self.chain_id, self.account_int)
        r, s = self.custody.sign(h)
        await self.audit("onboarding", requester=REQUESTER, fields={"l1_address": l1}, message_hash=h)
        headers = {
            "PARADEX-ETHEREUM-ACCOUNT": l1,
            "PARADEX-STARKNET-ACCOUNT": self.account,
            "PARADEX-STARKNET-SIGNATURE": signing.format_signature(r, s),
        }
        await self.rest.request(
            "POST", "/onboarding", headers=headers, json={"public_key": hex(self.custody.public_key)}
        )
        self.onboarded += 1
        log.info("account onboarded", extra={"ctx": {"account": self.account, "l1_address": l1}})
