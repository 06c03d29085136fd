"""Publishing to JetStream with deterministic Msg-Ids, bulk async acks, retries and a bounded buffer.

Two paths:

* ``publish_nowait`` / ``publish`` -- high-rate, fire-and-track. Messages go into one bounded
  buffer; a single sender task feeds ``js.publish_async`` (no task per message) and a single reaper
  task settles the acks in send order, waking once per batch rather than once per message. A
  message whose ack does not arrive within ``ack_timeout`` or that fails with "no responders" (a
  stream leader election, a restarting server) is sent again with the
  **same Msg-Id**, so a first attempt that was in fact stored is deduplicated by the server.
  Retries go out before new messages so per-subject order survives a leader election. When the
  buffer is full, ``publish`` waits (backpressure) and ``publish_nowait`` drops the oldest message;
  every drop is counted and logged.
* ``publish_acked`` -- one message, awaited until stored (or a deadline passes), for facts whose
  durability gates something else (an order event before its command is acked).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError

from schemas import encode

log = logging.getLogger("bus.publisher")

MSG_ID = "Nats-Msg-Id"

# Errors after which a publish is worth repeating with the same Msg-Id.
RETRYABLE = (
    NoStreamResponseError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    asyncio.TimeoutError,
    asyncio.CancelledError,
)


class PublishError(RuntimeError):
    """A message could not be stored before its deadline (or was rejected by the server)."""


@dataclass
class PublisherStats:
    enqueued: int = 0
    stored: int = 0
    duplicates: int = 0
    retries: int = 0
    dropped_overflow: int = 0
    rejected: int = 0
    pending: int = 0
    in_flight: int = 0

    def as_counters(self, prefix: str = "publish_") -> dict[str, int]:
        return {prefix + k: v for k, v in self.__dict__.items()}


@dataclass(slots=True)
class _Item:
    subject: str
    payload: bytes
    headers: dict[str, str] | None
    order: int
    attempts: int = 0
    not_before: float = 0.0
    sent_at: float = 0.0


@dataclass
class _Throttle:
    """Logs the first occurrence, then at most one summary per ``every`` seconds."""

    every: float = 10.0
    last: float = field(default=-1e9)
    suppressed: int = 0

    def should_log(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            return True
        self.suppressed += 1
        return False


class Publisher:
    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext | None = None,
        *,
        name: str = "publisher",
        max_buffer: int = 200_000,
        ack_timeout: float = 5.0,
        max_backoff: float = 2.0,
    ) -> None:
        self.nc = nc
        self.js = js or nc.jetstream(timeout=ack_timeout)
        self.name = name
        self.max_buffer = max_buffer
        self.ack_timeout = ack_timeout
        self.max_backoff = max_backoff
        self.stats = PublisherStats()
        self._queue: deque[_Item] = deque()
        self._retry: deque[_Item] = deque()
        self._in_flight: deque[tuple[asyncio.Future[PubAck], _Item]] = deque()
        self._reap = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._order = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._overflow_log = _Throttle()
        self._reject_log = _Throttle()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> Publisher:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._sender(), name=f"{self.name}-sender"),
                asyncio.create_task(self._reaper(), name=f"{self.name}-reaper"),
            ]
        return self

    async def close(self, timeout: float = 5.0) -> bool:
        """Flush what can be flushed within ``timeout``, then stop. Returns True if nothing is left."""
        flushed = await self.flush(timeout)
        self._closed = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        self._tasks = []
        if not flushed:
            left = len(self._queue) + len(self._retry) + len(self._in_flight)
            log.error("%s closed with %d messages not confirmed stored", self.name, left)
        return flushed

    # -- buffered path ----------------------------------------------------------------------------

    def publish_nowait(
        self, subject: str, payload: bytes, msg_id: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """Enqueue without waiting. On overflow the oldest queued message is dropped and counted.

        ``headers`` are extra NATS headers (e.g. ``Pdx-Prev-Seq``) sent with the message."""
        if self._buffered() >= self.max_buffer:
            dropped = self._queue.popleft() if self._queue else None
            self.stats.dropped_overflow += 1
            if self._overflow_log.should_log():
                log.error(
                    "%s buffer full (%d): dropped oldest message%s; %d drops so far",
                    self.name,
                    self.max_buffer,
                    f" on {dropped.subject}" if dropped else "",
                    self.stats.dropped_overflow,
                )
        self._enqueue(subject, payload, msg_id, headers)

    async def publish(
        self, subject: str, payload: bytes, msg_id: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """Enqueue, waiting while the buffer is full (backpressure instead of loss)."""
        while self._buffered() >= self.max_buffer:
            self._space.clear()
            await self._space.wait()
        self._enqueue(subject, payload, msg_id, headers)

    def publish_event_nowait(
        self, subject: str, event: msgspec.Struct, msg_id: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.publish_nowait(subject, encode(event), msg_id, headers)

    async def publish_event(
        self, subject: str, event: msgspec.Struct, msg_id: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        await self.publish(subject, encode(event), msg_id, headers)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every buffered message is confirmed stored. Returns False on timeout."""
        if self._buffered() == 0:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _buffered(self) -> int:
        return len(self._queue) + len(self._retry) + len(self._in_flight)

    def _enqueue(self, subject: str, payload: bytes, msg_id: str | None, extra: dict[str, str] | None) -> None:
        self._order += 1
        headers = _headers(msg_id, extra)
        self._queue.append(_Item(subject, payload, headers, self._order))
        self.stats.enqueued += 1
        self._idle.clear()
        self._wakeup.set()

    async def _sender(self) -> None:
        while True:
            if not (self._queue or self._retry):
                self._update_gauges()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if not self.nc.is_connected:
                # Keep messages in our own bounded buffer rather than nats-py's while reconnecting.
                await asyncio.sleep(0.05)
                continue
            if self._retry:
                item = self._retry[0]
                wait = item.not_before - time.monotonic()
                if wait > 0:
                    # Retries keep their place ahead of new messages so per-subject order holds.
                    await asyncio.sleep(min(wait, 0.05))
                    continue
                self._retry.popleft()
            else:
                item = self._queue.popleft()
            try:
                fut = await self.js.publish_async(item.subject, item.payload, headers=item.headers)
            except RETRYABLE as exc:
                self._schedule_retry(item, exc)
                continue
            item.sent_at = time.monotonic()
            item.attempts += 1
            self._in_flight.append((fut, item))
            if len(self._in_flight) == 1:
                self._reap.set()

    async def _reaper(self) -> None:
        """Settle acks in send order, one wake-up per batch rather than a callback per message.

        A publish whose ack has not come within ``ack_timeout`` (lost in a disconnect or a leader
        change) is cancelled and sent again with the same Msg-Id.
        """
        while True:
            if not self._in_flight:
                self._update_gauges()
                self._reap.clear()
                await self._reap.wait()
                continue
            fut, item = self._in_flight[0]
            if not fut.done():
                left = item.sent_at + self.ack_timeout - time.monotonic()
                if left > 0:
                    await asyncio.wait((fut,), timeout=left)
                if not fut.done():
                    fut.cancel()
            while self._in_flight and self._in_flight[0][0].done():
                done_fut, done_item = self._in_flight.popleft()
                self._settle(done_fut, done_item)
            if self._buffered() == 0:
                self._idle.set()
            if not self._space.is_set() and self._buffered() < self.max_buffer:
                self._space.set()

    def _settle(self, fut: asyncio.Future[PubAck], item: _Item) -> None:
        if fut.cancelled():
            self._schedule_retry(item, TimeoutError("no ack"))
        else:
            exc = fut.exception()
            if exc is None:
                ack = fut.result()
                self.stats.stored += 1
                if ack.duplicate:
                    self.stats.duplicates += 1
            elif isinstance(exc, RETRYABLE) or (isinstance(exc, APIError) and exc.code in (503, 504)):
                self._schedule_retry(item, exc)
            else:
                self.stats.rejected += 1
                if self._reject_log.should_log():
                    log.error(
                        "%s: server rejected message on %s (%s); %d rejected so far",
                        self.name,
                        item.subject,
                        exc,
                        self.stats.rejected,
                    )

    def _schedule_retry(self, item: _Item, exc: BaseException) -> None:
        self.stats.retries += 1
        delay = min(self.max_backoff, 0.05 * (2 ** min(item.attempts, 6)))
        item.not_before = time.monotonic() + delay
        # Keep the retry queue in original publish order.
        if not self._retry or self._retry[-1].order < item.order:
            self._retry.append(item)
        else:
            items = sorted([*self._retry, item], key=lambda i: i.order)
            self._retry = deque(items)
        if item.attempts in (1, 20) or item.attempts % 100 == 0:
            log.warning("%s: retrying %s (attempt %d): %r", self.name, item.subject, item.attempts, exc)
        self._wakeup.set()

    def _update_gauges(self) -> None:
        self.stats.pending = len(self._queue) + len(self._retry)
        self.stats.in_flight = len(self._in_flight)

    # -- awaited path -----------------------------------------------------------------------------

    async def publish_acked(
        self,
        subject: str,
        payload: bytes,
        msg_id: str | None = None,
        *,
        deadline: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> PubAck:
        """Publish one message and wait until it is stored, retrying with the same Msg-Id through
        leader elections and reconnects for up to ``deadline`` seconds."""
        headers = _headers(msg_id, headers)
        give_up = time.monotonic() + deadline
        attempt = 0
        while True:
            attempt += 1
            try:
                ack = await self.js.publish(subject, payload, timeout=self.ack_timeout, headers=headers)
            except RETRYABLE as exc:
                if time.monotonic() >= give_up:
                    raise PublishError(f"{subject}: not stored after {attempt} attempts: {exc!r}") from exc
                self.stats.retries += 1
                await asyncio.sleep(min(self.max_backoff, 0.05 * (2 ** min(attempt, 6))))
                continue
            except APIError as exc:
                if exc.code in (503, 504) and time.monotonic() < give_up:
                    self.stats.retries += 1
                    await asyncio.sleep(min(self.max_backoff, 0.05 * (2 ** min(attempt, 6))))
                    continue
                self.stats.rejected += 1
                raise PublishError(f"{subject}: rejected by server: {exc}") from exc
            self.stats.stored += 1
            if ack.duplicate:
                self.stats.duplicates += 1
            return ack

    async def publish_event_acked(
        self,
        subject: str,
        event: msgspec.Struct,
        msg_id: str | None = None,
        *,
        deadline: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> PubAck:
        return await self.publish_acked(subject, encode(event), msg_id, deadline=deadline, headers=headers)


def _headers(msg_id: str | None, extra: dict[str, str] | None) -> dict[str, str] | None:
    if extra:
        return {**extra, MSG_ID: msg_id} if msg_id else dict(extra)
    return {MSG_ID: msg_id} if msg_id else None
