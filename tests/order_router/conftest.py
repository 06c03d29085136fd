"""Fixtures for the order-router tests: a real nats-server, the simulator, a real signer process and a
real router process, plus helpers to read EXEC and the venue's ground truth.

Starting a signer and a router costs seconds, so each test module shares one stack (module scope):
tests use their own client order ids, and faults are cleared after every test. ``stack`` has a
router running with short timings (recv window 1.5 s, in-flight threshold 0.5 s) so the
unknown-outcome paths finish in seconds; ``bare_stack`` has none, for tests that start, crash and
replace routers themselves (``start_router(**env)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bus import NatsSettings, connect, ensure_streams, jetstream, subjects
from bus.embedded import EmbeddedNats
from bus.replay import replay
from bus.trading import Trader
from services.execution.projection import ExecProjection, load
from services.paradex_sim import Simulator
from services.paradex_sim.admin_client import AdminClient
from services.signer.client import whoami
from tests.fixtures.procs import ServiceProcess

MKT = "BTC-USD-PERP"

ROUTER_ENV = {
    "ROUTER_RECV_WINDOW_MS": "1500",
    "ROUTER_UNKNOWN_GRACE_S": "0.5",
    "ROUTER_INFLIGHT_INTERVAL_S": "0.25",
    "ROUTER_INFLIGHT_THRESHOLD_S": "0.5",
    "ROUTER_OPEN_CHECK_INTERVAL_S": "2",
    "ROUTER_FILL_GRACE_S": "0.5",
    "ROUTER_REST_TIMEOUT_S": "2",
    "ROUTER_SUBMIT_RETRY_BUDGET_S": "20",
    "ROUTER_CMD_ACK_WAIT_S": "3",
    "ROUTER_SYSTEM_STATE_INTERVAL_S": "0.5",
    # Batches in these tests name their size, so they go out when complete; a wide window keeps a
    # loaded CI machine (commands arriving > 20 ms apart) from splitting them.
    "ROUTER_BATCH_WINDOW_MS": "2000",
}


@dataclass
class Stack:
    nc: NATS
    js: JetStreamContext
    sim: Simulator
    admin: AdminClient
    account: str
    trader: Trader
    base_env: dict[str, str]
    log_dir: Path
    signer: ServiceProcess
    router: ServiceProcess | None = None
    procs: list[ServiceProcess] = field(default_factory=list)

    def spawn(self, module: str, env: dict[str, str], name: str) -> ServiceProcess:
        p = ServiceProcess(module, env, self.log_dir / f"{name}-{len(self.procs)}.log").start()
        self.procs.append(p)
        return p

    def spawn_router(self, **env: str) -> ServiceProcess:
        return self.spawn("services.order_router", {**self.base_env, **ROUTER_ENV, **env}, "router")

    async def start_router(self, **env: str) -> ServiceProcess:
        p = self.spawn_router(**env)
        await p.wait_healthy(self.nc, "order-router", "Running", timeout=30)
        self.router = p
        return p

    async def events(self, coid: str) -> list[Any]:
        """Every stored event of one order, in stream order."""
        return [m.event async for m in replay(self.js, subjects.exec_order(self.account, coid), stream="EXEC")]

    async def wait_events(self, coid: str, pred: Callable[[list[Any]], bool], timeout: float = 15.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        evs: list[Any] = []
        while time.monotonic() < deadline:
            evs = await self.events(coid)
            if pred(evs):
                return evs
            await asyncio.sleep(0.1)
        raise AssertionError(f"{coid}: condition not met; events: {kinds(evs)}")

    async def projection(self) -> ExecProjection:
        return await load(self.js, self.account)

    async def venue_orders(self, client_id: str | None = None) -> list[dict[str, Any]]:
        orders = (await self.admin.account(self.account))["orders"]
        return [o for o in orders if client_id is None or o.get("client_id") == client_id]

    async def venue_fills(self, order_id: str | None = None) -> list[dict[str, Any]]:
        fills = (await self.admin.account(self.account))["fills"]
        return [f for f in fills if order_id is None or f["order_id"] == order_id]

    async def router_counters(self) -> dict[str, int]:
        assert self.router is not None
        await asyncio.sleep(0.6)  # one health interval, so the counters are current
        return dict((await self.router.wait_healthy(self.nc, "order-router")).counters)

    async def assert_agree(self, coids: list[str] | None = None) -> None:
        """EXEC and the venue agree: every order of ours the venue has is in the projection with the
        same venue id, status family and filled quantity; none is at the venue twice."""
        proj = await self.projection()
        venue = await self.venue_orders()
        by_cid: dict[str, list[dict[str, Any]]] = {}
        for v in venue:
            by_cid.setdefault(v["client_id"], []).append(v)
        for cid, vs in by_cid.items():
            assert len(vs) == 1, f"client id {cid} placed {len(vs)} times at the venue"
        for coid in coids if coids is not None else list(proj.orders):
            o = proj.order(coid)
            assert o is not None, coid
            vs = by_cid.get(coid, [])
            if not vs:
                assert o.status in ("DENIED", "REJECTED"), (coid, o.status, o.history)
                continue
            v = vs[0]
            assert o.venue_order_id == v["id"] or o.status == "REJECTED", (coid, o.venue_order_id, v["id"])
            filled = Decimal(v["size"]) - Decimal(v["remaining_size"])
            assert o.filled_qty == filled, (coid, o.filled_qty, filled, o.history)
            if v["status"] == "CLOSED":
                assert o.is_closed, (coid, o.status, v)
            else:
                assert not o.is_closed, (coid, o.status, v)


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def count(events: list[Any], kind: str) -> int:
    return sum(1 for e in events if type(e).__name__ == kind)


def has(kind: str) -> Callable[[list[Any]], bool]:
    return lambda evs: any(type(e).__name__ == kind for e in evs)


async def seed_book(admin: AdminClient, market: str = MKT, size: str = "1") -> Decimal:
    """A fresh two-sided market ±0.1 % around the simulator's mark from its admin market maker."""
    await admin.mm_cancel(market)
    prices = {p["market"]: p for p in await admin.prices()}
    mark = Decimal(str(prices[market]["mark"]))
    tick = Decimal("0.1") if market == MKT else Decimal("0.01")
    await admin.mm_order(market, "BUY", size, str((mark * Decimal("0.999")).quantize(tick)))
    await admin.mm_order(market, "SELL", size, str((mark * Decimal("1.001")).quantize(tick)))
    return mark


# -- module-scoped infrastructure -----------------------------------------------------------------


@pytest.fixture(scope="module")
def mod_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("order_router")


@pytest.fixture(scope="module")
def mod_nats(mod_dir: Path) -> Iterator[EmbeddedNats]:
    srv = EmbeddedNats(store_dir=mod_dir / "nats", log_file=mod_dir / "nats.log").start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture(scope="module")
async def mod_nc(mod_nats: EmbeddedNats) -> AsyncIterator[NATS]:
    client = await connect("pytest-router", NatsSettings(servers=(mod_nats.url,)))
    await ensure_streams(jetstream(client), replicas=1)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="module")
async def mod_sim() -> AsyncIterator[Simulator]:
    s = Simulator(rest_port=0, ws_port=0, admin_port=0, flow_enabled=False)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture(scope="module")
async def bare_stack(
    mod_nats: EmbeddedNats, mod_nc: NATS, mod_sim: Simulator, mod_dir: Path
) -> AsyncIterator[Stack]:
    base = {
        "NATS_URL": mod_nats.url,
        "PARADEX_ENV": "sim",
        "PARADEX_REST_URL": mod_sim.rest_url,
        "PARADEX_WS_URL": mod_sim.ws_url,
        "SIGNER_KEY_DIR": str(mod_dir / "signer"),
        "SIGNER_MAX_ORDERS_PER_S": "5000",
        "SIGNER_ORDER_BURST": "5000",
        "HEALTH_INTERVAL": "0.5",
    }
    log_dir = mod_dir / "logs"
    signer = ServiceProcess("services.signer", base, log_dir / "signer.log").start()
    admin = AdminClient(mod_sim.admin_url)
    st: Stack | None = None
    try:
        await signer.wait_healthy(mod_nc, "signer", "Serving", timeout=30)
        account = (await whoami(mod_nc, timeout=5)).account.lower()
        js = jetstream(mod_nc)
        st = Stack(
            mod_nc, js, mod_sim, admin, account, Trader(mod_nc, account, js=js),
            {**base, "PARADEX_ACCOUNT": account}, log_dir, signer,
        )
        yield st
    finally:
        for p in [*(st.procs if st else []), signer]:
            p.kill()
        await admin.close()


@pytest.fixture(scope="module")
async def stack(bare_stack: Stack) -> Stack:
    await bare_stack.start_router()
    return bare_stack


@pytest.fixture(autouse=True)
async def _clean_venue(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Faults and venue state never leak from one test into the next."""
    yield
    if "stack" in request.fixturenames or "bare_stack" in request.fixturenames:
        st: Stack = request.getfixturevalue("bare_stack")
        with contextlib.suppress(Exception):
            await st.admin.clear_faults()
            await st.admin.set_state("ok")
