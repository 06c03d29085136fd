"""The execution client's bookkeeping, without a node: reports built from the folded ``EXEC`` state,
and which bus events reach the ExecutionEngine for an order in a given state."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

pytest.importorskip(
    "nautilus_trader", reason="the nautilus extra is not installed (pip install 'paradex-bus[nautilus]')"
)

import schemas as s
from services.nautilus.convert import to_nautilus
from services.nautilus.exec_state import ExecState, ReportFilter
from services.nautilus.execution import _Shadow, decide
from tests.unit.samples import ACCT, EV, IID, TS, UUID

pytestmark = pytest.mark.nautilus

R = msgspec.structs.replace
NOW = TS + 10**12


def init(coid: str = "O-1", qty: str = "0.010", price: str = "65000.1") -> s.OrderInitialized:
    return s.OrderInitialized(
        **{**EV, "client_order_id": coid},
        order_side="BUY",
        order_type="LIMIT",
        quantity=qty,
        time_in_force="GTC",
        post_only=True,
        options=s.OrderOptions(price=price, expire_time_ns=0, display_qty=None),
        event_id=UUID,
        ts_init=TS,
        ts_event=TS,
    )


def stamp(ts: int = TS) -> dict[str, object]:
    return {"event_id": UUID, "ts_event": ts, "ts_init": ts}


def ids(coid: str = "O-1") -> dict[str, str]:
    return {**EV, "client_order_id": coid}


def accepted(coid: str = "O-1", vid: str = "v1", ts: int = TS + 1) -> s.OrderAccepted:
    return s.OrderAccepted(**ids(coid), venue_order_id=vid, account_id=ACCT, **stamp(ts))


def filled(coid: str, vid: str, trade: str, qty: str, px: str, ts: int) -> s.OrderFilled:
    return s.OrderFilled(
        **ids(coid),
        venue_order_id=vid,
        account_id=ACCT,
        trade_id=trade,
        order_side="BUY",
        order_type="LIMIT",
        last_qty=qty,
        last_px=px,
        currency="USD",
        commission="0.01300000 USDC",
        liquidity_side="MAKER",
        **stamp(ts),
    )


def fold(*events: s.Event) -> ExecState:
    st = ExecState(ACCT)
    for seq, ev in enumerate(events, 1):
        st.apply(ev, seq)
    return st


def test_order_reports_follow_the_venue_view_of_each_order() -> None:
    st = fold(
        init("O-1"),
        s.OrderSubmitted(**ids("O-1"), account_id=ACCT, **stamp()),
        accepted("O-1", "v1"),
        s.OrderPendingCancel(**ids("O-1"), venue_order_id="v1", account_id=ACCT, **stamp(TS + 2)),
        init("O-2"),
        s.OrderSubmitted(**ids("O-2"), account_id=ACCT, **stamp()),  # never reached the venue: no report
    )
    (rep,) = st.order_reports(ReportFilter(), NOW)
    assert (rep.client_order_id, rep.venue_order_id, rep.order_status) == ("O-1", "v1", 6)  # ACCEPTED, not pending
    assert (rep.quantity, rep.filled_qty, rep.price, rep.post_only) == ("0.010", "0", "65000.1", True)
    assert (rep.order_side, rep.order_type, rep.time_in_force, rep.ts_accepted) == (1, 2, 1, TS + 1)
    assert st.skipped == {"order_not_reportable": 1}

    st.apply(filled("O-1", "v1", "t1", "0.004", "65000.1", TS + 3), 7)
    (rep,) = st.order_reports(ReportFilter(), NOW)
    assert (rep.order_status, rep.filled_qty, rep.avg_px) == (13, "0.004", "65000.1")  # PARTIALLY_FILLED
    st.apply(filled("O-1", "v1", "t2", "0.006", "65000.2", TS + 4), 8)
    (rep,) = st.order_reports(ReportFilter(), NOW)
    assert (rep.order_status, rep.filled_qty, rep.avg_px) == (14, "0.010", "65000.16")  # FILLED, exact Decimal avg
    nt = to_nautilus(rep)
    assert (nt.avg_px, str(nt.filled_qty), nt.order_status.name) == (Decimal("65000.16"), "0.010", "FILLED")


def test_report_filters() -> None:
    old_closed = [init("O-1"), accepted("O-1", "v1"), s.OrderCanceled(**ids("O-1"), **stamp(TS + 5))]
    st = fold(*old_closed, init("O-2"), accepted("O-2", "v2", TS + 6))
    since = TS + 10
    assert [r.client_order_id for r in st.order_reports(ReportFilter(start_ns=since), NOW)] == ["O-2"]
    assert [r.client_order_id for r in st.order_reports(ReportFilter(open_only=True), NOW)] == ["O-2"]
    assert len(st.order_reports(ReportFilter(), NOW)) == 2
    assert st.order_reports(ReportFilter(instrument_id="ETH-USD-PERP.PARADEX"), NOW) == []
    assert st.find(None, "v2") is st.find("O-2", None)


def test_fill_reports_and_positions() -> None:
    st = fold(
        init("O-1"),
        accepted("O-1", "v1"),
        filled("O-1", "v1", "t1", "0.004", "65000.0", TS + 2),
        filled("O-1", "v1", "t1", "0.004", "65000.0", TS + 2),  # the same trade again: refused by the fold
        filled("O-1", "v1", "t2", "0.002", "65001.0", TS + 3),
    )
    fills = st.fill_reports(ReportFilter(), NOW)
    assert [(f.trade_id, f.last_qty, f.liquidity_side, f.commission) for f in fills] == [
        ("t1", "0.004", 1, "0.01300000 USDC"),
        ("t2", "0.002", 1, "0.01300000 USDC"),
    ]
    assert st.fill_reports(ReportFilter(venue_order_id="other"), NOW) == []
    (pos,) = st.position_reports(ReportFilter(), NOW, lambda iid: 3)
    assert (pos.position_side, pos.quantity, pos.avg_px_open, pos.ts_last) == (
        2,
        "0.006",
        "65000.33333333333333333333333",
        TS + 3,
    )

    venue = s.PositionStatusReport(
        account_id=ACCT,
        instrument_id=IID,
        position_side=2,
        quantity="0.005",
        report_id=UUID,
        ts_last=TS + 2,
        ts_init=NOW,
        avg_px_open="65000.0",
    )
    st.apply(venue, 10)  # older than the newest fill: the fold is fresher
    assert st.position_reports(ReportFilter(), NOW, lambda iid: 3)[0].quantity == "0.006"
    st.apply(R(venue, ts_last=TS + 3, quantity="0.007"), 11)  # venue truth as new as the fills: it wins
    assert st.position_reports(ReportFilter(), NOW, lambda iid: 3)[0].quantity == "0.007"
    st.apply(R(venue, account_id="PARADEX-0xother", ts_last=TS + 9, quantity="9.000"), 12)  # another account
    assert st.position_reports(ReportFilter(), NOW, lambda iid: 3)[0].quantity == "0.007"


def test_account_state_keeps_the_newest_of_this_account() -> None:
    bal = [s.AccountBalance(total="1.00000000", locked="0.00000000", free="1.00000000", currency="USDC")]
    a1 = s.AccountState(account_id=ACCT, balances=bal, event_id=UUID, ts_event=TS + 2, ts_init=TS)
    st = fold(a1, R(a1, ts_event=TS + 1), R(a1, account_id="PARADEX-0xother", ts_event=TS + 9))
    assert st.account_state == a1 and st.last_seq == 3


# -- what reaches the ExecutionEngine ------------------------------------------------------------

SUB = s.OrderSubmitted(**ids(), account_id=ACCT, **stamp())
ACC = accepted()
PCX = s.OrderPendingCancel(**ids(), venue_order_id="v1", account_id=ACCT, **stamp())
PUP = s.OrderPendingUpdate(**ids(), venue_order_id="v1", account_id=ACCT, **stamp())
UPD = s.OrderUpdated(**ids(), venue_order_id="v1", account_id=ACCT, quantity="0.010", price="1.0", **stamp())
CXR = s.OrderCancelRejected(**ids(), venue_order_id="v1", account_id=ACCT, reason="r", **stamp())
CXL = s.OrderCanceled(**ids(), venue_order_id="v1", account_id=ACCT, **stamp())
DEN = s.OrderDenied(**ids(), reason="price off tick", **stamp())
FIL = filled("O-1", "v1", "t1", "0.004", "65000.0", TS)


@pytest.mark.parametrize(
    ("status", "event", "expected"),
    [
        ("INITIALIZED", SUB, "SUBMITTED"),
        ("SUBMITTED", SUB, None),  # ours came first
        ("SUBMITTED", ACC, "ACCEPTED"),
        ("ACCEPTED", PCX, "PENDING_CANCEL"),
        ("PENDING_CANCEL", PCX, None),  # the strategy applied it already
        ("ACCEPTED", PUP, "PENDING_UPDATE"),
        ("PENDING_CANCEL", PUP, None),
        ("PENDING_CANCEL", CXR, "ACCEPTED"),
        ("PARTIALLY_FILLED", CXR, "PARTIALLY_FILLED"),
        ("PENDING_UPDATE", UPD, "ACCEPTED"),
        ("ACCEPTED", UPD, "ACCEPTED"),
        ("PENDING_CANCEL", CXL, "CANCELED"),
        ("CANCELED", CXL, None),
        ("FILLED", CXL, None),
        ("SUBMITTED", FIL, "PARTIALLY_FILLED"),
        ("CANCELED", FIL, "PARTIALLY_FILLED"),  # a late fill after a cancel is real
        ("REJECTED", FIL, None),
        ("INITIALIZED", DEN, "DENIED"),
        ("SUBMITTED", DEN, "REJECTED"),
        ("REJECTED", DEN, None),
    ],
)
def test_decide(status: str, event: s.Event, expected: str | None) -> None:
    sh = _Shadow(status, previous="ACCEPTED" if status.startswith("PENDING") else None)
    if status in ("ACCEPTED", "PENDING_CANCEL", "PENDING_UPDATE", "PARTIALLY_FILLED"):
        sh.venue_order_id = "v1"
    new, out = decide(event, sh, ACCT, fully_filled=False)
    assert new == expected
    if isinstance(event, s.OrderDenied) and expected == "REJECTED":
        assert isinstance(out, s.OrderRejected) and out.reason == "denied by the order router: price off tick"
        to_nautilus(out)


def test_decide_deduplicates_accepts_and_fills() -> None:
    sh = _Shadow("SUBMITTED")
    assert decide(ACC, sh, ACCT, False)[0] == "ACCEPTED"
    sh.status = "ACCEPTED"
    assert decide(ACC, sh, ACCT, False)[0] is None
    assert decide(FIL, sh, ACCT, True)[0] == "FILLED"
    sh.status = "PARTIALLY_FILLED"
    assert decide(FIL, sh, ACCT, True)[0] is None  # same trade id
    assert decide(R(FIL, trade_id="t2"), sh, ACCT, True)[0] == "FILLED"
