"""The seeded fault schedule: complete, inside the fault phase, reproducible."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from services.chaos.faults import ALL_KINDS, LOST_REPLY_CALLS, STALE_CHANNELS, build_schedule

INSTANCES = ["signer-0", "feed-handler-0", "feed-handler-1", "book-builder-0", "order-router-0", "reconciler-0"]
MARKETS = ("BTC-USD-PERP", "ETH-USD-PERP", "SOL-USD-PERP")


@pytest.mark.parametrize(("duration", "cluster"), [(50.0, False), (40.0, True), (300.0, False), (300.0, True)])
def test_every_kind_every_process_inside_the_phase(duration: float, cluster: bool) -> None:
    events = build_schedule(random.Random(3), duration, ALL_KINDS, INSTANCES, MARKETS, cluster)
    kinds = Counter(e.kind for e in events)
    expected = set(ALL_KINDS) - (set() if cluster else {"leader_kill"})
    assert set(kinds) == expected
    assert {e.target for e in events if e.kind == "kill"} == set(INSTANCES)
    assert {e.target for e in events if e.kind == "stale"} == set(STALE_CHANNELS)
    assert {e.target for e in events if e.kind == "lost_reply"} == {f"{m} {p}" for p, m in LOST_REPLY_CALLS}
    if duration >= 120:
        assert {e.target for e in events if e.kind == "term"} == set(INSTANCES)
        assert len(events) >= duration / 6
    assert all(3.0 <= e.at <= duration - 3.0 + 1e-9 for e in events), [e.at for e in events]
    assert [e.at for e in events] == sorted(e.at for e in events)
    for e in events:
        if e.kind in ("nats_restart", "leader_kill"):
            assert e.at <= 3.0 + (duration - 6.0) * 0.8  # recovery measured inside the fault phase


def test_same_seed_same_schedule() -> None:
    a = build_schedule(random.Random(11), 60, ALL_KINDS, INSTANCES, MARKETS, False)
    b = build_schedule(random.Random(11), 60, ALL_KINDS, INSTANCES, MARKETS, False)
    c = build_schedule(random.Random(12), 60, ALL_KINDS, INSTANCES, MARKETS, False)
    assert [e.describe() for e in a] == [e.describe() for e in b]
    assert [(e.at, e.describe()) for e in a] != [(e.at, e.describe()) for e in c]


def test_selected_kinds_only() -> None:
    events = build_schedule(random.Random(1), 30, ("ws_drop", "seq_gap"), INSTANCES, MARKETS, False)
    assert {e.kind for e in events} == {"ws_drop", "seq_gap"}
    assert not build_schedule(random.Random(1), 30, ("leader_kill",), INSTANCES, MARKETS, False)
