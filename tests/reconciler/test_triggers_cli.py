"""On-demand runs: the router's fire-and-forget reconnect signal, ``pdx reconcile`` (JSON, text,
errors), coalesced requests, and what ``pdx status`` shows afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import schemas as s
from bus import subjects
from bus.replay import last_message
from tests.reconciler.conftest import ReconStack

ROOT = Path(__file__).resolve().parents[2]


async def pdx(args: list[str], nats_url: str, timeout: float = 60) -> tuple[int, str, str]:
    """``pdx`` as a real process, without blocking the event loop the simulator runs on."""
    env = {**os.environ, "NATS_URL": nats_url, "PDX_RUN_DIR": "/nonexistent", "PYTHONPATH": str(ROOT)}
    env.pop("PARADEX_ACCOUNT", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_router_reconnect_signal_and_coalesced_requests(recon: ReconStack) -> None:
    await recon.start_reconciler(PARADEX_ACCOUNT="")  # the account comes from the signer (whoami)
    req = s.ReconcileRequest(
        account=recon.account, reason="ws_reconnect", requested_by="order-router", ts_init=time.time_ns()
    )
    await recon.nc.publish(subjects.ctl_reconcile(recon.account), s.encode(req))  # no reply wanted
    deadline = time.monotonic() + 10
    while True:
        sm = await last_message(recon.js, "EXEC", subjects.exec_report(recon.account, "reconciliation"))
        if isinstance(sm, s.ReconciliationSummary) and "ws_reconnect" in sm.trigger:
            break
        assert time.monotonic() < deadline, "the reconnect signal did not trigger a run"
        await asyncio.sleep(0.05)
    assert sm.trigger == "request:order-router:ws_reconnect" and sm.ok
    # Five operators at once: at most two runs answer them all (one may already be running).
    before = (await recon.exec_counts())[subjects.exec_report(recon.account, "reconciliation")]
    answers = await asyncio.gather(*(recon.reconcile(f"op{i}") for i in range(5)))
    assert all(a.ok for a in answers)
    after = (await recon.exec_counts())[subjects.exec_report(recon.account, "reconciliation")]
    assert after - before <= 2 and len({a.run_id for a in answers}) <= 2


async def test_pdx_reconcile(recon: ReconStack) -> None:
    code, out, err = await pdx(["reconcile", "--account", recon.account, "--timeout", "3"], recon.nats_url)
    assert code == 1 and err.count("\n") == 1 and "no reconciler serves account" in err, (out, err)
    await recon.place("BUY", "0.01", "60000")
    await recon.start_reconciler()
    code, out, err = await pdx(["reconcile", "--json"], recon.nats_url)  # account found via health
    assert code == 0, err
    row = json.loads(out)
    assert row["type"] == "ReconciliationSummary" and row["ok"] and row["trigger"] == "request:pdx:operator"
    assert row["counts"]["orders_matched"] == 1 and row["rest_calls"] > 0
    code, out, err = await pdx(["reconcile", "--account", recon.account], recon.nats_url)
    assert code == 0 and "reconciliation ok" in out and "orders_matched=1" in out, (out, err)
    code, out, err = await pdx(["status", "--json"], recon.nats_url)
    status = json.loads(out)
    assert status["reconciliation"][0]["ok"] is True
    svc = next(x for x in status["services"] if x["service"] == "reconciler")
    assert svc["details"]["startup"] == "done" and svc["state"] == "Connected"
