"""The reconciler's use of the signer: which account to reconcile (``PARADEX_ACCOUNT``, else the
signer's ``whoami``) and JWTs for the private REST reads. The key never leaves the signer.

A JWT is cached until shortly before its ``expires_at_s``; a venue 401 makes the REST client ask
with ``force=True``, which passes the rejected token to the signer (``stale_jwt``) so it can hand
out a newer one instead of authenticating again.
"""

from __future__ import annotations

import asyncio
import time

from nats.aio.client import Client as NATS

from services.runtime import Problems
from services.signer.client import SignerClient, SignerClientError, whoami

REFRESH_MARGIN_S = 30.0


class SignerLink:
    def __init__(self, nc: NATS, account: str, problems: Problems) -> None:
        self.nc = nc
        self.account = account.lower()
        self.problems = problems
        self.client: SignerClient | None = SignerClient(nc, self.account, requester="reconciler") if account else None
        self._jwt = ""
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def resolve_account(self, retry_s: float = 1.0) -> str:
        """The configured account, or the signer's (waiting for a signer to answer)."""
        if self.client is not None:
            return self.account
        while True:
            try:
                me = await whoami(self.nc)
                break
            except SignerClientError as exc:
                self.problems.report("signer_whoami_failed", error=str(exc)[:200])
                await asyncio.sleep(retry_s)
        self.account = me.account.lower()
        self.client = SignerClient(self.nc, self.account, requester="reconciler")
        return self.account

    async def jwt(self, force: bool) -> str:
        """The bearer token for private REST calls (``force`` after a 401)."""
        if self.client is None:
            raise RuntimeError("account not resolved yet")
        async with self._lock:
            now = time.time()
            if not force and self._jwt and now < self._expires_at - REFRESH_MARGIN_S:
                return self._jwt
            try:
                reply = await self.client.get_jwt(force_refresh=force, stale_jwt=self._jwt if force else "")
            except SignerClientError as exc:
                self.problems.report("signer_jwt_failed", error=str(exc)[:200])
                raise
            self._jwt = reply.jwt
            self._expires_at = float(reply.expires_at_s)
            return self._jwt

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
