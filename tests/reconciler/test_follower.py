"""The EXEC follower: caught up means every stored order event of the account is folded in, also
when the last stored messages are on other subjects its filter skips (reports, AccountState)."""

from __future__ import annotations

import logging
import time

from nats.js import JetStreamContext

import schemas as s
from bus import Publisher, msgid, subjects
from services.reconciler.follower import ExecFollower
from services.runtime import Metrics, Problems

ACCT = "0xabc"
U = "097faffb-c29b-4d5f-b7ae-abccd80b3fa4"


def _init(coid: str) -> s.OrderInitialized:
    return s.OrderInitialized(
        trader_id="T-1",
        strategy_id="S-1",
        instrument_id="BTC-USD-PERP.PARADEX",
        client_order_id=coid,
        order_side="BUY",
        order_type="LIMIT",
        quantity="1",
        time_in_force="GTC",
        event_id=U,
        ts_init=1,
        ts_event=1,
    )


async def test_caught_up_past_messages_of_other_subjects(nc, js: JetStreamContext) -> None:
    pub = await Publisher(nc, js).start()
    await pub.publish_event_acked(subjects.exec_order(ACCT, "c1"), _init("c1"), msgid.order_event(ACCT, "c1", "x"))
    summary = s.ReconciliationSummary(account_id="PARADEX-0xabc", run_id=U, trigger="t", ok=True, ts_event=1, ts_init=1)
    for i in range(3):  # stored after the last order event, skipped by the follower's filter
        await pub.publish_event_acked(subjects.exec_report(ACCT, "reconciliation"), summary, f"r{i}")
    follower = ExecFollower(js, ACCT, Problems(Metrics("test"), logging.getLogger("test")))
    await follower.start()
    try:
        t0 = time.monotonic()
        assert await follower.wait_caught_up(5.0)
        assert time.monotonic() - t0 < 2.0
        assert set(follower.proj.orders) == {"c1"}
        await pub.publish_event_acked(subjects.exec_order(ACCT, "c2"), _init("c2"), msgid.order_event(ACCT, "c2", "x"))
        await pub.publish_event_acked(subjects.exec_report(ACCT, "reconciliation"), summary, "r9")
        assert await follower.wait_caught_up(5.0)
        assert set(follower.proj.orders) == {"c1", "c2"}
        assert follower.recently_active("c2", 10**10) and not follower.recently_active("c3", 10**10)
    finally:
        await follower.stop()
        await pub.close()
