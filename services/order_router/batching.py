"""Batch submit: several SubmitOrder commands sent in one ``POST /orders/batch`` (paradex-api.md §4.7.2).

Design: a batch is a group of ordinary ``SubmitOrder`` commands that carry the same
``params["batch_id"]`` (any string unique to the batch) and ``params["batch_size"]`` (how many
members to expect). Each member keeps its own command id, client order id, ack and events, so the
exactly-once rules of single orders hold per member; only the venue call is shared (one rate-limit
unit for up to 50 orders). The batch is sent as soon as ``batch_size`` members passed their
pre-trade checks, or ``ROUTER_BATCH_WINDOW_MS`` after the first arrived (members that were denied
or arrive late are simply not in it; a late member starts a new batch under the same id).

Per-member outcomes: an order in the reply's ``orders`` is applied like a single submit's reply; an
entry in ``errors`` (matched by ``data.client_id`` or ``data.index``) is ``OrderRejected``; a whole
batch refused by basic validation (4xx) rejects every member; 429 / not sent retries the batch
after looking each member up; a timeout or 5xx makes every member an unknown outcome resolved by
lookup (never re-sent).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.execution import projection as P
from services.execution.projection import OrderView
from services.order_router.mapping import VenueOrderSpec, venue_order
from services.order_router.venue import NotSent, SignerFailed
from services.paradex.rest import ParadexError, RateLimited, UnknownOutcome

if TYPE_CHECKING:
    from services.order_router.commands import Commands

MAX_BATCH = 50


@dataclass
class _Batch:
    batch_id: str
    size: int
    items: list[tuple[OrderView, VenueOrderSpec]] = field(default_factory=list)
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    timer: asyncio.TimerHandle | None = None


class SubmitBatcher:
    def __init__(self, commands: Commands, window: float) -> None:
        self.c = commands
        self.window = window
        self.batches: dict[str, _Batch] = {}
        self.sent = 0

    async def add(self, batch_id: str, size: int, o: OrderView, spec: VenueOrderSpec) -> None:
        b = self.batches.get(batch_id)
        if b is None:
            b = self.batches[batch_id] = _Batch(batch_id, size)
            b.timer = asyncio.get_running_loop().call_later(self.window, self._due, b)
        b.items.append((o, spec))
        if (size and len(b.items) >= size) or len(b.items) >= MAX_BATCH:
            self._due(b)
        await asyncio.shield(b.done)

    def _due(self, b: _Batch) -> None:
        if self.batches.get(b.batch_id) is not b:
            return
        del self.batches[b.batch_id]
        if b.timer is not None:
            b.timer.cancel()
        task = asyncio.ensure_future(self._flush(b))
        task.add_done_callback(lambda t: _settle(b, t))

    async def _flush(self, b: _Batch) -> None:
        c = self.c
        with c.store.owning([o.client_order_id for o, _ in b.items]):
            signing = [asyncio.ensure_future(c._sign(spec)) for _, spec in b.items]
            for o, _ in b.items:
                async with c.store.locked(o.client_order_id):
                    await c._submitted(o)
            members: list[tuple[OrderView, VenueOrderSpec, str, int]] = []
            for (o, spec), fut in zip(b.items, signing, strict=True):
                try:
                    sig, ts = await fut
                except SignerFailed as exc:
                    async with c.store.locked(o.client_order_id):
                        await c.trans.emit_rejected(o, f"SIGNER_{exc.code}: {exc.reason}")
                    continue
                members.append((o, spec, sig, ts))
            await self._send(members)

    async def _send(self, members: list[tuple[OrderView, VenueOrderSpec, str, int]]) -> None:
        c = self.c
        give_up = time.monotonic() + c.settings.submit_retry_budget
        attempt = 0
        while members:
            attempt += 1
            for o, _, _, ts in members:
                c.resolver.note_attempt(o.client_order_id, ts)
            try:
                out = await c.venue.submit_batch([(spec, sig, ts) for _, spec, sig, ts in members])
                self.sent += 1
            except (RateLimited, NotSent) as exc:
                wait = exc.retry_after if isinstance(exc, RateLimited) and exc.retry_after is not None else None
                wait = min(wait if wait is not None else 0.1 * 2 ** min(attempt, 5), 5.0)
                if time.monotonic() + wait > give_up:
                    for o, _, _, _ in members:
                        await c._not_placed(o, f"{type(exc).__name__}: batch not placed after {attempt} attempts")
                    return
                await asyncio.sleep(wait)
                left = []
                for o, spec, _, _ in members:
                    if not await c._found(o):
                        sig, ts = await c._sign(spec)
                        left.append((o, spec, sig, ts))
                members = left
                continue
            except ParadexError as exc:
                for o, _, _, _ in members:
                    async with c.store.locked(o.client_order_id):
                        await c.trans.emit_rejected(o, f"{exc.code}: {exc.message}")
                return
            except UnknownOutcome as exc:
                c.problems.report("batch_unknown_outcome", members=len(members), error=str(exc))
                await asyncio.gather(*(c.resolver.resolve_submit(o.client_order_id) for o, _, _, _ in members))
                return
            await self._apply(members, out)
            return

    async def _apply(self, members: list[tuple[OrderView, VenueOrderSpec, str, int]], out: Any) -> None:
        c = self.c
        by_cid: dict[str, Any] = {}
        for raw in (out or {}).get("orders") or []:
            try:
                v = venue_order(raw)
            except Exception as exc:  # noqa: BLE001 - one bad item must not lose the others
                c.problems.report("batch_bad_order_item", error=repr(exc))
                continue
            by_cid[v.client_id] = v
        errors: dict[str, str] = {}
        for err in (out or {}).get("errors") or []:
            data = err.get("data") if isinstance(err, dict) else None
            key = ""
            if isinstance(data, dict):
                if data.get("client_id"):
                    key = str(data["client_id"])
                elif isinstance(data.get("index"), int) and 0 <= data["index"] < len(members):
                    key = members[data["index"]][0].client_order_id
            if key:
                errors[key] = f"{err.get('error', 'ERROR')}: {err.get('message', '')}"
            else:
                c.problems.report("batch_error_unmatched", error=str(err)[:200])
        unknown: list[str] = []
        for o, _, _, _ in members:
            coid = o.client_order_id
            v = by_cid.get(coid)
            if v is not None:
                async with c.store.locked(coid):
                    await c.trans.apply_order(coid, v, "rest")
            elif coid in errors:
                async with c.store.locked(coid):
                    await c.trans.emit_rejected(o, errors[coid])
            elif o.status == P.SUBMITTED:
                unknown.append(coid)
        if unknown:
            c.problems.report("batch_member_missing_from_reply", count=len(unknown))
            await asyncio.gather(*(c.resolver.resolve_submit(coid) for coid in unknown))


def _settle(b: _Batch, task: asyncio.Task[None]) -> None:
    if b.done.done():
        return
    if task.cancelled():
        b.done.cancel()
    elif task.exception() is not None:
        b.done.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        b.done.set_result(None)
