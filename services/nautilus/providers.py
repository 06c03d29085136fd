"""``ParadexInstrumentProvider``: Nautilus instruments from the ``REF`` stream.

The feed handler keeps one ``CryptoPerpetual`` per market on ``ref.paradex.instrument.<MKT>``
(a last-value cache). The provider reads the newest one of every (or of the requested) market and
converts it; a definition that cannot become a Nautilus instrument is skipped and logged, never
fatal. The owning client binds a JetStream context before ``initialize()``.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nautilus_trader.common.config import InstrumentProviderConfig
from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.model.identifiers import InstrumentId

import schemas as s
from bus import subjects
from bus.replay import replay
from services.nautilus.convert import to_nautilus
from services.nautilus.errors import ConversionError

REF_STREAM = "REF"
ALL_INSTRUMENTS = "ref.paradex.instrument.*"
VENUE = "PARADEX"


class ParadexInstrumentProvider(InstrumentProvider):
    """Loads ``CryptoPerpetual`` definitions published on ``ref.paradex.instrument.*``."""

    def __init__(self, config: InstrumentProviderConfig | None = None) -> None:
        super().__init__(config=config)
        self._js: JetStreamContext | None = None
        self.skipped = 0

    def bind(self, js: JetStreamContext) -> None:
        """Use this JetStream context for reads (called by the client once connected)."""
        self._js = js

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("ParadexInstrumentProvider is not bound to a bus connection yet")
        return self._js

    def add_definition(self, definition: s.CryptoPerpetual, *, checked: bool = True) -> object | None:
        """Convert and add one definition; returns the Nautilus instrument, or None if refused."""
        try:
            instrument = to_nautilus(definition, checked=checked)
        except ConversionError as exc:
            self.skipped += 1
            self._log.warning(f"Skipping instrument {definition.id}: {exc}")
            return None
        for ccy in (instrument.base_currency, instrument.quote_currency, instrument.settlement_currency):
            self.add_currency(ccy)
        self.add(instrument)
        return instrument

    async def load_all_async(self, filters: dict | None = None) -> None:
        async for m in replay(self.js, ALL_INSTRUMENTS, stream=REF_STREAM, last_per_subject=True):
            try:
                ev = m.event
            except s.DecodeError as exc:
                self.skipped += 1
                self._log.warning(f"Skipping undecodable definition on {m.subject}: {exc}")
                continue
            if isinstance(ev, s.CryptoPerpetual):
                self.add_definition(ev)

    async def load_ids_async(self, instrument_ids: list[InstrumentId], filters: dict | None = None) -> None:
        for instrument_id in instrument_ids:
            await self.load_async(instrument_id, filters)

    async def load_async(self, instrument_id: InstrumentId, filters: dict | None = None) -> None:
        if instrument_id.venue.value != VENUE:
            raise ValueError(f"{instrument_id} is not a {VENUE} instrument")
        subject = subjects.instrument(instrument_id.symbol.value)
        try:
            raw = await self.js.get_last_msg(REF_STREAM, subject, direct=True)
            ev = s.decode(raw.data or b"")
        except NotFoundError:
            ev = None
        except s.DecodeError as exc:
            self.skipped += 1
            self._log.warning(f"Undecodable definition on {subject}: {exc}")
            return
        if isinstance(ev, s.CryptoPerpetual):
            self.add_definition(ev)
        else:
            self._log.warning(f"No definition of {instrument_id} on {subject}")
