"""The invariant checker catches what it claims to: a bus that disagrees with the simulator in known
ways (a missing trade, a doubled trade, a phantom trade, an order the bus never saw, an order the
venue never had, a command without outcome, no AccountState, no book builder) yields exactly those
violations, and the parts that agree yield none. Real nats-server, the in-process simulator."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

import schemas as s
from bus import msgid, subjects
from bus.trading import Trader
from services.paradex_sim.admin_client import AdminClient
from services.paradex_sim.testclient import SimTrader
from tests.chaos.invariants import InvariantChecker

MKT = "ETH-USD-PERP"


def _tick(trade: dict, trade_id: str | None = None) -> s.TradeTick:
    now = time.time_ns()
    return s.TradeTick(
        instrument_id=s.instrument_id(trade["market"]),
        price=str(trade["price"]),
        size=str(trade["size"]),
        aggressor_side="BUYER" if trade["side"] == "BUY" else "SELLER",
        trade_id=trade_id or str(trade["id"]),
        ts_event=int(trade["created_at"]) * 1_000_000,
        ts_init=now,
    )


async def test_checker_reports_each_kind_of_disagreement(
    nc: NATS, js: JetStreamContext, sim_admin: AdminClient, sim_trader: SimTrader
) -> None:
    account = sim_trader.address.lower()
    # Three venue trades.
    for i in range(3):
        await sim_admin.mm_order(MKT, "SELL", "0.1", str(3000 + i))
        await sim_admin.cross(MKT, "BUY", "0.1")
    trades = [t for t in await sim_admin.trades(MKT)]
    assert len(trades) >= 3
    t_ok, t_dup, t_missing = trades[0], trades[1], trades[2]
    await js.publish(subjects.md("trades", MKT), s.encode(_tick(t_ok)), headers={"Nats-Msg-Id": "a"})
    for n in ("b1", "b2"):  # the same trade stored twice (as if outside the duplicate window)
        await js.publish(subjects.md("trades", MKT), s.encode(_tick(t_dup)), headers={"Nats-Msg-Id": n})
    phantom = {**t_ok, "id": "NOT-A-VENUE-TRADE"}
    await js.publish(subjects.md("trades", MKT), s.encode(_tick(phantom)), headers={"Nats-Msg-Id": "c"})

    # An order at the venue that the bus never heard of.
    placed = await sim_trader.place(MKT, "BUY", "0.01", "2000", client_id="VENUE-ONLY-1")
    assert placed.status == 201, placed
    # An order the bus says is accepted but the venue never had.
    trader = Trader(nc, account, js=js)
    ghost = trader.limit(MKT, "BUY", "0.01", "2000", client_order_id="GHOST-1")
    await js.publish(
        subjects.exec_order(account, "GHOST-1"),
        s.encode(ghost.order),
        headers={"Nats-Msg-Id": msgid.order_event(account, "GHOST-1", "OrderInitialized")},
    )
    accepted = s.OrderAccepted(
        trader_id=ghost.trader_id,
        strategy_id=ghost.strategy_id,
        instrument_id=ghost.order.instrument_id,
        client_order_id="GHOST-1",
        venue_order_id="999",
        account_id=f"PARADEX-{account}",
        event_id=str(uuid.uuid4()),
        ts_event=time.time_ns(),
        ts_init=time.time_ns(),
    )
    await js.publish(
        subjects.exec_order(account, "GHOST-1"),
        s.encode(accepted),
        headers={"Nats-Msg-Id": msgid.order_event(account, "GHOST-1", "OrderAccepted")},
    )
    # A command nobody executed.
    lost = trader.limit(MKT, "SELL", "0.01", "5000", client_order_id="NEVER-RUN-1")
    await trader.send(lost)

    checker = InvariantChecker(nc, js, sim_admin, account, (MKT,), snapshot_timeout=0.3)
    report = await checker.check()
    text = report.render(50)
    print(text)
    assert not report.ok

    trades_v = report.section("trades").violations
    assert any(str(t_missing["id"]) in v and "missing" in v for v in trades_v), trades_v
    assert any(str(t_dup["id"]) in v and "stored 2 times" in v for v in trades_v), trades_v
    assert any("NOT-A-VENUE-TRADE" in v and "unknown to the venue" in v for v in trades_v), trades_v
    assert not any(f"trade {t_ok['id']} " in v for v in trades_v), trades_v

    assert any("no book from the book builder" in v for v in report.section("books").violations)

    orders_v = report.section("orders").violations
    assert any("VENUE-ONLY-1" in v and "no history on EXEC" in v for v in orders_v), orders_v
    assert any("GHOST-1" in v and "venue has no such order" in v for v in orders_v), orders_v
    assert not any("NEVER-RUN-1" in v for v in orders_v), orders_v  # no events at all: not an order on EXEC

    cmd_v = report.section("commands").violations
    assert any("NEVER-RUN-1" in v and "no outcome" in v for v in cmd_v), cmd_v
    assert any("consumer" in v and "does not exist" in v for v in cmd_v), cmd_v

    assert report.section("fills").ok and report.section("positions").ok
    assert report.section("balance").violations == ["no AccountState on EXEC"]
    assert Decimal(str((await sim_admin.account(account))["balance"]["size"])) > 0
