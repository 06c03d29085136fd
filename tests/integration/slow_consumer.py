"""A child process for crash tests: binds a durable consumer, prints each delivery, never acks.

Run as ``python -m tests.integration.slow_consumer NATS_URL STREAM DURABLE``.
"""

from __future__ import annotations

import asyncio
import sys

from bus import BusMessage, NatsSettings, PullConsumer, connect, jetstream


async def main(url: str, stream: str, durable: str) -> None:
    nc = await connect("slow-consumer", NatsSettings(servers=(url,)))
    js = jetstream(nc)

    async def handler(m: BusMessage) -> None:
        print(f"got {m.stream_seq} delivery={m.num_delivered}", flush=True)
        await asyncio.sleep(3600)  # the effect never completes, so the message is never acked

    await PullConsumer(nc, js, stream=stream, durable=durable, handler=handler, ack_wait=2.0).start()
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
