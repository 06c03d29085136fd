"""The router's side of the signer: ``services.signer.client.SignerClient`` adapted to the
``venue.Signer`` protocol (signature strings, JWTs), with the signer's outcomes mapped to
``SignerFailed`` -- a refusal is final unless the signer says it is retryable; no answer is
retryable (a signature nobody received cannot have been sent to the venue).
"""

from __future__ import annotations

from services.order_router.venue import SignerFailed
from services.signer.client import SignerClient, SignerRefused, SignerUnavailable


class SignerPort:
    def __init__(self, client: SignerClient) -> None:
        self.client = client
        self._jwt = ""

    async def sign_order(
        self, *, market: str, side: str, order_type: str, size: str, price: str | None, timestamp_ms: int,
        client_ref: str,
    ) -> str:
        try:
            reply = await self.client.sign_order(
                market, side, order_type, size, price, timestamp_ms, client_ref=client_ref
            )
        except SignerRefused as exc:
            raise SignerFailed(exc.code, exc.reason, retryable=exc.retryable) from exc
        except SignerUnavailable as exc:
            raise SignerFailed("UNAVAILABLE", exc.reason, retryable=True) from exc
        return reply.signature

    async def sign_modify(
        self, *, market: str, side: str, order_type: str, size: str, price: str | None, timestamp_ms: int,
        order_id: str, client_ref: str,
    ) -> str:
        try:
            reply = await self.client.sign_modify(
                order_id, market, side, order_type, size, price, timestamp_ms, client_ref=client_ref
            )
        except SignerRefused as exc:
            raise SignerFailed(exc.code, exc.reason, retryable=exc.retryable) from exc
        except SignerUnavailable as exc:
            raise SignerFailed("UNAVAILABLE", exc.reason, retryable=True) from exc
        return reply.signature

    async def jwt(self, force: bool) -> str:
        """A valid JWT; ``force`` after the venue refused the last one (passed as ``stale_jwt``)."""
        try:
            reply = await self.client.get_jwt(force_refresh=force, stale_jwt=self._jwt if force else "")
        except SignerRefused as exc:
            raise SignerFailed(exc.code, exc.reason, retryable=exc.retryable) from exc
        except SignerUnavailable as exc:
            raise SignerFailed("UNAVAILABLE", exc.reason, retryable=True) from exc
        self._jwt = reply.jwt
        return reply.jwt
