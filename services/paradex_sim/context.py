"""The objects one simulator instance is made of, bundled so the REST, WS and admin handlers can
reach them (``rest_common.CTX_KEY``). Built and owned by ``Simulator``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from services.paradex_sim.config import SimConfig
from services.paradex_sim.engine import Exchange
from services.paradex_sim.faults import FaultRegistry
from services.paradex_sim.feeds import Feeds
from services.paradex_sim.hub import Hub
from services.paradex_sim.jwt_tokens import JwtIssuer
from services.paradex_sim.orders_api import OrderService
from services.paradex_sim.ratelimit import RateLimiter
from services.paradex_sim.util import Clock, Ids
from services.runtime.metrics import Metrics
from services.runtime.problems import Problems


@dataclass
class SimContext:
    cfg: SimConfig
    clock: Clock
    ids: Ids
    exchange: Exchange
    hub: Hub
    feeds: Feeds
    faults: FaultRegistry
    limiter: RateLimiter
    jwt: JwtIssuer
    orders: OrderService
    metrics: Metrics
    problems: Problems
    log: logging.Logger
    flow: object | None = None  # FlowGenerator, set once built
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n
