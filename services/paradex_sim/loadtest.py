"""Load test of the simulator itself (so it is known not to be the bottleneck of the pipeline's
benchmarks): WebSocket notifications per second through one connection, and REST requests per
second (public GETs, signed order placement). Starts the simulator as a separate process, prints a
table and one JSON line with the numbers.

    python -m services.paradex_sim.loadtest [--duration 5] [--flow-rate 20000] [--markets 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from services.paradex_sim.admin_client import AdminClient
from services.paradex_sim.testclient import SimTrader

ROOT = Path(__file__).resolve().parents[2]


def start_sim(args: list[str]) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    cmd = [sys.executable, "-m", "services.paradex_sim", "--rest-port", "0", "--ws-port", "0", "--admin-port", "0",
           "--no-rate-limits", "--log-level", "WARNING", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError("simulator did not start")
    return proc, json.loads(line)


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


async def ws_rate(ws_url: str, admin_url: str, markets: list[str], duration: float, compress: bool,
                  sim: psutil.Process) -> dict[str, Any]:
    """One connection subscribed to every market's deltas and bbo plus trades.ALL; counts frames.
    Also reports the simulator's CPU seconds per message, which holds on a shared, loaded machine."""
    async with aiohttp.ClientSession() as session, AdminClient(admin_url) as admin:
        ws = await session.ws_connect(ws_url, compress=15 if compress else 0, max_msg_size=0)
        channels = [f"order_book.{m}.deltas" for m in markets] + [f"bbo.{m}" for m in markets] + ["trades.ALL"]
        for i, ch in enumerate(channels):
            await ws.send_str(json.dumps({"jsonrpc": "2.0", "method": "subscribe", "params": {"channel": ch}, "id": i}))
        count = 0
        nbytes = 0
        warm_until = time.monotonic() + 1.0
        start = 0.0
        stats0: dict[str, Any] = {}
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"connection ended: {msg.type} {msg.data!r}")
            now = time.monotonic()
            if not start:
                if now < warm_until:
                    continue
                start = now
                stats0 = await admin.stats()
                cpu0 = _cpu(sim)
                continue
            count += 1
            nbytes += len(msg.data)
            if now - start >= duration:
                break
        elapsed = time.monotonic() - start
        cpu = _cpu(sim) - cpu0
        stats1 = await admin.stats()
        await ws.close()
    events = stats1["flow"]["events"] - stats0["flow"]["events"]
    return {"compress": compress, "msgs_per_s": round(count / elapsed), "mb_per_s": round(nbytes / elapsed / 1e6, 2),
            "book_events_per_s": round(events / elapsed), "channels": len(channels),
            "sim_cpu_pct": round(100 * cpu / elapsed), "sim_us_cpu_per_msg": round(1e6 * cpu / max(count, 1), 1),
            "msgs_per_sim_cpu_s": round(count / cpu) if cpu else None}


async def rest_rate(rest_url: str, duration: float, concurrency: int, kind: str, sim: psutil.Process) -> dict[str, Any]:
    trader = await SimTrader(rest_url).login()
    done = 0
    errors = 0
    stop_at = time.monotonic() + duration
    price = [3000]

    async def worker() -> None:
        nonlocal done, errors
        while time.monotonic() < stop_at:
            if kind == "public":
                r = await trader.request("GET", "/bbo/BTC-USD-PERP", auth=False)
            elif kind == "private":
                r = await trader.request("GET", "/account")
            else:
                # IOC against an empty book: the full order path (parse, recv_window, signature, risk,
                # matching, CLOSED) without piling up open orders against max_open_orders.
                price[0] = price[0] + 1 if price[0] < 3400 else 3000
                r = await trader.place("ETH-USD-PERP", "BUY", "0.01", str(price[0]), instruction="IOC")
            if r.status < 300:
                done += 1
            else:
                errors += 1

    start = time.monotonic()
    cpu0 = _cpu(sim)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - start
    cpu = _cpu(sim) - cpu0
    if kind == "orders":
        await trader.cancel_all()
    await trader.close()
    return {"kind": kind, "concurrency": concurrency, "req_per_s": round(done / elapsed), "errors": errors,
            "sim_cpu_pct": round(100 * cpu / elapsed), "req_per_sim_cpu_s": round(done / cpu) if cpu else None}


async def run(ns: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    synthetic = max(0, ns.markets - 3)
    proc, ports = start_sim(["--flow-rate", str(ns.flow_rate), "--synthetic-markets", str(synthetic)])
    try:
        async with AdminClient(ports["admin_url"]) as admin:
            markets = list((await admin.stats())["book_seq"])
        results["ws"] = [await ws_rate(ports["ws_url"], ports["admin_url"], markets, ns.duration, c,
                                       psutil.Process(proc.pid)) for c in (False, True)]
    finally:
        proc.terminate()
        proc.wait(10)
    proc, ports = start_sim(["--no-flow"])
    try:
        results["rest"] = [await rest_rate(ports["rest_url"], ns.duration, ns.concurrency, k, psutil.Process(proc.pid))
                           for k in ("public", "private", "orders")]
    finally:
        proc.terminate()
        proc.wait(10)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--flow-rate", type=float, default=20000.0)
    p.add_argument("--markets", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=16)
    ns = p.parse_args()
    results = asyncio.run(run(ns))
    for row in results["ws"]:
        print(f"WS  compress={row['compress']!s:5}  {row['msgs_per_s']:>8} msgs/s  {row['mb_per_s']:>6} MB/s  "
              f"sim CPU {row['sim_cpu_pct']}%  {row['msgs_per_sim_cpu_s']} msgs per sim CPU-second  "
              f"({row['book_events_per_s']} book events/s, {row['channels']} channels, one connection)")
    for row in results["rest"]:
        print(f"REST {row['kind']:8} {row['req_per_s']:>6} req/s  sim CPU {row['sim_cpu_pct']}%  "
              f"{row['req_per_sim_cpu_s']} req per sim CPU-second  (concurrency {row['concurrency']}, "
              f"errors {row['errors']})")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
