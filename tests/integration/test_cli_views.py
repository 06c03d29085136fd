"""``pdx book``, ``pdx replay`` and ``pdx account`` through the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

import schemas as s
from bus import Publisher, msgid, subjects
from services.book_builder.synthetic import SyntheticMarket
from tests.book_builder.helpers import builder_env, caught_up_snapshot, publish
from tests.unit.samples import SAMPLES

ROOT = Path(__file__).resolve().parents[2]
ACCT = "0xabc123"
IID = "BTC-USD-PERP.PARADEX"
U = "097faffb-c29b-4d5f-b7ae-abccd80b3fa4"


def pdx(args: list[str], nats_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NATS_URL": nats_url, "PDX_RUN_DIR": "/nonexistent"}
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


async def _instrument(nc, js) -> None:
    inst = next(e for e in SAMPLES if isinstance(e, s.CryptoPerpetual))
    await Publisher(nc, js).publish_event_acked(subjects.instrument("BTC-USD-PERP"), inst, "instr-1")


async def test_book_once_json_and_unknown_market(nc, js, nats_url, spawn) -> None:
    await _instrument(nc, js)
    gen = SyntheticMarket("BTC-USD-PERP", seed=3, levels=15)
    last = await publish(js, [gen.snapshot()])
    spawn("services.book_builder", builder_env(nats_url), name="book-builder")
    snap = await caught_up_snapshot(nc, "BTC-USD-PERP", last)
    r = pdx(["book", "BTC-USD-PERP", "--once", "--depth", "5"], nats_url)
    assert r.returncode == 0, r.stderr
    best_bid = snap.bids[0].price
    assert best_bid in r.stdout and "state=VALID" in r.stdout
    j = pdx(["book", "btc-usd-perp", "--json", "--depth", "3"], nats_url)
    data = json.loads(j.stdout)
    assert data["type"] == "BookSnapshot" and len(data["bids"]) == 3 and data["bids"][0]["price"] == best_bid
    bad = pdx(["book", "DOGE-USD-PERP", "--once"], nats_url)
    assert bad.returncode == 1
    assert "unknown market 'DOGE-USD-PERP'" in bad.stderr and "BTC-USD-PERP" in bad.stderr
    live = pdx(["book", "BTC-USD-PERP", "--timeout", "1"], nats_url)
    assert live.returncode == 0 and best_bid in live.stdout


async def test_replay_to_jsonl_and_parquet(nc, js, nats_url, tmp_path) -> None:
    pub = await Publisher(nc, js).start()
    for i in range(30):
        pub.publish_event_nowait(subjects.md("trades", "BTC-USD-PERP"),
                                 s.TradeTick(instrument_id=IID, price=f"{65000 + i}.5", size="0.01",
                                             aggressor_side="BUYER", trade_id=f"t{i}", ts_event=i, ts_init=i),
                                 msgid.trade("BTC-USD-PERP", f"t{i}"))
    pub.publish_event_nowait(subjects.md("mark", "BTC-USD-PERP"),
                             s.MarkPriceUpdate(instrument_id=IID, value="65000.0", ts_event=1, ts_init=1), "m1")
    assert await pub.flush(10)
    await pub.close()
    out = tmp_path / "trades.jsonl"
    r = pdx(["replay", "md.paradex.>", "--from", "10m", "--out", str(out)], nats_url)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 31 and rows[0]["trade_id"] == "t0" and rows[-1]["type"] == "MarkPriceUpdate"
    pq_out = tmp_path / "md.parquet"
    r = pdx(["replay", "md.paradex.>", "--from", "10m", "--to", "now", "--out", str(pq_out)], nats_url)
    assert r.returncode == 0, r.stderr
    table = pq.read_table(tmp_path / "md.TradeTick.parquet")
    assert table.num_rows == 30 and table.column("price").to_pylist()[29] == "65029.5"
    assert pq.read_table(tmp_path / "md.MarkPriceUpdate.parquet").num_rows == 1
    empty = pdx(["replay", "md.paradex.>", "--from", "2001-01-01T00:00:00", "--to", "2001-01-02T00:00:00",
                 "--out", str(tmp_path / "none.jsonl")], nats_url)
    assert empty.returncode == 0 and (tmp_path / "none.jsonl").read_text() == ""
    bad = pdx(["replay", "md.>", "--from", "yesterday-ish", "--out", str(out)], nats_url)
    assert bad.returncode == 1 and "not 'now'" in bad.stderr


async def test_account_view(nc, js, nats_url) -> None:
    pub = Publisher(nc, js)
    base = {"trader_id": "T-1", "strategy_id": "S-1", "instrument_id": IID, "client_order_id": "c1"}
    acct_id = f"PARADEX-{ACCT}"
    events = [
        s.OrderInitialized(**base, order_side="BUY", order_type="LIMIT", quantity="0.5", time_in_force="GTC",
                           options=s.OrderOptions(price="65000.0"), event_id=U, ts_init=1, ts_event=1),
        s.OrderSubmitted(**base, account_id=acct_id, event_id=U, ts_event=2, ts_init=2),
        s.OrderAccepted(**base, venue_order_id="9", account_id=acct_id, event_id=U, ts_event=3, ts_init=3),
        s.OrderFilled(**base, venue_order_id="9", account_id=acct_id, trade_id="f1", order_side="BUY",
                      order_type="LIMIT", last_qty="0.2", last_px="65000.0", currency="USD",
                      commission="0.01000000 USDC", liquidity_side="MAKER", event_id=U, ts_event=4, ts_init=4),
    ]
    for i, ev in enumerate(events):
        await pub.publish_event_acked(subjects.exec_order(ACCT, "c1"), ev, f"e{i}")
    await pub.publish_event_acked(
        subjects.exec_account(ACCT),
        s.AccountState(account_id=acct_id, base_currency="USDC",
                       balances=[s.AccountBalance(total="1000.00000000", locked="10.00000000", free="990.00000000",
                                                  currency="USDC")],
                       event_id=U, ts_event=5, ts_init=5),
        "a1",
    )
    r = pdx(["account", "--account", ACCT, "--json"], nats_url)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["account"] == ACCT and data["open_orders"] == 1
    assert data["positions"] == [{"instrument_id": IID, "net_qty_from_fills": "0.2", "avg_px_open": "65000.0",
                                  "venue_net_qty": None, "venue_side": None}]
    assert data["account_state"]["balances"][0]["free"] == "990.00000000"
    pretty = pdx(["account", "--account", ACCT], nats_url)
    assert "990.00000000" in pretty.stdout and "0.2" in pretty.stdout
