"""The order-router process: wiring and lifecycle.

Start-up order matters for exactly-once:

1. the account (``PARADEX_ACCOUNT`` or the signer's ``whoami``);
2. the router lease (one active instance per account; others stand by in state ``Standby``);
3. the projection rebuilt from ``EXEC`` (``Recovering``) -- every order and what happened to it;
4. reference data, the in-flight resolver (every SUBMITTED / PENDING_* order gets a
   ``not_placed_after`` horizon of now + recv_window + grace and is queried at once), the private
   WebSocket;
5. only then the durable command consumer (``Running``): a redelivered command finds its order in
   the projection and is looked up instead of being sent again.

Shutdown (SIGTERM): stop pulling commands, let running commands finish (bounded by
``DRAIN_TIMEOUT``), close the WebSocket, release the lease so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from typing import Any

import httpx
import msgspec
from nats.aio.msg import Msg

from bus import PullConsumer, subjects
from services.order_router.commands import Commands
from services.order_router.counters import BufferedMetrics
from services.order_router.dispatcher import Dispatcher
from services.order_router.http_transport import AiohttpTransport
from services.order_router.inflight import Resolver
from services.order_router.lease import RouterLease
from services.order_router.market_data import MarketData
from services.order_router.orders import OrderStore
from services.order_router.private_stream import PrivateStream
from services.order_router.ratelimit import RateLimiter
from services.order_router.settings import RouterSettings
from services.order_router.signer_port import SignerPort
from services.order_router.transitions import Transitions
from services.order_router.venue import CrashHooks, Venue
from services.paradex.private_rest import PrivateRestClient
from services.runtime import Service
from services.signer.client import SignerClient, SignerClientError, whoami

VENUE_CONNECTIONS = 64  # concurrent REST requests (and keep-alive connections) to the venue


def latency_subject(account: str) -> str:
    """Request/reply (core NATS): the router's per-hop submit latency summary."""
    return f"ctl.router.{subjects.token(account)}.latency"


class OrderRouter(Service):
    name = "order-router"

    def __init__(self, settings: RouterSettings) -> None:
        super().__init__(settings)
        self.cfg = settings
        self.account = settings.account
        self.signer_client: SignerClient | None = None
        self.rest: PrivateRestClient | None = None
        self.http: httpx.AsyncClient | None = None
        self.lease: RouterLease | None = None
        self.store: OrderStore | None = None
        self.md: MarketData | None = None
        self.venue: Venue | None = None
        self.resolver: Resolver | None = None
        self.commands: Commands | None = None
        self.dispatcher: Dispatcher | None = None
        self.stream: PrivateStream | None = None
        self.consumer: PullConsumer | None = None
        self.limiter = RateLimiter(
            settings.orders_per_s, settings.orders_per_min, settings.gets_per_s, settings.gets_per_min
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._latency_at = 0.0
        self._ctl_sub: Any = None
        self.counters = BufferedMetrics(self.metrics)

    # -- lifecycle ------------------------------------------------------------------------------------

    async def run(self) -> None:
        await self._discover_account()
        self.details["account"] = self.account
        self.signer_client = SignerClient(
            self.nc, self.account, timeout=self.cfg.signer_timeout, requester="order-router"
        )
        port = SignerPort(self.signer_client)
        self.http = httpx.AsyncClient(
            timeout=self.cfg.rest_timeout,
            headers={"User-Agent": "paradex-bus-order-router", "Accept": "application/json"},
            transport=AiohttpTransport(limit=VENUE_CONNECTIONS),
        )
        self.rest = PrivateRestClient(
            self.cfg.rest_url, token=port.jwt, timeout=self.cfg.rest_timeout, get_retries=1, client=self.http
        )
        if self.cfg.lease:
            self.set_state("Standby")
            owner = f"{self.cfg.service}.{self.cfg.instance}"
            self.lease = RouterLease(self.js, self.account, owner, self.cfg.lease_renew)
            await self.lease.acquire()
            self._tasks.append(asyncio.create_task(self._watch_lease(), name="router-lease-watch"))
        self.set_state("Recovering")
        t0 = time.monotonic()
        self.store = store = OrderStore(self.js, self.publisher, self.account, self.counters, self.problems)
        loaded = await store.load()
        self._tasks.append(
            asyncio.create_task(store.follow(store.proj.last_stream_seq + 1), name="router-exec-follow")
        )
        # The rebuilt history is long-lived: keep the cyclic GC from re-scanning it on every pass.
        gc.collect()
        gc.freeze()
        self.log.info(
            "projection rebuilt from EXEC: %d events, %d orders, %d in flight (%.2f s)",
            loaded,
            len(store.proj.orders),
            len(store.in_flight()),
            time.monotonic() - t0,
        )
        self.md = md = MarketData(
            self.js,
            self.rest,
            self.problems,
            mark_max_age=self.cfg.mark_max_age,
            system_state_interval=self.cfg.system_state_interval,
        )
        await md.start()
        self.venue = venue = Venue(
            self.rest,
            port,
            self.limiter,
            self.counters,
            recv_window_ms=self.cfg.recv_window_ms,
            hooks=CrashHooks(self.cfg.crash_at, self.cfg.crash_coid),
            fence=(lambda: self.lease.valid) if self.lease is not None else None,
            max_in_flight=VENUE_CONNECTIONS,
        )
        trans = Transitions(store, md, self.counters, self.problems)
        self.resolver = resolver = Resolver(store, trans, venue, self.cfg, self.counters, self.problems)
        resolver.note_restart()
        self._tasks.append(asyncio.create_task(resolver.run(), name="router-inflight"))
        resolver.kick("startup")
        self.commands = Commands(
            store, trans, venue, md, resolver, self.publisher, self.cfg, self.counters, self.problems
        )
        if self.cfg.ws_enabled:
            self.stream = PrivateStream(
                self.cfg.ws_url,
                nc=self.nc,
                account=self.account,
                signer=port,
                trans=trans,
                resolver=resolver,
                venue=venue,
                md=md,
                publisher=self.publisher,
                metrics=self.counters,
                problems=self.problems,
                balance_refresh=self.cfg.balance_refresh,
                account_interval=self.cfg.account_interval,
                on_change=self._refresh_health,
            )
            await self.stream.start()
            # Commands should find the private stream up (their updates flow at once); if the venue
            # WS is down the in-flight checks cover it, so this wait is bounded.
            with contextlib.suppress(TimeoutError):
                await self.stream.ws.wait_connected(timeout=5.0)
        self.dispatcher = Dispatcher(
            self.commands.handle,
            max_concurrent=self.cfg.max_concurrent,
            ack_wait=self.cfg.cmd_ack_wait,
            metrics=self.counters,
            problems=self.problems,
        )
        self.dispatcher.start()
        durable = self.cfg.durable_for(self.account)
        self.consumer = PullConsumer(
            self.nc,
            self.js,
            stream="CMD",
            durable=durable,
            handler=self.dispatcher.on_message,
            filter_subjects=[subjects.cmd_all(self.account)],
            auto_ack=False,
            ack_wait=self.cfg.cmd_ack_wait,
            max_deliver=20,
            batch=128,
        )
        await self.consumer.start()
        self.details["durable"] = durable
        self.counter_sources.append(self._counters)
        self._ctl_sub = await self.nc.subscribe(latency_subject(self.account), cb=self._on_latency_request)
        self._tasks.append(asyncio.create_task(self._health_loop(), name="router-health"))
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="router-counters"))
        self._refresh_health()
        self.log.info("order router running for %s (durable %s)", self.account, durable)
        await self.stopping.wait()

    async def _on_latency_request(self, msg: Msg) -> None:
        """``ctl.router.<acct>.latency``: reply with the per-hop latency summary (JSON); a request
        body ``{"reset": true}`` starts a new measurement afterwards (benchmarks use it per phase)."""
        assert self.store is not None
        try:
            req = msgspec.json.decode(msg.data) if msg.data else {}
        except msgspec.DecodeError:
            req = {}
        out = self.store.latency.summary()
        if isinstance(req, dict) and req.get("reset"):
            self.store.latency.reset()
        if msg.reply:
            await self.nc.publish(msg.reply, msgspec.json.encode(out))

    async def _discover_account(self) -> None:
        if self.account:
            return
        self.set_state("WaitingForSigner")
        while not self.stopping.is_set():
            try:
                me = await whoami(self.nc, timeout=self.cfg.signer_timeout)
            except SignerClientError as exc:
                self.problems.report("signer_whoami_failed", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            self.account = me.account.lower()
            return
        raise asyncio.CancelledError

    async def _watch_lease(self) -> None:
        assert self.lease is not None
        await self.lease.lost.wait()
        self.problems.report("lease_lost", account=self.account)
        self.stopping.set()

    async def stop_intake(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self._ctl_sub is not None:
            with contextlib.suppress(Exception):
                await self._ctl_sub.unsubscribe()

    async def drain(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.stop(max(1.0, self.cfg.drain_timeout - 2.0))
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        if self.stream is not None:
            await self.stream.close()
        if self.md is not None:
            await self.md.stop()
        if self.lease is not None:
            await self.lease.release()
        if self.rest is not None:
            await self.rest.close()
        if self.http is not None:
            await self.http.aclose()
        if self.signer_client is not None:
            await self.signer_client.close()

    # -- health ---------------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self.counters.flush()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._refresh_health()

    def _refresh_health(self) -> None:
        if self.stopping.is_set() or self.store is None:
            return
        subs: dict[str, str] = {}
        if self.consumer is not None:
            subs[f"cmd:{self.consumer.durable}"] = "Active"
        if self.stream is not None:
            subs.update(self.stream.states())
        self.subscriptions = subs
        store = self.store
        self.details.update(
            {
                "orders": str(len(store.proj.orders)),
                "open_orders": str(sum(len(v) for v in store.open_by_market.values())),
                "in_flight": str(len(store.in_flight())),
                "commands_active": str(len(self.dispatcher.active) if self.dispatcher else 0),
                "lease": "held" if self.lease is None or self.lease.valid else "not held",
                "ws": self.stream.ws.state.value if self.stream is not None else "disabled",
                "system_status": self.md.system_status if self.md is not None else "",
            }
        )
        now = time.monotonic()
        if now - self._latency_at >= 10.0:  # sorting the reservoirs is not free
            self._latency_at = now
            self.details.update(store.latency.summary())
        healthy = self.stream is None or self.stream.healthy
        if self.lease is not None and not self.lease.valid:
            healthy = False
        self.set_state("Running" if healthy else "Degraded")

    def _counters(self) -> dict[str, int]:
        out = self.limiter.counters()
        if self.consumer is not None:
            out.update(self.consumer.stats.as_counters("cmd_"))
        if self.rest is not None:
            out.update(self.rest.stats.as_counters("rest_"))
        if self.stream is not None:
            out.update(self.stream.ws.stats.as_counters("ws_"))
        if self.resolver is not None:
            out["inflight_cycles"] = self.resolver.cycles
        if self.commands is not None:
            out["batches_sent"] = self.commands.batcher.sent
        if self.dispatcher is not None:
            out["commands_handled"] = self.dispatcher.handled
            out["commands_failed"] = self.dispatcher.failed
        return out
