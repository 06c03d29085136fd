"""The audit trail: a ``SignatureAudit`` record for every signature issued and every JWT handed out
-- what, for whom, when, the message hash; never a key and never the JWT itself -- stored on
``audit.signer.<account>`` (stream ``AUDIT``) in ``SignatureAuditBatch`` messages.

No audit, no signature: a reply carrying a signature (or JWT) is sent only after JetStream has
acknowledged the batch holding its record, and the signer's own auth/onboarding signatures are
audited before they go to the venue. A signer killed in between loses nothing anyone received.

Batching is what keeps this cheap: records submitted during one event-loop turn (the signer
handles queued requests back to back) go out as one JetStream message, published by one task that
awaits one ack -- one publish per burst instead of one per signature, which measured ~75 us of the
~120 us per-request overhead at 1,000 signatures/s. An idle signer still publishes each record
at once (a batch of one). If the ack does not come within ``ack_timeout`` the batch is published
again with the same Msg-Id through ``Publisher.publish_acked`` (stored once); if it still cannot be
stored, every waiter gets ``AuditUnavailable`` and its caller an ``INTERNAL`` error instead of the
signature.

Msg-Ids are ``pdx:sigaudit:<account>:<boot>:<batch>`` where ``boot`` is random per process start,
so a restarted instance never collides with its predecessor's ids inside the duplicate window.
"""

from __future__ import annotations

import asyncio
import secrets
import time

from nats.js import JetStreamContext

from bus import Publisher, PublishError, subjects
from bus.publisher import MSG_ID
from schemas import encode
from schemas.signer import SignatureAudit, SignatureAuditBatch

MAX_BATCH = 256


class AuditUnavailable(RuntimeError):
    """The audit record could not be stored, so the signature must not be released."""


def audit_msg_id(account: str, boot: str, batch: int) -> str:
    return f"pdx:sigaudit:{account}:{boot}:{batch}"


class AuditBatch:
    """Records waiting to be stored together; ``stored`` resolves once JetStream acked them."""

    __slots__ = ("flushed", "records", "seq", "stored")

    def __init__(self, seq: int, loop: asyncio.AbstractEventLoop) -> None:
        self.seq = seq
        self.flushed = False
        self.records: list[SignatureAudit] = []
        self.stored: asyncio.Future[None] = loop.create_future()

    async def wait(self) -> None:
        """Return once stored; raise ``AuditUnavailable`` if it could not be."""
        await asyncio.shield(self.stored)


class Auditor:
    def __init__(
        self,
        publisher: Publisher,
        js: JetStreamContext,
        account: str,
        instance: str,
        *,
        ack_timeout: float = 5.0,
        retry_deadline: float = 10.0,
    ) -> None:
        self.publisher = publisher
        self.js = js
        self.account = account
        self.instance = instance
        self.subject = subjects.audit_signer(account)
        self.boot = secrets.token_hex(6)
        self.seq = 0
        self.batches = 0
        self.ack_timeout = ack_timeout
        self.retry_deadline = retry_deadline
        self.stored = 0
        self.retried = 0
        self.failed = 0
        self._current: AuditBatch | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(
        self,
        op: str,
        *,
        requester: str,
        client_ref: str = "",
        fields: dict[str, str] | None = None,
        message_hash: int | None = None,
    ) -> AuditBatch:
        """Add a record to the current batch (published at the end of this loop turn) and return
        the batch; ``await batch.wait()`` before releasing what the record covers."""
        self.seq += 1
        rec = SignatureAudit(
            op=op,
            account=self.account,
            requester=requester,
            client_ref=client_ref,
            fields=fields or {},
            message_hash=hex(message_hash) if message_hash is not None else "",
            instance=self.instance,
            seq=self.seq,
            ts_init=time.time_ns(),
        )
        batch = self._current
        if batch is None:
            loop = asyncio.get_running_loop()
            self.batches += 1
            batch = self._current = AuditBatch(self.batches, loop)
            loop.call_soon(self._flush, batch)
        batch.records.append(rec)
        if len(batch.records) >= MAX_BATCH:
            self._flush(batch)
        return batch

    async def record(
        self,
        op: str,
        *,
        requester: str,
        client_ref: str = "",
        fields: dict[str, str] | None = None,
        message_hash: int | None = None,
    ) -> None:
        """Submit and wait until stored (raises ``AuditUnavailable``)."""
        batch = self.submit(op, requester=requester, client_ref=client_ref, fields=fields, message_hash=message_hash)
        await batch.wait()

    def _flush(self, batch: AuditBatch) -> None:
        if batch.flushed:
            return  # it filled up and went out before its scheduled flush
        batch.flushed = True
        if self._current is batch:
            self._current = None
        task = asyncio.get_running_loop().create_task(self._store(batch), name=f"audit-{batch.seq}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store(self, batch: AuditBatch) -> None:
        msg = SignatureAuditBatch(
            account=self.account,
            instance=self.instance,
            boot=self.boot,
            batch=batch.seq,
            records=batch.records,
            ts_init=time.time_ns(),
        )
        payload = encode(msg)
        msg_id = audit_msg_id(self.account, self.boot, batch.seq)
        try:
            await self.js.publish(self.subject, payload, timeout=self.ack_timeout, headers={MSG_ID: msg_id})
        except asyncio.CancelledError:
            batch.stored.set_exception(AuditUnavailable("signer stopping before the audit record was stored"))
            raise
        except Exception:  # noqa: BLE001 - any failure: retry with the same Msg-Id below
            self.retried += 1
            try:
                await self.publisher.publish_acked(self.subject, payload, msg_id, deadline=self.retry_deadline)
            except PublishError as exc:
                self.failed += len(batch.records)
                batch.stored.set_exception(AuditUnavailable(f"audit record not stored: {exc}"))
                batch.stored.exception()  # retrieved: every waiter re-raises it through shield
                return
        self.stored += len(batch.records)
        batch.stored.set_result(None)

    async def drain(self, timeout: float) -> None:
        """Flush the open batch and wait for every batch in flight (shutdown)."""
        if self._current is not None:
            self._flush(self._current)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
