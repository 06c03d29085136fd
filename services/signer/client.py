"""``SignerClient``: how other processes (the order router, the reconciler, tools) ask the signer for
signatures and JWTs over NATS request/reply.

Usage::

    signer = SignerClient(nc, account)            # or: await SignerClient.discover(nc)
    sig = await signer.sign_order("BTC-USD-PERP", "BUY", "LIMIT", "0.01", "65000.5", ts_ms,
                                  client_ref=client_order_id)
    body["signature"], body["signature_timestamp"] = sig.signature, ts_ms
    jwt = (await signer.get_jwt()).jwt
    ...                                            # venue answered 401:
    jwt = (await signer.get_jwt(force_refresh=True, stale_jwt=jwt)).jwt

Every call returns a reply struct or raises exactly one of:

* ``SignerRefused(code, reason)`` -- the signer answered and refused (bad request, policy, venue
  unreachable for a JWT). Retrying the same request gives the same answer (except
  ``POLICY_RATE_LIMIT``/``VENUE_UNAVAILABLE``/``NOT_READY``, see ``retryable``);
* ``SignerUnavailable(reason)`` -- no answer: no signer serving (``no responders``), no reply
  within the timeout (e.g. the signer was killed mid-request), or the NATS connection is down. The
  request may or may not have been signed; a signature nobody received cannot be used, so retry
  with a fresh timestamp.

Replies arrive on a private inbox (``<reply_prefix>.<random>.<n>``). The default prefix is
``$NATS_PRIVATE_INBOX``, else ``_PRIV.<NATS_USER>`` when a NATS user is configured (the bus
permissions of ``bus.auth`` let only that user read it, so signatures and JWTs are not visible to
other users subscribed to ``_INBOX.>``), else ``_INBOX``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bus import subjects
from schemas import DecodeError, decode_as, encode
from schemas.signer import (
    JwtReply,
    JwtRequest,
    JwtResult,
    SignatureReply,
    SignAuthRequest,
    SignerError,
    SignerMessage,
    SignModifyRequest,
    SignOnboardingRequest,
    SignOrderRequest,
    SignReply,
    WhoamiReply,
    WhoamiRequest,
    WhoamiResult,
)

T = TypeVar("T")

WHOAMI_SUBJECT = f"signer.{subjects.VENUE}.whoami"
RETRYABLE_CODES = frozenset({"POLICY_RATE_LIMIT", "VENUE_UNAVAILABLE", "NOT_READY", "NO_REFERENCE_PRICE"})


class SignerClientError(Exception):
    """Base of the two outcomes a caller must handle."""


class SignerUnavailable(SignerClientError):
    """No reply: nobody serving, timeout, or no NATS connection. The request may have been signed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SignerRefused(SignerClientError):
    """The signer answered with an error; nothing was signed."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES


def default_reply_prefix() -> str:
    explicit = os.environ.get("NATS_PRIVATE_INBOX")
    if explicit:
        return explicit
    user = os.environ.get("NATS_USER")
    return f"_PRIV.{user}" if user else "_INBOX"


class _ReplyMux:
    """One wildcard subscription on a private inbox; each request waits on its own token."""

    def __init__(self, nc: NATS, prefix: str) -> None:
        self.nc = nc
        self.prefix = f"{prefix}.{secrets.token_hex(8)}"
        self._sub: Subscription | None = None
        self._lock = asyncio.Lock()
        self._pending: dict[str, asyncio.Future[Msg]] = {}
        self._ids = itertools.count(1)

    async def _ensure(self) -> None:
        if self._sub is None:
            async with self._lock:
                if self._sub is None:
                    self._sub = await self.nc.subscribe(f"{self.prefix}.*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        fut = self._pending.pop(msg.subject[len(self.prefix) + 1 :], None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        try:
            await self._ensure()
        except nats.errors.Error as exc:
            raise SignerUnavailable(f"cannot subscribe for replies: {exc!r}") from None
        token = str(next(self._ids))
        fut: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._pending[token] = fut
        try:
            await self.nc.publish(subject, payload, reply=f"{self.prefix}.{token}")
            msg = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise SignerUnavailable(f"no reply from the signer on {subject} within {timeout:g} s") from None
        except nats.errors.Error as exc:
            raise SignerUnavailable(f"NATS error on {subject}: {exc!r}") from None
        finally:
            self._pending.pop(token, None)
        if msg.headers and msg.headers.get("Status") == "503":
            raise SignerUnavailable(f"no signer is serving {subject} (no responders)")
        return msg.data

    async def close(self) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        self._pending.clear()
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except nats.errors.Error:
                return  # the connection is gone; so is the subscription


def _decode(data: bytes, result_type: Any, subject: str) -> Any:
    try:
        reply = decode_as(data, result_type)
    except DecodeError as exc:
        raise SignerUnavailable(f"unreadable reply on {subject}: {exc}") from None
    if isinstance(reply, SignerError):
        raise SignerRefused(reply.code, reply.reason)
    return reply


class SignerClient:
    """Request signatures and JWTs for ``account`` (lowercase 0x-hex, as in subjects)."""

    def __init__(
        self,
        nc: NATS,
        account: str,
        *,
        timeout: float = 2.0,
        jwt_timeout: float = 10.0,
        requester: str = "",
        reply_prefix: str | None = None,
    ) -> None:
        self.nc = nc
        self.account = account.lower()
        subjects.token(self.account)
        self.timeout = timeout
        self.jwt_timeout = jwt_timeout
        self.requester = requester or os.environ.get("NATS_USER", "") or "unknown"
        self._mux = _ReplyMux(nc, reply_prefix or default_reply_prefix())

    @classmethod
    async def discover(cls, nc: NATS, *, timeout: float = 2.0, **kwargs: Any) -> SignerClient:
        """Ask ``signer.paradex.whoami`` which account the signer serves, then build a client."""
        client = cls(nc, "0x0", timeout=timeout, **kwargs)
        me = await client.whoami()
        client.account = me.account.lower()
        return client

    async def close(self) -> None:
        await self._mux.close()

    async def _call(self, op: str, req: SignerMessage, result_type: Any, timeout: float | None = None) -> Any:
        subject = subjects.signer(self.account, op)
        data = await self._mux.request(subject, encode(req), timeout or self.timeout)
        return _decode(data, result_type, subject)

    async def sign_order(
        self,
        market: str,
        side: str,
        order_type: str,
        size: str,
        price: str | None,
        timestamp_ms: int,
        *,
        client_ref: str = "",
        timeout: float | None = None,
    ) -> SignatureReply:
        """Signature of a venue ``Order``; ``price`` None (or "0") for market variants. Decimal
        strings exactly as they will be sent to the venue."""
        req = SignOrderRequest(
            market=market,
            side=side,
            order_type=order_type,
            size=size,
            price=price,
            timestamp_ms=timestamp_ms,
            client_ref=client_ref,
            requester=self.requester,
        )
        return await self._call("order", req, SignReply, timeout)

    async def sign_modify(
        self,
        order_id: str,
        market: str,
        side: str,
        order_type: str,
        size: str,
        price: str | None,
        timestamp_ms: int,
        *,
        client_ref: str = "",
        timeout: float | None = None,
    ) -> SignatureReply:
        """Signature of a venue ``ModifyOrder`` for ``PUT /orders/{order_id}``."""
        req = SignModifyRequest(
            order_id=order_id,
            market=market,
            side=side,
            order_type=order_type,
            size=size,
            price=price,
            timestamp_ms=timestamp_ms,
            client_ref=client_ref,
            requester=self.requester,
        )
        return await self._call("modify", req, SignReply, timeout)

    async def sign_auth(self, timestamp_s: int, expiration_s: int, *, timeout: float | None = None) -> SignatureReply:
        """Signature of the ``POST /auth`` request (Unix seconds)."""
        req = SignAuthRequest(timestamp_s=timestamp_s, expiration_s=expiration_s, requester=self.requester)
        return await self._call("auth", req, SignReply, timeout)

    async def sign_onboarding(self, *, timeout: float | None = None) -> SignatureReply:
        return await self._call("onboarding", SignOnboardingRequest(requester=self.requester), SignReply, timeout)

    async def get_jwt(
        self, force_refresh: bool = False, *, stale_jwt: str = "", timeout: float | None = None
    ) -> JwtReply:
        """The account's JWT. After a venue 401 pass ``force_refresh=True`` and the rejected token."""
        req = JwtRequest(force_refresh=force_refresh, stale_jwt=stale_jwt, requester=self.requester)
        return await self._call("jwt", req, JwtResult, timeout or self.jwt_timeout)

    async def whoami(self, *, timeout: float | None = None) -> WhoamiReply:
        data = await self._mux.request(
            WHOAMI_SUBJECT, encode(WhoamiRequest(requester=self.requester)), timeout or self.timeout
        )
        return _decode(data, WhoamiResult, WHOAMI_SUBJECT)


async def whoami(nc: NATS, *, timeout: float = 2.0, reply_prefix: str | None = None) -> WhoamiReply:
    """Which account does the signer on this bus serve? (No account needed to ask.)"""
    client = SignerClient(nc, "0x0", timeout=timeout, reply_prefix=reply_prefix)
    try:
        return await client.whoami()
    finally:
        await client.close()
