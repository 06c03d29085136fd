"""Bus primitives: our Publisher / PullConsumer against raw nats-py on the same server, same run.

``python bench/bus_bench.py [--quick] [--json PATH]`` starts a throwaway nats-server, then for each
pair measures msgs/s with identical payloads (a ~190-byte msgpack TradeTick) and a Msg-Id on every
publish:

* publish: raw ``js.publish_async`` + ``publish_async_completed`` vs ``Publisher.publish_nowait`` +
  ``flush`` (which adds retry bookkeeping, overflow accounting and ack tracking);
* consume: raw ``pull_subscribe`` + ``fetch`` + ``ack`` vs ``PullConsumer`` (hand-driven pull
  requests into a callback inbox, ack after the handler).

Each measurement is repeated and the median is reported; the ratio column is what to read on a
noisy shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from bus import NatsSettings, Publisher, PullConsumer, connect, jetstream
from bus.embedded import EmbeddedNats
from bus.streams import StreamSpec, ensure_streams
from schemas import TradeTick, encode

SUBJECT = "bench.trades.BTC-USD-PERP"
PAYLOAD = encode(
    TradeTick(
        instrument_id="BTC-USD-PERP.PARADEX",
        price="65000.1",
        size="0.001",
        aggressor_side="BUYER",
        trade_id="1718154353750201703989430001",
        ts_event=1_700_000_000_000_000_000,
        ts_init=1_700_000_000_000_000_000,
    )
)


async def _fresh_stream(js, name: str) -> None:
    try:
        await js.delete_stream(name)
    except Exception:  # noqa: BLE001 - absent on first run
        pass
    await ensure_streams(js, replicas=1, streams=(StreamSpec(name, ("bench.>",), duplicate_window=60.0),), buckets=())


async def raw_publish(nc, js, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        await js.publish_async(SUBJECT, PAYLOAD, headers={"Nats-Msg-Id": f"r{i}"})
    await js.publish_async_completed()
    return n / (time.perf_counter() - t0)


async def our_publish(nc, js, n: int) -> float:
    pub = await Publisher(nc, js, name="bench").start()
    t0 = time.perf_counter()
    for i in range(n):
        pub.publish_nowait(SUBJECT, PAYLOAD, f"o{i}")
        if i % 2000 == 1999:
            await asyncio.sleep(0)  # let the sender run, as a real producer's event loop would
    ok = await pub.flush(120)
    rate = n / (time.perf_counter() - t0)
    await pub.close()
    assert ok and pub.stats.stored == n, pub.stats
    return rate


async def raw_consume(nc, js, n: int, durable: str) -> float:
    psub = await js.pull_subscribe(SUBJECT, durable=durable, stream="BENCH")
    got = 0
    t0 = time.perf_counter()
    while got < n:
        msgs = await psub.fetch(500, timeout=5)
        for m in msgs:
            await m.ack()
        got += len(msgs)
    rate = n / (time.perf_counter() - t0)
    await psub.unsubscribe()
    return rate


async def our_consume(nc, js, n: int, durable: str) -> float:
    done = asyncio.Event()
    count = 0

    async def handler(m) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    t0 = time.perf_counter()
    c = await PullConsumer(
        nc, js, stream="BENCH", durable=durable, handler=handler, batch=500, decode_events=False
    ).start()
    await asyncio.wait_for(done.wait(), 120)
    rate = n / (time.perf_counter() - t0)
    await c.stop()
    return rate


async def run(quick: bool) -> dict[str, object]:
    n = 20_000 if quick else 100_000
    reps = 1 if quick else 3
    with tempfile.TemporaryDirectory() as d:
        srv = EmbeddedNats(store_dir=Path(d)).start()
        nc = await connect("bus-bench", NatsSettings(servers=(srv.url,)))
        js = jetstream(nc)
        results: dict[str, list[float]] = {"raw_publish": [], "our_publish": [], "raw_consume": [], "our_consume": []}
        for r in range(reps):
            await _fresh_stream(js, "BENCH")
            results["raw_publish"].append(await raw_publish(nc, js, n))
            await _fresh_stream(js, "BENCH")
            results["our_publish"].append(await our_publish(nc, js, n))
            results["raw_consume"].append(await raw_consume(nc, js, n, f"raw{r}"))
            results["our_consume"].append(await our_consume(nc, js, n, f"our{r}"))
        await nc.close()
        srv.stop()
    med = {k: statistics.median(v) for k, v in results.items()}
    return {
        "bench": "bus",
        "messages": n,
        "repetitions": reps,
        "payload_bytes": len(PAYLOAD),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
        },
        "msgs_per_s": med,
        "runs": results,
        "ratios": {
            "publish_ours_vs_raw": med["our_publish"] / med["raw_publish"],
            "consume_ours_vs_raw": med["our_consume"] / med["raw_consume"],
        },
        "table": [
            {"measurement": "bus publish (Msg-Id, async acks)", "unit": "msgs/s", "value": med["our_publish"],
             "baseline_name": "raw nats-py publish_async", "baseline": med["raw_publish"],
             "ratio": med["our_publish"] / med["raw_publish"], "goal": "helpers cost < 15% (ratio >= 0.85)"},
            {"measurement": "bus consume (durable pull + ack)", "unit": "msgs/s", "value": med["our_consume"],
             "baseline_name": "raw nats-py fetch + ack", "baseline": med["raw_consume"],
             "ratio": med["our_consume"] / med["raw_consume"], "goal": "helpers cost < 15% (ratio >= 0.85)"},
        ],
    }


def table(res: dict[str, object]) -> str:
    m = res["msgs_per_s"]  # type: ignore[index]
    r = res["ratios"]  # type: ignore[index]
    rows = [
        ("publish (Msg-Id, async acks)", m["raw_publish"], m["our_publish"], r["publish_ours_vs_raw"]),
        ("consume (durable pull + ack)", m["raw_consume"], m["our_consume"], r["consume_ours_vs_raw"]),
    ]
    out = [
        f"bus primitives, {res['messages']} msgs x {res['repetitions']} (median)",
        f"{'measurement':32} {'raw nats-py/s':>14} {'bus helpers/s':>14} {'ratio':>7}",
    ]
    out += [f"{name:32} {raw:14,.0f} {ours:14,.0f} {ratio:7.2f}" for name, raw, ours, ratio in rows]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", dest="json_path", default=None)
    a = p.parse_args()
    logging.getLogger("bus").setLevel(logging.ERROR)
    res = uvloop.run(run(a.quick))
    print(table(res))
    if a.json_path:
        Path(a.json_path).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
