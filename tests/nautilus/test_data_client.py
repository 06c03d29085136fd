"""``ParadexDataClient`` in-process against the scripted bus (``bus_venue.py``): the order book the
client hands to Nautilus equals the venue's book exactly -- also after a sequence gap and the
venue's resnapshot -- and history / snapshot / instrument requests answer from the streams."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

pytest.importorskip(
    "nautilus_trader", reason="the nautilus extra is not installed (pip install 'paradex-bus[nautilus]')"
)

from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.core.uuid import UUID4
from nautilus_trader.data.messages import (
    RequestInstruments,
    RequestOrderBookSnapshot,
    RequestTradeTicks,
    SubscribeOrderBook,
    SubscribeQuoteTicks,
)
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.data import OrderBookDelta, OrderBookDeltas, OrderBookDepth10, QuoteTick
from nautilus_trader.model.enums import BookAction, BookType
from nautilus_trader.model.identifiers import InstrumentId, TraderId, Venue
from nautilus_trader.model.instruments import CryptoPerpetual

from bus import replay, subjects
from services.nautilus.config import ParadexDataClientConfig
from services.nautilus.convert import from_nautilus
from services.nautilus.data import ParadexDataClient
from services.nautilus.providers import ParadexInstrumentProvider
from tests.nautilus.bus_venue import BusVenue

pytestmark = pytest.mark.nautilus

IID = InstrumentId.from_str("BTC-USD-PERP.PARADEX")
VENUE = Venue("PARADEX")


def levels(book: OrderBook) -> tuple[dict[str, str], dict[str, str]]:
    return (
        {str(lv.price): str(lv.orders()[0].size) for lv in book.bids()},
        {str(lv.price): str(lv.orders()[0].size) for lv in book.asks()},
    )


async def eventually(cond: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_books_history_and_requests(nc, js, nats_url) -> None:
    venue = await BusVenue(nc, js, "0xdata", tick_s=0.05).start()
    clock = LiveClock()
    msgbus = MessageBus(TraderId("TESTER-001"), clock)
    data: list[Any] = []
    responses: list[Any] = []
    msgbus.register("DataEngine.process", data.append)
    msgbus.register("DataEngine.response", responses.append)
    client = ParadexDataClient(
        loop=asyncio.get_running_loop(),
        msgbus=msgbus,
        cache=Cache(),
        clock=clock,
        instrument_provider=ParadexInstrumentProvider(ParadexDataClientConfig().instrument_provider),
        config=ParadexDataClientConfig(nats_url=nats_url, instrument_wait_secs=2.0),
    )

    def book_updates() -> list[OrderBookDeltas]:
        return [d for d in data if isinstance(d, OrderBookDeltas)]

    try:
        await asyncio.wait_for(client._connect(), 20)
        assert [type(d) for d in data] == [CryptoPerpetual]
        await client._subscribe_order_book_deltas(
            SubscribeOrderBook(IID, OrderBookDelta, BookType.L2_MBP, None, VENUE, UUID4(), clock.timestamp_ns())
        )
        await client._subscribe_quote_ticks(SubscribeQuoteTicks(IID, None, VENUE, UUID4(), clock.timestamp_ns()))
        await client._subscribe_order_book_depth(
            SubscribeOrderBook(IID, OrderBookDepth10, BookType.L2_MBP, None, VENUE, UUID4(), clock.timestamp_ns())
        )
        await eventually(lambda: len(book_updates()) > 10)

        # The first update is a full snapshot; every update ends a venue message (F_LAST).
        first = book_updates()[0]
        assert first.deltas[0].action == BookAction.CLEAR and first.deltas[-1].flags == 160
        assert all(d.deltas[-1].flags & 128 for d in book_updates())

        await venue.gap()  # a message whose predecessor never reached the bus
        await asyncio.sleep(0.3)
        assert client.counts["book_gap"] == 1
        forwarded = len(book_updates())
        await venue._publish_book()  # in sequence after the gap: still ignored until a snapshot
        await asyncio.sleep(0.3)
        assert len(book_updates()) == forwarded
        await venue.resnapshot()
        await eventually(lambda: len(book_updates()) > forwarded)
        await venue.pause_market()
        await asyncio.sleep(0.5)

        book = OrderBook(IID, BookType.L2_MBP)
        for update in book_updates():
            book.apply_deltas(update)
        assert levels(book) == venue.book, "the book Nautilus holds differs from the venue's"
        assert any(isinstance(d, QuoteTick) for d in data)
        assert any(isinstance(d, OrderBookDepth10) for d in data)

        # History from MD: the last 5 trades, exactly as stored.
        stored = [m.event async for m in replay(js, subjects.md("trades", "BTC-USD-PERP"), stream="MD")]
        req = RequestTradeTicks(IID, None, None, 5, None, VENUE, lambda r: None, UUID4(), clock.timestamp_ns(), None)
        await asyncio.wait_for(client._request_trade_ticks(req), 20)
        assert [from_nautilus(t) for t in responses[-1].data] == stored[-5:]
        assert responses[-1].correlation_id == req.id

        # A snapshot from the book builder's request/reply subject, cut to 3 levels a side.
        await client._request_order_book_snapshot(
            RequestOrderBookSnapshot(IID, 3, None, VENUE, lambda r: None, UUID4(), clock.timestamp_ns(), None)
        )
        snap = responses[-1].data
        snap_book = OrderBook(IID, BookType.L2_MBP)
        snap_book.apply_deltas(snap)
        bids, asks = venue.book
        best_bids = dict(sorted(bids.items(), key=lambda x: -Decimal(x[0]))[:3])
        best_asks = dict(sorted(asks.items(), key=lambda x: Decimal(x[0]))[:3])
        assert levels(snap_book) == (best_bids, best_asks)

        await client._request_instruments(
            RequestInstruments(None, None, None, VENUE, lambda r: None, UUID4(), clock.timestamp_ns(), None)
        )
        assert [str(i.id) for i in responses[-1].data] == [str(IID)]
        assert not [k for k in client.counts if k.startswith("bad:")], client.counts
    finally:
        await asyncio.wait_for(client._disconnect(), 15)
        await asyncio.wait_for(venue.stop(), 15)
