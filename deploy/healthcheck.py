"""Container health check: is this container's service reporting a fresh, serving ``ServiceHealth``?

``python deploy/healthcheck.py <service> [--ok Running,Degraded] [--max-age 15]``

Reads KV ``health`` key ``<service>.<INSTANCE_ID>`` (the entrypoint sets ``INSTANCE_ID`` to the
container hostname) with the container's own NATS credentials (``NATS_URL``, ``NATS_USER``,
``NATS_PASSWORD`` -- service users may read the ``health`` bucket). Exit 0 when the last report is
younger than ``--max-age`` seconds and its state is one of ``--ok``; else exit 1 with one line
saying why (docker shows it in ``docker inspect``). Default ``--ok`` per service: the states in
which it does its job, ``Degraded`` included (a partial outage is visible in ``pdx status``; an
unhealthy container is one that is stuck starting, stopped, or not reporting at all).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "bus").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bus import Bucket, NatsSettings, connect  # noqa: E402
from schemas import DecodeError, ServiceHealth, decode_as  # noqa: E402

DEFAULT_OK: dict[str, tuple[str, ...]] = {
    "signer": ("Serving",),
    "feed-handler": ("Connected", "Degraded"),
    "book-builder": ("Running", "Degraded"),
    "order-router": ("Running", "Standby", "Degraded"),
    "reconciler": ("Connected", "Degraded", "Reconciling"),
}


async def check(service: str, instance: str, ok: tuple[str, ...], max_age: float, timeout: float) -> tuple[bool, str]:
    prefix = service.upper().replace("-", "_")
    settings = NatsSettings.from_env(user_prefix=prefix)
    try:
        nc = await asyncio.wait_for(connect(f"healthcheck-{service}", settings, max_reconnect_attempts=1), timeout)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is "unhealthy", said in one line
        return False, f"cannot connect to NATS {','.join(settings.servers)}: {exc!r}"
    try:
        bucket = await Bucket.open(nc.jetstream(timeout=timeout), "health")
        got = await bucket.get(f"{service}.{instance}")
    except Exception as exc:  # noqa: BLE001
        return False, f"cannot read KV health: {exc!r}"
    finally:
        await nc.close()
    if got is None:
        return False, f"no health report under {service}.{instance} yet"
    try:
        h = decode_as(got[0], ServiceHealth)
    except DecodeError as exc:
        return False, f"undecodable health report: {exc}"
    age = time.time() - h.ts_event / 1e9
    if age > max_age:
        return False, f"last report {age:.1f} s old (state {h.state})"
    if h.state not in ok:
        return False, f"state {h.state} not in {','.join(ok)}"
    return True, f"{service}.{instance} {h.state} ({age:.1f} s ago)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("service", choices=sorted(DEFAULT_OK))
    p.add_argument("--ok", default="", help="comma-separated healthy states (default per service)")
    p.add_argument("--max-age", type=float, default=15.0, help="seconds a report stays fresh")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--instance", default=os.environ.get("INSTANCE_ID") or socket.gethostname())
    a = p.parse_args(argv)
    ok = tuple(s for s in a.ok.split(",") if s) or DEFAULT_OK[a.service]
    healthy, why = asyncio.run(check(a.service, a.instance, ok, a.max_age, a.timeout))
    print(("healthy: " if healthy else "unhealthy: ") + why)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
