"""A stock Nautilus ``TradingNode`` trading the simulator through the whole pipeline.

Real OS processes: the Paradex simulator (background flow on), signer, feed handler, book builder,
order router and reconciler on a test nats-server; the node is ``examples/run_market_maker.py``
with the example market maker. Before the node starts, the account already holds a resting order
and a position, placed through the bus as any other client would.

Checked: the node receives the instrument, quotes, trades and book updates; the strategy places,
modifies and cancels post-only quotes and gets fills; the node's start-up reconciliation agrees with
the venue (the resting order and the position as the simulator's ground truth shows them); and at
the end the node and the venue agree on the position and on the open orders.

It fails loudly (never skips) when a component of the stack is missing.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "nautilus_trader", reason="the nautilus extra is not installed (pip install 'paradex-bus[nautilus]')"
)

from bus import replay, subjects
from bus.embedded import free_port, wait_port
from bus.trading import Trader
from services.paradex import signing
from services.paradex_sim.admin_client import AdminClient
from services.signer.client import SignerUnavailable, whoami
from tests.nautilus.test_clients import run_node

pytestmark = pytest.mark.nautilus

ROOT = Path(__file__).resolve().parents[2]
MKT = "BTC-USD-PERP"
IID = f"{MKT}.PARADEX"
RUN_SECS = float(os.environ.get("NAUTILUS_NODE_RUN_SECS", "15"))


async def _until(what: str, check: Any, timeout: float, procs: list[Any]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        for p in procs:
            if not p.alive:
                raise AssertionError(f"{p.module} exited while waiting for {what}:\n{p.log_text()[-3000:]}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.module}\n{p.log_text()[-1500:]}" for p in procs)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        await asyncio.sleep(0.2)


async def start_stack(nc: Any, js: Any, nats_url: str, spawn: Any, tmp_path: Path) -> tuple[str, str, list[Any]]:
    """Everything ``make up`` runs, on free ports; returns (account, admin URL, processes)."""
    rest, ws, adm = free_port(), free_port(), free_port()
    sim = spawn(
        "services.paradex_sim",
        {
            "SIM_REST_PORT": str(rest),
            "SIM_WS_PORT": str(ws),
            "SIM_ADMIN_PORT": str(adm),
            "SIM_FLOW_RATE": "100",
            "SIM_SEED": "11",
            "SIM_MARKETS": MKT,
        },
        name="sim",
    )
    for port in (rest, ws, adm):
        await asyncio.to_thread(wait_port, "127.0.0.1", port, 20.0)
    base = {
        "NATS_URL": nats_url,
        "PARADEX_ENV": "sim",
        "PARADEX_REST_URL": f"http://127.0.0.1:{rest}/v1",
        "PARADEX_WS_URL": f"ws://127.0.0.1:{ws}/v1",
        "HEALTH_INTERVAL": "0.5",
        "METRICS_PORT": "0",
    }
    key = secrets.randbelow(signing.EC_ORDER - 1) + 1
    signer = spawn(
        "services.signer",
        {**base, "PARADEX_L2_PRIVATE_KEY": hex(key), "SIGNER_KEY_DIR": str(tmp_path / "signer")},
        name="signer",
    )
    procs = [sim, signer]

    async def account() -> str | None:
        try:
            return (await whoami(nc, timeout=0.5)).account.lower()
        except SignerUnavailable:
            return None

    acct = await _until("the signer", account, 30, procs)
    env = {**base, "PARADEX_ACCOUNT": acct}
    procs.append(
        spawn(
            "services.feed_handler",
            {**env, "FEED_MODE": "replica", "FEED_MARKETS": MKT, "FEED_CACHE_DIR": str(tmp_path / "feed")},
            name="feed",
        )
    )
    procs.append(spawn("services.book_builder", {**env, "BOOK_BUILDER_DEPTH_INTERVAL_MS": "100"}, name="book"))
    router = spawn("services.order_router", env, name="router")
    recon = spawn("services.reconciler", {**env, "RECON_STATE_DIR": str(tmp_path / "recon")}, name="recon")
    procs += [router, recon]
    await router.wait_healthy(nc, "order-router", "Running", timeout=40)
    await recon.wait_healthy(nc, "reconciler", "Connected", timeout=40)

    async def instrument() -> bool:
        try:
            await js.get_last_msg("REF", subjects.instrument(MKT), direct=True)
        except Exception:  # noqa: BLE001 - not there yet
            return False
        return True

    await _until("the instrument on REF", instrument, 30, procs)
    return acct, f"http://127.0.0.1:{adm}", procs


async def test_trading_node_trades_the_simulator_through_the_pipeline(nc, js, nats_url, spawn, tmp_path) -> None:
    account, admin_url, procs = await start_stack(nc, js, nats_url, spawn, tmp_path)
    trader = Trader(nc, account, js=js, strategy_id="SEED-001")
    async with AdminClient(admin_url) as admin:
        mark = Decimal(str(next(p for p in await admin.prices() if p["market"] == MKT)["mark"]))
        # The previous session: a resting order far from the market and a long position.
        resting = trader.limit(MKT, "BUY", "0.002", str((mark * Decimal("0.8")).quantize(Decimal("0.1"))))
        evs = await trader.submit(resting, until="rest", timeout=20)
        assert any(type(e).__name__ == "OrderAccepted" for e in evs), evs
        evs = await trader.submit(trader.market(MKT, "BUY", "0.003"), until="final", timeout=20)
        assert any(type(e).__name__ == "OrderFilled" for e in evs), evs

        async def account_state() -> bool:
            try:
                await js.get_last_msg("EXEC", subjects.exec_account(account), direct=True)
            except Exception:  # noqa: BLE001 - not there yet
                return False
            return True

        await _until("an AccountState on EXEC", account_state, 30, procs)
        before = await admin.account(account)

        rc, r, log = await run_node(
            nats_url,
            tmp_path,
            "--run-secs",
            str(RUN_SECS),
            "--size",
            "0.001",
            "--max-position",
            "0.01",
            "--max-order-age",
            "4",
            "--account",
            account,
            timeout=RUN_SECS + 90,
        )
        after = await admin.account(account)
    for p in procs:
        assert p.alive, f"{p.module} died:\n{p.log_text()[-3000:]}"
    assert rc == 0 and r["started"], log[-5000:]
    assert "Reconciliation for PARADEX succeeded" in log, log[-5000:]
    errors = [line for line in log.splitlines() if "[ERROR]" in line]
    assert not errors, errors[:10]

    # Start-up reconciliation agrees with the venue's ground truth.
    start = r["at_start"]
    venue_open = {o["client_id"]: o for o in before["open_orders"]}
    assert {o["client_order_id"] for o in start["open_orders"]} == set(venue_open) == {resting.order.client_order_id}
    for o in start["open_orders"]:
        v = venue_open[o["client_order_id"]]
        assert (o["venue_order_id"], Decimal(o["quantity"]), Decimal(o["price"])) == (
            v["id"],
            Decimal(v["size"]),
            Decimal(v["price"]),
        )
    assert _venue_positions(before) == {k: Decimal(v) for k, v in start["positions"].items()} == {IID: Decimal("0.003")}

    # Market data reached the strategy.
    seen = r["seen"]
    assert seen["instruments"] >= 1
    for kind in ("quotes", "trades", "book_deltas", "depth10"):
        assert seen.get(kind, 0) > 0, (kind, seen)

    # The strategy placed, modified and cancelled quotes, and got fills.
    done = r["done"]
    for kind in ("OrderSubmitted", "OrderAccepted", "OrderUpdated", "OrderFilled"):
        assert done.get(kind, 0) > 0, (kind, done)
    ours = [
        m.event
        async for m in replay(js, subjects.exec_orders(account), stream="EXEC")
        if m.event.strategy_id.startswith("MarketMaker")
    ]
    kinds = {type(e).__name__ for e in ours}
    assert {"OrderAccepted", "OrderUpdated", "OrderCanceled", "OrderFilled"} <= kinds, kinds

    # The end: the node and the venue agree.
    end = r["at_end"]
    assert {k: Decimal(v) for k, v in end["positions"].items() if Decimal(v)} == _venue_positions(after)
    assert {o["client_order_id"] for o in end["open_orders"]} == {o["client_id"] for o in after["open_orders"]}


def _venue_positions(truth: dict[str, Any]) -> dict[str, Decimal]:
    out = {}
    for p in truth["positions"]:
        size = Decimal(p["size"])
        if size:
            out[f"{p['market']}.PARADEX"] = size
    return out
