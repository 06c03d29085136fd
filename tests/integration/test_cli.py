"""``pdx`` through its real entry point: tail (pretty and --json piped), status, and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bus import Publisher, msgid, subjects
from schemas import TradeTick

ROOT = Path(__file__).resolve().parents[2]
PDX = [sys.executable, "-m", "services.cli.main"]


def run_pdx(args: list[str], nats_url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NATS_URL": nats_url, "PDX_RUN_DIR": "/nonexistent"}
    return subprocess.run(
        [*PDX, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


async def _publish_trades(nc, js, n: int) -> None:
    pub = await Publisher(nc, js).start()
    for i in range(n):
        mkt = "BTC-USD-PERP" if i % 2 == 0 else "ETH-USD-PERP"
        pub.publish_event_nowait(
            subjects.md("trades", mkt),
            TradeTick(
                instrument_id=f"{mkt}.PARADEX",
                price=f"{100 + i}.5",
                size="0.01",
                aggressor_side="BUYER" if i % 3 else "SELLER",
                trade_id=f"t{i}",
                ts_event=i * 10**9,
                ts_init=i * 10**9,
            ),
            msgid.trade(mkt, f"t{i}"),
        )
    assert await pub.flush(10)
    await pub.close()


async def test_tail_json_lines_pipe_into_json_parsers(nc, js, nats_url) -> None:
    await _publish_trades(nc, js, 10)
    r = run_pdx(["tail", "md.paradex.trades.BTC-USD-PERP", "--last", "3", "--no-follow", "--json"], nats_url)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["trade_id"] for row in rows] == ["t4", "t6", "t8"]
    assert rows[0]["type"] == "TradeTick" and rows[0]["price"] == "104.5"
    assert "\x1b[" not in r.stdout  # no colour codes when piped


async def test_tail_pretty_from_seq_and_since(nc, js, nats_url) -> None:
    await _publish_trades(nc, js, 6)
    r = run_pdx(["tail", "md.paradex.>", "--from-seq", "5", "--no-follow"], nats_url)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert "TradeTick" in lines[0] and "trade_id=t4" in lines[0] and "md.paradex.trades.BTC-USD-PERP" in lines[0]
    r = run_pdx(["tail", "md.paradex.>", "--since", "10m", "--no-follow", "--count", "4"], nats_url)
    assert len(r.stdout.splitlines()) == 4


async def test_status_lists_streams(nc, js, nats_url) -> None:
    await _publish_trades(nc, js, 4)
    r = run_pdx(["status", "--json"], nats_url)
    assert r.returncode == 0, r.stderr
    md = next(s for s in json.loads(r.stdout)["streams"] if s["name"] == "MD")
    assert md["messages"] == 4
    pretty = run_pdx(["status"], nats_url)
    assert "streams" in pretty.stdout and "MD" in pretty.stdout


async def test_errors_are_one_readable_line(nc, nats_url) -> None:
    r = run_pdx(["tail", "no.such.>", "--no-follow"], nats_url)
    assert r.returncode == 1
    assert r.stderr.strip().startswith("error: no stream stores 'no.such.>'")
    assert "Traceback" not in r.stderr
    down = run_pdx(["status"], "nats://127.0.0.1:1")
    assert down.returncode == 1
    assert "cannot reach NATS" in down.stderr and "make up" in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1
    bad = run_pdx(["tail", "md.>", "--last", "2", "--since", "1m"], nats_url)
    assert bad.returncode == 1 and "only one of" in bad.stderr
    dur = run_pdx(["tail", "md.>", "--since", "ten"], nats_url)
    assert dur.returncode == 2 and "is not a duration" in dur.stderr
