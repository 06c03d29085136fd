"""``pdx order submit|cancel|cancel-all|list`` through the real entry point, against the running
router, signer and simulator (the CLI runs as a child process; the simulator keeps serving)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from decimal import Decimal
from pathlib import Path

from tests.order_router.conftest import MKT, Stack, kinds, seed_book

ROOT = Path(__file__).resolve().parents[2]


async def pdx(st: Stack, *args: str, account: bool = True, timeout: float = 60) -> tuple[int, str, str]:
    env = {**os.environ, "NATS_URL": st.base_env["NATS_URL"], "PDX_RUN_DIR": "/nonexistent"}
    env.pop("PARADEX_ACCOUNT", None)
    if account:
        env["PARADEX_ACCOUNT"] = st.account
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli.main", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_submit_cancel_cancel_all_list(stack: Stack) -> None:
    st = stack
    mark = await seed_book(st.admin)
    low = str((mark * Decimal("0.98")).quantize(Decimal("0.1")))
    rc, out, err = await pdx(st, "order", "submit", MKT, "buy", "0.001", "--limit", low, "--client-id", "CLI-1",
                             "--wait", "--json")
    assert rc == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["type"] for x in lines] == ["OrderInitialized", "OrderSubmitted", "OrderAccepted"]
    assert lines[0]["client_order_id"] == "CLI-1" and lines[0]["options"]["price"] == low
    (v,) = await st.venue_orders("CLI-1")
    assert lines[2]["venue_order_id"] == v["id"]

    # Pretty --wait of a post-only order that would cross: rejected, one error line, exit 1.
    ask = (await st.admin.book(MKT))["asks"][0][0]
    rc, out, err = await pdx(st, "order", "submit", MKT, "buy", "0.001", "--limit", ask, "--tif", "POST_ONLY",
                             "--wait")
    assert rc == 1
    assert "OrderRejected" in out and "POST_ONLY_WOULD_CROSS" in err and len(err.strip().splitlines()) == 1

    # A stop-loss market (Paradex type through params), submitted without --wait, then listed.
    trig = str((mark * Decimal("0.95")).quantize(Decimal("0.1")))
    rc, out, err = await pdx(st, "order", "submit", MKT, "sell", "0.001", "--type", "STOP_LOSS_MARKET",
                             "--trigger", trig, "--client-id", "CLI-SL")
    assert rc == 0 and "submitted CLI-SL" in out, err
    await st.wait_events("CLI-SL", lambda e: "OrderAccepted" in kinds(e))
    (sl,) = await st.venue_orders("CLI-SL")
    assert sl["type"] == "STOP_LOSS_MARKET"

    rc, out, err = await pdx(st, "order", "list", "--json")
    assert rc == 0, err
    listed = {x["client_order_id"]: x for x in map(json.loads, out.splitlines())}
    assert listed["CLI-1"]["status"] == "ACCEPTED" and listed["CLI-1"]["venue_order_id"] == v["id"]
    assert listed["CLI-SL"]["order_type"] == "STOP_MARKET"
    rc, out, _ = await pdx(st, "order", "list")
    assert rc == 0 and "CLI-1" in out and "ACCEPTED" in out

    rc, out, err = await pdx(st, "order", "cancel", "CLI-1")
    assert rc == 0, err
    assert "OrderPendingCancel" in out and "OrderCanceled" in out
    rc, out, err = await pdx(st, "order", "cancel", "CLI-1")
    assert rc == 1 and "already canceled" in err

    rc, out, err = await pdx(st, "order", "cancel-all", MKT)
    assert rc == 0 and "cancel-all sent" in out, err
    evs = await st.wait_events("CLI-SL", lambda e: "OrderCanceled" in kinds(e))
    assert kinds(evs)[-2:] == ["OrderPendingCancel", "OrderCanceled"]


async def test_cli_errors_are_one_line(stack: Stack) -> None:
    st = stack
    cases = [
        (("order", "submit", MKT, "buy", "abc", "--limit", "1"), "size"),
        (("order", "submit", MKT, "buy", "1", "--type", "LIMIT"), "needs --limit"),
        (("order", "submit", MKT, "buy", "1", "--type", "STOP_MARKET"), "needs --trigger"),
        (("order", "submit", MKT, "buy", "1", "--limit", "1", "--client-id", "bad id!"), "client-id"),
        (("order", "cancel", "NO-SUCH-ORDER"), "no order NO-SUCH-ORDER"),
    ]
    for args, needle in cases:
        rc, out, err = await pdx(st, *args)
        assert rc != 0, args
        assert needle in err and len(err.strip().splitlines()) == 1, (args, err)
    # Without --account / PARADEX_ACCOUNT the account comes from the signer.
    rc, out, err = await pdx(st, "order", "list", "--all", "--json", account=False)
    assert rc == 0, err
    assert "CLI-1" in {json.loads(x)["client_order_id"] for x in out.splitlines()}
