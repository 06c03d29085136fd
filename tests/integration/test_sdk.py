"""The consumer SDK (``bus.sdk``) against a real nats-server."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from bus import Publisher, msgid, subjects
from bus.sdk import Bus, BusError, subscribe
from schemas import TradeTick

MKT = "BTC-USD-PERP"


def trade(i: int, mkt: str = MKT) -> TradeTick:
    return TradeTick(instrument_id=f"{mkt}.PARADEX", price=f"{100 + i}.0", size="1", aggressor_side="BUYER",
                     trade_id=f"t{i}", ts_event=i, ts_init=i)


async def publish(nc, js, items: list[TradeTick]) -> None:
    pub = await Publisher(nc, js).start()
    for t in items:
        mkt = t.instrument_id.rsplit(".", 1)[0]
        pub.publish_event_nowait(subjects.md("trades", mkt), t, msgid.trade(mkt, t.trade_id))
    assert await pub.flush(10)
    await pub.close()


async def take(it, n: int) -> list:
    out = []
    async for x in it:
        out.append(x)
        if len(out) >= n:
            break
    return out


async def test_start_options(nc, js, nats_url) -> None:
    await publish(nc, js, [trade(i) for i in range(5)] + [trade(9, "ETH-USD-PERP")])
    bus = Bus.wrap(nc)
    every = await take(bus.subscribe("md.paradex.trades.>", start="all"), 6)
    assert [t.trade_id for t in every] == ["t0", "t1", "t2", "t3", "t4", "t9"]
    last = await take(bus.subscribe("md.paradex.trades.>", start="last"), 2)
    assert {t.trade_id for t in last} == {"t4", "t9"}
    from_seq = await take(bus.subscribe(subjects.md("trades", MKT), start=4), 2)
    assert [t.trade_id for t in from_seq] == ["t3", "t4"]
    recent = await take(bus.subscribe(subjects.md("trades", MKT), start=dt.timedelta(minutes=5)), 1)
    assert recent[0].trade_id == "t0"
    it = bus.subscribe(subjects.md("trades", MKT), start="new")
    task = asyncio.create_task(take(it, 1))
    await asyncio.sleep(0.3)
    await publish(nc, js, [trade(42)])
    assert (await asyncio.wait_for(task, 5))[0].trade_id == "t42"
    async for m in subscribe(subjects.md("trades", MKT), url=nats_url, start="all", with_meta=True):
        assert m.stream_seq == 1 and m.event.trade_id == "t0"
        break


async def test_group_shares_work_and_acks_after_the_body(nc, js) -> None:
    await publish(nc, js, [trade(i) for i in range(40)])
    bus = Bus.wrap(nc)
    seen_a: list[str] = []
    seen_b: list[str] = []

    async def worker(out: list[str]) -> None:
        async for t in bus.subscribe("md.paradex.trades.>", start="all", group="recorders"):
            out.append(t.trade_id)
            await asyncio.sleep(0.005)

    tasks = [asyncio.create_task(worker(seen_a)), asyncio.create_task(worker(seen_b))]
    for _ in range(300):
        if len(seen_a) + len(seen_b) >= 40:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # let the last loop body finish so its message is acked
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert sorted(seen_a + seen_b, key=lambda x: int(x[1:])) == [f"t{i}" for i in range(40)]
    assert seen_a and seen_b
    await asyncio.sleep(0.3)
    info = await js.consumer_info("MD", "recorders")
    assert info.num_pending == 0


async def test_clear_errors(nc) -> None:
    bus = Bus.wrap(nc)
    with pytest.raises(BusError, match="no stream stores"):
        await take(bus.subscribe("nope.>"), 1)
    with pytest.raises(BusError, match="no message"):
        await take(bus.subscribe("md.paradex.trades.>", start="new", timeout=0.3), 1)
    with pytest.raises(BusError, match="cannot reach NATS"):
        await Bus.connect("nats://127.0.0.1:1", attempts=1)
