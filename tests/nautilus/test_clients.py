"""Contract test of the Nautilus client pair: a stock ``TradingNode`` running the example market
maker (``examples/run_market_maker.py``, a real OS process) against a scripted stand-in of the
pipeline's services at the bus boundary (``tests/nautilus/bus_venue.py``: same subjects, messages,
Msg-Ids, headers and request/reply subjects as the real feed handler, book builder, router and
reconciler). Fast and independent of the venue; the whole-stack test is ``test_node.py``.

Checked: the node loads the instrument from REF and receives quotes, trades, book deltas (snapshot
then diffs), depth10, mark, index and funding; its start-up reconciliation adopts the previous
session's open order and position exactly; the strategy places, modifies and cancels post-only
quotes and gets fills; at the end the node and the venue hold the same position and open orders.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

import pytest

pytest.importorskip(
    "nautilus_trader", reason="the nautilus extra is not installed (pip install 'paradex-bus[nautilus]')"
)

from bus import replay, subjects
from tests.nautilus.bus_venue import BusVenue

pytestmark = pytest.mark.nautilus

ROOT = Path(__file__).resolve().parents[2]
IID = "BTC-USD-PERP.PARADEX"
ACCOUNT = "0x5e11a"


def _open(path: Path) -> BinaryIO:
    return path.open("wb")


async def run_node(nats_url: str, tmp_path: Path, *args: str, timeout: float = 120.0) -> tuple[int, dict, str]:
    report = tmp_path / "report.json"
    log = tmp_path / "node.log"
    with _open(log) as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "examples/run_market_maker.py",
            "--report",
            str(report),
            *args,
            cwd=ROOT,
            # PDX_RUN_DIR: no local-stack credentials (.run/nats/users.json) leak into the test
            env={**os.environ, "NATS_URL": nats_url, "PYTHONPATH": str(ROOT), "PDX_RUN_DIR": str(tmp_path)},
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            rc = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            raise AssertionError(f"node did not stop in {timeout}s:\n{log.read_text()[-4000:]}") from None
    text = log.read_text(errors="replace")
    assert report.exists(), f"no report (exit {rc}):\n{text[-4000:]}"
    return rc, json.loads(report.read_text()), text


async def test_node_trades_through_the_bus_contract(nc, js, nats_url, tmp_path) -> None:
    venue = await BusVenue(nc, js, ACCOUNT).start()
    try:
        await venue.seed_history()
        rc, r, log = await run_node(
            nats_url,
            tmp_path,
            "--run-secs",
            "8",
            "--size",
            "0.002",
            "--max-position",
            "0.02",
            "--max-order-age",
            "2",
        )
    finally:
        await venue.stop()
    assert rc == 0 and r["started"], log[-4000:]
    assert "[ERROR]" not in log, [line for line in log.splitlines() if "[ERROR]" in line][:5]
    assert "Reconciliation for PARADEX succeeded" in log

    # Start-up reconciliation: exactly the venue's state of the previous session (one open order,
    # a long 0.003 from the filled one), and the account found on EXEC.
    start = r["at_start"]
    assert [(o["client_order_id"], o["venue_order_id"], o["status"]) for o in start["open_orders"]] == [
        ("O-PREV-1", "1001", "ACCEPTED")
    ]
    assert start["positions"] == {IID: "0.003"}
    assert start["accounts"] == [f"PARADEX-{ACCOUNT}"]
    assert venue.reconcile_requests >= 1

    # Market data of every kind reached the strategy.
    seen = r["seen"]
    assert seen["instruments"] == 1
    for kind in ("quotes", "trades", "book_deltas", "depth10", "mark", "index", "funding"):
        assert seen.get(kind, 0) > 0, (kind, seen)

    # Trading: placed, modified, filled, cancelled -- seen by the strategy and by the venue.
    done = r["done"]
    for kind in ("OrderSubmitted", "OrderAccepted", "OrderUpdated", "OrderFilled"):
        assert done.get(kind, 0) > 0, (kind, done)
    assert done.get("OrderRejected", 0) == done.get("OrderDenied", 0) == 0, done
    for kind in ("SubmitOrder", "ModifyOrder", "CancelOrder"):
        assert venue.commands[kind] > 0, venue.commands
    canceled = [
        m.event
        async for m in replay(js, subjects.exec_orders(ACCOUNT), stream="EXEC")
        if type(m.event).__name__ == "OrderCanceled"
    ]
    assert canceled, "no quote was cancelled"

    # The end: node and venue agree on the position and on what rests at the venue.
    end = r["at_end"]
    assert Decimal(end["positions"].get(IID, "0")) == venue.position
    assert {o["client_order_id"] for o in end["open_orders"]} == set(venue.resting) == {"O-PREV-1"}
