"""The end-of-run invariant checker: what the bus says against what the venue (simulator) knows.

``InvariantChecker(...).check()`` reads the streams (``MD``, ``EXEC``, ``CMD``), asks the book builder
for every book (``book.paradex.snapshot.<MKT>``) and the simulator's admin API for ground truth
(``/truth/trades``, ``/truth/book/<MKT>``, ``/truth/accounts/<acct>``), and returns an
``InvariantReport`` with one ``Section`` per invariant:

* **trades** -- every venue trade of the run window is on ``md.paradex.trades.<MKT>`` exactly once
  (by trade id), none is there twice at all, none is there that the venue does not know, and price
  and size agree.
* **books** -- every built book (the book builder's snapshot) is VALID and has exactly the venue's
  levels (price -> size, both sides).
* **orders** -- every order the venue has for the account has a history on ``EXEC``: the same venue
  order id, open/closed as at the venue, the venue's filled quantity; every stored order event
  applies to Nautilus's order state machine (``ExecProjection``: no illegal transition, no
  duplicate ``OrderInitialized``, no undecodable event); an order the venue never had ended
  DENIED or REJECTED; no ``Nats-Msg-Id`` is stored twice.
* **fills** -- every venue fill is one ``OrderFilled`` (trade id = fill id) with its price and
  size; no fill is stored twice; no fill the venue does not know (inferred fills are counted).
* **commands** -- no command was executed twice: no two venue orders share a client order id;
  every ``SubmitOrder`` has one ``OrderInitialized`` and an outcome (not stuck SUBMITTED); every
  ``ModifyOrder`` / ``CancelOrder`` (and each cancel of a ``BatchCancelOrders``) has an outcome
  event carrying its command id; the router's durable command consumer has nothing pending.
* **positions** -- the net position per market folded from ``EXEC`` fills equals the venue's, and
  so does the last ``PositionStatusReport`` of each market (when one was published).
* **balance** -- the cash balance of the last ``AccountState`` (``info.total_collateral``, else
  ``info.cash_balance``) equals the venue's USDC balance.

Everything is compared with ``Decimal``; violations are sentences with the ids needed to look the
case up (``pdx tail``, the simulator's truth endpoints).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

import schemas as s
from bus import subjects
from bus.book_client import BookUnavailable, fetch_snapshot
from bus.replay import replay
from schemas.enums import PositionSideCode
from services.execution.projection import DENIED, REJECTED, ExecProjection, OrderView
from services.paradex_sim.admin_client import AdminClient

Q8 = Decimal("0.00000001")
_ORDER_MSG_ID = re.compile(r"^pdx:ord:[^:]+:(?P<coid>[^:]+):(?P<kind>[A-Za-z]+):(?P<disc>.+)$")


@dataclass
class Section:
    name: str
    checked: int = 0
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def fail(self, text: str) -> None:
        self.violations.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "checked": self.checked,
            "violations": self.violations,
            "notes": self.notes,
        }


@dataclass
class InvariantReport:
    sections: list[Section] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(sec.ok for sec in self.sections)

    @property
    def violation_count(self) -> int:
        return sum(len(sec.violations) for sec in self.sections)

    def section(self, name: str) -> Section:
        for sec in self.sections:
            if sec.name == name:
                return sec
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "violations": self.violation_count, "sections": [x.to_dict() for x in self.sections]}

    def render(self, max_violations: int = 12) -> str:
        lines = [f"invariants: {'PASS' if self.ok else 'FAIL'} ({self.violation_count} violation(s))"]
        for sec in self.sections:
            mark = "ok  " if sec.ok else "FAIL"
            lines.append(f"  [{mark}] {sec.name:<10} checked {sec.checked}")
            for v in sec.violations[:max_violations]:
                lines.append(f"         - {v}")
            if len(sec.violations) > max_violations:
                lines.append(f"         ... and {len(sec.violations) - max_violations} more")
            for n in sec.notes:
                lines.append(f"         note: {n}")
        return "\n".join(lines)


def _dec(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal("NaN")


def _levels(rows: list[Any]) -> dict[Decimal, Decimal]:
    """``[[price, size], ...]`` (venue) or ``[BookLevel, ...]`` (bus) -> ``{price: size}``."""
    out: dict[Decimal, Decimal] = {}
    for r in rows:
        if isinstance(r, list | tuple):
            out[_dec(r[0])] = _dec(r[1])
        else:
            out[_dec(r.price)] = _dec(r.size)
    return out


@dataclass
class ExecData:
    """What ``EXEC`` holds for one account, read once."""

    order_events: list[tuple[int, str | None, Any]] = field(default_factory=list)  # (seq, msg id, event)
    undecodable: list[int] = field(default_factory=list)
    msg_ids: Counter[str] = field(default_factory=Counter)
    account_state: s.AccountState | None = None
    position_reports: dict[str, s.PositionStatusReport] = field(default_factory=dict)


class InvariantChecker:
    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        admin: AdminClient,
        account: str,
        markets: tuple[str, ...],
        *,
        trades_from_ms: int = 0,
        trades_to_ms: int | None = None,
        router_durable: str | None = None,
        snapshot_timeout: float = 3.0,
    ) -> None:
        self.nc, self.js = nc, js
        self.admin = admin
        self.account = account.lower()
        self.markets = markets
        self.trades_from_ms = trades_from_ms
        self.trades_to_ms = trades_to_ms
        self.router_durable = router_durable if router_durable is not None else f"order-router-{self.account}"
        self.snapshot_timeout = snapshot_timeout

    async def check(self) -> InvariantReport:
        report = InvariantReport()
        report.sections.append(await self.check_trades())
        report.sections.append(await self.check_books())
        exec_data = await self.read_exec()
        truth = await self.admin.account(self.account)
        proj, per_order_problems = self._fold(exec_data)
        report.sections.append(self.check_orders(exec_data, truth, proj, per_order_problems))
        report.sections.append(self.check_fills(exec_data, truth))
        report.sections.append(await self.check_commands(exec_data, truth, proj))
        report.sections.append(self.check_positions(exec_data, truth, proj))
        report.sections.append(self.check_balance(exec_data, truth))
        return report

    # -- trades ---------------------------------------------------------------------------------

    async def check_trades(self) -> Section:
        sec = Section("trades")
        venue = [t for t in await self.admin.trades() if t["market"] in self.markets]
        by_id = {(t["market"], str(t["id"])): t for t in venue}
        counts: Counter[tuple[str, str]] = Counter()
        seen: dict[tuple[str, str], s.TradeTick] = {}
        undecodable = 0
        async for m in replay(self.js, "md.paradex.trades.>", stream="MD"):
            try:
                tick = s.decode_as(m.data, s.TradeTick)
            except s.DecodeError:
                undecodable += 1
                continue
            key = (s.market_of(tick.instrument_id), tick.trade_id)
            counts[key] += 1
            seen[key] = tick
        if undecodable:
            sec.fail(f"{undecodable} undecodable message(s) on md.paradex.trades.*")
        to_ms = self.trades_to_ms if self.trades_to_ms is not None else 2**62
        in_window = 0
        for key, t in by_id.items():
            n = counts.get(key, 0)
            if self.trades_from_ms <= int(t["created_at"]) <= to_ms:
                in_window += 1
                if n == 0:
                    sec.fail(
                        f"venue trade {key[1]} ({key[0]} {t['side']} {t['size']}@{t['price']}, "
                        f"created_at {t['created_at']}) is missing from md.paradex.trades.{key[0]}"
                    )
            if n > 1:
                sec.fail(f"trade {key[1]} ({key[0]}) stored {n} times")
            tick = seen.get(key)
            if tick is not None and (_dec(tick.price) != _dec(t["price"]) or _dec(tick.size) != _dec(t["size"])):
                sec.fail(f"trade {key[1]} ({key[0]}): bus {tick.size}@{tick.price} != venue {t['size']}@{t['price']}")
        for key, n in counts.items():
            if key not in by_id:
                sec.fail(f"trade {key[1]} ({key[0]}) on the bus is unknown to the venue (stored {n}x)")
        sec.checked = len(by_id)
        sec.notes.append(
            f"{len(by_id)} venue trades, {in_window} in the run window, {sum(counts.values())} stored on MD"
        )
        return sec

    # -- books ----------------------------------------------------------------------------------

    async def check_books(self) -> Section:
        sec = Section("books")
        for m in self.markets:
            sec.checked += 1
            truth = await self.admin.book(m)
            try:
                snap = await fetch_snapshot(self.nc, m, timeout=self.snapshot_timeout, attempts=3)
            except BookUnavailable as exc:
                sec.fail(f"{m}: no book from the book builder ({exc})")
                continue
            if not snap.valid:
                sec.fail(f"{m}: built book is {snap.state} ({snap.reason or 'no reason'}) at seq {snap.sequence}")
            bids_t, asks_t = _levels(truth["bids"]), _levels(truth["asks"])
            bids_b, asks_b = _levels(snap.bids), _levels(snap.asks)
            for side, t, b in (("bid", bids_t, bids_b), ("ask", asks_t, asks_b)):
                if t != b:
                    diff = sorted((p, t.get(p), b.get(p)) for p in set(t) | set(b) if t.get(p) != b.get(p))
                    shown = ", ".join(f"{p}: venue {vt} built {vb}" for p, vt, vb in diff[:4])
                    sec.fail(
                        f"{m}: {len(diff)} {side} level(s) differ (built seq {snap.sequence}, venue seq "
                        f"{truth['seq_no']}): {shown}"
                    )
            if snap.sequence > int(truth["seq_no"]):
                sec.fail(f"{m}: built book seq {snap.sequence} is ahead of the venue's {truth['seq_no']}")
            sec.notes.append(
                f"{m}: {len(bids_t)}x{len(asks_t)} levels, venue seq {truth['seq_no']}, "
                f"built seq {snap.sequence} ({snap.state})"
            )
        return sec

    # -- EXEC -----------------------------------------------------------------------------------

    async def read_exec(self) -> ExecData:
        data = ExecData()
        order_prefix = f"exec.{subjects.VENUE}.{self.account}.order."
        account_subject = subjects.exec_account(self.account)
        position_subject = subjects.exec_report(self.account, "position")
        async for m in replay(self.js, subjects.exec_all(self.account), stream="EXEC"):
            mid = m.msg_id
            if mid:
                data.msg_ids[mid] += 1
            try:
                ev = m.event
            except s.DecodeError:
                data.undecodable.append(m.stream_seq)
                continue
            if m.subject.startswith(order_prefix):
                data.order_events.append((m.stream_seq, mid, ev))
            elif m.subject == account_subject and isinstance(ev, s.AccountState):
                data.account_state = ev
            elif m.subject == position_subject and isinstance(ev, s.PositionStatusReport):
                data.position_reports[s.market_of(ev.instrument_id)] = ev
        return data

    def _fold(self, data: ExecData) -> tuple[ExecProjection, dict[str, list[str]]]:
        proj = ExecProjection()
        problems: dict[str, list[str]] = defaultdict(list)
        for seq, _mid, ev in data.order_events:
            applied = proj.apply(ev, seq)
            if not applied.ok:
                coid = getattr(ev, "client_order_id", "?")
                state = applied.order.status if applied.order is not None else "?"
                problems[coid].append(f"{applied.problem}: {type(ev).__name__} at seq {seq} (order was {state})")
        return proj, problems

    # -- orders ---------------------------------------------------------------------------------

    @staticmethod
    def _venue_orders(truth: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for o in [*truth.get("orders", []), *truth.get("open_orders", [])]:
            out[str(o["id"])] = o  # open_orders is the newer view of an order listed twice
        return out

    @staticmethod
    def _venue_filled(truth: dict[str, Any]) -> dict[str, Decimal]:
        filled: dict[str, Decimal] = defaultdict(Decimal)
        for f in truth.get("fills", []):
            filled[str(f["order_id"])] += _dec(f["size"])
        return filled

    def _match(self, proj: ExecProjection, v: dict[str, Any]) -> OrderView | None:
        cid = v.get("client_id") or ""
        if cid and cid in proj.orders:
            return proj.orders[cid]
        return proj.by_venue(str(v["id"]))

    def check_orders(
        self, data: ExecData, truth: dict[str, Any], proj: ExecProjection, problems: dict[str, list[str]]
    ) -> Section:
        sec = Section("orders")
        venue = self._venue_orders(truth)
        filled = self._venue_filled(truth)
        if data.undecodable:
            sec.fail(f"{len(data.undecodable)} undecodable message(s) on EXEC (seqs {data.undecodable[:5]})")
        dup_ids = {mid: n for mid, n in data.msg_ids.items() if n > 1}
        for mid, n in sorted(dup_ids.items())[:20]:
            sec.fail(f"Nats-Msg-Id {mid} stored {n} times on EXEC")
        matched: set[str] = set()
        for vid, v in venue.items():
            sec.checked += 1
            o = self._match(proj, v)
            label = (
                f"venue order {vid} (client id {v.get('client_id') or '-'}, {v['market']} {v['side']} "
                f"{v['size']}, {v['status']}{' ' + v['cancel_reason'] if v.get('cancel_reason') else ''})"
            )
            if o is None:
                sec.fail(f"{label} has no history on EXEC")
                continue
            matched.add(o.client_order_id)
            # A rejection may carry no venue order id (Nautilus' OrderRejected has none).
            if o.venue_order_id != vid and not (o.venue_order_id is None and o.status == REJECTED):
                sec.fail(f"{label}: EXEC has venue order id {o.venue_order_id} ({o.status})")
            venue_closed = v["status"] == "CLOSED"
            if venue_closed != o.is_closed:
                sec.fail(f"{label}: EXEC says {o.status} (history {' > '.join(o.history[-6:])})")
            vf = filled.get(vid, Decimal(0))
            if vf != o.filled_qty:
                sec.fail(f"{label}: venue filled {vf}, EXEC filled {o.filled_qty}")
            if not o.external and (not o.history or o.history[0] != "OrderInitialized"):
                sec.fail(f"{label}: history does not start with OrderInitialized: {' > '.join(o.history[:4])}")
        for coid, o in proj.orders.items():
            if coid in matched:
                continue
            sec.checked += 1
            if o.status not in (DENIED, REJECTED):
                sec.fail(
                    f"order {coid} is {o.status} on EXEC but the venue has no such order "
                    f"(history {' > '.join(o.history[-6:])})"
                )
        trail = self._trails(data)
        for coid, items in sorted(problems.items()):
            for p in items[:3]:
                sec.fail(f"order {coid}: {p}; EXEC history {trail.get(coid, '?')}")
        sec.notes.append(
            f"{len(venue)} venue orders, {len(proj.orders)} orders on EXEC, {len(data.order_events)} order events"
        )
        return sec

    @staticmethod
    def _trails(data: ExecData) -> dict[str, str]:
        """Per order: ``seq:Event[discriminator]`` of its last events (the discriminator of a Msg-Id
        names the command or venue fact behind it), for violation messages."""
        out: dict[str, list[str]] = defaultdict(list)
        for seq, mid, ev in data.order_events:
            coid = getattr(ev, "client_order_id", "?")
            mm = _ORDER_MSG_ID.match(mid or "")
            disc = mm["disc"][:8] if mm else ("fill" if isinstance(ev, s.OrderFilled) else "?")
            out[coid].append(f"{seq}:{type(ev).__name__.removeprefix('Order')}[{disc}]")
        return {k: " ".join(v[-8:]) for k, v in out.items()}

    # -- fills ----------------------------------------------------------------------------------

    def check_fills(self, data: ExecData, truth: dict[str, Any]) -> Section:
        sec = Section("fills")
        venue = {str(f["id"]): f for f in truth.get("fills", [])}
        on_bus: dict[str, list[s.OrderFilled]] = defaultdict(list)
        for _seq, _mid, ev in data.order_events:
            if isinstance(ev, s.OrderFilled):
                on_bus[ev.trade_id].append(ev)
        inferred = [tid for tid in on_bus if tid.startswith("INF-")]
        for fid, f in venue.items():
            sec.checked += 1
            evs = on_bus.get(fid, [])
            if not evs:
                sec.fail(
                    f"venue fill {fid} (order {f['order_id']}, {f['market']} {f['side']} {f['size']}@"
                    f"{f['price']}) has no OrderFilled on EXEC"
                )
                continue
            if len(evs) > 1:
                sec.fail(f"fill {fid} stored {len(evs)} times on EXEC (orders {[e.client_order_id for e in evs]})")
            e = evs[0]
            if _dec(e.last_qty) != _dec(f["size"]) or _dec(e.last_px) != _dec(f["price"]):
                sec.fail(f"fill {fid}: EXEC {e.last_qty}@{e.last_px} != venue {f['size']}@{f['price']}")
            if e.venue_order_id != str(f["order_id"]):
                sec.fail(f"fill {fid}: EXEC venue order {e.venue_order_id} != venue {f['order_id']}")
        for tid, evs in on_bus.items():
            if tid not in venue and not tid.startswith("INF-"):
                sec.fail(f"OrderFilled {tid} ({evs[0].client_order_id}) is unknown to the venue")
        if inferred:
            sec.notes.append(
                f"{len(inferred)} inferred fill(s) (no venue fill record when published): "
                f"{', '.join(sorted(inferred)[:3])}"
            )
        sec.notes.append(f"{len(venue)} venue fills, {sum(len(v) for v in on_bus.values())} OrderFilled on EXEC")
        return sec

    # -- commands -------------------------------------------------------------------------------

    async def read_commands(self) -> list[Any]:
        out: list[Any] = []
        try:
            async for m in replay(self.js, subjects.cmd_all(self.account), stream="CMD"):
                try:
                    out.append(m.event)
                except s.DecodeError:
                    out.append(None)
        except NotFoundError:
            return out  # no CMD stream: no command was ever sent
        return out

    async def check_commands(self, data: ExecData, truth: dict[str, Any], proj: ExecProjection) -> Section:
        sec = Section("commands")
        cmds = await self.read_commands()
        by_disc: dict[str, list[str]] = defaultdict(list)
        init_count: Counter[str] = Counter()
        for _seq, mid, ev in data.order_events:
            if isinstance(ev, s.OrderInitialized):
                init_count[ev.client_order_id] += 1
            mm = _ORDER_MSG_ID.match(mid or "")
            if mm:
                by_disc[mm["disc"]].append(mm["kind"])
        per_cid: Counter[str] = Counter(
            o["client_id"] for o in self._venue_orders(truth).values() if o.get("client_id")
        )
        for cid, n in per_cid.items():
            if n > 1:
                sec.fail(f"client order id {cid} was placed {n} times at the venue (a command executed twice)")
        kinds: Counter[str] = Counter()
        for cmd in cmds:
            sec.checked += 1
            if cmd is None:
                sec.fail("an undecodable message in CMD")
                continue
            kinds[type(cmd).__name__] += 1
            if isinstance(cmd, s.SubmitOrder):
                coid = cmd.order.client_order_id
                n = init_count.get(coid, 0)
                o = proj.orders.get(coid)
                if n != 1:
                    sec.fail(f"SubmitOrder {coid} (command {cmd.command_id}): {n} OrderInitialized on EXEC")
                if o is None or o.status in ("INITIALIZED", "SUBMITTED"):
                    sec.fail(f"SubmitOrder {coid}: no outcome on EXEC (status {o.status if o else 'none'})")
            elif isinstance(cmd, s.ModifyOrder | s.CancelOrder):
                self._outcome(sec, type(cmd).__name__, cmd.client_order_id, cmd.command_id, by_disc)
            elif isinstance(cmd, s.BatchCancelOrders):
                for c in cmd.cancels:
                    self._outcome(sec, "BatchCancelOrders", c.client_order_id, c.command_id, by_disc)
        await self._consumer_drained(sec)
        sec.notes.append(", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "no commands")
        return sec

    @staticmethod
    def _outcome(sec: Section, kind: str, coid: str, command_id: str, by_disc: dict[str, list[str]]) -> None:
        if not by_disc.get(command_id):
            sec.fail(f"{kind} of {coid} (command {command_id}) has no outcome event on EXEC")

    async def _consumer_drained(self, sec: Section) -> None:
        try:
            ci = await self.js.consumer_info("CMD", self.router_durable)
        except NotFoundError:
            sec.fail(f"the router's command consumer {self.router_durable} does not exist")
            return
        pending, unacked = int(ci.num_pending or 0), int(ci.num_ack_pending or 0)
        if pending or unacked:
            sec.fail(
                f"router consumer {self.router_durable}: {pending} command(s) not delivered, {unacked} not acknowledged"
            )

    # -- positions and balance ------------------------------------------------------------------

    def check_positions(self, data: ExecData, truth: dict[str, Any], proj: ExecProjection) -> Section:
        sec = Section("positions")
        venue: dict[str, Decimal] = defaultdict(Decimal)
        for p in truth.get("positions", []):
            venue[p["market"]] = _dec(p["size"])
        folded = {s.market_of(iid): pos.net_qty for iid, pos in proj.positions.items()}
        for m in sorted(set(venue) | set(folded)):
            sec.checked += 1
            v, b = venue.get(m, Decimal(0)), folded.get(m, Decimal(0))
            if v != b:
                sec.fail(f"{m}: venue position {v}, position folded from EXEC fills {b}")
            rep = data.position_reports.get(m)
            if rep is not None:
                qty = _dec(rep.quantity)
                signed = -qty if rep.position_side == PositionSideCode.SHORT else qty
                if rep.position_side == PositionSideCode.FLAT:
                    signed = Decimal(0)
                if signed != v:
                    sec.fail(f"{m}: last PositionStatusReport says {signed}, venue {v}")
        sec.notes.append(", ".join(f"{m} {q}" for m, q in sorted(venue.items()) if q) or "flat")
        return sec

    def check_balance(self, data: ExecData, truth: dict[str, Any]) -> Section:
        sec = Section("balance")
        sec.checked = 1
        venue = _dec(truth["balance"]["size"]).quantize(Q8)
        st = data.account_state
        if st is None:
            sec.fail("no AccountState on EXEC")
            return sec
        raw = st.info.get("total_collateral") or st.info.get("cash_balance")
        if raw is None:
            sec.fail(f"last AccountState carries no cash balance (info keys {sorted(st.info)})")
            return sec
        bus = _dec(raw).quantize(Q8)
        if bus != venue:
            sec.fail(
                f"last AccountState cash balance {bus} != venue USDC balance {venue} "
                f"(source {st.info.get('source', 'order-router')}, ts_event {st.ts_event})"
            )
        totals = [b.total for b in st.balances]
        sec.notes.append(
            f"venue balance {venue}; last AccountState total {totals} (source {st.info.get('source', 'order-router')})"
        )
        return sec
