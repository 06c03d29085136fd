"""Scenario fixtures: a real nats-server, the real simulator (in-process, over loopback), the real
signer and reconciler processes, and helpers to script the venue and to check that the state
derived from ``EXEC`` equals the venue's ground truth.

``ReconStack.router`` stands in for the order router where a scenario needs the router's own
events on the bus: it publishes exactly what the router publishes for the same venue facts, with
the projection's Msg-Id convention (``services.execution.projection``), so the reconciler sees the
same bus either way.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

import schemas as s
from bus import Publisher, msgid, subjects
from bus.trading import Trader
from services.execution.projection import ExecProjection, load
from services.paradex.private_rest import PrivateRestClient
from services.paradex_sim import Simulator
from services.paradex_sim.admin_client import AdminClient
from services.reconciler.state import read_startup_marker
from services.signer.client import SignerClient, SignerClientError, whoami

MKT = "BTC-USD-PERP"
IID = "BTC-USD-PERP.PARADEX"
STRATEGY = "MM-001"
TRADER = "TRADER-001"

# The router with short timings; its own open-order audit and fill fetching are slowed down so that
# what the router would eventually repair itself is left to the reconciler in these scenarios.
ROUTER_ENV = {
    "ROUTER_RECV_WINDOW_MS": "1500",
    "ROUTER_UNKNOWN_GRACE_S": "0.5",
    "ROUTER_INFLIGHT_INTERVAL_S": "0.25",
    "ROUTER_INFLIGHT_THRESHOLD_S": "0.5",
    "ROUTER_OPEN_CHECK_INTERVAL_S": "0",
    "ROUTER_FILL_GRACE_S": "60",
    "ROUTER_REST_TIMEOUT_S": "2",
    "ROUTER_CMD_ACK_WAIT_S": "3",
    "ROUTER_SYSTEM_STATE_INTERVAL_S": "0.5",
}


def ms_to_ns(ms: int) -> int:
    return ms * 1_000_000


class RouterStandIn:
    """Publishes the router's events for venue facts (same subjects, fields and Msg-Ids)."""

    def __init__(self, js: JetStreamContext, publisher: Publisher, account: str) -> None:
        self.js = js
        self.pub = publisher
        self.account = account
        self.account_id = f"PARADEX-{account}"

    def head(self, coid: str) -> dict[str, str]:
        return {"trader_id": TRADER, "strategy_id": STRATEGY, "instrument_id": IID, "client_order_id": coid}

    async def emit(self, ev: Any, disc: int | str = 0) -> None:
        coid = ev.client_order_id
        mid = (
            msgid.fill(self.account, ev.trade_id)
            if isinstance(ev, s.OrderFilled)
            else msgid.order_event(self.account, coid, type(ev).__name__, disc)
        )
        await self.pub.publish_event_acked(subjects.exec_order(self.account, coid), ev, mid)

    def initialized(self, coid: str, side: str, size: str, price: str) -> s.OrderInitialized:
        now = time.time_ns()
        return s.OrderInitialized(
            **self.head(coid),
            order_side=side,
            order_type="LIMIT",
            quantity=size,
            time_in_force="GTC",
            options=s.OrderOptions(price=price),
            event_id=str(uuid.uuid4()),
            ts_init=now,
            ts_event=now,
        )

    async def command(self, init: s.OrderInitialized) -> None:
        """The strategy's SubmitOrder on CMD (what the router consumes)."""
        cmd = s.SubmitOrder(
            trader_id=TRADER, strategy_id=STRATEGY, order=init, command_id=str(uuid.uuid4()), ts_init=time.time_ns()
        )
        await self.pub.publish_event_acked(subjects.cmd(self.account, MKT), cmd, msgid.command(cmd.command_id))

    async def submit(self, coid: str, side: str, size: str, price: str) -> s.OrderInitialized:
        init = self.initialized(coid, side, size, price)
        await self.emit(init)
        now = time.time_ns()
        await self.emit(
            s.OrderSubmitted(
                **self.head(coid), account_id=self.account_id, event_id=str(uuid.uuid4()), ts_event=now, ts_init=now
            )
        )
        return init

    async def accepted(self, coid: str, venue_order_id: str) -> None:
        now = time.time_ns()
        await self.emit(
            s.OrderAccepted(
                **self.head(coid),
                venue_order_id=venue_order_id,
                account_id=self.account_id,
                event_id=str(uuid.uuid4()),
                ts_event=now,
                ts_init=now,
            )
        )

    async def filled(self, coid: str, fill: dict[str, Any]) -> None:
        now = time.time_ns()
        fee = Decimal(fill["fee"]).quantize(Decimal("0.00000001"))
        await self.emit(
            s.OrderFilled(
                **self.head(coid),
                venue_order_id=fill["order_id"],
                account_id=self.account_id,
                trade_id=fill["id"],
                order_side=fill["side"],
                order_type="LIMIT",
                last_qty=fill["size"],
                last_px=fill["price"],
                currency="USD",
                commission=f"{fee} USDC",
                liquidity_side=fill["liquidity"],
                event_id=str(uuid.uuid4()),
                ts_event=ms_to_ns(fill["created_at"]),
                ts_init=now,
            )
        )


class ReconStack:
    def __init__(
        self,
        nats_url: str,
        nc: NATS,
        js: JetStreamContext,
        sim: Simulator,
        admin: AdminClient,
        spawn: Any,
        tmp_path: Path,
        account: str,
        publisher: Publisher,
    ) -> None:
        self.nats_url, self.nc, self.js, self.sim, self.admin = nats_url, nc, js, sim, admin
        self.spawn, self.tmp_path, self.account = spawn, tmp_path, account
        self.publisher = publisher
        self.router = RouterStandIn(js, publisher, account)
        self.trader = Trader(nc, account, js=js, strategy_id=STRATEGY)
        self.recon: Any = None
        self.router_proc: Any = None

    async def start_router(self, timeout: float = 30.0, **env: str) -> Any:
        """The real order router (services.order_router) for this account."""
        self.router_proc = self.spawn("services.order_router", {**self.env(), **ROUTER_ENV, **env}, name="router")
        await self.router_proc.wait_healthy(self.nc, "order-router", "Running", timeout=timeout)
        return self.router_proc

    def env(self, **overrides: str) -> dict[str, str]:
        base = {
            "NATS_URL": self.nats_url,
            "PARADEX_ENV": "sim",
            "PARADEX_REST_URL": self.sim.rest_url,
            "PARADEX_WS_URL": self.sim.ws_url,
            "PARADEX_ACCOUNT": self.account,
            "RECON_STATE_DIR": str(self.tmp_path / "recon-state"),
            "RECON_GRACE_MS": "300",
            "RECON_ORDERS_INTERVAL_S": "0",
            "RECON_POSITIONS_INTERVAL_S": "0",
            "RECON_REST_RETRIES": "1",
            "RECON_REST_TIMEOUT_S": "3",
            "HEALTH_INTERVAL": "0.5",
            "LOG_LEVEL": "INFO",
        }
        base.update(overrides)
        return base

    async def start_reconciler(self, timeout: float = 30.0, **env: str) -> Any:
        before = await read_startup_marker(self.js, self.account)
        self.recon = self.spawn("services.reconciler", self.env(**env), name="reconciler")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            marker = await read_startup_marker(self.js, self.account)
            if marker is not None and (before is None or marker.run_id != before.run_id):
                return marker
            if not self.recon.alive:
                raise RuntimeError(f"reconciler exited:\n{self.recon.log_text()[-4000:]}")
            await asyncio.sleep(0.1)
        raise TimeoutError(f"no start-up reconciliation:\n{self.recon.log_text()[-4000:]}")

    async def reconcile(self, reason: str = "test", timeout: float = 30.0) -> s.ReconciliationSummary:
        req = s.ReconcileRequest(account=self.account, reason=reason, requested_by="pytest", ts_init=time.time_ns())
        reply = await self.nc.request(subjects.ctl_reconcile(self.account), s.encode(req), timeout=timeout)
        sm = s.decode(reply.data)
        assert isinstance(sm, s.ReconciliationSummary)
        return sm

    async def truth(self) -> dict[str, Any]:
        return await self.admin.account(self.account)

    async def projection(self) -> ExecProjection:
        return await load(self.js, self.account)

    async def exec_counts(self) -> dict[str, int]:
        """Stored messages per EXEC subject of the account."""
        info = await self.js.stream_info("EXEC", subjects_filter=f"exec.paradex.{self.account}.>")
        return dict(info.state.subjects or {})

    async def cancel(self, venue_order_id: str) -> None:
        """``DELETE /orders/{id}`` as our account (JWT from the signer), as the router would."""
        signer = SignerClient(self.nc, self.account, requester="pytest")

        async def token(force: bool) -> str:
            return (await signer.get_jwt(force_refresh=force)).jwt

        rest = PrivateRestClient(self.sim.rest_url, token)
        try:
            await rest.cancel_order(venue_order_id)
        finally:
            await rest.close()
            await signer.close()

    async def place(self, side: str, size: str, price: str, client_id: str = "", **extra: Any) -> dict[str, Any]:
        """An order on our account straight into the venue (as the router's REST call, or the web UI)."""
        return await self.admin.outside_order(self.account, MKT, side, size, price, client_id=client_id, **extra)

    async def wait_venue(self, order_id: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            truth = await self.truth()
            o = next((o for o in truth["orders"] if o["id"] == order_id), None)
            if o is not None and o["status"] == status:
                return o
            if time.monotonic() > deadline:
                raise TimeoutError(f"order {order_id} not {status}: {o}")
            await asyncio.sleep(0.05)

    async def assert_converged(self) -> ExecProjection:
        """Every venue order, fill and position equals what the EXEC stream derives."""
        await asyncio.sleep(0.2)
        proj = await self.projection()
        truth = await self.truth()
        fills_by_order: dict[str, set[str]] = {}
        for f in truth["fills"]:
            fills_by_order.setdefault(f["order_id"], set()).add(f["id"])
        for o in truth["orders"]:
            view = proj.order(o["client_id"]) if o["client_id"] and proj.order(o["client_id"]) else None
            view = view or proj.by_venue(o["id"])
            assert view is not None, f"venue order {o['id']} ({o['client_id']!r}) not on the bus"
            filled = Decimal(o["size"]) - Decimal(o["remaining_size"])
            assert view.filled_qty == filled, (o, view)
            if o["status"] == "CLOSED":
                assert view.is_closed, (o["id"], view.status)
            else:
                assert view.is_open and view.status not in ("INITIALIZED", "SUBMITTED"), (o["id"], view.status)
            venue_fills = fills_by_order.get(o["id"], set())
            if venue_fills:
                assert view.trade_ids == venue_fills, (o["id"], view.trade_ids, venue_fills)
        for p in truth["positions"]:
            pv = proj.positions.get(f"{p['market']}.PARADEX")
            venue = Decimal(p["size"]) if p["status"] == "OPEN" else Decimal(0)
            assert (pv.net_qty if pv else Decimal(0)) == venue, (p, pv)
        bus_trade_ids = [t for o in proj.orders.values() for t in o.trade_ids]
        assert len(bus_trade_ids) == len(set(bus_trade_ids)) == len(truth["fills"])
        return proj


@pytest.fixture
async def recon(
    nats_url: str, nc: NATS, js: JetStreamContext, sim: Simulator, spawn: Any, tmp_path: Path
) -> AsyncIterator[ReconStack]:
    signer = spawn(
        "services.signer",
        {
            "NATS_URL": nats_url,
            "PARADEX_ENV": "sim",
            "PARADEX_REST_URL": sim.rest_url,
            "SIGNER_KEY_DIR": str(tmp_path / "signer"),
            "HEALTH_INTERVAL": "0.5",
        },
        name="signer",
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            me = await whoami(nc, timeout=1.0)
            break
        except SignerClientError:
            if time.monotonic() > deadline or not signer.alive:
                raise RuntimeError(f"signer not serving:\n{signer.log_text()[-3000:]}") from None
            await asyncio.sleep(0.2)
    account = me.account.lower()
    client = SignerClient(nc, account, requester="pytest")
    await client.get_jwt()  # onboards the account at the simulator
    await client.close()
    publisher = await Publisher(nc, name="pytest-recon").start()
    async with AdminClient(sim.admin_url) as admin:
        await admin.set_price(MKT, index="65000", mark="65000")
        yield ReconStack(nats_url, nc, js, sim, admin, spawn, tmp_path, hex(int(account, 16)), publisher)
    await publisher.close()
