"""Book builder: delta levels applied per second, memory per book, end-to-end through NATS, and
recovery after ``kill -9`` with a long MD stream.

``python bench/book_bench.py [--quick] [--json PATH]`` measures, on a throwaway nats-server:

* in-process: delta levels/s of ``LocalBook.apply`` (the chosen structure: dict + sorted int keys)
  next to a ``SortedDict`` keyed by ``Decimal`` (the obvious alternative) on the same messages, and
  of the whole builder path (decode, continuity check, book, quote/depth decisions);
* memory: bytes per market with 1,000 levels a side (tracemalloc), and the RSS of the builder
  process holding 100 such markets (goal < 300 MB);
* end-to-end: MD deltas published as fast as JetStream takes them -> builder process caught up
  (msgs/s and levels/s, next to a bare ordered consumer reading the same messages), and latency
  from publish to the QuoteTick arriving at a subscriber at a steady 2,000 msgs/s;
* recovery: ``kill -9`` of the builder during flow with 1,000,000 messages in MD (100,000 with
  ``--quick``), restart, time until a snapshot reply is live and caught up to the stream end at
  restart, and every book equal to the generator's (goal < 2 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import uvloop
from sortedcontainers import SortedDict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import row  # noqa: E402
from bus import NatsSettings, connect, ensure_streams, jetstream, replay  # noqa: E402
from bus.book_client import SEQ_HEADER, BookUnavailable, LocalBook, fetch_snapshot  # noqa: E402
from bus.embedded import EmbeddedNats  # noqa: E402
from schemas import OrderBookDeltas, ServiceHealth, decode_as  # noqa: E402
from services.book_builder.engine import BookEngine  # noqa: E402
from services.book_builder.synthetic import FlowMessage, SyntheticFlow, SyntheticMarket  # noqa: E402

log = logging.getLogger("book_bench")


# -- in-process ------------------------------------------------------------------------------------


class NullSink:
    def quote(self, *a: Any) -> None:
        pass

    def depth(self, *a: Any) -> None:
        pass

    def status(self, *a: Any) -> None:
        pass

    def resync(self, *a: Any) -> None:
        pass


class DecimalBook:
    """The obvious alternative: SortedDict keyed by Decimal per side (same set semantics)."""

    def __init__(self) -> None:
        self.sides = {"BUY": SortedDict(), "SELL": SortedDict()}

    def apply(self, msg: OrderBookDeltas) -> None:
        for d in msg.deltas:
            if d.action == "CLEAR":
                self.sides["BUY"].clear()
                self.sides["SELL"].clear()
                continue
            side = self.sides[d.order.side]
            k = Decimal(d.order.price)
            if d.action == "DELETE" or not d.order.size.strip("0."):
                side.pop(k, None)
            else:
                side[k] = d.order.size
        if self.sides["BUY"] and self.sides["SELL"]:
            _ = self.sides["BUY"].peekitem(-1), self.sides["SELL"].peekitem(0)


def best_of(fn: Any, reps: int) -> float:
    return min(fn() for _ in range(reps))


def bench_inprocess(quick: bool) -> dict[str, float]:
    n = 30_000 if quick else 200_000
    gen = SyntheticMarket("BTC-USD-PERP", seed=1, levels=1000)
    msgs = [gen.snapshot()] + [gen.step() for _ in range(n)]
    wire = [(m.subject, m.payload, m.headers) for m in msgs]
    events = [decode_as(p, OrderBookDeltas) for _s, p, _h in wire]
    prevs = [int(h["Pdx-Prev-Seq"]) if h else None for _s, _p, h in wire]
    levels = sum(len(e.deltas) for e in events[1:])
    reps = 2 if quick else 3

    def local() -> float:
        book = LocalBook("BTC-USD-PERP")
        book.apply(events[0])
        t = time.perf_counter()
        for e, p in zip(events[1:], prevs[1:], strict=True):
            book.apply(e, p)
        return time.perf_counter() - t

    def decimal_book() -> float:
        book = DecimalBook()
        book.apply(events[0])
        t = time.perf_counter()
        for e in events[1:]:
            book.apply(e)
        return time.perf_counter() - t

    def engine(depth_interval: float) -> float:
        eng = BookEngine(NullSink(), depth_interval=depth_interval)
        eng.go_live()
        s0, p0, h0 = wire[0]
        eng.on_message(s0, p0, h0, 1)
        t = time.perf_counter()
        for i, (s, p, h) in enumerate(wire[1:], start=2):
            eng.on_message(s, p, h, i)
        return time.perf_counter() - t

    return {
        "messages": n,
        "levels": levels,
        "local_levels_s": levels / best_of(local, reps),
        "decimal_levels_s": levels / best_of(decimal_book, reps),
        "engine_levels_s": levels / best_of(lambda: engine(0.1), reps),
        "engine_every_change_levels_s": levels / best_of(lambda: engine(0.0), reps),
    }


def bench_memory_inprocess(markets: int) -> dict[str, float]:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    books = []
    for i in range(markets):
        g = SyntheticMarket(f"M{i:03d}-USD-PERP", seed=i, levels=1000)
        b = LocalBook(g.market)
        b.apply(decode_as(g.snapshot().payload, OrderBookDeltas))
        books.append(b)
        del g
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert all(len(b.bids) == 1000 and len(b.asks) == 1000 for b in books)
    return {"markets": markets, "bytes_per_market": used / markets, "mb_total": used / 2**20}


# -- through NATS -----------------------------------------------------------------------------------


class Builder:
    """The builder as a real process."""

    def __init__(self, url: str, log_path: Path, **env: str) -> None:
        self.url, self.log_path = url, log_path
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "NATS_URL": url,
            "INSTANCE_ID": "bench",
            "LOG_LEVEL": "WARNING",
            "HEALTH_INTERVAL": "0.5",
            "BOOK_BUILDER_MAX_REPLAY": "2000000",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Builder:
        out = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.book_builder"], env=self.env, cwd=ROOT, stdout=out, stderr=out
        )
        out.close()
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def term(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def rss_mb(self) -> float:
        assert self.proc is not None
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20


async def caught_up(nc: Any, markets: list[str], md_seq: int, timeout: float) -> float:
    """Seconds until every market's snapshot reply is live and at or past ``md_seq``."""
    t0 = time.monotonic()
    pending = list(markets)
    while pending:
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"builder not caught up to MD {md_seq} for {pending[:3]}")
        try:
            snap = await fetch_snapshot(nc, pending[0], timeout=1.0, attempts=1, depth=1)
        except BookUnavailable:
            await asyncio.sleep(0.01)
            continue
        if snap.live and snap.md_stream_seq >= md_seq:
            pending.pop(0)
        else:
            await asyncio.sleep(0.01)
    return time.monotonic() - t0


async def latest_health(nc: Any, timeout: float = 5.0) -> ServiceHealth:
    """The next ServiceHealth of the bench builder (published every 0.5 s)."""
    fut: asyncio.Future[ServiceHealth] = asyncio.get_running_loop().create_future()

    async def cb(msg: Any) -> None:
        if not fut.done():
            fut.set_result(decode_as(msg.data, ServiceHealth))

    sub = await nc.subscribe("svc.book-builder.bench.health", cb=cb)
    try:
        return await asyncio.wait_for(fut, timeout)
    finally:
        await sub.unsubscribe()


async def publish(js: Any, msgs: list[FlowMessage], window: int = 2000) -> int:
    last = 0
    for i in range(0, len(msgs), window):
        futs = [await js.publish_async(m.subject, m.payload, headers=m.nats_headers()) for m in msgs[i : i + window]]
        for a in await asyncio.gather(*futs):
            last = max(last, a.seq)
    return last


async def publish_generated(js: Any, flow: SyntheticFlow, n: int, batch: int = 2000) -> int:
    last = 0
    for start in range(0, n, batch):
        last = await publish(js, [flow.step() for _ in range(min(batch, n - start))], window=batch)
    return last


async def check_books(nc: Any, flows: list[SyntheticFlow]) -> int:
    mismatches = 0
    for flow in flows:
        for name, gen in flow.markets.items():
            snap = await fetch_snapshot(nc, name)
            got = ([(lv.price, lv.size) for lv in snap.bids], [(lv.price, lv.size) for lv in snap.asks])
            if snap.state != "VALID" or got != gen.expected():
                mismatches += 1
                log.error("book %s differs from the generator (state %s)", name, snap.state)
    return mismatches


async def bench_nats(quick: bool, tmp: Path) -> dict[str, Any]:
    srv = EmbeddedNats(store_dir=tmp / "nats", log_file=tmp / "nats.log").start()
    nc = await connect("book-bench", NatsSettings(servers=(srv.url,)))
    js = jetstream(nc)
    await ensure_streams(js, replicas=1)
    res: dict[str, Any] = {}
    builder = Builder(srv.url, tmp / "builder-1.log").start()
    try:
        await asyncio.sleep(1.5)
        res["builder_idle_rss_mb"] = builder.rss_mb()

        # memory: 100 markets x 1,000 levels a side held by the builder process
        big = SyntheticFlow([f"B{i:03d}-USD-PERP" for i in range(100)], seed=5, levels=1000)
        last = await publish(js, big.snapshots(), window=20)
        await caught_up(nc, list(big.markets), last, 120)
        await asyncio.sleep(2.5)  # a checkpoint round of the big books included
        res["builder_rss_100x1000_mb"] = builder.rss_mb()

        # end-to-end throughput: 10 markets, publish as fast as JetStream stores
        flow = SyntheticFlow([f"T{i:02d}-USD-PERP" for i in range(10)], seed=6, levels=100)
        await publish(js, flow.snapshots())
        n = 50_000 if quick else 200_000
        msgs = [flow.step() for _ in range(n)]
        levels = sum(len(m.event.deltas) for m in msgs)
        first = (await js.stream_info("MD")).state.last_seq + 1
        t0 = time.monotonic()
        last = await publish(js, msgs)
        pub_s = time.monotonic() - t0
        await caught_up(nc, list(flow.markets), last, 300)
        e2e_s = time.monotonic() - t0
        res.update(e2e_messages=n, e2e_levels=levels, e2e_publish_msgs_s=n / pub_s)
        res["e2e_msgs_s"] = n / e2e_s
        res["e2e_levels_s"] = levels / e2e_s
        # the same messages read by a bare ordered consumer (no decode, no book)
        t0 = time.monotonic()
        count = 0
        async for _m in replay(js, "md.paradex.deltas.>", stream="MD", start_seq=first):
            count += 1
        res["raw_ordered_consumer_msgs_s"] = count / (time.monotonic() - t0)

        # replay catch-up without a publisher competing for the CPU: stop the builder (final
        # checkpoint), store n more messages, start it and read its own replay timing
        builder.term()
        last = await publish(js, [flow.step() for _ in range(n)])
        builder = Builder(srv.url, tmp / "builder-catchup.log").start()
        await caught_up(nc, list(flow.markets), last, 300)
        health = await latest_health(nc)
        res["replay_messages"] = int(health.details["replayed_messages"])
        res["replay_s"] = float(health.details["replay_s"])
        res["replay_msgs_s"] = res["replay_messages"] / res["replay_s"]

        # latency publish -> QuoteTick at a steady rate
        sent: dict[tuple[str, int], float] = {}
        lat_ms: list[float] = []

        async def on_quote(msg: Any) -> None:
            key = (msg.subject.rsplit(".", 1)[-1], int(msg.headers[SEQ_HEADER]))
            t = sent.get(key)
            if t is not None:
                lat_ms.append((time.perf_counter() - t) * 1000)

        sub = await nc.subscribe("book.paradex.quotes.>", cb=on_quote)
        rate, secs = 2000, (3 if quick else 10)
        t_end = time.monotonic() + secs
        while time.monotonic() < t_end:
            tick = time.monotonic()
            batch = [flow.step() for _ in range(rate // 100)]
            for m in batch:
                sent[(m.market, m.sequence)] = time.perf_counter()
                await js.publish_async(m.subject, m.payload, headers=m.nats_headers())
            await asyncio.sleep(max(0.0, 0.01 - (time.monotonic() - tick)))
        await asyncio.sleep(1.0)
        await sub.unsubscribe()
        lat_ms.sort()
        res["latency_samples"] = len(lat_ms)
        res["latency_p50_ms"] = statistics.median(lat_ms) if lat_ms else float("nan")
        res["latency_p99_ms"] = lat_ms[int(len(lat_ms) * 0.99)] if lat_ms else float("nan")
        res["latency_ms"] = lat_ms[:: max(1, len(lat_ms) // 2000)]

        # recovery: fill MD to the target, flow, kill -9, restart
        target = 100_000 if quick else 1_000_000
        rec = SyntheticFlow([f"R{i:02d}-USD-PERP" for i in range(20)], seed=7, levels=50)
        await publish(js, rec.snapshots())
        have = (await js.stream_info("MD")).state.last_seq
        t0 = time.monotonic()
        last = await publish_generated(js, rec, max(0, target - have))
        res["prefill_s"] = time.monotonic() - t0
        await caught_up(nc, list(rec.markets), last, 600)
        res["stream_messages"] = (await js.stream_info("MD")).state.messages

        stop = asyncio.Event()

        async def flowing() -> None:
            while not stop.is_set():
                await publish(js, [rec.step() for _ in range(20)])
                await asyncio.sleep(0.01)

        pub = asyncio.create_task(flowing())
        await asyncio.sleep(2.5)
        builder.kill()
        await asyncio.sleep(0.5)
        restart_seq = (await js.stream_info("MD")).state.last_seq
        t0 = time.monotonic()
        builder = Builder(srv.url, tmp / "builder-2.log").start()
        await caught_up(nc, [*rec.markets, *flow.markets, *big.markets], restart_seq, 60)
        res["recovery_s"] = time.monotonic() - t0
        stop.set()
        await pub
        last = (await js.stream_info("MD")).state.last_seq
        await caught_up(nc, [*rec.markets, *flow.markets, *big.markets], last, 60)
        res["recovery_book_mismatches"] = await check_books(nc, [rec, flow, big])
        res["stream_messages_at_restart"] = restart_seq
        health = await latest_health(nc)
        res["recovery_process"] = {
            k: health.details.get(k, "")
            for k in ("recovery_s", "setup_s", "load_checkpoints_s", "load_floors_s", "replay_s", "replayed_messages")
        }
    finally:
        builder.term()
        await nc.close()
        srv.stop()
    return res


async def run(quick: bool) -> dict[str, Any]:
    inproc = bench_inprocess(quick)
    mem = bench_memory_inprocess(100 if not quick else 20)
    with tempfile.TemporaryDirectory() as d:
        net = await bench_nats(quick, Path(d))
    table = [
        row(
            "LocalBook.apply (dict + sorted int keys)",
            "levels/s",
            inproc["local_levels_s"],
            "SortedDict[Decimal]",
            inproc["decimal_levels_s"],
            ">= 50,000 levels/s on one core",
        ),
        row(
            "builder path in-process (decode+check+book+outputs)",
            "levels/s",
            inproc["engine_levels_s"],
            "goal",
            50_000,
            ">= 50,000 levels/s on one core",
        ),
        row(
            "  same, depth10 on every change",
            "levels/s",
            inproc["engine_every_change_levels_s"],
            "goal",
            50_000,
            ">= 50,000 levels/s",
        ),
        row(
            "memory per market, 1,000 levels a side",
            "KB",
            mem["bytes_per_market"] / 1024,
            "goal share of 300 MB / 100",
            3000,
            "100 x 1,000 levels < 300 MB",
        ),
        row(
            "builder RSS, 100 markets x 1,000 levels a side",
            "MB",
            net["builder_rss_100x1000_mb"],
            "goal",
            300,
            "< 300 MB",
        ),
        row(
            "end-to-end live: publish -> builder caught up",
            "msgs/s",
            net["e2e_msgs_s"],
            "publisher alone",
            net["e2e_publish_msgs_s"],
            "keeps up with the publisher (ratio ~1)",
        ),
        row("end-to-end live: publish -> builder caught up", "levels/s", net["e2e_levels_s"], "goal", 50_000, ""),
        row(
            "builder replay/catch-up from MD (process-side)",
            "msgs/s",
            net["replay_msgs_s"],
            "bare ordered consumer",
            net["raw_ordered_consumer_msgs_s"],
            "",
        ),
        row("publish -> QuoteTick p50 at 2,000 msgs/s", "ms", net["latency_p50_ms"], "", 0, ""),
        row("publish -> QuoteTick p99 at 2,000 msgs/s", "ms", net["latency_p99_ms"], "", 0, ""),
        row(
            f"recovery after kill -9, {net['stream_messages_at_restart']:,} msgs in MD",
            "s",
            net["recovery_s"],
            "goal",
            2.0,
            "< 2 s, books equal",
        ),
    ]
    return {
        "bench": "book",
        "quick": quick,
        "inprocess": inproc,
        "memory": mem,
        "nats": {k: v for k, v in net.items() if k != "latency_ms"},
        "table": table,
        "samples": {"publish_to_quote_ms": net["latency_ms"]},
        "recovery_book_mismatches": net["recovery_book_mismatches"],
    }


def print_table(res: dict[str, Any]) -> None:
    print(f"book builder benchmark{' (quick)' if res['quick'] else ''}")
    print(f"{'measurement':58} {'value':>14} {'unit':9} {'baseline':>14}  {'ratio':>6}  goal")
    for r in res["table"]:
        base = f"{r['baseline']:,.1f}" if r["baseline"] else ""
        ratio = f"{r['ratio']:.2f}" if r["baseline"] else ""
        print(
            f"{r['measurement']:58} {r['value']:14,.2f} {r['unit']:9} {base:>14}  {ratio:>6}  {r['goal']}"
            + (f"  [{r['baseline_name']}]" if r["baseline_name"] and r["baseline_name"] != "goal" else "")
        )
    print(f"books after recovery differing from the generator: {res['recovery_book_mismatches']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller runs (100,000 messages for recovery)")
    p.add_argument("--json", dest="json_path", default=None, help="where to write the JSON results")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    res = uvloop.run(run(a.quick))
    print_table(res)
    path = (
        Path(a.json_path)
        if a.json_path
        else (ROOT / "bench" / "results" / f"book_bench-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.json")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2, default=str))
    print(f"wrote {path}")
    if res["recovery_book_mismatches"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
