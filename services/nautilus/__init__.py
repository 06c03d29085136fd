"""NautilusTrader integration: converters between bus schemas and real Nautilus objects, and a live
data/execution client pair that lets a stock ``TradingNode`` trade Paradex through the bus.

Importing this package does not import nautilus_trader (it costs ~1 s and ~300 MB): the submodules
do, on first use. ``ConversionError`` is available without the extra installed.

* ``services.nautilus.convert`` -- ``to_nautilus(event)``, ``from_nautilus(obj)``
* ``services.nautilus.data`` / ``.execution`` -- ``ParadexDataClient``, ``ParadexExecutionClient``
* ``services.nautilus.config`` / ``.factories`` -- configs and factories for ``TradingNodeConfig``
* ``services.nautilus.node`` -- ``paradex_node_config(...)``, ``build_node(...)`` conveniences
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from services.nautilus.errors import ConversionError, NautilusUnavailable

VENUE = "PARADEX"
CLIENT_ID = "PARADEX"

_LAZY = {
    "to_nautilus": "services.nautilus.convert",
    "from_nautilus": "services.nautilus.convert",
    "ParadexDataClient": "services.nautilus.data",
    "ParadexExecutionClient": "services.nautilus.execution",
    "ParadexDataClientConfig": "services.nautilus.config",
    "ParadexExecClientConfig": "services.nautilus.config",
    "ParadexLiveDataClientFactory": "services.nautilus.factories",
    "ParadexLiveExecClientFactory": "services.nautilus.factories",
    "paradex_node_config": "services.nautilus.node",
    "build_node": "services.nautilus.node",
}

__all__ = [  # noqa: PLE0604 - the lazy names are strings too
    "CLIENT_ID",
    "VENUE",
    "ConversionError",
    "NautilusUnavailable",
    "available",
    *_LAZY,
]


def available() -> bool:
    """True when nautilus_trader can be imported (the ``nautilus`` extra is installed)."""
    try:
        return importlib.util.find_spec("nautilus_trader") is not None
    except (ImportError, ValueError):
        return False


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'services.nautilus' has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("nautilus_trader"):
            raise NautilusUnavailable(exc) from exc
        raise
