"""The whole market-data path with real processes: simulator -> feed handler -> NATS -> book
builder. After a stretch of background flow, every built book equals the simulator's own book
(all levels, exact decimals); then ``kill -9`` of the builder during flow and a restart give the
simulator's books again, with no QuoteTick sequence going back. Prints the recovery time.

The flow lasts ``BOOK_E2E_SIM_SECONDS`` (default 15 s so the suite stays fast; run with 180+ for
the "minutes of flow" soak).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from decimal import Decimal

import pytest

from bus import replay
from bus.book_client import SEQ_HEADER, BookUnavailable, fetch_snapshot
from bus.embedded import free_port, wait_port
from tests.book_builder.helpers import Outputs, builder_env, caught_up_snapshot, levels_of

_missing = [m for m in ("services.paradex_sim", "services.feed_handler") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(_missing), reason=f"needs {', '.join(_missing)} (simulator / feed handler not built yet)"
)

MARKETS = ["BTC-USD-PERP", "ETH-USD-PERP", "SOL-USD-PERP"]
FLOW_SECONDS = float(os.environ.get("BOOK_E2E_SIM_SECONDS", "15"))


def dec_levels(levels: list[tuple[str, str]] | list[list[str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(s)) for p, s in levels]


async def books_match_simulator(nc: object, admin: object, timeout: float = 20.0) -> dict[str, int]:
    """With the flow paused, wait until each built book equals the simulator's; returns seq_nos."""
    deadline = time.monotonic() + timeout
    seqs: dict[str, int] = {}
    for market in MARKETS:
        truth = await admin.book(market)  # type: ignore[attr-defined]
        want = (dec_levels(truth["bids"]), dec_levels(truth["asks"]))
        got = None
        while True:
            try:
                snap = await fetch_snapshot(nc, market, timeout=1.0, attempts=1)  # type: ignore[arg-type]
                bids, asks = levels_of(snap)
                got = (dec_levels(bids), dec_levels(asks))
                if snap.state == "VALID" and got == want:
                    break
            except BookUnavailable:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{market}: built book != simulator book (seq {truth['seq_no']}): {got} vs {want}")
            await asyncio.sleep(0.1)
        assert snap.sequence <= truth["seq_no"]
        seqs[market] = truth["seq_no"]
    return seqs


async def test_books_equal_simulator_also_after_kill_9(nc, js, nats_url, spawn, tmp_path) -> None:
    from services.paradex_sim.admin_client import AdminClient

    rest, ws, adm = free_port(), free_port(), free_port()
    sim = spawn(
        "services.paradex_sim",
        {
            "SIM_REST_PORT": str(rest),
            "SIM_WS_PORT": str(ws),
            "SIM_ADMIN_PORT": str(adm),
            "SIM_FLOW_RATE": "300",
            "SIM_SEED": "7",
            "SIM_MARKETS": ",".join(MARKETS),
        },
        name="sim",
    )
    for port in (rest, ws, adm):
        await asyncio.to_thread(wait_port, "127.0.0.1", port, 20.0)
    assert sim.alive
    feed = spawn(
        "services.feed_handler",
        {
            "NATS_URL": nats_url,
            "PARADEX_REST_URL": f"http://127.0.0.1:{rest}/v1",
            "PARADEX_WS_URL": f"ws://127.0.0.1:{ws}/v1",
            "FEED_MODE": "replica",
            "FEED_MARKETS": ",".join(MARKETS),
            "FEED_CACHE_DIR": str(tmp_path / "feed-cache"),
            "HEALTH_INTERVAL": "0.5",
        },
        name="feed",
    )
    out = await Outputs().start(nc)
    env = builder_env(nats_url, INSTANCE_ID="sim-e2e", BOOK_BUILDER_DEPTH_INTERVAL_MS="50")
    builder = spawn("services.book_builder", env, name="builder-1")
    await builder.wait_healthy(nc, "book-builder", timeout=30)
    async with AdminClient(f"http://127.0.0.1:{adm}") as admin:
        await asyncio.sleep(FLOW_SECONDS)
        assert feed.alive and sim.alive
        await admin.pause_flow()
        seqs = await books_match_simulator(nc, admin)
        print(f"\nbuilt books equal the simulator's after {FLOW_SECONDS:.0f} s of flow: seq_no {seqs}")

        await admin.resume_flow()
        await asyncio.sleep(max(2.0, FLOW_SECONDS / 3))
        builder.kill()
        await asyncio.sleep(1.0)
        restart_seq = (await js.stream_info("MD")).state.last_seq
        t0 = time.monotonic()
        builder2 = spawn("services.book_builder", env, name="builder-2")
        await caught_up_snapshot(nc, MARKETS[0], restart_seq, timeout=30)
        recovery = time.monotonic() - t0
        await asyncio.sleep(2.0)
        await admin.pause_flow()
        seqs = await books_match_simulator(nc, admin)
        health = await builder2.wait_healthy(nc, "book-builder")
        print(
            f"after kill -9 and restart: consistent in {recovery:.3f} s (process: {health.details['recovery_s']} s, "
            f"replayed {health.details['replayed_messages']} messages); books equal the simulator's at {seqs}"
        )
    for m, seq_list in out.quote_seqs().items():
        assert seq_list == sorted(seq_list), m
    stored: dict[str, list[int]] = {}
    async for msg in replay(js, "book.paradex.quotes.>"):
        stored.setdefault(msg.subject, []).append(int(msg.headers[SEQ_HEADER]))
    assert set(stored) == {f"book.paradex.quotes.{m}" for m in MARKETS}
    for subject, seq_list in stored.items():
        assert seq_list == sorted(seq_list), subject
