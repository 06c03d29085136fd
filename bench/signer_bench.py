"""Signer throughput: order signatures/s in-process and over NATS request/reply, next to starknet-py.

``python bench/signer_bench.py [--quick] [--json PATH]`` measures, in one run on one machine:

* in-process (one core, this process): ``signing.order_hash`` + ``signing.sign`` over distinct
  orders (random markets, sides, types, sizes/prices on the market grids, distinct timestamps), and
  each half alone;
* starknet-py 0.30 baselines on the same orders: ``TypedData.from_dict(...).message_hash(account)``
  and ``message_signature(hash, key)``;
* over the bus: a real ``python -m services.signer`` process (policy limits off) against a real
  nats-server and the in-process simulator, driven by ``SignerClient`` with many concurrent
  requesters; signatures/s, latency samples, and every reply checked (no refusals expected);
* restart: SIGKILL the signer, start it again, time until it signs again (several rounds).

Goals: >= 2,000 order signatures/s in-process on one core; >= 1,000/s over NATS request/reply;
serving again < 2 s after a restart. Results are printed as a table and written as JSON with a
``table`` section for ``bench/harness.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import uvloop

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bus import NatsSettings, connect  # noqa: E402
from bus.embedded import EmbeddedNats  # noqa: E402
from services.paradex import signing  # noqa: E402
from services.signer.client import SignerClient, SignerRefused, SignerUnavailable, whoami  # noqa: E402

KEY = 0x543B6CF6C91817A87174AAEA4FB370AC1C694E864D7740D728F8344D53E815  # paradex-py SDK test key
ACCOUNT = 0x129C135ED63DF9353885E292BE4426B8ED6122B13C6C0E1BB787288A1F5ADFA
CHAIN = "PRIVATE_SN_POTC_SEPOLIA"
MARKETS = {  # the simulator's grids: (price tick, size step, reference price)
    "BTC-USD-PERP": (Decimal("0.1"), Decimal("0.00001"), Decimal("65000")),
    "ETH-USD-PERP": (Decimal("0.01"), Decimal("0.0001"), Decimal("3500")),
    "SOL-USD-PERP": (Decimal("0.001"), Decimal("0.01"), Decimal("150")),
}


def random_orders(n: int, seed: int = 1, now_ms: int | None = None) -> list[signing.OrderFields]:
    rnd = random.Random(seed)
    base = now_ms if now_ms is not None else int(time.time() * 1000)
    out = []
    for i in range(n):
        market = rnd.choice(sorted(MARKETS))
        tick, step, ref = MARKETS[market]
        order_type = rnd.choice(["LIMIT", "LIMIT", "LIMIT", "MARKET"])
        size = step * rnd.randint(1, 10_000)
        price = None if order_type == "MARKET" else (ref * Decimal(rnd.uniform(0.9, 1.1))).quantize(tick)
        out.append(
            signing.OrderFields(
                market,
                rnd.choice(["BUY", "SELL"]),
                order_type,
                f"{size.normalize():f}",
                None if price is None else f"{price.normalize():f}",
                base + i,  # distinct timestamps: no cache can help
            )
        )
    return out


# --- in-process ----------------------------------------------------------------------------------


def bench_in_process(n: int, reps: int) -> dict[str, float]:
    """Median over ``reps`` of wall-clock rates, plus the rate per CPU-second of this process
    (``time.process_time``), which other load on a shared machine does not distort."""
    orders = random_orders(n)
    signing.sign(1, KEY)  # build the signing tables outside the timed region
    runs: dict[str, list[float]] = {
        "hash_per_s": [],
        "sign_per_s": [],
        "hash_and_sign_per_s": [],
        "hash_and_sign_per_cpu_s": [],
    }
    for _ in range(reps):
        t0 = time.perf_counter()
        hashes = [signing.order_hash(CHAIN, ACCOUNT, o) for o in orders]
        t1 = time.perf_counter()
        for h in hashes:
            signing.sign(h, KEY)
        t2 = time.perf_counter()
        c2 = time.process_time()
        for o in orders:
            signing.sign(signing.order_hash(CHAIN, ACCOUNT, o), KEY)
        t3 = time.perf_counter()
        c3 = time.process_time()
        runs["hash_per_s"].append(n / (t1 - t0))
        runs["sign_per_s"].append(n / (t2 - t1))
        runs["hash_and_sign_per_s"].append(n / (t3 - t2))
        runs["hash_and_sign_per_cpu_s"].append(n / (c3 - c2))
    out = {k: statistics.median(v) for k, v in runs.items()}
    out["best_hash_and_sign_per_s"] = max(runs["hash_and_sign_per_s"])
    return out


def _typed_data(o: signing.OrderFields) -> dict[str, Any]:
    return {
        "domain": {"name": "Paradex", "chainId": hex(signing.chain_id_felt(CHAIN)), "version": "1"},
        "primaryType": "Order",
        "types": {
            "StarkNetDomain": [
                {"name": "name", "type": "felt"},
                {"name": "chainId", "type": "felt"},
                {"name": "version", "type": "felt"},
            ],
            "Order": [{"name": f, "type": "felt"} for f in signing.ORDER_FIELDS],
        },
        "message": {
            "timestamp": str(o.timestamp_ms),
            "market": o.market,
            "side": "1" if o.side == "BUY" else "2",
            "orderType": o.order_type,
            "size": str(signing.quantize(o.size)),
            "price": "0" if o.order_type == "MARKET" or not o.price else str(signing.quantize(o.price)),
        },
    }


def bench_starknet_py(n_hash: int, n_sign: int) -> dict[str, float]:
    from starknet_py.hash.utils import message_signature
    from starknet_py.utils.typed_data import TypedData

    orders = random_orders(max(n_hash, n_sign), seed=2)
    t0 = time.perf_counter()
    hashes = [TypedData.from_dict(_typed_data(o)).message_hash(ACCOUNT) for o in orders[:n_hash]]
    t1 = time.perf_counter()
    ours = [signing.order_hash(CHAIN, ACCOUNT, o) for o in orders[:n_hash]]
    if hashes != ours:
        raise SystemExit("starknet-py and signing.order_hash disagree; the comparison is void")
    t2 = time.perf_counter()
    sigs = [message_signature(h, KEY) for h in hashes[:n_sign]]
    t3 = time.perf_counter()
    if [tuple(s) for s in sigs] != [signing.sign(h, KEY) for h in hashes[:n_sign]]:
        raise SystemExit("starknet-py and signing.sign disagree; the comparison is void")
    hash_rate = n_hash / (t1 - t0)
    sign_rate = n_sign / (t3 - t2)
    return {
        "hash_per_s": hash_rate,
        "sign_per_s": sign_rate,
        "hash_and_sign_per_s": 1.0 / (1.0 / hash_rate + 1.0 / sign_rate),
    }


# --- over NATS -----------------------------------------------------------------------------------


class Stack:
    """nats-server + in-process simulator + a signer process."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.nats = EmbeddedNats(store_dir=tmp / "nats").start()
        self.sim: Any = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs = 0

    async def start_sim(self) -> None:
        from services.paradex_sim import Simulator

        self.sim = Simulator(rest_port=0, ws_port=0, admin_port=0, flow_enabled=False, rate_limits_enabled=False)
        await self.sim.start()

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "NATS_URL": self.nats.url,
            "PARADEX_ENV": "sim",
            "PARADEX_REST_URL": self.sim.rest_url,
            "PARADEX_L2_PRIVATE_KEY": hex(KEY),
            "SIGNER_KEY_DIR": str(self.tmp / "keys"),
            "SIGNER_MAX_ORDERS_PER_S": "0",
            "SIGNER_MAX_ORDER_NOTIONAL": "0",
            "LOG_LEVEL": "WARNING",
            "METRICS_PORT": "0",
        }

    def spawn_signer(self) -> None:
        self.logs += 1
        log = open(self.tmp / f"signer-{self.logs}.log", "wb")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.signer"], env=self.env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def kill_signer(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.sim is not None:
            await self.sim.stop()
        self.nats.kill()


async def wait_serving(nc: Any, account: str, deadline_s: float = 30.0) -> float:
    """Seconds until the signer returns a valid order signature."""
    client = SignerClient(nc, account, timeout=0.5, requester="bench")
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < deadline_s:
            try:
                await client.sign_order("BTC-USD-PERP", "BUY", "LIMIT", "0.001", "65000", int(time.time() * 1000))
                return time.monotonic() - t0
            except (SignerUnavailable, SignerRefused):
                await asyncio.sleep(0.02)
        raise TimeoutError("signer did not serve")
    finally:
        await client.close()


async def bench_over_nats(stack: Stack, nc: Any, seconds: float, concurrency: int) -> dict[str, Any]:
    account = hex(ACCOUNT)
    client = SignerClient(nc, account, timeout=5.0, requester="bench")
    templates = random_orders(512, seed=3)
    ok = refused = unavailable = 0
    latencies: list[float] = []
    stop_at = 0.0

    async def worker(w: int) -> None:
        nonlocal ok, refused, unavailable
        i = w
        while time.monotonic() < stop_at:
            o = templates[i % len(templates)]
            i += concurrency
            t = time.perf_counter()
            try:
                rep = await client.sign_order(
                    o.market, o.side, o.order_type, o.size, o.price, int(time.time() * 1000), client_ref=f"b{w}-{i}"
                )
            except SignerRefused:
                refused += 1
                continue
            except SignerUnavailable:
                unavailable += 1
                continue
            latencies.append((time.perf_counter() - t) * 1000)
            if not rep.signature.startswith('["'):
                raise SystemExit(f"unexpected reply {rep!r}")
            ok += 1

    # warm-up (connections, caches, the signer's first requests)
    stop_at = time.monotonic() + 1.0
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    ok = refused = unavailable = 0
    latencies.clear()
    assert stack.proc is not None
    signer_proc = psutil.Process(stack.proc.pid)
    cpu0 = sum(signer_proc.cpu_times()[:2])
    t0 = time.monotonic()
    stop_at = t0 + seconds
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.monotonic() - t0
    signer_cpu = sum(signer_proc.cpu_times()[:2]) - cpu0
    await client.close()
    latencies.sort()
    return {
        "signatures_per_s": ok / elapsed,
        # Capacity of one signer core: signatures per CPU-second the signer process used.
        "signatures_per_signer_cpu_s": ok / signer_cpu if signer_cpu > 0 else None,
        "signer_cpu_share": signer_cpu / elapsed,
        "ok": ok,
        "refused": refused,
        "unavailable": unavailable,
        "concurrency": concurrency,
        "seconds": elapsed,
        "latency_ms_p50": latencies[len(latencies) // 2] if latencies else None,
        "latency_ms_p99": latencies[int(len(latencies) * 0.99)] if latencies else None,
        "samples": latencies[:: max(1, len(latencies) // 5000)],
    }


async def bench_restart(stack: Stack, nc: Any, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        stack.kill_signer()
        stack.spawn_signer()
        out.append(await wait_serving(nc, hex(ACCOUNT)))
    return out


async def run(quick: bool) -> dict[str, Any]:
    n_inproc = 1000 if quick else 3000
    res: dict[str, Any] = {"bench": "signer", "quick": quick}
    res["load_avg_at_start"] = os.getloadavg()
    res["in_process"] = bench_in_process(n_inproc, 3 if quick else 5)
    res["starknet_py"] = bench_starknet_py(n_hash=100 if quick else 300, n_sign=4 if quick else 12)
    with tempfile.TemporaryDirectory() as d:
        stack = Stack(Path(d))
        nc = None
        try:
            await stack.start_sim()
            stack.spawn_signer()
            nc = await connect("signer-bench", NatsSettings(servers=(stack.nats.url,)))
            me = await _whoami(nc)
            if int(me.account, 16) != ACCOUNT:
                raise SystemExit(f"signer serves {me.account}, expected {hex(ACCOUNT)}")
            res["first_start_s"] = await wait_serving(nc, me.account)
            nats_runs = {}
            for c in (16, 64) if quick else (16, 64, 256):
                nats_runs[c] = await bench_over_nats(stack, nc, 3.0 if quick else 8.0, c)
            res["over_nats"] = nats_runs
            res["restart_s"] = await bench_restart(stack, nc, 2 if quick else 5)
        finally:
            if nc is not None:
                await nc.close()
            await stack.stop()
    best = max(res["over_nats"].values(), key=lambda r: r["signatures_per_s"])
    ip, sp = res["in_process"], res["starknet_py"]
    restart_med = statistics.median(res["restart_s"])
    res["machine"] = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    res["table"] = [
        {
            "measurement": "order hash+sign in-process (1 core)",
            "unit": "sig/s",
            "value": ip["hash_and_sign_per_s"],
            "baseline_name": "starknet-py TypedData+message_signature",
            "baseline": sp["hash_and_sign_per_s"],
            "ratio": ip["hash_and_sign_per_s"] / sp["hash_and_sign_per_s"],
            "goal": ">= 2,000 sig/s",
        },
        {
            "measurement": "order hash in-process",
            "unit": "hash/s",
            "value": ip["hash_per_s"],
            "baseline_name": "starknet-py TypedData.message_hash",
            "baseline": sp["hash_per_s"],
            "ratio": ip["hash_per_s"] / sp["hash_per_s"],
            "goal": "",
        },
        {
            "measurement": "ECDSA sign in-process",
            "unit": "sig/s",
            "value": ip["sign_per_s"],
            "baseline_name": "starknet-py message_signature",
            "baseline": sp["sign_per_s"],
            "ratio": ip["sign_per_s"] / sp["sign_per_s"],
            "goal": "",
        },
        {
            "measurement": f"order signatures over NATS (c={best['concurrency']})",
            "unit": "sig/s",
            "value": best["signatures_per_s"],
            "baseline_name": "in-process hash+sign",
            "baseline": ip["hash_and_sign_per_s"],
            "ratio": best["signatures_per_s"] / ip["hash_and_sign_per_s"],
            "goal": ">= 1,000 sig/s",
        },
        {
            "measurement": "signer restart to first signature (median)",
            "unit": "s",
            "value": restart_med,
            "baseline_name": "",
            "baseline": None,
            "ratio": None,
            "goal": "< 2 s",
        },
    ]
    res["samples"] = {f"over NATS c={c}": r.pop("samples") for c, r in res["over_nats"].items()}
    res["over_nats"] = {str(c): r for c, r in res["over_nats"].items()}
    return res


async def _whoami(nc: Any) -> Any:
    t0 = time.monotonic()
    while True:
        try:
            return await whoami(nc, timeout=0.5)
        except SignerUnavailable:
            if time.monotonic() - t0 > 30:
                raise
            await asyncio.sleep(0.05)


def table(res: dict[str, Any]) -> str:
    ip, sp = res["in_process"], res["starknet_py"]
    lines = [
        "signer benchmark (same machine, same run)",
        f"{'measurement':44} {'ours':>12} {'starknet-py':>12} {'ratio':>8}",
        f"{'order hash /s':44} {ip['hash_per_s']:12,.0f} {sp['hash_per_s']:12,.1f} "
        f"{ip['hash_per_s'] / sp['hash_per_s']:8.0f}x",
        f"{'ECDSA sign /s':44} {ip['sign_per_s']:12,.0f} {sp['sign_per_s']:12,.1f} "
        f"{ip['sign_per_s'] / sp['sign_per_s']:8.0f}x",
        f"{'order hash+sign /s (in-process, 1 core)':44} {ip['hash_and_sign_per_s']:12,.0f} "
        f"{sp['hash_and_sign_per_s']:12,.1f} {ip['hash_and_sign_per_s'] / sp['hash_and_sign_per_s']:8.0f}x",
        f"{'  same, best run /s':44} {ip['best_hash_and_sign_per_s']:12,.0f}",
        f"{'  same, per CPU-second of this process':44} {ip['hash_and_sign_per_cpu_s']:12,.0f}",
    ]
    for c, r in res["over_nats"].items():
        lines.append(
            f"{'over NATS req/reply, ' + c + ' concurrent /s':44} {r['signatures_per_s']:12,.0f} {'':>12} {'':>8}"
            f"  p50 {r['latency_ms_p50']:.1f} ms  p99 {r['latency_ms_p99']:.1f} ms"
            f"  refused {r['refused']} unavailable {r['unavailable']}"
        )
        lines.append(
            f"{'  per signer CPU-second':44} {r['signatures_per_signer_cpu_s'] or 0:12,.0f}"
            f"  (signer used {r['signer_cpu_share']:.0%} of a core)"
        )
    lines.append(f"{'first start to first signature (s)':44} {res['first_start_s']:12.2f}")
    lines.append(f"load average at start: {', '.join(f'{x:.2f}' for x in res['load_avg_at_start'])}")
    lines.append(f"{'restart (SIGKILL) to first signature (s)':44} " + ", ".join(f"{x:.2f}" for x in res["restart_s"]))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short run (~30 s)")
    p.add_argument("--json", dest="json_path", default=None, help="write the results here")
    a = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    res = uvloop.run(run(a.quick))
    print(table(res))
    if a.json_path:
        Path(a.json_path).write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
