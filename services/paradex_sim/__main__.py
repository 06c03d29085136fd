"""``python -m services.paradex_sim``: run the simulator until SIGTERM/SIGINT.

The first line on stdout is one JSON object with the bound ports and URLs (``{"rest_port": ...,
"ws_port": ..., "admin_port": ..., "rest_url": ..., "ws_url": ..., "admin_url": ...}``) so a parent
process that passed port 0 can read them; logs go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys

from services.paradex_sim.config import from_args
from services.paradex_sim.simulator import Simulator
from services.runtime.logs import setup_logging


async def _main(argv: list[str] | None = None) -> int:
    cfg, ns = from_args(argv)
    setup_logging("paradex-sim", f"{socket.gethostname().split('.')[0]}-{os.getpid()}", ns.log_level, ns.log_format)
    sim = Simulator(cfg)
    await sim.start()
    sys.stdout.write(json.dumps(sim.ports()) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)  # POSIX only, like the rest of the stack
    await stop.wait()
    await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        import uvloop

        return uvloop.run(_main(argv))
    except ImportError:
        return asyncio.run(_main(argv))


if __name__ == "__main__":
    sys.exit(main())
