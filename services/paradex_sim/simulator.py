"""``Simulator``: builds one simulator instance (exchange, feeds, hub, faults, limits, JWT, flow),
serves REST, WebSocket and admin on their own loopback ports, and runs the periodic tasks
(book snapshots, prices/funding/summaries, funding settlement, background flow).

In-process use::

    async with Simulator(rest_port=0, ws_port=0, admin_port=0, flow_enabled=False) as sim:
        sim.rest_url, sim.ws_url, sim.admin_url
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from aiohttp import web

from services.paradex_sim.admin import Admin
from services.paradex_sim.config import SimConfig
from services.paradex_sim.context import SimContext
from services.paradex_sim.engine import Exchange
from services.paradex_sim.faults import FaultRegistry
from services.paradex_sim.feeds import Feeds
from services.paradex_sim.flow import FlowGenerator
from services.paradex_sim.hub import Hub
from services.paradex_sim.jwt_tokens import JwtIssuer
from services.paradex_sim.markets import build_markets
from services.paradex_sim.orders_api import OrderService
from services.paradex_sim.pricing import Pricing
from services.paradex_sim.ratelimit import RateLimiter
from services.paradex_sim.rest_app import build_rest_app
from services.paradex_sim.util import Clock, Ids
from services.paradex_sim.ws_server import WsServer
from services.runtime.metrics import Metrics
from services.runtime.problems import Problems

log = logging.getLogger("paradex_sim")


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


class Simulator:
    def __init__(self, config: SimConfig | None = None, **overrides: object) -> None:
        cfg = (config or SimConfig()).with_overrides(**overrides)
        cfg.validate()
        self.cfg = cfg
        self.clock = Clock()
        self.ids = Ids(self.clock)
        specs = build_markets(cfg.markets, cfg.synthetic_markets, cfg.seed)
        self.pricing = Pricing(specs, cfg.seed)
        self.exchange = Exchange(cfg, specs, self.clock, self.ids, self.pricing)
        self.faults = FaultRegistry()
        metrics = Metrics("paradex_sim")
        problems = Problems(metrics, log)
        self.hub = Hub(self.faults, problems.report, cfg.slow_consumer_limit)
        self.feeds = Feeds(self.exchange, self.hub, self.faults, self.clock)
        self.exchange.sink = self.feeds
        self.ctx = SimContext(
            cfg=cfg, clock=self.clock, ids=self.ids, exchange=self.exchange, hub=self.hub, feeds=self.feeds,
            faults=self.faults, limiter=RateLimiter(cfg.rate_limits_enabled),
            jwt=JwtIssuer(self.clock, cfg.jwt_lifetime_s), orders=OrderService(cfg, self.exchange, self.clock),
            metrics=metrics, problems=problems, log=log,
        )
        self.flow = FlowGenerator(self.exchange, cfg.seed, cfg.flow_rate)
        self.ctx.flow = self.flow
        self.ws = WsServer(self.ctx)
        self.admin = Admin(self.ctx, self.flow, self.urls)
        self.admin.on_markets_changed = self.ws.refresh_markets
        self.rest_port = cfg.rest_port
        self.ws_port = cfg.ws_port
        self.admin_port = cfg.admin_port
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False

    # -- addresses ----------------------------------------------------------------------------------

    @property
    def rest_url(self) -> str:
        return f"http://{self.cfg.host}:{self.rest_port}/v1"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.cfg.host}:{self.ws_port}/v1"

    @property
    def admin_url(self) -> str:
        return f"http://{self.cfg.host}:{self.admin_port}"

    def urls(self) -> dict[str, str]:
        return {"rest_url": self.rest_url, "ws_url": self.ws_url, "admin_url": self.admin_url}

    def ports(self) -> dict[str, object]:
        return {"rest_port": self.rest_port, "ws_port": self.ws_port, "admin_port": self.admin_port, **self.urls()}

    # -- lifecycle ----------------------------------------------------------------------------------

    async def _serve(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        self._runners.append(runner)
        sock = _bind(self.cfg.host, port)
        site = web.SockSite(runner, sock)
        await site.start()
        return int(sock.getsockname()[1])

    async def start(self) -> Simulator:
        if self.started:
            return self
        try:
            self.rest_port = await self._serve(build_rest_app(self.ctx), self.cfg.rest_port)
            self.ws_port = await self._serve(self.ws.build_app(), self.cfg.ws_port)
            self.admin_port = await self._serve(self.admin.build_app(), self.cfg.admin_port)
        except BaseException:
            await self.stop()
            raise
        if self.cfg.flow_enabled:
            self.flow.set(running=True)
        self._tasks = [
            asyncio.create_task(self.feeds.snapshot_loop(), name="sim-snapshots"),
            asyncio.create_task(self._price_loop(), name="sim-prices"),
            asyncio.create_task(self._funding_loop(), name="sim-funding"),
            asyncio.create_task(self.flow.run(), name="sim-flow"),
        ]
        self.started = True
        log.info("paradex simulator up: REST %s WS %s admin %s", self.rest_url, self.ws_url, self.admin_url)
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for conn in list(self.hub.conns.values()):
            await conn.close(1001, "simulator stopping")
        for runner in reversed(self._runners):
            with contextlib.suppress(Exception):
                await runner.cleanup()
        self._runners = []
        self.started = False

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- periodic work ------------------------------------------------------------------------------

    async def _price_loop(self) -> None:
        interval = self.cfg.price_interval_s
        last = self.clock.now_ms()
        while True:
            await asyncio.sleep(interval)
            now = self.clock.now_ms()
            elapsed, last = max(0, now - last), now
            try:
                rows = self.exchange.price_tick(elapsed, walk=self.flow.running)
                self.feeds.publish_periodic(rows)
            except Exception:
                self.ctx.problems.report("price_tick_failed")
                log.exception("price tick failed")

    async def _funding_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.funding_settle_interval_s)
            try:
                self.exchange.settle_funding_all()
            except Exception:
                self.ctx.problems.report("funding_settle_failed")
                log.exception("funding settlement failed")
