"""Publishing a plan: corrective order events (with the router's deterministic Msg-Ids), reports,
and waiting until the projection has folded them in.

Events of one order go out in lifecycle order on its subject, followed by the reports of the
corrections (none for an order whose events were held back); the ``Publisher``'s buffered path
keeps that order through retries (same Msg-Id, so a retry of a message that was in fact stored is
deduplicated) and pipelines across orders (tens of thousands of events per second). Each event is
validated by a decode round trip first: a struct the bus schema would refuse is never sent. A
Msg-Id the reconciler already had stored (``LocalState``) is not sent again -- if the projection
still lacks that fact, it refused it, and that is reported, not repeated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from bus import Publisher, msgid, subjects
from schemas import DecodeError, decode, encode
from services.reconciler.compare import Plan
from services.reconciler.follower import ExecFollower
from services.reconciler.state import LocalState


@dataclass
class EmitResult:
    sent: int = 0
    reports: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    flushed: bool = True
    caught_up: bool = True
    skipped: list[str] = field(default_factory=list)  # why events were held back
    msg_ids: list[str] = field(default_factory=list)


def _valid(ev: msgspec.Struct) -> bytes | None:
    payload = encode(ev)
    try:
        decode(payload)
    except DecodeError:
        return None
    return payload


class Emitter:
    def __init__(
        self,
        publisher: Publisher,
        account: str,
        local: LocalState,
        follower: ExecFollower,
        timeout: float,
    ) -> None:
        self.publisher = publisher
        self.account = account
        self.local = local
        self.follower = follower
        self.timeout = timeout

    async def emit_plan(self, plan: Plan) -> EmitResult:
        """The corrections, then their reports (OrderStatusReport / FillReport) in the same
        pipeline, one flush for all, then wait until the projection has folded the events in."""
        res = EmitResult()
        before = self.publisher.stats.stored, self.publisher.stats.duplicates, self.publisher.stats.rejected
        held: set[str] = set()
        for op in plan.orders:
            subject = subjects.exec_order(self.account, op.client_order_id)
            for mid, ev in op.events:
                if self.local.emitted(mid):
                    res.skipped.append(
                        f"{op.client_order_id}: {type(ev).__name__} was stored before and is not on "
                        "the projection (refused); not sent again"
                    )
                    held.add(op.client_order_id)
                    break
                payload = _valid(ev)
                if payload is None:
                    res.skipped.append(f"{op.client_order_id}: {type(ev).__name__} fails the bus schema; not sent")
                    held.add(op.client_order_id)
                    break
                await self.publisher.publish(subject, payload, mid)
                res.sent += 1
                res.msg_ids.append(mid)
        order_subject = subjects.exec_report(self.account, "order")
        for r in plan.order_reports:
            if r.client_order_id not in held:
                key = f"{r.venue_order_id}:{r.ts_last}:{r.filled_qty}"
                await self.publisher.publish(order_subject, encode(r), msgid.report(self.account, "order", key))
                res.reports += 1
        fill_subject = subjects.exec_report(self.account, "fill")
        for r in plan.fill_reports:
            if r.client_order_id not in held:
                await self.publisher.publish(fill_subject, encode(r), msgid.report(self.account, "fill", r.trade_id))
                res.reports += 1
        if res.sent or res.reports:
            res.flushed = await self.publisher.flush(self.timeout)
            st = self.publisher.stats
            res.stored = st.stored - before[0]
            res.duplicates = st.duplicates - before[1]
            res.rejected = st.rejected - before[2]
            if res.flushed and not res.rejected:
                self.local.remember_emitted(res.msg_ids)
        if res.sent:
            res.caught_up = await self.follower.wait_caught_up(self.timeout)
        return res

    async def publish_reports(self, items: list[tuple[str, str, Any]]) -> tuple[int, bool]:
        """``(kind, msg_id, report)`` on ``exec.paradex.<acct>.report.<kind>``; returns (sent, flushed)."""
        sent = 0
        for kind, mid, report in items:
            # Reports carry the same venue values as the events validated in emit_plan.
            await self.publisher.publish(subjects.exec_report(self.account, kind), encode(report), mid)
            sent += 1
        return sent, (await self.publisher.flush(self.timeout)) if sent else True

    async def publish_acked(self, subject: str, event: Any, mid: str) -> int:
        """One message stored before returning; the stream sequence it got."""
        ack = await self.publisher.publish_event_acked(subject, event, mid, deadline=self.timeout)
        return int(ack.seq)
