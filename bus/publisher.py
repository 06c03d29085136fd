"""Publishing to JetStream with deterministic Msg-Ids, pipelined acks, retries and a bounded buffer.

Two paths:

* ``publish_nowait`` / ``publish`` -- high rate, fire and track. Every message is a plain
  ``nc.publish`` with its own reply subject ``<inbox>.<token>``; one wildcard subscription receives
  all the PubAcks, decodes them with msgspec and settles each message by token: no task, future or
  semaphore per message (about half the client CPU of nats-py's ``publish_async`` on this machine).
  Guarantees:

  * one bounded buffer (``max_buffer`` counts queued + retrying + in flight); when it is full,
    ``publish`` waits (backpressure) and ``publish_nowait`` drops the oldest queued message --
    counted (``dropped_overflow``) and reported, never silent;
  * while NATS is unreachable nothing is handed to nats-py (whose own buffer we do not bound);
  * a message without an ack after ``ack_timeout``, or answered "no responders"/503 (a stream
    leader election, a restarting server), is sent again with the **same Msg-Id**, so a first
    attempt that was stored after all is deduplicated by the server (``duplicates``); retries keep
    their original order and go out before new messages, so per-subject order survives;
  * when the connection drops, every message still awaiting its ack is put back at once, ahead of
    anything nats-py buffered, so nothing published after the reconnect overtakes it;
  * after a reconnect or a transient failure the window shrinks to one message until the stream
    answers again: a restarting server accepts connections before JetStream is ready, and a
    pipelined burst then would be stored with holes that the retries fill out of order;
  * other server errors are counted as ``rejected`` and reported;
  * ``flush()`` waits until everything is confirmed stored; ``close()`` flushes then stops.

* ``publish_acked`` -- one message, awaited until stored (or a deadline passes), for facts whose
  durability gates something else (an order event before its command is acked).

Extra NATS headers (``Pdx-Prev-Seq`` on book deltas, ``Pdx-Seq`` on quotes) ride next to the Msg-Id.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError

from bus.connection import add_disconnect_listener
from bus.stats import Counters
from schemas import encode

log = logging.getLogger("bus.publisher")

MSG_ID = "Nats-Msg-Id"

Reporter = Callable[..., None]

# Errors after which an awaited publish is worth repeating with the same Msg-Id.
RETRYABLE = (
    NoStreamResponseError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    TimeoutError,
)


class PublishError(RuntimeError):
    """A message could not be stored before its deadline (or was rejected by the server)."""


class WrongLastSequence(PublishError):
    """A fenced publish (``Nats-Expected-Last-Subject-Sequence``) found that the subject had moved
    on: another writer stored something first. ``last_seq`` is the subject's last sequence as the
    server reported it (None if it could not be read). The server checks the fence before Msg-Id
    dedupe, so this is also what a retry of a message that was in fact stored gets."""

    def __init__(self, subject: str, last_seq: int | None) -> None:
        super().__init__(f"{subject}: wrong last subject sequence (now {last_seq})")
        self.subject = subject
        self.last_seq = last_seq


EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
_WRONG_LAST_SEQUENCE = 10071


@dataclass
class PublisherStats(Counters):
    prefix: ClassVar[str] = "publish_"

    enqueued: int = 0
    stored: int = 0
    duplicates: int = 0
    retries: int = 0
    dropped_overflow: int = 0
    rejected: int = 0
    conflicts: int = 0  # fenced publishes refused because the subject had moved on
    pending: int = 0
    in_flight: int = 0


class _AckError(msgspec.Struct, gc=False):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct, gc=False):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _AckError | None = None


_ack_decoder = msgspec.json.Decoder(_PubAck)


@dataclass(slots=True)
class _Item:
    subject: str
    payload: bytes
    headers: dict[str, str] | None
    order: int
    attempts: int = 0
    not_before: float = 0.0
    sent_at: float = 0.0


def _log_report(kind: str, level: int = logging.WARNING, **ctx: object) -> None:
    log.log(level, "%s %s", kind, " ".join(f"{k}={v}" for k, v in ctx.items()))


# 409/10158 "duplicate message id is in process": a first attempt with this Msg-Id is still being
# stored (typically across a leader change). Retrying with the same id settles it either way.
DUPLICATE_IN_PROCESS = 10158


def _reported_seq(description: str) -> int | None:
    """The sequence in a "wrong last sequence: N" error."""
    tail = description.rsplit(":", 1)[-1].strip()
    return int(tail) if tail.isdigit() else None


def _transient(code: int, err_code: int, description: str) -> bool:
    """Server answers after which the same message is worth sending again (same Msg-Id)."""
    return code in (503, 504) or err_code == DUPLICATE_IN_PROCESS or "in process" in description


def _headers(msg_id: str | None, extra: dict[str, str] | None) -> dict[str, str] | None:
    if extra:
        return {**extra, MSG_ID: msg_id} if msg_id else dict(extra)
    return {MSG_ID: msg_id} if msg_id else None


class Publisher:
    """Buffered, deduplicated JetStream publishing for one process. See the module docstring.

    ``report(kind, level=..., **context)`` receives overflow and rejection reports; services pass
    their ``problems.report`` so each is counted and logged once with context.
    """

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext | None = None,
        *,
        name: str = "publisher",
        max_buffer: int = 200_000,
        window: int = 4000,
        ack_timeout: float = 5.0,
        max_backoff: float = 2.0,
        yield_every: int = 32,
        report: Reporter | None = None,
    ) -> None:
        self.nc = nc
        self.js = js or nc.jetstream(timeout=ack_timeout)
        self.name = name
        self.max_buffer = max_buffer
        self.window = window
        self.ack_timeout = ack_timeout
        self.max_backoff = max_backoff
        self.yield_every = max(1, yield_every)
        self.report: Reporter = report or _log_report
        self.stats = PublisherStats()
        self._queue: deque[_Item] = deque()
        self._retry: deque[_Item] = deque()
        self._in_flight: dict[str, _Item] = {}
        self._order = itertools.count(1)
        self._tokens = itertools.count(1)
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._space = asyncio.Event()
        self._space.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._prefix = ""
        self._sub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._hooked = False
        self._probing = False

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> Publisher:
        if not self._tasks:
            self._prefix = self.nc.new_inbox() + "."
            self._sub = await self.nc.subscribe(self._prefix + "*", cb=self._on_ack)
            self._hooked = add_disconnect_listener(self.nc, self._on_disconnected)
            self._tasks = [
                asyncio.create_task(self._sender(), name=f"{self.name}-sender"),
                asyncio.create_task(self._sweeper(), name=f"{self.name}-sweeper"),
            ]
        return self

    async def close(self, timeout: float = 5.0) -> bool:
        """Flush what can be flushed within ``timeout``, then stop. True if nothing is left."""
        flushed = await self.flush(timeout)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        if not flushed:
            log.error("%s closed with %d messages not confirmed stored", self.name, self._buffered())
        return flushed

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every buffered message is confirmed stored. False on timeout."""
        if self._buffered() == 0:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # -- buffered path ----------------------------------------------------------------------------

    def publish_nowait(
        self, subject: str, payload: bytes, msg_id: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """Enqueue without waiting; on overflow the oldest queued message is dropped (counted)."""
        if self._buffered() >= self.max_buffer:
            self._overflow()
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

    def _enqueue(self, subject: str, payload: bytes, msg_id: str | None, extra: dict[str, str] | None) -> None:
        self._queue.append(_Item(subject, payload, _headers(msg_id, extra), next(self._order)))
        self.stats.enqueued += 1
        if self._idle.is_set():
            self._idle.clear()
        if not self._wakeup.is_set():
            self._wakeup.set()

    def _overflow(self) -> None:
        dropped = self._queue.popleft() if self._queue else None
        self.stats.dropped_overflow += 1
        self.report(
            "publish_buffer_overflow",
            level=logging.ERROR,
            publisher=self.name,
            buffer=self.max_buffer,
            subject=dropped.subject if dropped else "",
            dropped_so_far=self.stats.dropped_overflow,
        )

    def _buffered(self) -> int:
        return len(self._queue) + len(self._retry) + len(self._in_flight)

    async def _sender(self) -> None:
        nc = self.nc
        in_flight = self._in_flight
        burst = 0
        while True:
            if not (self._queue or self._retry):
                self._update_gauges()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if not nc.is_connected:
                if not self._hooked:
                    self._requeue_in_flight()  # with the listener this happens at the right moment
                await asyncio.sleep(0.05)  # keep messages in our bounded buffer, not nats-py's
                continue
            if len(in_flight) >= self._limit():
                self._room.clear()
                await self._room.wait()
                continue
            if self._retry:
                item = self._retry[0]
                wait = item.not_before - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(min(wait, 0.05))  # retries keep their place ahead of new ones
                    continue
                self._retry.popleft()
            else:
                item = self._queue.popleft()
            token = str(next(self._tokens))
            item.attempts += 1
            item.sent_at = time.monotonic()
            in_flight[token] = item
            try:
                await nc.publish(item.subject, item.payload, reply=self._prefix + token, headers=item.headers)
            except Exception as exc:  # noqa: BLE001 - connection lost mid-publish: retry the same Msg-Id
                in_flight.pop(token, None)
                self._schedule_retry(item, exc)
                continue
            burst += 1
            if burst >= self.yield_every:
                burst = 0
                await asyncio.sleep(0)  # let the socket reader and the ack handler run

    async def _on_ack(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) :]
        item = self._in_flight.pop(token, None)
        if item is None:
            return  # answered after it was timed out and re-sent: the re-send settles it
        hdrs = msg.headers
        if hdrs and hdrs.get("Status") == "503":
            self._schedule_retry(item, RuntimeError("no responders"))
        else:
            try:
                ack = _ack_decoder.decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                ack = _PubAck(error=_AckError(description=f"unreadable ack {msg.data[:100]!r}"))
            if ack.error is None:
                self._probing = False
                self.stats.stored += 1
                if ack.duplicate:
                    self.stats.duplicates += 1
            elif _transient(ack.error.code, ack.error.err_code, ack.error.description):
                self._schedule_retry(item, RuntimeError(ack.error.description))
            else:
                self._probing = False  # the stream answered: it is there
                self.stats.rejected += 1
                self.report(
                    "publish_rejected",
                    level=logging.ERROR,
                    publisher=self.name,
                    subject=item.subject,
                    code=ack.error.code,
                    err_code=ack.error.err_code,
                    error=ack.error.description,
                )
        self._settled()

    def _limit(self) -> int:
        return 1 if self._probing else self.window

    def _settled(self) -> None:
        if not self._room.is_set() and len(self._in_flight) < self._limit():
            self._room.set()
        buffered = self._buffered()
        if not self._space.is_set() and buffered < self.max_buffer:
            self._space.set()
        if buffered == 0:
            self._idle.set()

    def _on_disconnected(self) -> None:
        """The connection dropped: requeue what awaits an ack, ahead of nats-py's own buffer.

        nats-py replays its outgoing buffer on the new connection before we could re-send the
        messages lost in the dead socket -- so those would be overtaken by later ones. Emptying
        that buffer (we re-send everything it held, with the same Msg-Ids) keeps per-subject order.
        """
        nc: Any = self.nc
        if hasattr(nc, "_pending") and hasattr(nc, "_pending_data_size"):
            nc._pending = []
            nc._pending_data_size = 0
        self._requeue_in_flight()

    def _requeue_in_flight(self) -> None:
        self._probing = True
        if not self._in_flight:
            return
        items = list(self._in_flight.values())
        self._in_flight.clear()
        for it in items:
            it.not_before = 0.0
        self.stats.retries += len(items)
        self._retry = deque(sorted([*self._retry, *items], key=lambda i: i.order))
        log.warning("%s: connection lost with %d messages unacknowledged; re-sending them", self.name, len(items))
        self._settled()
        self._wakeup.set()

    def _schedule_retry(self, item: _Item, exc: BaseException) -> None:
        self._probing = True
        self.stats.retries += 1
        item.not_before = time.monotonic() + min(self.max_backoff, 0.05 * (2 ** min(item.attempts, 6)))
        retry = self._retry
        if not retry or retry[-1].order < item.order:
            retry.append(item)
        else:
            self._retry = deque(sorted([*retry, item], key=lambda i: i.order))
        if item.attempts in (1, 20) or item.attempts % 100 == 0:
            log.warning("%s: retrying %s (attempt %d): %r", self.name, item.subject, item.attempts, exc)
        self._wakeup.set()

    async def _sweeper(self) -> None:
        """Re-send messages whose ack never came (lost in a disconnect or a leader change)."""
        while True:
            await asyncio.sleep(min(0.5, self.ack_timeout / 2))
            deadline = time.monotonic() - self.ack_timeout
            stale = [tok for tok, it in self._in_flight.items() if it.sent_at < deadline]
            for tok in stale:
                item = self._in_flight.pop(tok)
                self._schedule_retry(item, TimeoutError(f"no ack within {self.ack_timeout}s"))
            if stale:
                self._settled()
            self._update_gauges()

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
        hdrs = _headers(msg_id, headers)
        give_up = time.monotonic() + deadline
        attempt = 0
        while True:
            attempt += 1
            try:
                ack = await self.js.publish(subject, payload, timeout=self.ack_timeout, headers=hdrs)
            except RETRYABLE as exc:
                if time.monotonic() >= give_up:
                    raise PublishError(f"{subject}: not stored after {attempt} attempts: {exc!r}") from exc
                self.stats.retries += 1
                await asyncio.sleep(min(self.max_backoff, 0.05 * (2 ** min(attempt, 6))))
                continue
            except APIError as exc:
                if _transient(exc.code or 0, exc.err_code or 0, exc.description or "") and time.monotonic() < give_up:
                    self.stats.retries += 1
                    await asyncio.sleep(min(self.max_backoff, 0.05 * (2 ** min(attempt, 6))))
                    continue
                if exc.err_code == _WRONG_LAST_SEQUENCE:
                    self.stats.conflicts += 1
                    raise WrongLastSequence(subject, _reported_seq(exc.description or "")) from exc
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
