"""The consumer SDK: what a user's own program imports to read (and trade on) the bus.

::

    from bus.sdk import subscribe

    async for trade in subscribe("md.paradex.trades.BTC-USD-PERP", start="last"):
        print(trade.price, trade.size)

``start`` is ``"new"`` (only what arrives from now), ``"all"`` (everything stored), ``"last"`` (the
newest stored message per subject, then live), an ``int`` stream sequence, or a
``datetime.timedelta`` (that long ago). ``group="name"`` makes the subscription a durable consumer
group: every copy of the program that uses the same group shares the messages (each message goes
to one copy) and a message is acknowledged only after the loop body that received it has finished
-- when the program asks for the next one -- so a copy that crashes mid-message has it redelivered
to another copy. Without a group, each subscriber sees every message (an ordered consumer).

For a consistent order book use ``Bus.book_stream`` (snapshot + deltas, no gap, no overlap); to trade,
``Bus.submit_order`` and friends publish commands and await the resulting events.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
from collections.abc import AsyncIterator
from typing import Any, Literal

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

from bus.connection import NatsSettings, connect, jetstream
from bus.consumer import BusMessage
from bus.replay import last_per_subject, replay
from schemas import CryptoPerpetual, DecodeError

Start = Literal["new", "all", "last"] | int | dt.timedelta


class BusError(RuntimeError):
    """A clear, user-facing problem (unreachable NATS, a subject no stream stores, a timeout)."""


class Bus:
    """A connection to the bus with the SDK's helpers. Use ``async with await Bus.connect() as bus``."""

    def __init__(self, nc: NATS, js: JetStreamContext, owns: bool = True) -> None:
        self.nc, self.js = nc, js
        self._owns = owns
        self.undecodable = 0

    @classmethod
    async def connect(cls, url: str | None = None, *, name: str = "pdx-sdk", attempts: int = 3) -> Bus:
        settings = NatsSettings.from_env()
        if url:
            settings = dataclasses.replace(settings, servers=tuple(u.strip() for u in url.split(",")))
        try:
            nc = await connect(name, settings, max_reconnect_attempts=attempts)
        except (nats.errors.NoServersError, OSError, TimeoutError) as exc:
            raise BusError(
                f"cannot reach NATS at {','.join(settings.servers)}: {exc!r} (is `make up` running?)"
            ) from None
        return cls(nc, jetstream(nc))

    @classmethod
    def wrap(cls, nc: NATS) -> Bus:
        """Use an existing nats-py connection (it stays open when the Bus is closed)."""
        return cls(nc, jetstream(nc), owns=False)

    async def close(self) -> None:
        if self._owns and not self.nc.is_closed:
            await self.nc.close()

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def stream_of(self, subject: str) -> str:
        try:
            return await self.js.find_stream_name_by_subject(subject)
        except NotFoundError:
            raise BusError(
                f"no stream stores {subject!r}: subjects look like md.paradex.trades.BTC-USD-PERP, "
                "book.paradex.quotes.<MKT>, ref.paradex.instrument.<MKT>, exec.paradex.<acct>.order.<coid>"
            ) from None

    async def subscribe(
        self,
        subject: str,
        *,
        start: Start = "new",
        group: str | None = None,
        timeout: float | None = None,
        with_meta: bool = False,
    ) -> AsyncIterator[Any]:
        """Yield decoded events (or ``BusMessage`` with ``with_meta=True``) on ``subject``.

        ``timeout`` raises ``BusError`` when no message arrives for that many seconds.
        Messages that fail to decode are skipped and counted in ``self.undecodable``.
        """
        stream = await self.stream_of(subject)
        source = (
            self._group(stream, subject, group, start)
            if group
            else replay(self.js, subject, stream=stream, follow=True, **_replay_start(start))
        )
        it = source.__aiter__()
        try:
            while True:
                try:
                    m: BusMessage = await asyncio.wait_for(it.__anext__(), timeout)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise BusError(f"no message on {subject!r} for {timeout}s") from None
                try:
                    ev = m.event
                except DecodeError:
                    self.undecodable += 1  # counted; a bad message never reaches the caller
                    continue
                yield m if with_meta else ev
        finally:
            with contextlib.suppress(Exception):
                await it.aclose()  # type: ignore[attr-defined]

    async def _group(self, stream: str, subject: str, group: str, start: Start) -> AsyncIterator[BusMessage]:
        """A durable pull consumer shared by every subscriber with the same ``group``."""
        cfg = ConsumerConfig(
            durable_name=group,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30.0,
            filter_subject=subject,
            max_ack_pending=1000,
            **_consumer_start(start),
        )
        try:
            await self.js.add_consumer(stream, cfg)
        except BadRequestError:
            # The group exists with another start option: it keeps its own position, which is the
            # point of a durable group (a restarted copy resumes where the group left off).
            await self.js.consumer_info(stream, group)
        psub = await self.js.pull_subscribe_bind(group, stream=stream)
        try:
            while True:
                for raw in await _fetch(psub):
                    m = BusMessage(raw)
                    yield m
                    await raw.ack()  # the loop body that received it has finished
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

    async def last(self, subject: str) -> dict[str, Any]:
        """``{subject: newest event}`` for every stored subject matching ``subject``."""
        return await last_per_subject(self.js, subject, stream=await self.stream_of(subject))

    async def instruments(self) -> dict[str, CryptoPerpetual]:
        """Every instrument on ``ref.paradex.instrument.*``, keyed by market symbol."""
        out: dict[str, CryptoPerpetual] = {}
        for subject, ev in (await self.last("ref.paradex.instrument.*")).items():
            if isinstance(ev, CryptoPerpetual):
                out[subject.rsplit(".", 1)[-1]] = ev
        return out

    def book_stream(self, market: str, **kwargs: Any) -> Any:
        """A consistent L2 book of ``market`` (snapshot service + deltas); see ``bus.book_client``."""
        from bus import book_client

        return book_client.book_stream(self.nc, self.js, market, **kwargs)

    async def account(self) -> str:
        """The trading account: ``$PARADEX_ACCOUNT``, else the one the signer serves."""
        if os.environ.get("PARADEX_ACCOUNT"):
            return os.environ["PARADEX_ACCOUNT"].lower()
        from services.signer.client import SignerClientError, whoami

        try:
            return (await whoami(self.nc, timeout=2.0)).account.lower()
        except SignerClientError as exc:
            raise BusError(f"no account: set PARADEX_ACCOUNT (no signer answered: {exc})") from None

    async def submit_order(self, market: str, side: str, quantity: str, **order: Any) -> list[Any]:
        """Publish a SubmitOrder for ``self.account()`` and return its events once it rests, fills or
        is rejected (``until=``/``timeout=`` and the order keywords of ``bus.trading.Trader.order``)."""
        from bus import trading

        return await trading.submit_order(self.nc, self.js, await self.account(), market, side, quantity, **order)

    async def cancel_order(self, client_order_id: str, market: str, **kwargs: Any) -> list[Any]:
        """Cancel one order and return its events up to OrderCanceled / OrderCancelRejected."""
        from bus import trading

        return await trading.cancel_order(self.nc, self.js, await self.account(), client_order_id, market, **kwargs)


async def _fetch(psub: Any) -> list[Any]:
    """Up to 32 messages of the group, or none after 5 s of quiet (then the caller asks again)."""
    try:
        return await psub.fetch(32, timeout=5)
    except nats.errors.TimeoutError:
        return []


def _replay_start(start: Start) -> dict[str, Any]:
    if start == "new":
        return {"new_only": True}
    if start == "all":
        return {}
    if start == "last":
        return {"last_per_subject": True}
    if isinstance(start, int):
        return {"start_seq": start}
    if isinstance(start, dt.timedelta):
        return {"start_time_ns": int((dt.datetime.now(dt.UTC) - start).timestamp() * 1e9)}
    raise BusError(f"start must be 'new', 'all', 'last', a stream sequence or a timedelta, not {start!r}")


def _consumer_start(start: Start) -> dict[str, Any]:
    if start == "new":
        return {"deliver_policy": DeliverPolicy.NEW}
    if start == "all":
        return {"deliver_policy": DeliverPolicy.ALL}
    if start == "last":
        return {"deliver_policy": DeliverPolicy.LAST_PER_SUBJECT}
    if isinstance(start, int):
        return {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": start}
    if isinstance(start, dt.timedelta):
        when = dt.datetime.now(dt.UTC) - start
        return {"deliver_policy": DeliverPolicy.BY_START_TIME, "opt_start_time": when.isoformat()}
    raise BusError(f"start must be 'new', 'all', 'last', a stream sequence or a timedelta, not {start!r}")


async def subscribe(subject: str, *, url: str | None = None, **kwargs: Any) -> AsyncIterator[Any]:
    """Connect, subscribe, and close the connection when the loop ends (see ``Bus.subscribe``)."""
    bus = await Bus.connect(url or os.environ.get("NATS_URL"))
    try:
        async for item in bus.subscribe(subject, **kwargs):
            yield item
    finally:
        await bus.close()
