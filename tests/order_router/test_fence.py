"""The router's fenced writes to an order's EXEC subject, against a real nats-server.

Another writer (the reconciler, a standby router) can store a fact on an order the router has not
folded in yet. These tests store such a fact directly, exactly as the reconciler does (the router's
Msg-Id scheme, no fence), and check that the router's next write sees it first: a pending modify
that no longer applies is not stored, one that still applies is stored after the fact, and a
lost-ack retry of the router's own write is not mistaken for a conflict.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest_asyncio
from nats.js import JetStreamContext

import schemas as s
from bus import Publisher, ensure_streams, msgid, subjects
from bus.publisher import EXPECTED_LAST_SUBJECT_SEQ, MSG_ID
from bus.replay import replay
from services.order_router.orders import OrderStore
from services.order_router.transitions import legal
from services.runtime import Metrics, Problems
from tests.unit.test_projection import ACCT, ev, fill, init

ACCOUNT = "0xabc"
COID = "c1"  # the helpers' order
SUBJECT = subjects.exec_order(ACCOUNT, COID)


@pytest_asyncio.fixture
async def store(nc, js: JetStreamContext) -> AsyncIterator[OrderStore]:
    await ensure_streams(js, replicas=1)
    publisher = await Publisher(nc, js, name="fence-test").start()
    metrics = Metrics("fence-test")
    st = OrderStore(js, publisher, ACCOUNT, metrics, Problems(metrics, logging.getLogger("fence-test")))
    try:
        yield st
    finally:
        await publisher.close()


async def accepted_order(st: OrderStore) -> None:
    async with st.locked(COID):
        submitted = ev(s.OrderSubmitted, account_id=ACCT)
        for e in (init(), submitted, ev(s.OrderAccepted, venue_order_id="v1", account_id=ACCT)):
            assert (await st.emit(e)).ok


async def store_foreign(js: JetStreamContext, event: s.Event, mid: str) -> int:
    """What the reconciler does: the router's Msg-Id, no fence, not folded in by the router."""
    ack = await js.publish(SUBJECT, s.encode(event), headers={MSG_ID: mid})
    return ack.seq


def pending_update() -> s.OrderPendingUpdate:
    return ev(s.OrderPendingUpdate, venue_order_id="v1", account_id=ACCT)


async def stored_kinds(js: JetStreamContext) -> list[str]:
    return [type(m.event).__name__ async for m in replay(js, SUBJECT, stream="EXEC")]


async def test_a_modify_racing_a_stored_fill_is_superseded_not_stored(store: OrderStore, js: JetStreamContext) -> None:
    await accepted_order(store)
    await store_foreign(js, fill("t1", "1.0"), msgid.fill(ACCOUNT, "t1"))
    assert store.order(COID).status == "ACCEPTED"  # the router has not seen the fill

    async with store.locked(COID):
        res = await store.emit(pending_update(), "cmd-1", still_valid=lambda o: legal(o.status, "PENDING_UPDATE"))

    assert not res.ok and res.problem == "superseded"
    o = store.order(COID)
    assert o.status == "FILLED" and "t1" in o.trade_ids
    assert await stored_kinds(js) == ["OrderInitialized", "OrderSubmitted", "OrderAccepted", "OrderFilled"]
    assert store.metrics.snapshot().get("events_superseded_total{kind=OrderPendingUpdate}") == 1
    assert store.publisher.stats.conflicts == 1


async def test_a_modify_that_still_applies_is_stored_after_the_foreign_fact(
    store: OrderStore, js: JetStreamContext
) -> None:
    await accepted_order(store)
    seq = await store_foreign(js, fill("t1", "0.4"), msgid.fill(ACCOUNT, "t1"))

    async with store.locked(COID):
        res = await store.emit(pending_update(), "cmd-1", still_valid=lambda o: legal(o.status, "PENDING_UPDATE"))

    assert res.ok
    o = store.order(COID)
    assert o.status == "PENDING_UPDATE" and o.filled_qty == Decimal("0.4")
    assert o.last_seq > seq
    kinds = await stored_kinds(js)
    assert kinds[-2:] == ["OrderFilled", "OrderPendingUpdate"]
    # Folded once: the follower, reading the same facts later, skips them.
    before = store.metrics.snapshot().get("foreign_events_total{kind=OrderFilled}")
    async for m in replay(js, SUBJECT, stream="EXEC"):
        await store._fold_foreign(m)
    assert store.metrics.snapshot().get("foreign_events_total{kind=OrderFilled}") == before == 1
    assert store.order(COID).filled_qty == Decimal("0.4")


async def test_a_retry_of_a_stored_write_is_not_a_conflict(store: OrderStore, js: JetStreamContext) -> None:
    """The server checks the fence before the Msg-Id: a retry after a lost ack is refused as a
    conflict, and the catch-up must recognise the router's own fact."""
    await accepted_order(store)
    o = store.order(COID)
    event = pending_update()
    mid = store.mid(COID, "OrderPendingUpdate", "cmd-1")
    # The first attempt was stored, its ack lost: the router's view still ends at the accept.
    await js.publish(SUBJECT, s.encode(event), headers={MSG_ID: mid, EXPECTED_LAST_SUBJECT_SEQ: str(o.last_seq)})

    async with store.locked(COID):
        res = await store.emit(event, "cmd-1", still_valid=lambda cur: legal(cur.status, "PENDING_UPDATE"))

    assert res.ok and store.order(COID).status == "PENDING_UPDATE"
    assert (await stored_kinds(js)).count("OrderPendingUpdate") == 1


async def test_facts_of_a_new_order_need_an_empty_subject(store: OrderStore, js: JetStreamContext) -> None:
    """An order's first fact is fenced on "nothing stored yet": a resubmission after a crash finds
    the stored history instead of writing a second one."""
    await store_foreign(js, init(), msgid.order_event(ACCOUNT, COID, "OrderInitialized", 0))
    async with store.locked(COID):
        res = await store.emit(init())
    assert res.ok
    assert await stored_kinds(js) == ["OrderInitialized"]
    assert store.order(COID).last_seq == 1
    # An event the catch-up cannot decode is reported and stepped over, never folded.
    await js.publish(SUBJECT, b"not an event", headers={MSG_ID: "junk"})
    async with store.locked(COID):
        assert (await store.emit(ev(s.OrderSubmitted, account_id=ACCT))).ok
    assert store.order(COID).status == "SUBMITTED"
    assert store.metrics.snapshot().get("problems_total{kind=undecodable_exec_event}") == 1
