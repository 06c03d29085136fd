"""What pre-trade checks need to know, kept fresh: instruments, mark prices and venue state.

* Instruments: the ``REF`` last-value cache (``ref.paradex.instrument.<MKT>``, CryptoPerpetual),
  read once and then followed. A market the feed handler has not published (or no feed handler at
  all) is fetched from the venue's ``GET /markets`` on first use.
* Marks: ``md.paradex.mark.<MKT>`` (MarkPriceUpdate), last per subject then live. A mark older than
  ``mark_max_age`` is refreshed from ``GET /markets/summary`` in the background; the first mark of
  a market is fetched synchronously (bounded by a short timeout).
* Venue state: ``GET /system/state`` polled every ``system_state_interval`` seconds, and
  ``md.paradex.status.<MKT>`` (InstrumentStatus, whose ``trading_event`` is the system status)
  for immediate changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from nats.js import JetStreamContext

import schemas as s
from bus.replay import replay
from services.paradex.instruments import crypto_perpetual
from services.paradex.normalize import NormalizeError
from services.paradex.rest import ParadexError, RestClient, UnknownOutcome
from services.runtime import Problems

log = logging.getLogger("order_router.market_data")

SYSTEM_STATUSES = ("ok", "maintenance", "cancel_only", "post_only")


@dataclass
class Mark:
    value: Decimal
    at: float  # monotonic time received


class MarketData:
    def __init__(
        self,
        js: JetStreamContext,
        rest: RestClient,
        problems: Problems,
        *,
        mark_max_age: float = 30.0,
        system_state_interval: float = 5.0,
    ) -> None:
        self.js = js
        self.rest = rest
        self.problems = problems
        self.mark_max_age = mark_max_age
        self.system_state_interval = system_state_interval
        self.instruments: dict[str, s.CryptoPerpetual] = {}
        self.marks: dict[str, Mark] = {}
        self.system_status = "ok"
        self.system_status_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._refreshing: set[str] = set()
        self._markets_fetched_at = 0.0
        self._markets_lock = asyncio.Lock()

    async def start(self) -> None:
        await self._load_instruments()
        with contextlib.suppress(Exception):
            await self._poll_system_state_once()
        self._tasks = [
            asyncio.create_task(self._follow("ref.paradex.instrument.>", "REF"), name="router-ref"),
            asyncio.create_task(self._follow("md.paradex.mark.>", "MD"), name="router-marks"),
            asyncio.create_task(self._follow("md.paradex.status.>", "MD"), name="router-status"),
            asyncio.create_task(self._system_state_loop(), name="router-system-state"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []

    # -- lookups ----------------------------------------------------------------------------------

    def instrument(self, market: str) -> s.CryptoPerpetual | None:
        return self.instruments.get(market)

    async def instrument_or_fetch(self, market: str) -> s.CryptoPerpetual | None:
        inst = self.instruments.get(market)
        if inst is not None:
            return inst
        await self._fetch_markets()
        return self.instruments.get(market)

    def precisions(self, market: str) -> tuple[int | None, int | None]:
        inst = self.instruments.get(market)
        return (inst.price_precision, inst.size_precision) if inst else (None, None)

    def quote_currency(self, market: str) -> str:
        inst = self.instruments.get(market)
        return inst.quote_currency if inst else "USD"

    async def mark(self, market: str) -> Decimal | None:
        """The mark if fresh enough; fetched when missing, refreshed in the background when old."""
        m = self.marks.get(market)
        now = time.monotonic()
        if m is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh_mark(market), 1.0)
            m = self.marks.get(market)
            return m.value if m is not None else None
        if now - m.at > self.mark_max_age:
            if market not in self._refreshing:
                self._refreshing.add(market)
                asyncio.create_task(self._refresh_mark(market))
            if now - m.at > 4 * self.mark_max_age:
                return None
        return m.value

    # -- followers --------------------------------------------------------------------------------

    async def _load_instruments(self) -> None:
        try:
            async for m in replay(self.js, "ref.paradex.instrument.>", stream="REF", last_per_subject=True):
                self._on_message(m.event)
        except Exception as exc:  # noqa: BLE001 - an empty/missing REF stream is not fatal
            self.problems.report("ref_load_failed", error=repr(exc))

    async def _follow(self, subject: str, stream: str) -> None:
        while True:
            try:
                async for m in replay(self.js, subject, stream=stream, last_per_subject=True, follow=True):
                    try:
                        self._on_message(m.event)
                    except s.DecodeError as exc:
                        self.problems.report("undecodable_reference", subject=m.subject, error=str(exc))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - re-follow after a NATS hiccup
                self.problems.report("follow_failed", subject=subject, error=repr(exc))
                await asyncio.sleep(1.0)

    def _on_message(self, ev: Any) -> None:
        if isinstance(ev, s.CryptoPerpetual):
            self.instruments[ev.raw_symbol] = ev
        elif isinstance(ev, s.MarkPriceUpdate):
            try:
                self.marks[s.market_of(ev.instrument_id)] = Mark(Decimal(ev.value), time.monotonic())
            except InvalidOperation:
                self.problems.report("bad_mark", instrument=ev.instrument_id, value=ev.value)
        elif isinstance(ev, s.InstrumentStatus) and ev.trading_event in SYSTEM_STATUSES:
            self.system_status = ev.trading_event
            self.system_status_at = time.monotonic()

    # -- REST fallbacks ---------------------------------------------------------------------------

    async def _fetch_markets(self) -> None:
        async with self._markets_lock:
            if time.monotonic() - self._markets_fetched_at < 5.0:
                return
            self._markets_fetched_at = time.monotonic()
            try:
                markets = await self.rest.markets()
            except (ParadexError, UnknownOutcome) as exc:
                self.problems.report("markets_fetch_failed", error=str(exc))
                return
            now = time.time_ns()
            for raw in markets:
                try:
                    inst = crypto_perpetual(raw, now)
                except (NormalizeError, ValueError):
                    continue  # not a perpetual, or not expressible: the feed handler reports those
                self.instruments.setdefault(inst.raw_symbol, inst)

    async def _refresh_mark(self, market: str) -> None:
        try:
            rows = await self.rest.markets_summary(market)
            for row in rows:
                if row.get("symbol") == market and row.get("mark_price"):
                    self.marks[market] = Mark(Decimal(str(row["mark_price"])), time.monotonic())
        except (ParadexError, UnknownOutcome, InvalidOperation) as exc:
            self.problems.report("mark_fetch_failed", market=market, error=str(exc))
        finally:
            self._refreshing.discard(market)

    async def _poll_system_state_once(self) -> None:
        status = await self.rest.system_state()
        if status not in SYSTEM_STATUSES:
            self.problems.report("unknown_system_status", status=status)
        self.system_status = status
        self.system_status_at = time.monotonic()

    async def _system_state_loop(self) -> None:
        while True:
            await asyncio.sleep(self.system_state_interval)
            try:
                await self._poll_system_state_once()
            except (ParadexError, UnknownOutcome) as exc:
                self.problems.report("system_state_failed", error=str(exc))
