"""``LocalBook``: random valid delta sequences give the same book as a plain dict-per-side model,
and invalid sequences (gaps, crossed books, duplicates, sequence regressions) are detected."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus.book_client import (
    PREV_SEQ_HEADER,
    Applied,
    BookState,
    LocalBook,
    is_zero,
    prev_seq_of,
    price_key,
)
from schemas import BookOrder, OrderBookDelta, OrderBookDeltas, decode_as, encode
from schemas.enums import RecordFlag

MKT = "BTC-USD-PERP"
IID = f"{MKT}.PARADEX"
TS = 1_700_000_000_000_000_000


def spell(units: int, decimals: int, pad: int) -> str:
    """``units`` / 10**decimals as a decimal string with ``pad`` extra trailing zeros."""
    q, r = divmod(units, 10**decimals)
    s = f"{q}.{r:0{decimals}d}" if decimals else str(q)
    if pad:
        s += ("" if decimals else ".") + "0" * pad
    return s


def delta(action: str, side: str, price: str, size: str, seq: int, flags: int = 0) -> OrderBookDelta:
    return OrderBookDelta(
        instrument_id=IID,
        action=action,
        order=BookOrder(side=side, price=price, size=size),
        flags=flags,
        sequence=seq,
        ts_event=TS + seq,
        ts_init=TS + seq,
    )


def snapshot_msg(levels: list[tuple[str, str, str]], seq: int) -> OrderBookDeltas:
    ds = [delta("CLEAR", "NO_ORDER_SIDE", "0", "0", seq, RecordFlag.F_SNAPSHOT)]
    ds += [delta("ADD", side, p, s, seq, RecordFlag.F_SNAPSHOT) for side, p, s in levels]
    ds[-1].flags = RecordFlag.F_SNAPSHOT | RecordFlag.F_LAST
    return OrderBookDeltas(instrument_id=IID, deltas=ds)


def deltas_msg(changes: list[tuple[str, str, str, str]], seq: int) -> OrderBookDeltas:
    ds = [delta(a, side, p, s, seq) for a, side, p, s in changes]
    ds[-1].flags = RecordFlag.F_LAST
    return OrderBookDeltas(instrument_id=IID, deltas=ds)


class Reference:
    """The simplest possible model: a dict per side, Decimal price -> Decimal size."""

    def __init__(self) -> None:
        self.sides: dict[str, dict[Decimal, Decimal]] = {"BUY": {}, "SELL": {}}

    def apply(self, msg: OrderBookDeltas) -> None:
        for d in msg.deltas:
            if d.action == "CLEAR":
                self.sides = {"BUY": {}, "SELL": {}}
                continue
            side = self.sides[d.order.side]
            price, size = Decimal(d.order.price), Decimal(d.order.size)
            if d.action == "DELETE" or size == 0:
                side.pop(price, None)
            else:
                side[price] = size

    def bids(self) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.sides["BUY"].items(), reverse=True)

    def asks(self) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.sides["SELL"].items())


def as_decimal(levels: list[tuple[str, str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(s)) for p, s in levels]


# Bids live on ticks 1..60 and asks on 61..120, so any sequence of changes is uncrossed (valid);
# prices get 1-3 decimals and random trailing zeros so exactness is exercised.
DEC = 2
bid_tick = st.integers(1, 60)
ask_tick = st.integers(61, 120)
pad = st.integers(0, 2)
lots = st.integers(0, 5000)


@st.composite
def change(draw: st.DrawFn) -> tuple[str, str, str, str]:
    is_bid = draw(st.booleans())
    tick = draw(bid_tick if is_bid else ask_tick)
    price = spell(tick * 7, DEC, draw(pad))
    action = draw(st.sampled_from(["ADD", "UPDATE", "DELETE"]))
    size = "0" if action == "DELETE" else spell(draw(lots), 3, draw(pad))
    return action, "BUY" if is_bid else "SELL", price, size


@st.composite
def valid_flow(draw: st.DrawFn) -> list[tuple[OrderBookDeltas, int | None]]:
    """A snapshot then deltas messages with prev-seq headers; sequences skip at random."""
    seq = draw(st.integers(1, 10**6))
    snap_levels = [(side, p, s) for a, side, p, s in draw(st.lists(change(), max_size=20)) if a != "DELETE"]
    out: list[tuple[OrderBookDeltas, int | None]] = [(snapshot_msg(snap_levels, seq), None)]
    for _ in range(draw(st.integers(0, 40))):
        prev = seq
        seq += 1 + draw(st.sampled_from([0, 0, 0, 1, 5]))
        if draw(st.integers(0, 15)) == 0:  # a fresh snapshot now and then (resubscribe)
            levels = [(side, p, s) for a, side, p, s in draw(st.lists(change(), max_size=10)) if a != "DELETE"]
            out.append((snapshot_msg(levels, seq), None))
        else:
            out.append((deltas_msg(draw(st.lists(change(), min_size=1, max_size=5)), seq), prev))
    return out


def check_same(book: LocalBook, ref: Reference) -> None:
    bids, asks = book.levels()
    assert as_decimal(bids) == ref.bids()
    assert as_decimal(asks) == ref.asks()
    top = book.top()
    if ref.bids() and ref.asks():
        assert top is not None
        assert (Decimal(top[0]), Decimal(top[1])) == ref.bids()[0]
        assert (Decimal(top[2]), Decimal(top[3])) == ref.asks()[0]
    else:
        assert top is None
    b10, a10 = book.depth(10)
    assert as_decimal(b10) == ref.bids()[:10]
    assert as_decimal(a10) == ref.asks()[:10]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_flow())
def test_valid_sequences_match_reference_model(flow: list[tuple[OrderBookDeltas, int | None]]) -> None:
    book = LocalBook(MKT)
    ref = Reference()
    for i, (built, prev) in enumerate(flow, start=1):
        msg = decode_as(encode(built), OrderBookDeltas)  # through the wire form, as the builder sees it
        result = book.apply(msg, prev, md_stream_seq=i)
        assert result in (Applied.APPLIED, Applied.SNAPSHOT), (result, book.reason)
        ref.apply(msg)
        check_same(book, ref)
        assert book.state is BookState.VALID
        assert book.sequence == msg.deltas[-1].sequence
        assert book.md_stream_seq == i


@settings(max_examples=80, deadline=None)
@given(valid_flow(), st.data())
def test_a_missing_message_is_a_gap(flow: list[tuple[OrderBookDeltas, int | None]], data: st.DataObject) -> None:
    deltas_idx = [i for i, (m, prev) in enumerate(flow) if prev is not None]
    if not deltas_idx:
        return
    lost = data.draw(st.sampled_from(deltas_idx))
    book = LocalBook(MKT)
    results = []
    for i, (msg, prev) in enumerate(flow):
        if i == lost:
            continue
        results.append((i, book.apply(msg, prev)))
    after = [r for i, r in results if i > lost]
    if not after:
        return  # the lost message was the last one: nothing can tell yet
    first_after = after[0]
    nxt = flow[lost + 1][0]
    if nxt.deltas[0].action == "CLEAR":
        assert first_after is Applied.SNAPSHOT  # a snapshot heals before the gap is seen
    else:
        assert first_after is Applied.GAP
        assert book.state in (BookState.INVALID, BookState.VALID)  # VALID again if a later snapshot came
        later = [r for r in after[1:] if r is not Applied.NOT_VALID]
        assert all(r in (Applied.SNAPSHOT, Applied.APPLIED) for r in later)
        if Applied.SNAPSHOT not in later:
            assert book.state is BookState.INVALID


@settings(max_examples=60, deadline=None)
@given(valid_flow(), st.data())
def test_duplicates_are_ignored_and_change_nothing(
    flow: list[tuple[OrderBookDeltas, int | None]], data: st.DataObject
) -> None:
    book = LocalBook(MKT)
    ref = Reference()
    for msg, prev in flow:
        book.apply(msg, prev)
        ref.apply(msg)
        if prev is not None and data.draw(st.booleans()):
            assert book.apply(msg, prev) is Applied.OLD
    check_same(book, ref)
    assert book.valid


@settings(max_examples=40, deadline=None)
@given(valid_flow(), st.booleans(), st.integers(0, 3))
def test_a_crossing_delta_is_detected(
    flow: list[tuple[OrderBookDeltas, int | None]], bid_side: bool, beyond: int
) -> None:
    book = LocalBook(MKT)
    for msg, prev in flow:
        book.apply(msg, prev)
    if not (book.bids.best() and book.asks.best()):
        return
    # a bid at or above the best ask (or an ask at or below the best bid): locked or crossed
    if bid_side:
        price = str(Decimal(book.asks.best()[0]) + Decimal(beyond))
        change = ("ADD", "BUY", price, "1")
    else:
        price = str(Decimal(book.bids.best()[0]) - Decimal(beyond))
        change = ("ADD", "SELL", price, "1")
    seq = book.sequence
    assert book.apply(deltas_msg([change], seq + 1), seq) is Applied.CROSSED
    assert book.state is BookState.INVALID and "crossed" in book.reason
    assert book.apply(deltas_msg([("DELETE", change[1], price, "0")], seq + 2), seq + 1) is Applied.NOT_VALID


def test_gap_then_snapshot_rebuilds() -> None:
    book = LocalBook(MKT)
    assert book.apply(snapshot_msg([("BUY", "10.0", "1"), ("SELL", "11.0", "2")], 100)) is Applied.SNAPSHOT
    assert book.apply(deltas_msg([("UPDATE", "BUY", "10.0", "3")], 101), 100) is Applied.APPLIED
    # empty venue deltas were skipped: 102..104 never published, prev says 101 -> in order
    assert book.apply(deltas_msg([("ADD", "BUY", "9.5", "1")], 105), 101) is Applied.APPLIED
    # message 106 was lost; 107 says its predecessor was 106
    assert book.apply(deltas_msg([("ADD", "SELL", "12", "1")], 107), 106) is Applied.GAP
    assert book.state is BookState.INVALID and "gap" in book.reason
    assert book.apply(deltas_msg([("ADD", "SELL", "13", "1")], 108), 107) is Applied.NOT_VALID
    assert book.apply(snapshot_msg([("BUY", "10.0", "5"), ("SELL", "10.5", "1")], 110)) is Applied.SNAPSHOT
    assert book.valid and book.top() == ("10.0", "5", "10.5", "1")
    assert book.apply(deltas_msg([("DELETE", "SELL", "10.50", "0")], 111), 110) is Applied.APPLIED
    assert book.top() is None and len(book.asks) == 0


def test_crossed_and_locked_books_are_invalid() -> None:
    book = LocalBook(MKT)
    book.apply(snapshot_msg([("BUY", "10.0", "1"), ("SELL", "11.0", "2")], 1))
    assert book.apply(deltas_msg([("ADD", "BUY", "11.0", "1")], 2), 1) is Applied.CROSSED
    assert book.state is BookState.INVALID and "crossed" in book.reason
    book.apply(snapshot_msg([("BUY", "10.0", "1"), ("SELL", "11.0", "2")], 3))
    assert book.apply(deltas_msg([("ADD", "SELL", "9.99", "1")], 4), 3) is Applied.CROSSED
    assert book.apply(snapshot_msg([("BUY", "12", "1"), ("SELL", "11", "1")], 5)) is Applied.CROSSED


def test_old_snapshot_ignored_but_regression_detected() -> None:
    book = LocalBook(MKT, regression_threshold=5)
    book.apply(snapshot_msg([("BUY", "10", "1"), ("SELL", "11", "1")], 100))
    book.apply(deltas_msg([("UPDATE", "BUY", "10", "2")], 101), 100)
    # a replica feed handler's older snapshot stored after newer deltas: ignored
    assert book.apply(snapshot_msg([("BUY", "10", "9"), ("SELL", "11", "9")], 99)) is Applied.OLD_SNAPSHOT
    assert book.top() == ("10", "2", "11", "1")
    assert book.apply(deltas_msg([("UPDATE", "BUY", "10", "3")], 102), 101) is Applied.APPLIED
    # the venue restarted with sequence 1: a run of old messages means the sequence went back
    results = [book.apply(snapshot_msg([("BUY", "20", "1"), ("SELL", "21", "1")], 1))]
    results += [book.apply(deltas_msg([("UPDATE", "BUY", "20", str(i))], 1 + i), i) for i in range(1, 5)]
    assert results[:4] == [Applied.OLD_SNAPSHOT, Applied.OLD, Applied.OLD, Applied.OLD]
    assert results[4] is Applied.REGRESSED and book.state is BookState.INVALID
    assert book.apply(snapshot_msg([("BUY", "20", "1"), ("SELL", "21", "1")], 6)) is Applied.SNAPSHOT
    assert book.valid and book.sequence == 6


def test_malformed_and_foreign_messages() -> None:
    book = LocalBook(MKT)
    book.apply(snapshot_msg([("BUY", "10", "1"), ("SELL", "11", "1")], 1))
    bad = deltas_msg([("ADD", "NO_ORDER_SIDE", "10", "1")], 2)
    assert book.apply(bad, 1) is Applied.MALFORMED and book.state is BookState.INVALID
    other = OrderBookDeltas(
        instrument_id="ETH-USD-PERP.PARADEX", deltas=[delta("ADD", "BUY", "1", "1", 9, RecordFlag.F_LAST)]
    )
    assert book.apply(other, 8) is Applied.WRONG_INSTRUMENT


def test_missing_prev_header_falls_back_to_contiguous_sequences() -> None:
    book = LocalBook(MKT)
    book.apply(snapshot_msg([("BUY", "10", "1"), ("SELL", "11", "1")], 1))
    assert book.apply(deltas_msg([("UPDATE", "BUY", "10", "2")], 2)) is Applied.APPLIED
    assert book.apply(deltas_msg([("UPDATE", "BUY", "10", "3")], 4)) is Applied.GAP


def test_price_keys_are_exact() -> None:
    assert price_key("1908.1") == price_key("1908.10") == price_key("1908.1000000000000000")
    assert price_key("0.0000000000000001") == 1
    assert price_key("-0.5") < price_key("0") < price_key("0.5")
    assert price_key("100000000000000000000.1") > price_key("99999999999999999999.9999999999999999")
    with pytest.raises(ValueError):
        price_key("1.00000000000000001")
    assert is_zero("0") and is_zero("0.000") and not is_zero("0.001") and not is_zero("10")
    assert prev_seq_of({PREV_SEQ_HEADER: "42"}) == 42 and prev_seq_of(None) is None


def test_same_price_spelled_differently_is_one_level() -> None:
    book = LocalBook(MKT)
    book.apply(snapshot_msg([("BUY", "10.5", "1"), ("SELL", "11", "1")], 1))
    book.apply(deltas_msg([("UPDATE", "BUY", "10.50", "2")], 2), 1)
    assert book.bids.levels() == [("10.5", "2")]
    book.apply(deltas_msg([("DELETE", "BUY", "10.500", "0")], 3), 2)
    assert len(book.bids) == 0


def test_conversions_round_trip() -> None:
    book = LocalBook(MKT)
    levels = [("BUY", f"{100 - i}.5", f"{i + 1}.25") for i in range(15)]
    levels += [("SELL", f"{101 + i}.5", f"{i + 1}.75") for i in range(12)]
    book.apply(snapshot_msg(levels, 7), md_stream_seq=33)
    snap = decode_as(encode(book.to_snapshot(builder="t")), type(book.to_snapshot()))
    again = LocalBook.from_snapshot(snap)
    assert again.same_levels(book) and again.sequence == 7 and again.md_stream_seq == 33 and again.valid
    d10 = book.to_depth10()
    assert [lv.price for lv in d10.bids] == [f"{100 - i}.5" for i in range(10)]
    assert d10.sequence == 7 and d10.bid_counts == [1] * 10
    q = book.to_quote()
    assert q is not None and (q.bid_price, q.ask_price) == ("100.5", "101.5")
    rebuilt = LocalBook(MKT)
    assert rebuilt.apply(book.to_deltas()) is Applied.SNAPSHOT
    assert rebuilt.same_levels(book)
    cp = book.copy()
    cp.apply(deltas_msg([("DELETE", "BUY", "100.5", "0")], 8), 7)
    assert not cp.same_levels(book)
