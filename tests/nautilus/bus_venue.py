"""A scripted stand-in for the pipeline's services, at the bus boundary, for the Nautilus client
contract test (tests/nautilus/test_clients.py).

It speaks exactly the bus contract the real services speak (DESIGN.md subjects, schema messages,
Msg-Ids from ``bus.msgid``, the ``Pdx-Prev-Seq`` header, the snapshot and reconcile request/reply
subjects) so the Nautilus clients can be exercised without a venue:

* feed handler: one ``CryptoPerpetual`` on ``REF``; quotes, trades, L2 deltas (snapshot, then
  diffs), mark, index, funding and status on ``MD``. The mid walks on a 0.1 grid every ``tick_s``.
* book builder: depth10 and quotes on ``BOOK``; ``book.paradex.snapshot.<MKT>`` answered with the
  book and the ``MD`` sequence it reflects.
* order router: ``cmd.paradex.<acct>.>`` consumed; LIMIT post-only orders rest (or are rejected
  when they would cross), modifies and cancels are answered with the router's event sequences,
  MARKET orders fill at the touch; a resting order fills (maker) when the market trades through it.
* reconciler: ``ctl.reconcile.<acct>`` answered with a ``ReconciliationSummary`` after publishing a
  ``PositionStatusReport``; an ``AccountState`` on ``exec.paradex.<acct>.account``.

``seed_history()`` publishes a previous session's facts: an open order and a filled one.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

import schemas as s
from bus import msgid, subjects
from bus.book_client import PREV_SEQ_HEADER
from bus.consumer import BusMessage, PullConsumer
from schemas.book import BookSnapshot
from schemas.enums import PositionSideCode, RecordFlag

TICK = Decimal("0.1")
LEVELS = 5
SIZE = "1.000"
FEE = Decimal("0.0002")


_NS = uuid.UUID("6f1c0b1e-0a4e-4c36-9a51-3f8f0f6d2c11")
_COUNTER = iter(range(1, 10**9))


def _uuid() -> str:
    """Version-5 ids, as the router and reconciler derive theirs (Nautilus itself wants version 4)."""
    return str(uuid.uuid5(_NS, str(next(_COUNTER))))


@dataclass
class Resting:
    init: s.OrderInitialized
    venue_order_id: str
    price: Decimal
    quantity: Decimal
    filled: Decimal = Decimal(0)


@dataclass
class BusVenue:
    nc: NATS
    js: JetStreamContext
    account: str
    market: str = "BTC-USD-PERP"
    mid: Decimal = Decimal("65000.05")
    tick_s: float = 0.1
    seed: int = 7
    commands: Counter[str] = field(default_factory=Counter)
    position: Decimal = Decimal(0)
    resting: dict[str, Resting] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    reconcile_requests: int = 0

    def __post_init__(self) -> None:
        self.iid = s.instrument_id(self.market)
        self.account_id = f"PARADEX-{self.account}"
        self.rng = random.Random(self.seed)
        self.seq = 0
        self.md_seq = 0
        self.book: tuple[dict[str, str], dict[str, str]] = ({}, {})
        self.next_vid = 1000
        self.trade_no = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.subs: list[object] = []
        self.consumer: PullConsumer | None = None

    # -- setup --------------------------------------------------------------------------------

    async def start(self) -> BusVenue:
        now = time.time_ns()
        inst = s.CryptoPerpetual(
            id=self.iid,
            raw_symbol=self.market,
            base_currency="BTC",
            quote_currency="USD",
            settlement_currency="USDC",
            price_precision=1,
            price_increment="0.1",
            size_precision=3,
            size_increment="0.001",
            lot_size="0.001",
            min_quantity="0.001",
            max_quantity="100.000",
            min_notional="10.00 USD",
            margin_init="0.02",
            margin_maint="0.01",
            maker_fee="0.0002",
            taker_fee="0.0005",
            ts_event=now,
            ts_init=now,
            info={"market": self.market},
        )
        await self.js.publish(subjects.instrument(self.market), s.encode(inst))
        await self.publish_account(Decimal("100000"))
        await self._publish_book(snapshot=True)
        self.subs.append(await self.nc.subscribe(subjects.book_snapshot(self.market), cb=self._on_snapshot_request))
        self.subs.append(await self.nc.subscribe(subjects.ctl_reconcile(self.account), cb=self._on_reconcile))
        self.consumer = await PullConsumer(
            self.nc,
            self.js,
            stream="CMD",
            durable="bus-venue",
            handler=self._on_command,
            filter_subjects=[subjects.cmd_all(self.account)],
            batch=64,
        ).start()
        self.tasks.append(asyncio.create_task(self._market_loop(), name="bus-venue-md"))
        return self

    async def pause_market(self) -> None:
        """Stop the market-data loop (books, quotes, trades stay as they are)."""
        for t in self.tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.tasks = []

    async def gap(self, skipped: int = 3) -> None:
        """Publish a book update whose predecessor never reached the bus (a sequence gap)."""
        self.seq += skipped
        self.mid += TICK * 3
        await self._publish_book()

    async def resnapshot(self) -> None:
        """The venue's snapshot after a resubscribe (what the feed handler publishes on resync)."""
        await self._publish_book(snapshot=True)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.consumer is not None:
            await self.consumer.stop()
        for sub in self.subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()  # type: ignore[attr-defined]

    async def publish_account(self, total: Decimal) -> None:
        now = time.time_ns()
        amount = f"{total:.8f}"
        state = s.AccountState(
            account_id=self.account_id,
            account_type="MARGIN",
            base_currency="USDC",
            balances=[s.AccountBalance(total=amount, locked="0.00000000", free=amount, currency="USDC")],
            reported=True,
            event_id=_uuid(),
            ts_event=now,
            ts_init=now,
        )
        await self.js.publish(subjects.exec_account(self.account), s.encode(state))

    async def seed_history(self) -> None:
        """A previous session: ``O-PREV-1`` rests 1.0 below mid; ``O-PREV-2`` bought 0.003 at mid."""
        ev = {"trader_id": "TRADER-001", "strategy_id": "MM-001", "instrument_id": self.iid}
        open_init = self._init("O-PREV-1", "BUY", "0.002", self.mid - Decimal("1.05"), ev)
        await self._event(open_init)
        await self._accept(open_init, rest=True)
        filled_init = self._init("O-PREV-2", "BUY", "0.003", self.mid + TICK / 2, ev)
        await self._event(filled_init)
        r = await self._accept(filled_init, rest=True)
        await self._fill(r, r.quantity, r.price, "MAKER")

    def _init(self, coid: str, side: str, qty: str, price: Decimal, ev: dict[str, str]) -> s.OrderInitialized:
        now = time.time_ns()
        return s.OrderInitialized(
            **ev,
            client_order_id=coid,
            order_side=side,
            order_type="LIMIT",
            quantity=qty,
            time_in_force="GTC",
            post_only=True,
            options=s.OrderOptions(price=str(price.quantize(TICK)), expire_time_ns=0, display_qty=None),
            event_id=_uuid(),
            ts_init=now,
            ts_event=now,
        )

    # -- market data --------------------------------------------------------------------------

    def touch(self) -> tuple[Decimal, Decimal]:
        """Best bid and ask, on the 0.1 tick grid (the mid sits half a tick between them)."""
        return (self.mid - TICK / 2).quantize(TICK), (self.mid + TICK / 2).quantize(TICK)

    def _levels(self) -> tuple[dict[str, str], dict[str, str]]:
        best_bid, best_ask = self.touch()
        bids = {str(best_bid - TICK * i): SIZE for i in range(LEVELS)}
        asks = {str(best_ask + TICK * i): SIZE for i in range(LEVELS)}
        return bids, asks

    async def _publish_book(self, snapshot: bool = False) -> None:
        now = time.time_ns()
        new_bids, new_asks = self._levels()
        old_bids, old_asks = self.book
        prev = self.seq
        self.seq += 1
        deltas: list[s.OrderBookDelta] = []

        def delta(action: str, side: str, price: str, size: str, flags: int = 0) -> s.OrderBookDelta:
            return s.OrderBookDelta(
                instrument_id=self.iid,
                action=action,
                order=s.BookOrder(side=side, price=price, size=size),
                flags=flags,
                sequence=self.seq,
                ts_event=now,
                ts_init=now,
            )

        if snapshot:
            deltas.append(delta("CLEAR", "NO_ORDER_SIDE", "0", "0", RecordFlag.F_SNAPSHOT))
            for side, levels in (("BUY", new_bids), ("SELL", new_asks)):
                deltas += [delta("ADD", side, p, q, RecordFlag.F_SNAPSHOT) for p, q in levels.items()]
        else:
            for side, old, new in (("BUY", old_bids, new_bids), ("SELL", old_asks, new_asks)):
                deltas += [delta("DELETE", side, p, "0") for p in old if p not in new]
                deltas += [delta("ADD", side, p, q) for p, q in new.items() if p not in old]
        if not deltas:
            self.seq = prev
            return
        deltas[-1].flags |= RecordFlag.F_LAST
        msg = s.OrderBookDeltas(instrument_id=self.iid, deltas=deltas)
        headers = {"Nats-Msg-Id": msgid.book(self.market, self.seq, snapshot)}
        if not snapshot:
            headers[PREV_SEQ_HEADER] = str(prev)
        ack = await self.js.publish(subjects.md("deltas", self.market), s.encode(msg), headers=headers)
        self.book = (new_bids, new_asks)
        self.md_seq = ack.seq

    async def _on_snapshot_request(self, msg: Msg) -> None:
        bids, asks = self.book
        now = time.time_ns()
        snap = BookSnapshot(
            instrument_id=self.iid,
            bids=[
                s.BookLevel(side="BUY", price=p, size=q) for p, q in sorted(bids.items(), key=lambda x: -Decimal(x[0]))
            ],
            asks=[
                s.BookLevel(side="SELL", price=p, size=q) for p, q in sorted(asks.items(), key=lambda x: Decimal(x[0]))
            ],
            sequence=self.seq,
            md_stream_seq=self.md_seq,
            state="VALID",
            ts_event=now,
            ts_init=now,
        )
        await msg.respond(s.encode(snap))

    async def _market_loop(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(self.tick_s)
            n += 1
            self.mid += TICK * self.rng.choice((-2, -1, 0, 0, 1, 2))
            await self._publish_book()
            now = time.time_ns()
            bid, ask = (str(p) for p in self.touch())
            quote = s.QuoteTick(
                instrument_id=self.iid,
                bid_price=bid,
                ask_price=ask,
                bid_size=SIZE,
                ask_size=SIZE,
                ts_event=now,
                ts_init=now,
            )
            await self.js.publish(subjects.md("quotes", self.market), s.encode(quote))
            await self.js.publish(subjects.book_quotes(self.market), s.encode(quote))
            await self._publish_depth(now)
            if n % 3 == 0:
                await self._trade(Decimal(ask if n % 2 else bid), Decimal("0.010"), "BUYER" if n % 2 else "SELLER")
            if n % 5 == 0:
                for channel, cls in (("mark", s.MarkPriceUpdate), ("index", s.IndexPriceUpdate)):
                    await self.js.publish(
                        subjects.md(channel, self.market),
                        s.encode(
                            cls(instrument_id=self.iid, value=str(self.mid.quantize(TICK)), ts_event=now, ts_init=now)
                        ),
                    )
                funding = s.FundingRateUpdate(
                    instrument_id=self.iid, rate="0.0000125", ts_event=now, ts_init=now, interval=480
                )
                await self.js.publish(subjects.md("funding", self.market), s.encode(funding))
            await self._match()

    async def _publish_depth(self, now: int) -> None:
        bids, asks = self.book
        pad = s.BookLevel(side="NO_ORDER_SIDE", price="0", size="0")
        b = [s.BookLevel(side="BUY", price=p, size=q) for p, q in sorted(bids.items(), key=lambda x: -Decimal(x[0]))]
        a = [s.BookLevel(side="SELL", price=p, size=q) for p, q in sorted(asks.items(), key=lambda x: Decimal(x[0]))]
        depth = s.OrderBookDepth10(
            instrument_id=self.iid,
            bids=b + [pad] * (10 - len(b)),
            asks=a + [pad] * (10 - len(a)),
            bid_counts=[1] * len(b) + [0] * (10 - len(b)),
            ask_counts=[1] * len(a) + [0] * (10 - len(a)),
            flags=RecordFlag.F_SNAPSHOT | RecordFlag.F_LAST,
            sequence=self.seq,
            ts_event=now,
            ts_init=now,
        )
        await self.js.publish(subjects.book_depth10(self.market), s.encode(depth))

    async def _trade(self, price: Decimal, size: Decimal, aggressor: str) -> None:
        self.trade_no += 1
        now = time.time_ns()
        trade = s.TradeTick(
            instrument_id=self.iid,
            price=str(price),
            size=f"{size:.3f}",
            aggressor_side=aggressor,
            trade_id=f"T{self.trade_no}",
            ts_event=now,
            ts_init=now,
        )
        await self.js.publish(
            subjects.md("trades", self.market),
            s.encode(trade),
            headers={"Nats-Msg-Id": msgid.trade(self.market, trade.trade_id)},
        )

    # -- orders -------------------------------------------------------------------------------

    async def _event(self, ev: s.Event, discriminator: str | int = 0) -> None:
        coid = ev.client_order_id  # type: ignore[attr-defined]
        if isinstance(ev, s.OrderFilled):
            mid = msgid.fill(self.account, ev.trade_id)
        else:
            mid = msgid.order_event(self.account, coid, type(ev).__name__, discriminator)
        await self.js.publish(subjects.exec_order(self.account, coid), s.encode(ev), headers={"Nats-Msg-Id": mid})

    def _ids(self, init: s.OrderInitialized | s.Event) -> dict[str, str]:
        return {
            "trader_id": init.trader_id,  # type: ignore[attr-defined]
            "strategy_id": init.strategy_id,  # type: ignore[attr-defined]
            "instrument_id": init.instrument_id,  # type: ignore[attr-defined]
            "client_order_id": init.client_order_id,  # type: ignore[attr-defined]
        }

    def _stamp(self) -> dict[str, object]:
        now = time.time_ns()
        return {"event_id": _uuid(), "ts_event": now, "ts_init": now}

    async def _accept(self, init: s.OrderInitialized, rest: bool) -> Resting:
        await self._event(s.OrderSubmitted(**self._ids(init), account_id=self.account_id, **self._stamp()))
        self.next_vid += 1
        vid = str(self.next_vid)
        await self._event(
            s.OrderAccepted(**self._ids(init), venue_order_id=vid, account_id=self.account_id, **self._stamp())
        )
        price = Decimal(init.options.price) if isinstance(init.options.price, str) else self.mid
        r = Resting(init, vid, price, Decimal(init.quantity))
        if rest:
            self.resting[init.client_order_id] = r
        return r

    async def _fill(self, r: Resting, qty: Decimal, px: Decimal, liquidity: str) -> None:
        self.trade_no += 1
        commission = (qty * px * FEE).quantize(Decimal("0.00000001"))
        await self._event(
            s.OrderFilled(
                **self._ids(r.init),
                venue_order_id=r.venue_order_id,
                account_id=self.account_id,
                trade_id=f"F{self.trade_no}",
                order_side=r.init.order_side,
                order_type=r.init.order_type,
                last_qty=f"{qty:.3f}",
                last_px=f"{px:.1f}",
                currency="USD",
                commission=f"{commission} USDC",
                liquidity_side=liquidity,
                **self._stamp(),
            )
        )
        r.filled += qty
        self.position += qty if r.init.order_side == "BUY" else -qty
        if r.filled >= r.quantity:
            self.resting.pop(r.init.client_order_id, None)
            self.closed.add(r.init.client_order_id)

    async def _match(self) -> None:
        best_bid, best_ask = self.touch()
        for r in list(self.resting.values()):
            through = best_ask <= r.price if r.init.order_side == "BUY" else best_bid >= r.price
            if through and not r.init.client_order_id.startswith("O-PREV"):
                await self._fill(r, r.quantity - r.filled, r.price, "MAKER")

    async def _on_command(self, m: BusMessage) -> None:
        cmd = m.event
        self.commands[type(cmd).__name__] += 1
        if isinstance(cmd, s.SubmitOrder):
            await self._submit(cmd.order)
        elif isinstance(cmd, s.ModifyOrder):
            await self._modify(cmd)
        elif isinstance(cmd, s.CancelOrder):
            await self._cancel(cmd)
        elif isinstance(cmd, s.BatchCancelOrders):
            for c in cmd.cancels:
                await self._cancel(c)

    async def _submit(self, init: s.OrderInitialized) -> None:
        await self._event(init)
        best_bid, best_ask = self.touch()
        if init.order_type == "MARKET":
            r = await self._accept(init, rest=False)
            await self._fill(r, r.quantity, best_ask if init.order_side == "BUY" else best_bid, "TAKER")
            return
        price = Decimal(str(init.options.price))
        crosses = price >= best_ask if init.order_side == "BUY" else price <= best_bid
        if init.post_only and crosses:
            await self._event(s.OrderSubmitted(**self._ids(init), account_id=self.account_id, **self._stamp()))
            await self._event(
                s.OrderRejected(
                    **self._ids(init),
                    account_id=self.account_id,
                    reason="POST_ONLY_WOULD_CROSS",
                    due_post_only=True,
                    **self._stamp(),
                )
            )
            self.closed.add(init.client_order_id)
            return
        await self._accept(init, rest=True)

    async def _modify(self, cmd: s.ModifyOrder) -> None:
        r = self.resting.get(cmd.client_order_id)
        await self._event(
            s.OrderPendingUpdate(
                **self._ids(cmd), venue_order_id=cmd.venue_order_id, account_id=self.account_id, **self._stamp()
            ),
            cmd.command_id,
        )
        if r is None:
            await self._event(
                s.OrderModifyRejected(
                    **self._ids(cmd),
                    venue_order_id=cmd.venue_order_id,
                    account_id=self.account_id,
                    reason="ORDER_IS_CLOSED",
                    **self._stamp(),
                ),
                cmd.command_id,
            )
            return
        if cmd.price is not None:
            r.price = Decimal(cmd.price)
        if cmd.quantity is not None:
            r.quantity = Decimal(cmd.quantity)
        await self._event(
            s.OrderUpdated(
                **self._ids(cmd),
                venue_order_id=r.venue_order_id,
                account_id=self.account_id,
                quantity=f"{r.quantity:.3f}",
                price=f"{r.price:.1f}",
                **self._stamp(),
            ),
            time.time_ns(),
        )

    async def _cancel(self, cmd: s.CancelOrder) -> None:
        r = self.resting.pop(cmd.client_order_id, None)
        await self._event(
            s.OrderPendingCancel(
                **self._ids(cmd), venue_order_id=cmd.venue_order_id, account_id=self.account_id, **self._stamp()
            ),
            cmd.command_id,
        )
        if r is None:
            await self._event(
                s.OrderCancelRejected(
                    **self._ids(cmd),
                    venue_order_id=cmd.venue_order_id,
                    account_id=self.account_id,
                    reason="ORDER_IS_CLOSED",
                    **self._stamp(),
                ),
                cmd.command_id,
            )
            return
        self.closed.add(cmd.client_order_id)
        await self._event(
            s.OrderCanceled(
                **self._ids(cmd), venue_order_id=r.venue_order_id, account_id=self.account_id, **self._stamp()
            )
        )

    # -- reconciler ---------------------------------------------------------------------------

    async def _on_reconcile(self, msg: Msg) -> None:
        self.reconcile_requests += 1
        now = time.time_ns()
        side = (
            PositionSideCode.FLAT
            if self.position == 0
            else PositionSideCode.LONG
            if self.position > 0
            else PositionSideCode.SHORT
        )
        report = s.PositionStatusReport(
            account_id=self.account_id,
            instrument_id=self.iid,
            position_side=side,
            quantity=f"{abs(self.position):.3f}",
            report_id=_uuid(),
            ts_last=now,
            ts_init=now,
        )
        await self.js.publish(subjects.exec_report(self.account, "position"), s.encode(report))
        summary = s.ReconciliationSummary(
            account_id=self.account_id,
            run_id=_uuid(),
            trigger="ctl",
            ok=True,
            counts={"matched": 1},
            ts_event=now,
            ts_init=now,
        )
        await msg.respond(s.encode(summary))
