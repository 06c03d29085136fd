"""``services.paradex.ws.WsClient`` against a local scripted JSON-RPC WebSocket server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from services.paradex.ws import WsClient
from services.paradex.ws_types import ConnState, NotConnected, RpcError, SubState, WsConfig, WsUnknownOutcome
from tests.feed_handler.fake_venue_ws import FakeVenueWs

FAST = WsConfig(
    backoff_initial=0.05,
    backoff_max=0.2,
    sub_ack_timeout=0.3,
    sub_max_retries=2,
    sub_retry_initial=0.05,
    sub_retry_max=0.1,
    degraded_retry_interval=0.3,
    ping_interval=0.2,
    zombie_timeout=1.0,
    call_timeout=0.5,
    tick=0.02,
)


async def until(cond, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def venue() -> AsyncIterator[FakeVenueWs]:
    v = await FakeVenueWs().start()
    yield v
    await v.stop()


class Recorder:
    def __init__(self) -> None:
        self.states: list[tuple[ConnState, ConnState]] = []
        self.sub_states: list[tuple[str, SubState, SubState]] = []
        self.problems: list[tuple[str, dict]] = []
        self.got: list[tuple[str, bytes]] = []

    def on_state(self, old, new) -> None:
        self.states.append((old, new))

    def on_sub_state(self, ch, old, new) -> None:
        self.sub_states.append((ch, old, new))

    def report(self, kind: str, **ctx) -> None:
        self.problems.append((kind, ctx))

    def handler(self, channel: str, data) -> None:
        self.got.append((channel, bytes(data)))

    def kinds(self) -> list[str]:
        return [k for k, _ in self.problems]


def client(url: str, rec: Recorder, **kw) -> WsClient:
    return WsClient(
        url,
        config=kw.pop("config", FAST),
        on_state=rec.on_state,
        on_sub_state=rec.on_sub_state,
        report=rec.report,
        **kw,
    )


async def test_subscribe_ack_dispatch_unknown_and_malformed(venue: FakeVenueWs) -> None:
    rec = Recorder()
    ws = client(venue.url, rec)
    ws.subscribe("trades.BTC-USD-PERP", rec.handler)
    await ws.start()
    try:
        await ws.wait_active("trades.BTC-USD-PERP", 3)
        assert ws.state is ConnState.CONNECTED
        assert ("trades.BTC-USD-PERP", SubState.PENDING, SubState.ACTIVE) in rec.sub_states
        await venue.push("trades.BTC-USD-PERP", {"id": "1", "price": "1.5"})
        await venue.send_raw('{"jsonrpc":"2.0","method":"subscription","params":{"channel":"bbo.X","data":{}}}')
        await venue.send_raw("not json at all")
        await venue.send_raw("[1,2,3]")
        await venue.send_raw(b"\x00\x01binary")
        await venue.push("trades.BTC-USD-PERP", {"id": "2", "price": "1.6"})
        await until(lambda: len(rec.got) == 2, what="two notifications")
        assert rec.got[0] == ("trades.BTC-USD-PERP", b'{"id": "1", "price": "1.5"}')
        assert ws.stats.unknown_channel == 1
        assert ws.stats.malformed == 3
        assert ws.state is ConnState.CONNECTED  # nothing above broke the connection
        assert rec.kinds().count("ws_malformed_frame") == 3
    finally:
        await ws.close()
    assert ws.state is ConnState.DISCONNECTED


async def test_handler_exception_is_counted_not_raised(venue: FakeVenueWs) -> None:
    rec = Recorder()
    ws = client(venue.url, rec)
    calls = []

    def bad(channel, data) -> None:
        calls.append(1)
        raise RuntimeError("boom")

    ws.subscribe("bbo.A", bad)
    await ws.start()
    try:
        await ws.wait_active("bbo.A", 3)
        await venue.push("bbo.A", {})
        await venue.push("bbo.A", {})
        await until(lambda: len(calls) == 2, what="handler calls")
        assert ws.stats.handler_errors == 2
        assert "ws_handler_error" in rec.kinds()
    finally:
        await ws.close()


async def test_reconnect_resubscribes_everything(venue: FakeVenueWs) -> None:
    rec = Recorder()
    ws = client(venue.url, rec)
    ws.subscribe("trades.A", rec.handler)
    ws.subscribe("bbo.A", rec.handler)
    await ws.start()
    try:
        await ws.wait_active("bbo.A", 3)
        await ws.wait_active("trades.A", 3)
        venue.drop_all()
        await until(lambda: venue.connections_total == 2 and ws.state is ConnState.CONNECTED, what="reconnect")
        await ws.wait_active("bbo.A", 3)
        await ws.wait_active("trades.A", 3)
        states = [new for _, new in rec.states]
        assert states[:2] == [ConnState.CONNECTING, ConnState.CONNECTED]
        assert ConnState.RECONNECTING in states[2:]
        assert states[-1] is ConnState.CONNECTED
        assert sorted(venue.channels_requested("subscribe")) == ["bbo.A", "bbo.A", "trades.A", "trades.A"]
        assert ws.stats.disconnects == 1
        await venue.push("trades.A", {"n": 1})
        await until(lambda: rec.got, what="data after reconnect")
    finally:
        await ws.close()


async def test_reconnect_backoff_when_venue_down() -> None:
    rec = Recorder()
    venue = await FakeVenueWs().start()
    url = venue.url
    await venue.stop()
    ws = client(url, rec)
    await ws.start()
    try:
        await until(lambda: ws.stats.connect_failures >= 3, what="failed connects")
        assert ws.state is ConnState.RECONNECTING
        # Bring a server up on the same port: the client gets there by itself.
        from websockets.asyncio.server import serve

        port = int(url.split(":")[2].split("/")[0])
        v2 = FakeVenueWs()
        v2._server = await serve(v2._handler, "127.0.0.1", port, ping_interval=None)
        v2.port = port
        try:
            await ws.wait_connected(5)
            assert ws.state is ConnState.CONNECTED
        finally:
            await v2.stop()
    finally:
        await ws.close()


async def test_auth_fresh_jwt_each_connect_and_40111(venue: FakeVenueWs) -> None:
    rec = Recorder()
    tokens = iter(["bad-1", "good-2", "good-3", "good-4"])
    issued: list[str] = []
    venue.valid_tokens = {"good-2", "good-3", "good-4"}
    venue.auth_required = True

    async def provider() -> str:
        t = next(tokens)
        issued.append(t)
        return t

    ws = client(venue.url, rec, jwt_provider=provider)
    ws.subscribe("orders.ALL", rec.handler)
    await ws.start()
    try:
        await ws.wait_active("orders.ALL", 5)
        assert ws.state is ConnState.AUTHENTICATED
        assert issued[:2] == ["bad-1", "good-2"]
        assert ws.stats.auth_failures == 1
        assert "ws_auth_rejected" in rec.kinds()
        assert ws.node_id == "n1"
        states = [new for _, new in rec.states]
        assert ConnState.AUTHENTICATING in states
        # A reconnect asks for a fresh JWT.
        venue.drop_all()
        await until(lambda: len(issued) == 3 and ws.state is ConnState.AUTHENTICATED, what="re-auth")
        assert issued[2] == "good-3"
    finally:
        await ws.close()


async def test_subscribe_40111_forces_reconnect_with_fresh_jwt(venue: FakeVenueWs) -> None:
    rec = Recorder()
    issued: list[str] = []
    venue.valid_tokens = {f"t{i}" for i in range(1, 200)}

    async def provider() -> str:
        issued.append(f"t{len(issued) + 1}")
        return issued[-1]

    venue.reject["orders.ALL"] = 40111
    ws = client(venue.url, rec, jwt_provider=provider)
    ws.subscribe("orders.ALL", rec.handler)
    await ws.start()
    try:
        await until(lambda: len(issued) >= 2, what="second JWT")
        venue.reject.clear()
        await ws.wait_active("orders.ALL", 5)
        assert venue.connections_total >= 2
    finally:
        await ws.close()


async def test_subscription_failure_retries_degraded_then_recovery(venue: FakeVenueWs) -> None:
    rec = Recorder()
    venue.reject["bbo.BAD"] = -32602
    ws = client(venue.url, rec)
    ws.subscribe("bbo.OK", rec.handler)
    ws.subscribe("bbo.BAD", rec.handler)
    await ws.start()
    try:
        await ws.wait_active("bbo.OK", 3)
        await until(lambda: ws.state is ConnState.DEGRADED, what="degraded")
        sub = ws.subscription("bbo.BAD")
        assert sub is not None and sub.exhausted and sub.state is SubState.FAILED
        # 1 first try + FAST.sub_max_retries fast retries before degraded
        assert venue.channels_requested("subscribe").count("bbo.BAD") >= FAST.sub_max_retries + 1
        assert ws.subscription_states() == {"bbo.OK": "Active", "bbo.BAD": "Failed"}
        assert "ws_subscription_failed" in rec.kinds()
        venue.reject.clear()  # the venue accepts it again: the slow retry recovers
        await ws.wait_active("bbo.BAD", 3)
        await until(lambda: ws.state is ConnState.CONNECTED, what="recovered")
        assert not ws.subscription("bbo.BAD").exhausted
    finally:
        await ws.close()


async def test_ack_timeout_fails_and_retries(venue: FakeVenueWs) -> None:
    rec = Recorder()
    venue.ignore.add("trades.SLOW")
    ws = client(venue.url, rec)
    ws.subscribe("trades.SLOW", rec.handler)
    await ws.start()
    try:
        await until(lambda: ws.stats.sub_failures >= 1, what="ack timeout")
        assert any(e == ("trades.SLOW", SubState.PENDING, SubState.FAILED) for e in rec.sub_states)
        venue.ignore.clear()
        await ws.wait_active("trades.SLOW", 3)
        # Retries go through unsubscribe + subscribe (a late ack may have subscribed us).
        assert "trades.SLOW" in venue.channels_requested("unsubscribe")
    finally:
        await ws.close()


async def test_idle_timeout_resubscribes_silent_channel(venue: FakeVenueWs) -> None:
    rec = Recorder()
    ws = client(venue.url, rec)
    ws.subscribe("bbo.QUIET", rec.handler, idle_timeout=0.4)
    ws.subscribe("bbo.BUSY", rec.handler, idle_timeout=0.4)
    await ws.start()
    try:
        await ws.wait_active("bbo.QUIET", 3)
        await ws.wait_active("bbo.BUSY", 3)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:
            await venue.push("bbo.BUSY", {"x": 1})
            await asyncio.sleep(0.05)
        assert ws.stats.stale_resubscribes >= 1
        assert "bbo.QUIET" in venue.channels_requested("unsubscribe")
        assert "bbo.BUSY" not in venue.channels_requested("unsubscribe")
        assert any(k == "ws_stale_stream" and c["channel"] == "bbo.QUIET" for k, c in rec.problems)
        await ws.wait_active("bbo.QUIET", 3)
    finally:
        await ws.close()


async def test_zombie_connection_is_dropped_and_replaced(venue: FakeVenueWs) -> None:
    rec = Recorder()
    ws = client(venue.url, rec)
    ws.subscribe("trades.A", rec.handler)
    await ws.start()
    try:
        await ws.wait_active("trades.A", 3)
        await until(lambda: ws.stats.pongs >= 1, what="a pong to our ping")
        venue.go_silent()
        t0 = time.monotonic()
        await until(lambda: ws.stats.zombies == 1, timeout=5, what="zombie detection")
        detected = time.monotonic() - t0
        assert FAST.zombie_timeout * 0.8 <= detected <= FAST.zombie_timeout + 1.0
        await until(lambda: venue.connections_total == 2, what="new connection")
        await ws.wait_active("trades.A", 3)
    finally:
        await ws.close()


async def test_answers_server_pings(venue: FakeVenueWs) -> None:
    rec = Recorder()
    ws = client(venue.url, rec, config=WsConfig(ping_interval=60, zombie_timeout=60))
    await ws.start()
    try:
        await ws.wait_connected(3)
        latencies = await venue.ping_clients()
        assert len(latencies) == 1 and latencies[0] < 1.0
    finally:
        await ws.close()


async def test_call_result_error_unknown_outcome_not_connected(venue: FakeVenueWs) -> None:
    rec = Recorder()
    ws = client(venue.url, rec)
    with pytest.raises(NotConnected):
        await ws.call("echo", {"a": 1})
    await ws.start()
    try:
        await ws.wait_connected(3)
        assert await ws.call("echo", {"a": "1"}) == {"a": "1"}
        with pytest.raises(RpcError) as err:
            await ws.call("fail", {})
        assert err.value.code == 100
        with pytest.raises(WsUnknownOutcome):
            await ws.call("silent", {}, timeout=0.2)
        # Dropped while waiting: unknown outcome, never a rejection.
        task = asyncio.create_task(ws.call("silent", {}, timeout=3))
        await asyncio.sleep(0.1)
        venue.drop_all()
        with pytest.raises(WsUnknownOutcome):
            await task
    finally:
        await ws.close()


async def test_unsubscribe_and_resubscribe_helper(venue: FakeVenueWs) -> None:
    rec = Recorder()
    ws = client(venue.url, rec)
    ws.subscribe("order_book.A.deltas", rec.handler)
    ws.subscribe("trades.A", rec.handler)
    await ws.start()
    try:
        await ws.wait_active("order_book.A.deltas", 3)
        await ws.resubscribe("order_book.A.deltas", "test")
        await ws.wait_active("order_book.A.deltas", 3)
        assert venue.channels_requested("unsubscribe") == ["order_book.A.deltas"]
        assert venue.channels_requested("subscribe").count("order_book.A.deltas") == 2
        assert ws.request_resubscribe("order_book.A.deltas", "again")
        assert not ws.request_resubscribe("order_book.A.deltas", "coalesced while running")
        await until(lambda: len(venue.channels_requested("unsubscribe")) == 2, what="second unsubscribe")
        await ws.wait_active("order_book.A.deltas", 3)
        await ws.unsubscribe("trades.A")
        assert "trades.A" not in ws.subscription_states()
        assert venue.channels_requested("unsubscribe")[-1] == "trades.A"
    finally:
        await ws.close()


async def test_bearer_header_on_upgrade_uses_the_same_fresh_jwt(venue: FakeVenueWs) -> None:
    rec = Recorder()
    issued: list[str] = []
    venue.valid_tokens = {"j1", "j2"}

    async def provider() -> str:
        issued.append(f"j{len(issued) + 1}")
        return issued[-1]

    ws = client(venue.url, rec, jwt_provider=provider, bearer_header=True, headers={"X-Test": "1"})
    await ws.start()
    try:
        await until(lambda: ws.state is ConnState.AUTHENTICATED, what="authenticated")
        assert venue.upgrade_headers[0]["authorization"] == "Bearer j1"
        assert venue.upgrade_headers[0]["x-test"] == "1"
        assert [r["params"]["bearer"] for r in venue.methods("auth")] == ["j1"]
        venue.drop_all()
        await until(lambda: len(venue.upgrade_headers) == 2 and ws.state is ConnState.AUTHENTICATED, what="again")
        assert venue.upgrade_headers[1]["authorization"] == "Bearer j2"
    finally:
        await ws.close()
