"""Reading history: ordered replay from a sequence or a time, the last N messages of a subject
filter, last-message-per-subject reads (last-value caches such as ``REF``) and the few messages
on one subject after a sequence.

Replay uses JetStream's ordered consumer (ephemeral, flow-controlled, recreated on gaps), the
fastest way to rebuild state (about 150k msgs/s here). It stops when it reaches the stream's end
as of the start of the call, unless ``follow=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RawStreamMsg
from nats.js.errors import NotFoundError

from bus.consumer import BusMessage
from schemas import decode


async def stream_for(js: JetStreamContext, subject: str) -> str:
    """The stream that stores ``subject`` (wildcards allowed)."""
    return await js.find_stream_name_by_subject(subject)


async def replay(
    js: JetStreamContext,
    subject: str,
    *,
    stream: str | None = None,
    start_seq: int | None = None,
    start_time_ns: int | None = None,
    last_per_subject: bool = False,
    new_only: bool = False,
    follow: bool = False,
    idle_timeout: float = 5.0,
) -> AsyncIterator[BusMessage]:
    """Yield stored messages matching ``subject`` in stream order.

    Without ``follow`` the iterator ends at the last message stored when the call began (or after
    ``idle_timeout`` seconds without progress while messages are still pending -- a guard against
    a stream being purged under us).
    """
    stream = stream or await stream_for(js, subject)
    info = await js.stream_info(stream)
    end_seq = info.state.last_seq
    cfg = ConsumerConfig(ack_policy=AckPolicy.NONE)
    if start_seq is not None:
        cfg.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
        cfg.opt_start_seq = max(1, start_seq)
    elif start_time_ns is not None:
        cfg.deliver_policy = DeliverPolicy.BY_START_TIME
        cfg.opt_start_time = dt.datetime.fromtimestamp(start_time_ns / 1e9, tz=dt.UTC).isoformat()
    elif last_per_subject:
        cfg.deliver_policy = DeliverPolicy.LAST_PER_SUBJECT
    elif new_only:
        cfg.deliver_policy = DeliverPolicy.NEW
    else:
        cfg.deliver_policy = DeliverPolicy.ALL

    buf: deque[Msg] = deque()
    wake = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        buf.append(msg)
        wake.set()

    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, cb=on_msg, config=cfg)
    consumed = 0
    try:
        if not follow and not new_only:
            pending, delivered = await _progress(sub)
            if end_seq == 0 or (pending == 0 and delivered == 0 and not buf):
                return  # nothing matches the filter from the start point
        while True:
            if not buf:
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), None if follow else idle_timeout)
                except TimeoutError:
                    pending, delivered = await _progress(sub)
                    if pending == 0 and consumed >= delivered:
                        return
                    continue
            while buf:
                m = BusMessage(buf.popleft())
                consumed += 1
                yield m
                if not follow and (m.stream_seq >= end_seq or m.num_pending == 0):
                    return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def _progress(sub: Any) -> tuple[int, int]:
    """(messages still pending, messages delivered so far) of an ordered consumer."""
    try:
        ci = await sub.consumer_info()
    except Exception:  # noqa: BLE001 - consumer being recreated; assume work remains
        return 1, 0
    return int(ci.num_pending or 0), int(ci.delivered.consumer_seq or 0)


async def count_from(js: JetStreamContext, stream: str, subject: str, start_seq: int) -> int:
    """How many messages matching ``subject`` are stored at or after ``start_seq``."""
    ci = await js.add_consumer(
        stream,
        ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(1, start_seq),
            filter_subject=subject,
            inactive_threshold=5.0,
            mem_storage=True,
        ),
    )
    try:
        return int(ci.num_pending or 0)
    finally:
        with contextlib.suppress(NotFoundError, Exception):
            await js.delete_consumer(stream, ci.name)


async def start_seq_for_last(js: JetStreamContext, subject: str, n: int, stream: str | None = None) -> int:
    """The stream sequence from which exactly the last ``n`` messages matching ``subject`` follow
    (binary search over the sequence space; about log2(stream length) consumer probes)."""
    stream = stream or await stream_for(js, subject)
    state = (await js.stream_info(stream)).state
    lo, hi = max(1, state.first_seq), max(1, state.last_seq)
    if n <= 0:
        return hi + 1
    if await count_from(js, stream, subject, lo) <= n:
        return lo
    # Invariant: count_from(lo) > n, count_from(hi + 1) <= n.
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if await count_from(js, stream, subject, mid) >= n:
            lo = mid
        else:
            hi = mid - 1
    return lo


async def last_per_subject(js: JetStreamContext, subject: str, stream: str | None = None) -> dict[str, Any]:
    """``{subject: decoded event}`` for the newest message of every subject matching ``subject``."""
    out: dict[str, Any] = {}
    async for m in replay(js, subject, stream=stream, last_per_subject=True):
        out[m.subject] = m.event
    return out


async def last_message(js: JetStreamContext, stream: str, subject: str) -> Any | None:
    """The newest decoded message on one exact subject, or None."""
    try:
        raw = await js.get_last_msg(stream, subject, direct=True)
    except NotFoundError:
        return None
    return decode(raw.data or b"")


async def subject_after(
    js: JetStreamContext, stream: str, subject: str, after_seq: int, *, upto: int | None = None
) -> list[RawStreamMsg]:
    """The messages stored on one (literal) subject after ``after_seq``, up to ``upto``, read by
    direct get: the handful of facts another writer stored, where an ordered consumer costs more."""
    out: list[RawStreamMsg] = []
    seq = after_seq
    while upto is None or seq < upto:
        try:
            raw = await js.get_msg(stream, seq=seq + 1, subject=subject, next=True, direct=True)
        except NotFoundError:
            break
        if raw.seq is None or (upto is not None and raw.seq > upto):
            break
        out.append(raw)
        seq = raw.seq
    return out
