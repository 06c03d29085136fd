"""Factories that a ``TradingNode`` uses to build the Paradex bus clients from their configs.

Register them under the client name ``PARADEX`` (the key of ``data_clients``/``exec_clients``)::

    node.add_data_client_factory("PARADEX", ParadexLiveDataClientFactory)
    node.add_exec_client_factory("PARADEX", ParadexLiveExecClientFactory)
"""

from __future__ import annotations

import asyncio

from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.live.factories import LiveDataClientFactory, LiveExecClientFactory

from services.nautilus.config import ParadexDataClientConfig, ParadexExecClientConfig
from services.nautilus.data import ParadexDataClient
from services.nautilus.execution import ParadexExecutionClient
from services.nautilus.providers import ParadexInstrumentProvider


class ParadexLiveDataClientFactory(LiveDataClientFactory):
    """Builds a ``ParadexDataClient`` (each client gets its own instrument provider)."""

    @staticmethod
    def create(  # type: ignore[override]
        loop: asyncio.AbstractEventLoop,
        name: str,
        config: ParadexDataClientConfig,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
    ) -> ParadexDataClient:
        return ParadexDataClient(
            loop=loop,
            msgbus=msgbus,
            cache=cache,
            clock=clock,
            instrument_provider=ParadexInstrumentProvider(config.instrument_provider),
            config=config,
            name=name,
        )


class ParadexLiveExecClientFactory(LiveExecClientFactory):
    """Builds a ``ParadexExecutionClient``."""

    @staticmethod
    def create(  # type: ignore[override]
        loop: asyncio.AbstractEventLoop,
        name: str,
        config: ParadexExecClientConfig,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
    ) -> ParadexExecutionClient:
        return ParadexExecutionClient(
            loop=loop,
            msgbus=msgbus,
            cache=cache,
            clock=clock,
            instrument_provider=ParadexInstrumentProvider(config.instrument_provider),
            config=config,
            name=name,
        )
