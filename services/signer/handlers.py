"""Request handlers: decode -> validate -> policy -> sign -> audit -> reply, one method per operation.

Each NATS subscription's messages are handled in order by nats-py, so the CPU-bound order/modify
path runs inline (no task per request). Anything that must wait on the venue -- a JWT
(authentication) or a mark price for a priceless order -- continues in its own task so it never
stalls the signing queue. Every request gets exactly one reply: a ``SignatureReply``/``JwtReply``/
``WhoamiReply`` or a ``SignerError``; a request without a reply subject is counted and dropped
unsigned (nobody could receive the signature).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from nats.aio.msg import Msg

from schemas import DecodeError, decode_as, encode
from schemas.signer import (
    JwtReply,
    JwtRequest,
    SignatureReply,
    SignAuthRequest,
    SignerError,
    SignModifyRequest,
    SignOnboardingRequest,
    SignOrderRequest,
    WhoamiReply,
    WhoamiRequest,
)
from services.paradex import signing
from services.runtime import Metrics, Problems
from services.signer.audit import AuditBatch, Auditor, AuditUnavailable
from services.signer.custody import KeyCustody
from services.signer.jwt_manager import JwtManager, JwtUnavailable
from services.signer.policy import MarkCache, Policy
from services.signer.validation import (
    MarketCatalog,
    Refusal,
    ValidOrder,
    validate_auth,
    validate_order,
    validate_order_id,
)

log = logging.getLogger("signer.handlers")


@dataclass
class Identity:
    account: str  # lowercase 0x-hex, as in subjects
    chain_id: str
    paradex_env: str
    instance: str

    @property
    def account_int(self) -> int:
        return int(self.account, 16)


class Handlers:
    def __init__(
        self,
        *,
        identity: Identity,
        custody: KeyCustody,
        catalog: MarketCatalog,
        policy: Policy,
        marks: MarkCache,
        auditor: Auditor,
        jwt: JwtManager,
        metrics: Metrics,
        problems: Problems,
        max_skew_ms: int,
        max_auth_validity_s: int,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.id = identity
        self._account_int = identity.account_int
        self.custody = custody
        self.catalog = catalog
        self.policy = policy
        self.marks = marks
        self.auditor = auditor
        self.jwt = jwt
        self.metrics = metrics
        self.problems = problems
        self.max_skew_ms = max_skew_ms
        self.max_auth_validity_s = max_auth_validity_s
        self.clock_ms = clock_ms
        self.tasks: set[asyncio.Task[None]] = set()
        self.signed = 0
        self.requests: dict[str, int] = {}
        self._releases: dict[AuditBatch, list[tuple[Msg, str, bytes]]] = {}
        self._signature_counters: dict[str, Any] = {}

    # -- plumbing ---------------------------------------------------------------------------------

    def guarded(self, op: str, handler: Callable[[Msg], Awaitable[None]]) -> Callable[[Msg], Awaitable[None]]:
        """Wrap a handler so an unexpected failure is counted, logged and answered (INTERNAL)
        instead of leaving the caller to time out."""

        async def run(msg: Msg) -> None:
            try:
                await handler(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any bug still gets an answer
                self.problems.report("handler_error", level=logging.ERROR, op=op, error=repr(exc))
                if msg.reply:
                    await self._reply(msg, encode(SignerError(code="INTERNAL", reason=f"internal error in {op}")))

        return run

    def _spawn(self, msg: Msg, op: str, coro: Awaitable[None]) -> None:
        """Finish a request in its own task; failures are answered like in ``guarded``."""
        task = asyncio.ensure_future(self.guarded(op, lambda _m: coro)(msg))
        task.set_name(f"signer-{op}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reply(self, msg: Msg, payload: bytes) -> None:
        try:
            await msg.respond(payload)
        except Exception as exc:  # noqa: BLE001 - a lost reply surfaces as the caller's timeout
            self.problems.report("reply_failed", subject=msg.subject, error=repr(exc))

    async def _refuse(self, msg: Msg, op: str, refusal: Refusal, requester: str = "", **ctx: object) -> None:
        self.metrics.inc("refused_total", op=op, code=refusal.code)
        self.problems.report(
            f"refused_{refusal.code.lower()}", op=op, requester=requester, reason=refusal.reason, **ctx
        )
        await self._reply(msg, encode(SignerError(code=refusal.code, reason=refusal.reason)))

    def _has_reply(self, msg: Msg, op: str) -> bool:
        if msg.reply:
            return True
        self.problems.report("request_without_reply", op=op, subject=msg.subject)
        return False

    async def _decode(self, msg: Msg, op: str, cls: type[Any]) -> Any | None:
        self.requests[op] = self.requests.get(op, 0) + 1  # plain dict: this is the hot path
        if not self._has_reply(msg, op):
            return None
        if not msg.data and cls in (WhoamiRequest, JwtRequest):
            return cls()  # an empty request (e.g. from the nats CLI) means "all defaults"
        try:
            return decode_as(msg.data, cls)
        except DecodeError as exc:
            await self._refuse(msg, op, Refusal("BAD_REQUEST", f"not a {cls.__name__}: {exc}"))
            return None

    async def _issue(
        self,
        msg: Msg,
        op: str,
        h: int,
        *,
        requester: str,
        client_ref: str = "",
        fields: dict[str, str],
    ) -> None:
        r, s = self.custody.sign(h)
        batch = self.auditor.submit(op, requester=requester, client_ref=client_ref, fields=fields, message_hash=h)
        reply = SignatureReply(signature=signing.format_signature(r, s), message_hash=hex(h), account=self.id.account)
        # Replies wait for their audit batch's ack; one task per batch, so signing continues meanwhile.
        waiting = self._releases.get(batch)
        if waiting is None:
            waiting = self._releases[batch] = []
            self._spawn(msg, op, self._release(batch))
        waiting.append((msg, op, encode(reply)))

    async def _release(self, batch: AuditBatch) -> None:
        try:
            await batch.wait()
        except AuditUnavailable as exc:
            for msg, op, _ in self._releases.pop(batch, []):
                await self._refuse(msg, op, Refusal("INTERNAL", f"signature withheld: {exc}"))
            return
        for msg, op, payload in self._releases.pop(batch, []):
            self.signed += 1
            child = self._signature_counters.get(op)
            if child is None:
                child = self._signature_counters[op] = self.metrics.counter(
                    "signatures_total", "signatures issued", ("op",)
                ).labels(op=op)
            child.inc()
            await self._reply(msg, payload)

    # -- orders -----------------------------------------------------------------------------------

    def _validate(self, req: SignOrderRequest) -> ValidOrder:
        v = validate_order(
            self.catalog,
            market=req.market,
            side=req.side,
            order_type=req.order_type,
            size=req.size,
            price=req.price,
            timestamp_ms=req.timestamp_ms,
            now_ms=self.clock_ms(),
            max_skew_ms=self.max_skew_ms,
        )
        self.policy.check_market(req.market)
        return v

    async def on_order(self, msg: Msg) -> None:
        await self._on_order_like(msg, "order", SignOrderRequest)

    async def on_modify(self, msg: Msg) -> None:
        await self._on_order_like(msg, "modify", SignModifyRequest)

    async def _on_order_like(self, msg: Msg, op: str, cls: type[SignOrderRequest]) -> None:
        req = await self._decode(msg, op, cls)
        if req is None:
            return
        try:
            order = self._validate(req)
            if isinstance(req, SignModifyRequest):
                validate_order_id(req.order_id)
            mark: Decimal | None = None
            if self.policy.needs_mark(order):
                mark = self.marks.fresh(req.market)
                if mark is None:
                    # Fetching the mark waits on the venue: finish in a task, keep the queue moving.
                    self._spawn(msg, op, self._finish_with_mark(msg, op, req, order))
                    return
            self.policy.check_notional(order, mark)
            self.policy.take_rate()
        except Refusal as refusal:
            await self._refuse(msg, op, refusal, req.requester, market=req.market, client_ref=req.client_ref)
            return
        await self._sign_order(msg, op, req, order)

    async def _finish_with_mark(self, msg: Msg, op: str, req: SignOrderRequest, order: ValidOrder) -> None:
        try:
            try:
                mark = await self.marks.get(req.market)
            except Exception as exc:  # noqa: BLE001 - any venue failure means no reference price
                self.problems.report("mark_fetch_failed", market=req.market, error=repr(exc))
                mark = None
            self.policy.check_notional(order, mark)
            self.policy.take_rate()
        except Refusal as refusal:
            await self._refuse(msg, op, refusal, req.requester, market=req.market, client_ref=req.client_ref)
            return
        await self._sign_order(msg, op, req, order)

    async def _sign_order(self, msg: Msg, op: str, req: SignOrderRequest, order: ValidOrder) -> None:
        f = order.fields
        fields = {
            "market": f.market,
            "side": f.side,
            "type": f.order_type,
            "size": f.size,
            "price": f.price or "0",
            "timestamp_ms": str(f.timestamp_ms),
        }
        if isinstance(req, SignModifyRequest):
            h = signing.modify_hash(self.id.chain_id, self._account_int, f, req.order_id)
            fields["order_id"] = req.order_id
        else:
            h = signing.order_hash(self.id.chain_id, self._account_int, f)
        await self._issue(msg, op, h, requester=req.requester, client_ref=req.client_ref, fields=fields)

    # -- auth / onboarding ------------------------------------------------------------------------

    async def on_auth(self, msg: Msg) -> None:
        req = await self._decode(msg, "auth", SignAuthRequest)
        if req is None:
            return
        try:
            validate_auth(
                req.timestamp_s,
                req.expiration_s,
                self.clock_ms() // 1000,
                max(1, self.max_skew_ms // 1000),
                self.max_auth_validity_s,
            )
        except Refusal as refusal:
            await self._refuse(msg, "auth", refusal, req.requester)
            return
        h = signing.auth_hash(self.id.chain_id, self._account_int, req.timestamp_s, req.expiration_s)
        fields = {"timestamp_s": str(req.timestamp_s), "expiration_s": str(req.expiration_s)}
        await self._issue(msg, "auth", h, requester=req.requester, fields=fields)

    async def on_onboarding(self, msg: Msg) -> None:
        req = await self._decode(msg, "onboarding", SignOnboardingRequest)
        if req is None:
            return
        h = signing.onboarding_hash(self.id.chain_id, self._account_int)
        await self._issue(msg, "onboarding", h, requester=req.requester, fields={})

    # -- jwt / whoami -----------------------------------------------------------------------------

    async def on_jwt(self, msg: Msg) -> None:
        req = await self._decode(msg, "jwt", JwtRequest)
        if req is None:
            return
        self._spawn(msg, "jwt", self._answer_jwt(msg, req))

    async def _answer_jwt(self, msg: Msg, req: JwtRequest) -> None:
        try:
            token = await self.jwt.get(force_refresh=req.force_refresh, stale_jwt=req.stale_jwt)
        except JwtUnavailable as exc:
            await self._refuse(msg, "jwt", Refusal("VENUE_UNAVAILABLE", str(exc)), req.requester)
            return
        try:
            await self.auditor.record(
                "jwt",
                requester=req.requester,
                fields={"force_refresh": str(req.force_refresh).lower(), "expires_at_s": str(token.expires_at_s)},
            )
        except AuditUnavailable as exc:
            await self._refuse(msg, "jwt", Refusal("INTERNAL", f"token withheld: {exc}"), req.requester)
            return
        self.metrics.inc("jwt_issued_total")
        reply = JwtReply(jwt=token.jwt, expires_at_s=token.expires_at_s, account=self.id.account)
        await self._reply(msg, encode(reply))

    async def on_whoami(self, msg: Msg) -> None:
        req = await self._decode(msg, "whoami", WhoamiRequest)
        if req is None:
            return
        reply = WhoamiReply(
            account=self.id.account,
            public_key=hex(self.custody.public_key),
            chain_id=self.id.chain_id,
            paradex_env=self.id.paradex_env,
            instance=self.id.instance,
        )
        await self._reply(msg, encode(reply))

    async def drain(self, timeout: float) -> None:
        await self.auditor.drain(timeout)
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)
