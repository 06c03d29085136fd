"""The account check: the venue's cash balance against the last ``AccountState`` on the bus, and
the funding payments of positioned markets (counted only -- a funding payment is never a fill,
nautilus-model.md §5 #4937).

The balance compared is ``/balance`` USDC (cash: it moves on fills, fees and funding), against the
``info["cash_balance"]`` the order router puts in its AccountState; margin figures move with every
mark price and are not compared. When they differ (or no AccountState exists) a fresh one is
published in the router's form -- total = account value, free = free collateral, locked = the
difference -- with the router's Msg-Id for the same ``/account`` ``seq_no``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from decimal import Decimal
from typing import Any

from nats.js import JetStreamContext

import schemas as s
from bus import msgid, subjects
from bus.msgid import event_uuid
from bus.replay import last_message
from services.reconciler.build import EventBuilder
from services.reconciler.emit import Emitter
from services.reconciler.fetch import Fetcher, Unknown
from services.reconciler.instruments import Instruments, plain
from services.reconciler.state import Watermarks
from services.reconciler.venue import VenuePosition
from services.runtime import Problems

Q8 = Decimal("0.00000001")


class AccountCheck:
    def __init__(
        self,
        account: str,
        fetcher: Fetcher,
        emitter: Emitter,
        js: JetStreamContext,
        builder: EventBuilder,
        instruments: Instruments,
        watermarks: Watermarks,
        problems: Problems,
    ) -> None:
        self.account = account
        self.fetcher = fetcher
        self.emitter = emitter
        self.js = js
        self.builder = builder
        self.instruments = instruments
        self.watermarks = watermarks
        self.problems = problems

    async def balance(self, counts: Counter[str], unresolved: list[str]) -> None:
        """Compare the venue's cash balance (``/balance`` USDC) with the last AccountState on the
        bus (its ``info["cash_balance"]``, as the order router writes it); publish a fresh
        AccountState when they differ or none exists. Margin figures move with every mark price,
        so only the cash balance -- which moves on fills, fees and funding -- is compared."""
        try:
            balance, summary = await asyncio.gather(self.fetcher.balance(), self.fetcher.account())
        except Unknown as exc:
            counts["balance_unknown"] += 1
            unresolved.append(f"balance not read ({type(exc.cause).__name__}): not compared")
            return
        if balance is None:
            counts["balance_unknown"] += 1
            return
        last = await last_message(self.js, "EXEC", subjects.exec_account(self.account))
        on_bus: Decimal | None = None
        if isinstance(last, s.AccountState):
            raw = last.info.get("cash_balance")
            try:
                on_bus = Decimal(str(raw)) if raw not in (None, "") else None
            except ArithmeticError:
                on_bus = None
        if on_bus is not None and on_bus == balance:
            counts["balance_matched"] += 1
            return
        try:
            state = self.account_state(balance, summary)
        except ArithmeticError as exc:
            unresolved.append(f"/account unreadable: {exc}")
            return
        seq = summary.get("seq_no")
        mid = msgid.account_state(self.account, int(seq) if isinstance(seq, int) else time.time_ns())
        await self.emitter.publish_acked(subjects.exec_account(self.account), state, mid)
        counts["balance_corrected"] += 1
        self.problems.report("balance_corrected", bus=str(on_bus), venue=str(balance))

    def account_state(self, balance: Decimal, summary: dict[str, Any]) -> s.AccountState:
        """The router's AccountState of the same venue facts: total = account value, free = free
        collateral, locked = the difference; ``info`` carries the raw figures and the cash balance."""
        amount = self.instruments.amount
        total = Decimal(str(summary.get("account_value") or "0")).quantize(Q8)
        free = Decimal(str(summary.get("free_collateral") or "0")).quantize(Q8)
        ccy = str(summary.get("settlement_asset") or "USDC").upper()
        now = time.time_ns()
        updated = summary.get("updated_at")
        info: dict[str, Any] = {
            k: str(summary[k])
            for k in (
                "account_value",
                "free_collateral",
                "total_collateral",
                "initial_margin_requirement",
                "maintenance_margin_requirement",
                "margin_cushion",
                "status",
                "seq_no",
            )
            if summary.get(k) is not None
        }
        info["cash_balance"] = plain(balance)
        info["source"] = "reconciler"
        return s.AccountState(
            account_id=self.builder.account_id,
            base_currency=ccy,
            balances=[
                s.AccountBalance(
                    total=amount(total), locked=amount(total - free), free=amount(free), currency=ccy
                )
            ],
            reported=True,
            info=info,
            event_id=event_uuid(msgid.account_state(self.account, int(summary.get("seq_no") or 0))),
            ts_event=updated * 1_000_000 if isinstance(updated, int) and updated > 0 else now,
            ts_init=now,
        )

    async def funding(self, positions: list[VenuePosition], since: int | None, counts: Counter[str]) -> None:
        """Funding payments of markets with a position since ``since``, counted; the watermark
        ``funding`` moves to the newest one read."""
        newest = None
        for p in positions:
            if p.size == 0 and p.status != "OPEN":
                continue
            try:
                rows = await self.fetcher.funding(p.market, since)
            except Unknown as exc:
                self.problems.report("venue_read_unknown", read="funding", market=p.market, error=str(exc)[:200])
                return
            counts["funding_payments_seen"] += len(rows)
            for r in rows:
                newest = r.created_at if newest is None else max(newest, r.created_at)
        if newest is not None:
            await self.watermarks.advance("funding", newest, "")
