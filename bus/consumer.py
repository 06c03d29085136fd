"""Durable pull consumers with ack-after-effect.

``PullConsumer`` binds (or creates) a durable consumer and drives pull requests by hand into a
callback inbox -- about 2.5x the throughput of nats-py's ``fetch()`` on this machine
(jetstream-and-peers.md §2) -- while keeping JetStream's semantics: each message is handed to the
handler, and acked only after the handler returns (``auto_ack``) or when the handler acks it itself
(``auto_ack=False``, e.g. the order router acks a command only once its outcome is stored).

Several processes binding the same durable share the work (a consumer group). Messages that fail
to decode are terminated (they can never succeed) and counted; handler exceptions are counted,
logged, and the message is redelivered with a back-off until ``max_deliver``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

from bus.stats import Counters
from schemas import DecodeError, decode

log = logging.getLogger("bus.consumer")


class BusMessage:
    """A JetStream message with its stream metadata and lazily decoded event."""

    __slots__ = (
        "_event",
        "_msg",
        "consumer_seq",
        "data",
        "headers",
        "num_delivered",
        "num_pending",
        "stream_seq",
        "subject",
        "timestamp_ns",
    )

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.subject: str = msg.subject
        self.data: bytes = msg.data
        self.headers: dict[str, str] | None = msg.headers
        self._event: Any = None
        tokens = msg.reply.split(".") if msg.reply else []
        if len(tokens) >= 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
            o = 2 if len(tokens) == 9 else 4
            self.num_delivered = int(tokens[o + 2])
            self.stream_seq = int(tokens[o + 3])
            self.consumer_seq = int(tokens[o + 4])
            self.timestamp_ns = int(tokens[o + 5])
            self.num_pending = int(tokens[o + 6])
        else:
            self.num_delivered = self.stream_seq = self.consumer_seq = 0
            self.timestamp_ns = self.num_pending = 0

    @property
    def event(self) -> Any:
        """The decoded schema struct (raises ``DecodeError`` for bytes that are not a bus message)."""
        if self._event is None:
            self._event = decode(self.data)
        return self._event

    @property
    def msg_id(self) -> str | None:
        return self.headers.get("Nats-Msg-Id") if self.headers else None

    async def ack(self) -> None:
        await self._msg._client.publish(self._msg.reply, b"+ACK")

    async def ack_sync(self, timeout: float = 5.0) -> None:
        """Double ack: returns once the server confirmed the ack (exactly-once consumers)."""
        await self._msg._client.request(self._msg.reply, b"+ACK", timeout=timeout)

    async def nak(self, delay: float | None = None) -> None:
        body = b"-NAK" if delay is None else b"-NAK " + msgspec.json.encode({"delay": int(delay * 1e9)})
        await self._msg._client.publish(self._msg.reply, body)

    async def in_progress(self) -> None:
        await self._msg._client.publish(self._msg.reply, b"+WPI")

    async def term(self) -> None:
        await self._msg._client.publish(self._msg.reply, b"+TERM")


Handler = Callable[[BusMessage], Awaitable[None]]


@dataclass
class ConsumerStats(Counters):
    prefix: ClassVar[str] = ""

    delivered: int = 0
    handled: int = 0
    redelivered: int = 0
    decode_errors: int = 0
    handler_errors: int = 0
    gave_up: int = 0


class PullConsumer:
    """A durable pull consumer feeding ``handler`` one message at a time, in stream order."""

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        *,
        stream: str,
        durable: str,
        handler: Handler,
        filter_subjects: list[str] | None = None,
        batch: int = 256,
        expires: float = 5.0,
        ack_wait: float = 30.0,
        max_deliver: int = 10,
        max_ack_pending: int = 20_000,
        deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
        opt_start_seq: int | None = None,
        auto_ack: bool = True,
        decode_events: bool = True,
        inactive_threshold: float | None = None,
    ) -> None:
        self.nc, self.js = nc, js
        self.stream, self.durable = stream, durable
        self.handler = handler
        self.filter_subjects = filter_subjects or []
        self.batch, self.expires = batch, expires
        self.auto_ack, self.decode_events = auto_ack, decode_events
        self.max_deliver = max_deliver
        self.config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending,
            deliver_policy=deliver_policy,
            opt_start_seq=opt_start_seq,
            inactive_threshold=inactive_threshold,
        )
        if len(self.filter_subjects) == 1:
            self.config.filter_subject = self.filter_subjects[0]
        elif self.filter_subjects:
            self.config.filter_subjects = self.filter_subjects
        self.stats = ConsumerStats()
        self._inbox = ""
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._received = 0
        self._batch_done = asyncio.Event()
        self._stopping = False
        self._paused = asyncio.Event()
        self._paused.set()
        self._last_error_log = 0.0

    async def ensure(self) -> None:
        """Create the durable consumer if missing (idempotent; an existing one is reused)."""
        try:
            await self.js.add_consumer(self.stream, self.config)
        except BadRequestError as exc:
            # Exists with a different configuration: keep the server's (its ack floor matters more).
            info = await self.js.consumer_info(self.stream, self.durable)
            log.warning(
                "consumer %s/%s exists with other config (%s); reusing it", self.stream, self.durable, exc.description
            )
            _ = info

    async def start(self) -> PullConsumer:
        await self.ensure()
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(
            self._inbox, cb=self._on_msg, pending_msgs_limit=self.batch * 64, pending_bytes_limit=256 * 2**20
        )
        self._task = asyncio.create_task(self._pull_loop(), name=f"pull-{self.durable}")
        return self

    def pause(self) -> None:
        """Stop asking for more messages (in-flight ones are still handled)."""
        self._paused.clear()

    def resume(self) -> None:
        self._paused.set()

    async def stop(self) -> None:
        """Stop intake, let the handler finish what was delivered, then unsubscribe."""
        self._stopping = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            # Drain lets queued deliveries reach the handler (and be acked) before unsubscribing.
            with contextlib.suppress(Exception):
                await self._sub.drain()
            self._sub = None

    async def info(self) -> Any:
        return await self.js.consumer_info(self.stream, self.durable)

    async def _pull_loop(self) -> None:
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.durable}"
        request = msgspec.json.encode(
            {"batch": self.batch, "expires": int(self.expires * 1e9), "idle_heartbeat": int(1e9)}
        )
        while not self._stopping:
            await self._paused.wait()
            self._received = 0
            self._batch_done.clear()
            try:
                await self.nc.publish(subject, request, reply=self._inbox)
            except Exception as exc:  # noqa: BLE001 - disconnected; nats-py reconnects for us
                self._log_error("pull request failed: %r", exc)
                await asyncio.sleep(0.25)
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._batch_done.wait(), self.expires + 2.0)

    async def _on_msg(self, msg: Msg) -> None:
        hdrs = msg.headers
        if hdrs and "Status" in hdrs and not msg.data:
            status = hdrs.get("Status")
            if status == "100":  # idle heartbeat / flow control
                if msg.reply:
                    await self.nc.publish(msg.reply, b"")
                return
            # 404 no messages, 408 request expired, 409 leader change or limits: the request is over.
            self._batch_done.set()
            return
        self._received += 1
        if self._received >= self.batch:
            self._batch_done.set()
        m = BusMessage(msg)
        self.stats.delivered += 1
        if m.num_delivered > 1:
            self.stats.redelivered += 1
        if self.decode_events:
            try:
                _ = m.event
            except DecodeError as exc:
                self.stats.decode_errors += 1
                self._log_error(
                    "%s: undecodable message on %s seq %d terminated: %s", self.durable, m.subject, m.stream_seq, exc
                )
                await m.term()
                return
        try:
            await self.handler(m)
        except Exception as exc:  # noqa: BLE001 - a handler bug must not kill the consumer
            self.stats.handler_errors += 1
            if m.num_delivered >= self.max_deliver:
                self.stats.gave_up += 1
                log.error(
                    "%s: giving up on %s seq %d after %d deliveries: %r",
                    self.durable,
                    m.subject,
                    m.stream_seq,
                    m.num_delivered,
                    exc,
                )
                await m.term()
            else:
                self._log_error(
                    "%s: handler failed on %s seq %d (delivery %d): %r",
                    self.durable,
                    m.subject,
                    m.stream_seq,
                    m.num_delivered,
                    exc,
                )
                await m.nak(delay=min(5.0, 0.2 * 2**m.num_delivered))
            return
        self.stats.handled += 1
        if self.auto_ack:
            await m.ack()

    def _log_error(self, fmt: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 5.0:
            self._last_error_log = now
            log.error(fmt, *args)


async def delete_consumer(js: JetStreamContext, stream: str, durable: str) -> bool:
    try:
        await js.delete_consumer(stream, durable)
        return True
    except NotFoundError:
        return False
