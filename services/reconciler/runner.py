"""One reconciliation run: read the venue, compare with the projection, publish corrections and
reports, check positions and the balance, move the watermarks, publish the summary.

Kinds of run (``trigger`` names why it ran):

* ``orders`` (the periodic open-order check): ``GET /orders``, ``/orders-history`` and ``/fills``
  since the watermarks, single-order lookups for what the bulk reads did not cover;
* ``full`` (start-up, the 60 s position check, every request on ``ctl.reconcile.<acct>``): the
  above plus ``/positions``, ``/balance``, ``/account`` (and ``/funding/payments`` of markets
  with a position, counted only); the start-up run also publishes an ExecutionMassStatus.

Positions are compared after the fills are reconciled. A mismatch is re-read (fills and positions)
``RECON_POSITION_RECHECKS`` times, because a trade between two reads looks like one; what remains
is unresolved: metric ``position_mismatch``, health Degraded, listed in the summary. Nothing is
published to paper over it (no synthetic fills, no reconciliation orders).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import schemas as s
from bus import msgid, subjects
from services.reconciler.account import AccountCheck
from services.reconciler.build import EventBuilder
from services.reconciler.compare import (
    Plan,
    PlanContext,
    Snapshot,
    lookups_needed,
    merge_orders,
    older_fills_needed,
    plan_corrections,
    split_fills,
)
from services.reconciler.emit import Emitter
from services.reconciler.fetch import Fetcher, Unknown
from services.reconciler.follower import CommandIndex, ExecFollower
from services.reconciler.instruments import Instruments
from services.reconciler.mass_status import build_mass_status
from services.reconciler.positions import PositionCheck, compare_positions
from services.reconciler.settings import ReconSettings
from services.reconciler.state import LocalState, Watermarks
from services.reconciler.venue import VenuePosition
from services.runtime import Metrics, Problems

log = logging.getLogger("reconciler.run")

MAX_UNRESOLVED_LISTED = 50


@dataclass
class RunOutcome:
    summary: s.ReconciliationSummary
    plan: Plan
    positions: PositionCheck | None = None
    mass_status_seq: int = 0
    follow_up: bool = False
    unresolved_positions: list[str] = field(default_factory=list)


class _Lap:
    """Milliseconds per phase of a run, kept in the summary's counts as ``ms_<phase>``."""

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self.t = time.monotonic()

    def __call__(self, phase: str) -> None:
        now = time.monotonic()
        self.counts[f"ms_{phase}"] += int((now - self.t) * 1000)
        self.t = now


@dataclass
class Reads:
    """Which feeds this run read completely (only those may move a watermark)."""

    fills_ok: bool = False
    orders_ok: bool = False
    fills_since: int | None = None
    orders_since: int | None = None


class Runner:
    def __init__(
        self,
        settings: ReconSettings,
        account: str,
        fetcher: Fetcher,
        follower: ExecFollower,
        commands: CommandIndex,
        watermarks: Watermarks,
        local: LocalState,
        instruments: Instruments,
        emitter: Emitter,
        js: Any,
        metrics: Metrics,
        problems: Problems,
    ) -> None:
        self.s = settings
        self.account = account
        self.fetcher = fetcher
        self.follower = follower
        self.commands = commands
        self.watermarks = watermarks
        self.local = local
        self.instruments = instruments
        self.emitter = emitter
        self.js = js
        self.metrics = metrics
        self.problems = problems
        self.builder = EventBuilder(account, settings.trader_id, instruments)
        self.account_check = AccountCheck(
            account, fetcher, emitter, js, self.builder, instruments, watermarks, problems
        )
        self.lookup_offset = 0
        self.markets_loaded = False

    # -- the run --------------------------------------------------------------------------------

    async def run(self, trigger: str, *, full: bool, mass_status: bool = False) -> RunOutcome:
        run_id = str(uuid.uuid4())
        t0 = time.monotonic_ns()
        calls0 = self.fetcher.calls
        self.fetcher.malformed = []
        counts: Counter[str] = Counter()
        unresolved: list[str] = []
        if not await self.follower.wait_caught_up(self.s.publish_timeout):
            unresolved.append("the EXEC projection did not catch up before the run")
            self.problems.report("projection_behind", trigger=trigger)

        lap = _Lap(counts)
        snap, reads = await self._read(full, counts, unresolved)
        await self._ensure_instruments(snap)
        lap("read")
        await self._lookups(snap, counts, unresolved)
        lap("lookups")
        plan = self._plan(snap)
        lap("plan")
        outcome = RunOutcome(summary=None, plan=plan)  # type: ignore[arg-type]
        await self._emit(plan, counts, unresolved)
        lap("publish")

        position_reports: list[s.PositionStatusReport] = []
        if full and snap.positions is not None:
            check = await self._positions(snap, reads, counts, unresolved)
            outcome.positions = check
            position_reports = await self._position_reports(snap.positions, counts)
        if full:
            await self.account_check.balance(counts, unresolved)
            if self.s.funding_check and snap.positions is not None:
                await self.account_check.funding(snap.positions, await self._since("funding"), counts)
            lap("positions_account")

        if mass_status:
            outcome.mass_status_seq = await self._mass_status(run_id, snap, plan, position_reports, counts)
            lap("mass_status")

        await self._advance(run_id, snap, reads, plan)
        for kind, ctx in plan.problems:
            self.problems.report(kind, **ctx)
        counts.update({k: v for k, v in plan.counts.items() if v})
        unresolved = plan.unresolved + unresolved + self.fetcher.malformed
        outcome.follow_up = plan.follow_up
        outcome.summary = await self._summary(run_id, trigger, counts, unresolved, calls0, t0)
        return outcome

    # -- reading --------------------------------------------------------------------------------

    async def _since(self, name: str) -> int | None:
        wm = await self.watermarks.get(name)
        if wm is not None:
            return max(0, wm - int(self.s.overlap_s * 1000))
        if self.s.initial_lookback_s > 0:
            return int(time.time() * 1000 - self.s.initial_lookback_s * 1000)
        return None

    async def _read(self, full: bool, counts: Counter[str], unresolved: list[str]) -> tuple[Snapshot, Reads]:
        reads = Reads(fills_since=await self._since("fills"), orders_since=await self._since("orders"))
        snap = Snapshot(now_ms=int(time.time() * 1000), fills_since_ms=reads.fills_since)
        jobs: dict[str, Any] = {
            "open_orders": self.fetcher.open_orders(),
            "history": self.fetcher.history(reads.orders_since),
            "fills": self.fetcher.fills(reads.fills_since),
        }
        if full:
            jobs["positions"] = self.fetcher.positions()
        results = await asyncio.gather(*jobs.values(), return_exceptions=True)
        for name, res in zip(jobs, results, strict=True):
            if isinstance(res, Unknown):
                counts[f"{name}_unknown"] += 1
                unresolved.append(f"{res.what} failed ({type(res.cause).__name__}): treated as unknown")
                self.problems.report("venue_read_unknown", read=name, error=str(res)[:300])
                continue
            if isinstance(res, BaseException):
                raise res
            setattr(snap, name, res)
        reads.fills_ok = snap.fills is not None
        reads.orders_ok = snap.history is not None
        counts["venue_open_orders"] = len(snap.open_orders or [])
        counts["venue_fills_read"] = len(snap.fills or [])
        return snap, reads

    async def _ensure_instruments(self, snap: Snapshot) -> None:
        markets = {o.market for o in merge_orders(snap).values()} | {f.market for f in snap.fills or []}
        markets |= {p.market for p in snap.positions or []}
        missing = self.instruments.missing(markets)
        if not missing:
            return
        try:
            await self.instruments.load_from_bus(self.js)
            if self.instruments.missing(markets) and not self.markets_loaded:
                self.markets_loaded = True
                await self.instruments.load_from_rest(self.fetcher.client.markets, time.time_ns())
        except Exception as exc:  # noqa: BLE001 - precision is cosmetic; venue notation is used instead
            self.problems.report("instruments_unavailable", error=repr(exc)[:200])

    async def _lookups(self, snap: Snapshot, counts: Counter[str], unresolved: list[str]) -> None:
        """Single-order reads for bus-open orders and fills' orders the bulk reads did not cover,
        and fills further back for orders created before the fills window."""
        proj = self.follower.proj
        fills_by_order = split_fills(snap, Plan())
        bus_open, fill_orders = lookups_needed(proj, snap, fills_by_order)
        budget = self.s.max_lookups
        if snap.open_orders is None and snap.history is None:
            # Nothing bulk was read: single lookups would cost one call per order; mark them unknown.
            for o in bus_open:
                snap.lookup_unknown.add(o.client_order_id)
            bus_open = []
        if bus_open and len(bus_open) > budget:
            start = self.lookup_offset % len(bus_open)
            bus_open = bus_open[start:] + bus_open[:start]
            self.lookup_offset += budget
        for oid in fill_orders:
            if budget <= 0:
                snap.lookup_unknown.add(oid)
                continue
            budget -= 1
            counts["lookups"] += 1
            try:
                got = await self.fetcher.order(oid)
            except Unknown as exc:
                snap.lookup_unknown.add(oid)
                self.problems.report("venue_lookup_unknown", venue_order_id=oid, error=str(exc)[:200])
                continue
            if got is None:
                snap.lookup_missing.add(oid)
            else:
                snap.lookups[got.id] = got
        for o in bus_open:
            if budget <= 0:
                break
            budget -= 1
            counts["lookups"] += 1
            coid, vid = o.client_order_id, o.venue_order_id
            try:
                got = await self.fetcher.order(vid) if vid else None
                if got is None:
                    got = await self.fetcher.order_by_client_id(coid)
            except Unknown as exc:
                snap.lookup_unknown.add(coid)
                self.problems.report("venue_lookup_unknown", client_order_id=coid, error=str(exc)[:200])
                continue
            if got is None or (vid and got.id != vid):
                snap.lookup_missing.add(coid)
            else:
                snap.lookups[got.id] = got
        for market, start in older_fills_needed(proj, snap, fills_by_order, int(self.s.overlap_s * 1000)).items():
            counts["older_fill_reads"] += 1
            try:
                snap.extra_fills.extend(await self.fetcher.fills(start, market=market, end_ms=snap.fills_since_ms))
            except Unknown as exc:
                self.problems.report("venue_read_unknown", read="older_fills", market=market, error=str(exc)[:200])
                continue
            snap.fills_complete_since[market] = start

    def _plan(self, snap: Snapshot) -> Plan:
        window_ns = self.s.grace_ms * 1_000_000
        ctx = PlanContext(
            builder=self.builder,
            grace_ms=self.s.grace_ms,
            overlap_ms=int(self.s.overlap_s * 1000),
            recently_active=lambda coid: self.follower.recently_active(coid, window_ns),
            command=self.commands.get,
        )
        return plan_corrections(self.follower.proj, snap, ctx)

    # -- writing --------------------------------------------------------------------------------

    async def _emit(self, plan: Plan, counts: Counter[str], unresolved: list[str]) -> None:
        if not plan.orders:
            return
        res = await self.emitter.emit_plan(plan)
        counts["events_published"] += res.sent
        counts["already_on_bus"] += res.duplicates
        for why in res.skipped:
            unresolved.append(why)
            self.problems.report("correction_held_back", detail=why)
        if res.duplicates:
            self.problems.report("correction_duplicate", count=res.duplicates)
        if not res.flushed or res.rejected:
            unresolved.append(f"corrections not all stored (rejected={res.rejected}, flushed={res.flushed})")
            self.problems.report("correction_not_stored", rejected=res.rejected, flushed=res.flushed)
        if not res.caught_up:
            unresolved.append("the projection did not fold the corrections in time")
        counts["reports_published"] += res.reports
        for op in plan.orders:
            kinds = [type(ev).__name__ for _, ev in op.events]
            for kind in kinds:
                self.metrics.inc("corrections_total", kind=kind)
            self.problems.report(
                "order_corrected",
                client_order_id=op.client_order_id,
                venue_order_id=op.venue.id,
                events=",".join(kinds),
            )

    async def _positions(
        self, snap: Snapshot, reads: Reads, counts: Counter[str], unresolved: list[str]
    ) -> PositionCheck:
        assert snap.positions is not None
        check = compare_positions(self.follower.proj, snap.positions)
        rechecks = self.s.position_rechecks
        while check.mismatched and rechecks > 0:
            rechecks -= 1
            counts["position_rechecks"] += 1
            await asyncio.sleep(0.2)
            try:
                fills = await self.fetcher.fills(reads.fills_since)
                positions = await self.fetcher.positions()
            except Unknown as exc:
                self.problems.report("venue_read_unknown", read="position_recheck", error=str(exc)[:200])
                break
            again = Snapshot(
                now_ms=int(time.time() * 1000),
                fills=fills,
                fills_since_ms=reads.fills_since,
                open_orders=snap.open_orders,
                history=snap.history,
                lookups=dict(snap.lookups),
            )
            again.extra_fills, again.fills_complete_since = snap.extra_fills, snap.fills_complete_since
            fills_by_order = split_fills(again, Plan())
            for oid in fills_by_order:
                if oid not in merge_orders(again):
                    try:
                        got = await self.fetcher.order(oid)
                    except Unknown as exc:  # the fill stays unmatched and is reported unresolved
                        self.problems.report("venue_read_unknown", read="order_lookup", order_id=oid,
                                             error=str(exc)[:200])
                        continue
                    if got is not None:
                        again.lookups[got.id] = got
            plan = self._plan(again)
            plan.counts.pop("orders_checked", None)
            plan.counts.pop("orders_matched", None)
            await self._emit(plan, counts, unresolved)
            counts.update(
                {f"recheck_{k}": v for k, v in plan.counts.items() if v and k.startswith(("fills_", "emit_"))}
            )
            snap.positions = positions
            check = compare_positions(self.follower.proj, positions)
        counts["positions_matched"] = len(check.matched)
        counts["position_mismatch"] = len(check.mismatched)
        self.metrics.set("position_mismatch", len(check.mismatched))
        for market, venue, bus in check.mismatched:
            text = f"position {market}: venue {venue}, bus {bus} (after fills were reconciled)"
            unresolved.append(text)
            self.problems.report(
                "position_mismatch", level=logging.ERROR, market=market, venue=str(venue), bus=str(bus)
            )
        for market, venue_px, bus_px in check.avg_px_off:
            counts["position_avg_px_off"] += 1
            self.problems.report("position_avg_px_off", market=market, venue=str(venue_px), bus=str(bus_px))
        return check

    async def _position_reports(
        self, positions: list[VenuePosition], counts: Counter[str]
    ) -> list[s.PositionStatusReport]:
        """A PositionStatusReport per market whose venue position changed since the last one we sent."""
        out: list[s.PositionStatusReport] = []
        items: list[tuple[str, str, Any]] = []
        for p in positions:
            rep = self.builder.position_report(p)
            out.append(rep)
            stamp = f"{p.seq_no}:{p.size}"
            if self.local.report_state("position", p.market) == stamp:
                continue
            items.append(("position", msgid.report(self.account, "position", f"{p.market}:{p.seq_no}"), rep))
            self.local.set_report_state("position", p.market, stamp)
        if items:
            sent, _ = await self.emitter.publish_reports(items)
            counts["position_reports"] += sent
        return out

    async def _mass_status(
        self, run_id: str, snap: Snapshot, plan: Plan, positions: list[s.PositionStatusReport], counts: Counter[str]
    ) -> int:
        ms, omitted = build_mass_status(self.builder, run_id, snap, plan, positions, self.s.mass_status_max_bytes)
        for kind, n in omitted.items():
            counts[f"mass_status_{kind}_omitted"] += n
        if omitted:
            self.problems.report("mass_status_truncated", **{k: str(v) for k, v in omitted.items()})
        counts["mass_status_orders"] = len(ms.order_reports)
        counts["mass_status_fills"] = sum(len(v) for v in ms.fill_reports.values())
        return await self.emitter.publish_acked(
            subjects.exec_report(self.account, "mass_status"), ms, msgid.report(self.account, "mass_status", run_id)
        )

    async def _advance(self, run_id: str, snap: Snapshot, reads: Reads, plan: Plan) -> None:
        if reads.fills_ok and snap.fills:
            newest = max(f.created_at for f in snap.fills)
            if plan.hold_fills_ms is not None:
                newest = min(newest, plan.hold_fills_ms)
            await self.watermarks.advance("fills", newest, run_id)
        if reads.orders_ok and snap.history:
            newest = max(o.created_at for o in snap.history)
            if plan.hold_orders_ms is not None:
                newest = min(newest, plan.hold_orders_ms)
            await self.watermarks.advance("orders", newest, run_id)

    async def _summary(
        self, run_id: str, trigger: str, counts: Counter[str], unresolved: list[str], calls0: int, t0: int
    ) -> s.ReconciliationSummary:
        listed = unresolved[:MAX_UNRESOLVED_LISTED]
        if len(unresolved) > MAX_UNRESOLVED_LISTED:
            listed.append(f"... and {len(unresolved) - MAX_UNRESOLVED_LISTED} more")
        counts["unresolved"] = len(unresolved)
        now = time.time_ns()
        summary = s.ReconciliationSummary(
            account_id=self.builder.account_id,
            run_id=run_id,
            trigger=trigger,
            ok=not unresolved,
            counts={k: int(v) for k, v in sorted(counts.items()) if v},
            unresolved=listed,
            rest_calls=self.fetcher.calls - calls0,
            duration_ns=time.monotonic_ns() - t0,
            ts_event=now,
            ts_init=now,
        )
        await self.emitter.publish_acked(
            subjects.exec_report(self.account, "reconciliation"),
            summary,
            msgid.report(self.account, "reconciliation", run_id),
        )
        return summary
