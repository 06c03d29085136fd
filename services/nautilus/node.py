"""Conveniences for a ``TradingNode`` that trades Paradex through the bus.

``paradex_node_config(...)`` returns a stock ``TradingNodeConfig`` with the ``PARADEX`` data and
execution clients and execution-engine settings suited to the pipeline; ``build_node(config)``
returns a built ``TradingNode`` with the factories registered. Nothing here is required: a
hand-written ``TradingNodeConfig`` using ``ParadexDataClientConfig``/``ParadexExecClientConfig``
and the two factories works the same.

Engine settings chosen here, and why:

* ``reconciliation=True``: the node's startup reconciliation is the pipeline's (the reconciler
  brings ``EXEC`` to the venue's state first; see ``ParadexExecutionClient``).
* ``open_check_interval_secs=10``: catches an event the node missed (it is connected to the bus,
  not to the venue, so this is a cheap in-memory check).
* ``inflight_check_threshold_ms=30000`` / ``inflight_check_retries=10``: the order router resolves
  unknown outcomes with the venue itself and publishes the result; Nautilus's own default (5 s x 5)
  would reject an order locally while the router is still resolving it (nautilus #3879).
"""

from __future__ import annotations

from typing import Any

from nautilus_trader.config import (
    ImportableStrategyConfig,
    LiveDataEngineConfig,
    LiveExecEngineConfig,
    LiveRiskEngineConfig,
    LoggingConfig,
    TradingNodeConfig,
)
from nautilus_trader.live.node import TradingNode

from services.nautilus.config import ParadexDataClientConfig, ParadexExecClientConfig
from services.nautilus.factories import ParadexLiveDataClientFactory, ParadexLiveExecClientFactory

CLIENT = "PARADEX"


def paradex_node_config(
    *,
    trader_id: str = "TRADER-001",
    account: str | None = None,
    nats_url: str | None = None,
    strategies: list[ImportableStrategyConfig] | None = None,
    quotes_source: str = "venue",
    log_level: str = "INFO",
    log_directory: str | None = None,
    reconciliation_lookback_mins: int | None = None,
    exec_engine: dict[str, Any] | None = None,
    timeout_post_stop: float = 5.0,
    data_client: dict[str, Any] | None = None,
    exec_client: dict[str, Any] | None = None,
) -> TradingNodeConfig:
    """A ``TradingNodeConfig`` with the ``PARADEX`` bus clients (extra settings via the dicts)."""
    engine = {
        "reconciliation": True,
        "reconciliation_lookback_mins": reconciliation_lookback_mins,
        "open_check_interval_secs": 10.0,
        "inflight_check_threshold_ms": 30_000,
        "inflight_check_retries": 10,
        **(exec_engine or {}),
    }
    return TradingNodeConfig(
        trader_id=trader_id,
        logging=LoggingConfig(log_level=log_level, log_directory=log_directory, log_colors=False),
        data_engine=LiveDataEngineConfig(),
        risk_engine=LiveRiskEngineConfig(),
        exec_engine=LiveExecEngineConfig(**engine),
        data_clients={
            CLIENT: ParadexDataClientConfig(nats_url=nats_url, quotes_source=quotes_source, **(data_client or {}))
        },
        exec_clients={CLIENT: ParadexExecClientConfig(nats_url=nats_url, account=account, **(exec_client or {}))},
        strategies=strategies or [],
        timeout_post_stop=timeout_post_stop,
    )


def build_node(config: TradingNodeConfig) -> TradingNode:
    """A ``TradingNode`` with the Paradex factories registered and its clients built."""
    node = TradingNode(config=config)
    node.add_data_client_factory(CLIENT, ParadexLiveDataClientFactory)
    node.add_exec_client_factory(CLIENT, ParadexLiveExecClientFactory)
    node.build()
    return node
