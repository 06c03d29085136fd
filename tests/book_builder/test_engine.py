"""``BookEngine`` (the builder's logic without I/O): random synthetic flows, encoded as on the bus,
end in the generator's books; quotes follow every top-of-book change and never regress, also
across a checkpoint/restore; invalid books ask for a resync and publish their status."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.book_client import PREV_SEQ_HEADER, Applied, BookState
from schemas import OrderBookDepth10, QuoteTick
from schemas.book import BookCheckpoint, BookStatus
from services.book_builder.config import Ownership, shard_of
from services.book_builder.engine import BookEngine, depth_msg_id, quote_msg_id
from services.book_builder.synthetic import FlowMessage, SyntheticFlow

MARKETS = ["BTC-USD-PERP", "ETH-USD-PERP", "SOL-USD-PERP"]


@dataclass
class Collect:
    quotes: list[tuple[str, QuoteTick, int, int]] = field(default_factory=list)
    depths: list[tuple[str, OrderBookDepth10]] = field(default_factory=list)
    statuses: list[tuple[str, BookStatus]] = field(default_factory=list)
    resyncs: list[tuple[str, str]] = field(default_factory=list)

    def quote(self, market: str, quote: QuoteTick, sequence: int, md_stream_seq: int) -> None:
        self.quotes.append((market, quote, sequence, md_stream_seq))

    def depth(self, market: str, depth: OrderBookDepth10, md_stream_seq: int) -> None:
        self.depths.append((market, depth))

    def status(self, market: str, status: BookStatus) -> None:
        self.statuses.append((market, status))

    def resync(self, market: str, reason: str) -> None:
        self.resyncs.append((market, reason))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def feed(engine: BookEngine, msgs: list[FlowMessage], start: int = 1) -> int:
    seq = start
    for fm in msgs:
        engine.on_message(fm.subject, fm.payload, fm.headers, seq)
        seq += 1
    return seq


def quote_seqs_by_market(quotes: list[tuple[str, QuoteTick, int, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for m, _q, seq, _md in quotes:
        out.setdefault(m, []).append(seq)
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6), st.integers(50, 400), st.integers(2, 40))
def test_engine_books_equal_generator_and_quotes_follow_top(seed: int, n: int, levels: int) -> None:
    flow = SyntheticFlow(MARKETS, seed=seed, levels=levels)
    sink = Collect()
    engine = BookEngine(sink, depth_interval=0)
    engine.go_live()
    md = 1
    expected_top: dict[str, tuple[str, str, str, str] | None] = {}
    for i in range(len(MARKETS) + n):
        # generated one at a time: the generator's book is the reference right after each message
        fm = flow.markets[MARKETS[i]].snapshot() if i < len(MARKETS) else flow.step()
        before = len(sink.quotes)
        result = engine.on_message(fm.subject, fm.payload, fm.headers, md)
        assert result in (Applied.APPLIED, Applied.SNAPSHOT)
        top = flow.markets[fm.market].expected_top()
        changed = top != expected_top.get(fm.market)
        assert (len(sink.quotes) - before == 1) == (changed and top is not None)
        if changed and top is not None:
            m, q, seq, md_seq = sink.quotes[-1]
            assert m == fm.market and (q.bid_price, q.bid_size, q.ask_price, q.ask_size) == top
            assert seq == fm.sequence and md_seq == md
            expected_top[fm.market] = top
        md += 1
    for name, gen in flow.markets.items():
        book = engine.markets[name].book
        assert book.valid and book.levels() == gen.expected()
    for seqs in quote_seqs_by_market(sink.quotes).values():
        assert seqs == sorted(seqs)
    last_depth = {m: d for m, d in sink.depths}
    for name, gen in flow.markets.items():
        bids, asks = gen.expected()
        d = last_depth[name]
        assert [(lv.price, lv.size) for lv in d.bids if lv.size != "0"] == bids[:10]
        assert [(lv.price, lv.size) for lv in d.asks if lv.size != "0"] == asks[:10]


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 300), st.integers(1, 200))
def test_checkpoint_restore_replay_gives_same_books_and_no_quote_regression(seed: int, cut: int, lag: int) -> None:
    """Crash model: checkpoint at ``cut``, keep running ``lag`` more messages (quotes published),
    crash, restore from the checkpoint + the stored last quote, replay the rest."""
    flow = SyntheticFlow(MARKETS, seed=seed, levels=15)
    msgs = flow.snapshots() + [flow.step() for _ in range(cut + lag + 100)]
    sink = Collect()
    a = BookEngine(sink)
    a.go_live()
    feed(a, msgs[: len(MARKETS) + cut])
    ckpts = [msgspec.msgpack.decode(v, type=BookCheckpoint) for _k, v, _m, _s in a.checkpoints()]
    feed(a, msgs[len(MARKETS) + cut : len(MARKETS) + cut + lag], start=len(MARKETS) + cut + 1)
    stored_floor = {m: (seq, (q.bid_price, q.bid_size, q.ask_price, q.ask_size)) for m, q, seq, _ in sink.quotes}

    sink2 = Collect()
    b = BookEngine(sink2)
    for ck in ckpts:
        b.restore(ck)
    for m, (seq, top) in stored_floor.items():
        b.set_quote_floor(m, seq, top)
    start = min(ck.md_stream_seq for ck in ckpts) + 1
    feed(b, msgs[start - 1 : len(MARKETS) + cut + lag], start=start)  # replay: nothing published
    assert sink2.quotes == []
    b.go_live()
    feed(b, msgs[len(MARKETS) + cut + lag :], start=len(MARKETS) + cut + lag + 1)
    for name, gen in flow.markets.items():
        assert b.markets[name].book.levels() == gen.expected()
    for m, seqs in quote_seqs_by_market(sink2.quotes).items():
        assert seqs == sorted(seqs)
        assert seqs[0] >= stored_floor.get(m, (0, None))[0]


def test_gap_invalidates_requests_resync_and_snapshot_recovers() -> None:
    flow = SyntheticFlow(["BTC-USD-PERP"], seed=5, levels=10)
    gen = flow.markets["BTC-USD-PERP"]
    sink = Collect()
    clock = Clock()
    engine = BookEngine(sink, clock=clock, resync_retry=5.0)
    engine.go_live()
    md = feed(engine, [gen.snapshot()] + [gen.step() for _ in range(10)])
    assert sink.statuses[-1][1].state == "VALID"
    gen.lose()
    nxt = gen.step()
    assert engine.on_message(nxt.subject, nxt.payload, nxt.headers, md) is Applied.GAP
    assert sink.resyncs and sink.resyncs[-1][0] == "BTC-USD-PERP" and "gap" in sink.resyncs[-1][1]
    st_ = sink.statuses[-1][1]
    assert st_.state == "INVALID" and "gap" in st_.reason
    quotes_before = len(sink.quotes)
    md = feed(engine, [gen.step() for _ in range(3)], md + 1)
    assert len(sink.quotes) == quotes_before  # nothing published from an invalid book
    assert engine.stats.ignored_not_valid == 3 and len(sink.resyncs) == 1  # retries are rate-limited
    clock.t += 6
    engine.tick()
    assert len(sink.resyncs) == 2
    clock.t += 6
    engine.tick()
    assert len(sink.resyncs) == 2  # backoff doubled to 10 s
    feed(engine, [gen.snapshot(), gen.step()], md)
    assert sink.statuses[-1][1].state == "VALID"
    book = engine.markets["BTC-USD-PERP"].book
    assert book.valid and book.levels() == gen.expected()
    assert engine.stats.gaps == 1 and engine.stats.snapshots == 2


def test_stale_market_flagged_only_while_others_flow() -> None:
    flow = SyntheticFlow(["BTC-USD-PERP", "ETH-USD-PERP"], seed=2, levels=5)
    sink = Collect()
    clock = Clock()
    engine = BookEngine(sink, clock=clock, stale_after=10.0)
    engine.go_live()
    md = feed(engine, flow.snapshots())
    btc = flow.markets["BTC-USD-PERP"]
    for _ in range(15):
        clock.t += 1
        md = feed(engine, [btc.step()], md)
        engine.tick()
    assert engine.markets["ETH-USD-PERP"].stale and not engine.markets["BTC-USD-PERP"].stale
    assert sink.statuses[-1][0] == "ETH-USD-PERP" and sink.statuses[-1][1].stale
    clock.t += 60  # everything quiet: nobody is stale on their own
    engine.tick()
    assert not engine.markets["ETH-USD-PERP"].stale
    eth = flow.markets["ETH-USD-PERP"]
    feed(engine, [eth.step()], md)
    assert not engine.markets["ETH-USD-PERP"].stale


def test_malformed_and_old_messages_are_counted_and_reported() -> None:
    reports: list[tuple[str, dict[str, object]]] = []
    flow = SyntheticFlow(["BTC-USD-PERP"], seed=3, levels=5)
    gen = flow.markets["BTC-USD-PERP"]
    engine = BookEngine(Collect(), report=lambda kind, **ctx: reports.append((kind, ctx)))
    engine.go_live()
    snap, d1 = gen.snapshot(), gen.step()
    feed(engine, [snap, d1])
    assert engine.on_message(d1.subject, d1.payload, d1.headers, 3) is Applied.OLD
    assert engine.on_message(d1.subject, b"\x81\xa4nope\x01", {}, 4) is Applied.MALFORMED
    d2 = gen.step()
    assert engine.on_message(d2.subject, d2.payload, {PREV_SEQ_HEADER: "x"}, 5) is Applied.APPLIED
    gen.skip_prob = 1.0  # the venue skipped sequences (level-less deltas) ...
    d3 = gen.step()
    # ... and the header that says so is missing: contiguity is assumed, so it looks like a gap
    assert engine.on_message(d3.subject, d3.payload, None, 6) is Applied.GAP
    kinds = [k for k, _ in reports]
    assert kinds[:3] == ["old_or_duplicate", "malformed_message", "malformed_prev_seq_header"]
    assert kinds[-1] == "book_gap"
    assert engine.stats.old == 1 and engine.stats.malformed == 1
    assert engine.on_message(d1.subject, d1.payload, d1.headers, 6) is None  # at/below position: replayed
    assert engine.stats.already_in_checkpoint == 1


def test_ownership_and_sharding() -> None:
    markets = [f"M{i}-USD-PERP" for i in range(200)]
    shards = [Ownership.parse([], f"{i}/3") for i in range(3)]
    owners = [[s.owns(m) for s in shards].count(True) for m in markets]
    assert owners == [1] * len(markets)
    assert all(shards[shard_of(m, 3)].owns(m) for m in markets)
    listed = Ownership.parse(["BTC-USD-PERP", "ETH-USD-PERP"], "")
    assert listed.owns("BTC-USD-PERP") and not listed.owns("SOL-USD-PERP")
    assert listed.filter_subjects() == ["md.paradex.deltas.BTC-USD-PERP", "md.paradex.deltas.ETH-USD-PERP"]
    assert shards[0].filter_subjects() == ["md.paradex.deltas.>"]
    engine = BookEngine(Collect(), ownership=listed)
    assert engine.snapshot("SOL-USD-PERP") is None
    snap = engine.snapshot("BTC-USD-PERP")
    assert snap is not None and snap.state == BookState.AWAITING_SNAPSHOT.value


def test_msg_ids_are_deterministic() -> None:
    flow = SyntheticFlow(["BTC-USD-PERP"], seed=9, levels=12)
    sinks = []
    for _ in range(2):
        flow = SyntheticFlow(["BTC-USD-PERP"], seed=9, levels=12)
        sink = Collect()
        engine = BookEngine(sink)
        engine.go_live()
        feed(engine, flow.snapshots() + [flow.step() for _ in range(50)])
        sinks.append(sink)
    ids = [
        [quote_msg_id(m, seq, (q.bid_price, q.bid_size, q.ask_price, q.ask_size)) for m, q, seq, _ in s.quotes]
        for s in sinks
    ]
    assert ids[0] == ids[1] and len(set(ids[0])) == len(ids[0])
    d_ids = [[depth_msg_id(m, d) for m, d in s.depths] for s in sinks]
    assert d_ids[0] == d_ids[1] and len(set(d_ids[0])) == len(d_ids[0])
