"""Bad-input sweep: malformed venue frames and malformed bus messages at every consumer, generated
by hypothesis, against the real processes of a full stack; no process may crash and every
rejection must be counted -- exactly once -- in the process's ``ServiceHealth`` counters.

* **Venue frames** (``test_malformed_venue_frames_are_counted``): a WebSocket relay sits between the
  simulator and each of the two feed handlers and the order router (public and private streams),
  forwarding the real traffic and injecting generated frames: non-JSON text, binary, JSON that is
  not a JSON-RPC frame, responses to requests never made, notifications on channels the process did
  not subscribe, and notifications on its subscribed channels whose data the channel's own decoder
  (``services.paradex.venue_types`` / ``services.order_router.mapping``) rejects. Envelope-level
  rejections must add exactly one to ``ws_malformed + ws_unknown_channel + ws_unexpected_frames +
  ws_late_acks``; payload rejections exactly one to the handler's counter (``feed_malformed``;
  the router's ``problems_total{kind=malformed_*}``).
* **Bus messages** (``test_malformed_bus_messages_are_counted_by_every_consumer``): undecodable
  payloads -- random bytes, msgpack of random values, valid messages truncated or with a byte
  flipped -- on every subject a process consumes: ``md.paradex.deltas`` (book builder),
  ``book.paradex.snapshot`` request bodies (book builder), ``ctl.resync`` (both feed handlers),
  ``cmd.paradex.<acct>`` (router -- also well-formed messages that are not commands -- and the
  reconciler's command index), ``exec.paradex.<acct>``
  (reconciler), ``ctl.reconcile`` (reconciler), ``signer.paradex.<acct>.*`` (signer, which must
  answer ``BAD_REQUEST``).
* **Poison in the streams at start-up** (``test_restarted_consumers_count_stored_poison``): the
  router and the reconciler are restarted and rebuild from ``EXEC``/``REF`` holding those messages;
  they must come back ready and count every undecodable one (at least once: a rebuild may read a
  stream twice).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

import schemas as s
from bus import subjects
from schemas.book import BookSnapshot
from schemas.signer import JwtRequest, SignAuthRequest, SignModifyRequest, SignOnboardingRequest, SignOrderRequest
from services.chaos.health import HealthMonitor
from services.chaos.stack import ChaosStack, StackOptions
from services.order_router import mapping as router_mapping
from services.paradex import venue_types as vt
from tests.feed_handler.ws_relay import WsRelay
from tests.unit import samples

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

MKT = "BTC-USD-PERP"
WS_ENVELOPE_COUNTERS = ("ws_malformed", "ws_unknown_channel", "ws_unexpected_frames", "ws_late_acks")

# -- the stack ------------------------------------------------------------------------------------


@dataclass
class FuzzStack:
    stack: ChaosStack
    nc: NATS
    js: JetStreamContext
    health: HealthMonitor
    relays: dict[str, WsRelay]
    stored_exec_poison: int = 0
    unexpected: list[str] = field(default_factory=list)

    @property
    def account(self) -> str:
        return self.stack.account

    def counters(self, instance: str) -> dict[str, int]:
        h = self.health.current(instance)
        return dict(h.counters) if h is not None else {}

    async def fresh_counters(self, instances: list[str]) -> dict[str, dict[str, int]]:
        """Counters from a health report produced after now (so nothing earlier is pending)."""
        t = time.monotonic()
        ok = await self.health.wait(lambda: all(self.health.current(i, since=t) for i in instances), 10)
        assert ok, f"no fresh health from {instances}"
        return {i: self.counters(i) for i in instances}

    def assert_alive(self) -> None:
        for p, ex in self.stack.check_exits():
            self.unexpected.append(f"{p.instance} exited (code {ex.returncode}):\n{ex.log_tail[-2500:]}")
        assert not self.unexpected, "\n".join(self.unexpected)


@pytest.fixture(scope="module")
async def fuzz(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FuzzStack]:
    base: Path = tmp_path_factory.mktemp("bad_input")
    relays: dict[str, WsRelay] = {}

    async def proxy(instance: str, upstream: str) -> str:
        if instance.startswith(("feed-handler", "order-router")):
            relays[instance] = await WsRelay(upstream).start()
            return relays[instance].url
        return upstream

    stack = ChaosStack(base, StackOptions(ws_proxy=proxy, flow_rate=5.0))
    health = HealthMonitor()
    nc = None
    try:
        await stack.start_bus()
        nc, js = await stack.connect("bad-input")
        await health.start(nc)
        await stack.start_services(health)
        yield FuzzStack(stack, nc, js, health, relays)
    finally:
        await health.stop()
        if nc is not None:
            await nc.close()
        await stack.stop()
        for r in relays.values():
            await r.stop()


# -- strategies -----------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=16),
)
JSON_VALUES = st.recursive(
    SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8
)


def _note(channel: str, data_json: str) -> str:
    return '{"jsonrpc":"2.0","method":"subscription","params":{"channel":%s,"data":%s}}' % (  # noqa: UP031
        json.dumps(channel),
        data_json,
    )


def _rejects(decoder: msgspec.json.Decoder, raw: str) -> bool:
    try:
        decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return True
    return False


FEED_DECODERS: tuple[tuple[str, msgspec.json.Decoder, type], ...] = (
    ("trades.", vt.trade_decoder, vt.TradeMsg),
    ("bbo.", vt.bbo_decoder, vt.BboMsg),
    ("order_book.", vt.book_decoder, vt.BookMsg),
    ("markets_summary.", vt.summary_decoder, vt.SummaryMsg),
    ("funding_data.", vt.funding_decoder, vt.FundingDataMsg),
    ("markets", vt.markets_event_decoder, vt.MarketsEventMsg),
)
ROUTER_DECODERS: tuple[tuple[str, msgspec.json.Decoder, type], ...] = (
    ("orders.", router_mapping.order_decoder, router_mapping.VenueOrder),
    ("fills.", router_mapping.fill_decoder, router_mapping.VenueFill),
    ("positions", router_mapping.position_decoder, router_mapping.VenuePosition),
    ("account", router_mapping.account_decoder, router_mapping.VenueAccount),
)


def _decoder_for(channel: str) -> tuple[msgspec.json.Decoder, type]:
    for prefix, dec, cls in (*FEED_DECODERS, *ROUTER_DECODERS):
        if channel == prefix or (prefix.endswith(".") and channel.startswith(prefix)):
            return dec, cls
    raise KeyError(channel)


def bad_payload(channel: str) -> st.SearchStrategy[str]:
    """JSON ``data`` for ``channel`` that the channel's decoder rejects (so it must be counted)."""
    dec, cls = _decoder_for(channel)
    names = list(cls.__struct_fields__)
    objects = st.dictionaries(st.sampled_from(names), JSON_VALUES, min_size=1, max_size=len(names))
    return st.one_of(SCALARS.map(json.dumps), objects.map(json.dumps)).filter(lambda raw: _rejects(dec, raw))


ENVELOPE_GARBAGE: st.SearchStrategy[str | bytes] = st.one_of(
    st.text(max_size=40).filter(lambda t: not t.lstrip().startswith("{")),
    st.binary(min_size=1, max_size=40).filter(lambda b: not b.lstrip().startswith(b"{")),
    JSON_VALUES.filter(lambda v: not isinstance(v, dict)).map(json.dumps),
    st.sampled_from(
        [
            '{"jsonrpc":"2.0"}',
            '{"jsonrpc":"2.0","method":"subscription"}',
            "{}",
            '{"jsonrpc":"2.0","method":"subscription","params":{"channel":5,"data":{}}}',
            '{"jsonrpc":"2.0","method":"heartbeat","params":{"x":1}}',
        ]
    ),
    st.integers(10**9, 2 * 10**9).map(lambda i: json.dumps({"jsonrpc": "2.0", "id": i, "result": {}})),
)


@st.composite
def frame_batch(draw: st.DrawFn, channels: dict[str, list[str]]) -> dict[str, list[tuple[str, str | bytes]]]:
    """Per process: a list of ``(class, frame)``; class ``env`` (envelope level) or ``payload``."""
    out: dict[str, list[tuple[str, str | bytes]]] = {}
    known = {c for chs in channels.values() for c in chs}
    for inst, chs in channels.items():
        frames: list[tuple[str, str | bytes]] = []
        for _ in range(draw(st.integers(4, 8))):
            frames.append(("env", draw(ENVELOPE_GARBAGE)))
        for _ in range(draw(st.integers(1, 3))):
            name = draw(st.text("abcdefghijklmnopqrstuvwxyz._-ALL0123456789", min_size=1, max_size=24))
            if name not in known:
                frames.append(("env", _note(name, "{}")))
        for _ in range(draw(st.integers(4, 8))):
            ch = draw(st.sampled_from(chs))
            frames.append(("payload", _note(ch, draw(bad_payload(ch)))))
        out[inst] = draw(st.permutations(frames))
    return out


def _mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.integers(0, max(0, len(valid) - 1)).map(lambda k: valid[:k]),
        st.tuples(st.integers(0, len(valid) - 1), st.integers(1, 255)).map(
            lambda t: valid[: t[0]] + bytes([valid[t[0]] ^ t[1]]) + valid[t[0] + 1 :]
        ),
    )


def bad_utf8(valid: bytes) -> bytes:
    """``valid`` with one byte of its first long string made invalid UTF-8 (msgpack stays well-formed)."""
    i = max(valid.find(b"PARADEX"), valid.find(b"Order"), 0)
    return valid[:i] + b"\xfa" + valid[i + 1 :]


def undecodable(valid: list[bytes], rejects: Callable[[bytes], bool]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=64),
        JSON_VALUES.map(msgspec.msgpack.encode),
        st.sampled_from(valid).flatmap(_mutations),
        st.sampled_from(valid).map(bad_utf8),
    ).filter(rejects)


def _decode_fails(cls: type | None = None) -> Callable[[bytes], bool]:
    """True when the bytes are not a valid message (of ``cls``). Invalid UTF-8 inside a msgpack
    string escapes ``schemas.decode`` as ``UnicodeDecodeError`` (msgspec 0.22), not ``DecodeError``:
    such bytes are garbage all the same, and consumers must survive them."""

    def check(data: bytes) -> bool:
        try:
            if cls is None:
                s.decode(data)
            else:
                s.decode_as(data, cls)
        except (s.DecodeError, UnicodeDecodeError):
            return True
        return False

    return check


def _not_an_int(data: bytes) -> bool:
    if not data:
        return False  # an empty body asks for the whole book: valid
    try:
        int(data)
    except ValueError:
        return True
    return False


SIGNER_OPS = {
    "order": SignOrderRequest,
    "modify": SignModifyRequest,
    "auth": SignAuthRequest,
    "onboarding": SignOnboardingRequest,
    "jwt": JwtRequest,
}


def _signer_rejects(cls: type) -> Callable[[bytes], bool]:
    dec = _decode_fails(cls)
    return lambda b: bool(b) and dec(b)


def _valid(*events: Any) -> list[bytes]:
    return [s.encode(e) for e in events]


@st.composite
def bus_batch(draw: st.DrawFn) -> dict[str, list[bytes]]:
    def of(*types: type) -> list[bytes]:
        return _valid(*(v for v in samples.SAMPLES if isinstance(v, types)))

    deltas = of(s.OrderBookDeltas)
    cmds = of(s.SubmitOrder, s.CancelOrder, s.ModifyOrder)
    execs = of(s.OrderAccepted, s.OrderFilled, s.OrderInitialized)
    ctl = _valid(s.ResyncRequest(instrument_id=s.instrument_id(MKT), reason="x", requested_by="fuzz", ts_init=1))
    recon = _valid(s.ReconcileRequest(account="0xabc", reason="x", requested_by="fuzz", ts_init=1))
    n = st.integers(2, 5)

    def garbage(valid: list[bytes], rejects: Callable[[bytes], bool], most: int = 5) -> list[bytes]:
        # Every batch carries, per subject, one valid message with invalid UTF-8 inside a string.
        return [bad_utf8(valid[0]), *draw(st.lists(undecodable(valid, rejects), min_size=2, max_size=most))]

    out: dict[str, list[bytes]] = {
        "md": garbage(deltas, _decode_fails(s.OrderBookDeltas)),
        "snapshot": draw(st.lists(st.binary(min_size=1, max_size=24).filter(_not_an_int), min_size=2, max_size=4)),
        "resync": garbage(ctl, _decode_fails(s.ResyncRequest)),
        "cmd": garbage(cmds, _decode_fails()),
        # Well-formed bus messages that are not commands (a trade, a health report, an order event).
        "cmd_wrong_type": draw(
            st.lists(st.sampled_from(of(s.TradeTick, s.ServiceHealth, s.OrderAccepted)), min_size=1, max_size=3)
        ),
        "exec": garbage(execs, _decode_fails()),
        "reconcile": garbage(recon, _decode_fails(), 4),
    }
    for op, cls in SIGNER_OPS.items():
        out[f"signer.{op}"] = draw(
            st.lists(st.binary(min_size=1, max_size=48).filter(_signer_rejects(cls)), min_size=1, max_size=draw(n))
        )
    return out


def generated(strategy: st.SearchStrategy[dict[str, list[Any]]], batches: int = 3, per_batch: int = 12) -> list[Any]:
    """Examples drawn by hypothesis, merged ``per_batch`` at a time into ``batches`` batches. Each
    batch is then played against the live processes (real OS processes driven from one event loop,
    so the property is checked outside ``@given``; a failure prints the batch that caused it)."""
    found: list[dict[str, list[Any]]] = []

    @settings(
        max_examples=batches * per_batch,
        deadline=None,
        phases=[Phase.generate],
        database=None,
        derandomize=not os.environ.get("PDX_FUZZ_RANDOM"),
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(example: dict[str, list[Any]]) -> None:
        found.append(example)

    draw()
    out: list[dict[str, list[Any]]] = []
    for b in range(batches):
        merged: dict[str, list[Any]] = {}
        for ex in found[b::batches]:
            for k, items in ex.items():
                merged.setdefault(k, []).extend(items)
        out.append(merged)
    return out


# -- helpers --------------------------------------------------------------------------------------


def _sum(counters: dict[str, int], keys: tuple[str, ...]) -> int:
    return sum(counters.get(k, 0) for k in keys)


def _sum_matching(counters: dict[str, int], pred: Callable[[str], bool]) -> int:
    return sum(v for k, v in counters.items() if pred(k))


def _envelope_rejections(c: dict[str, int]) -> int:
    return _sum(c, WS_ENVELOPE_COUNTERS)


def _router_payload_rejections(c: dict[str, int]) -> int:
    return _sum_matching(c, lambda k: k.startswith("problems_total{kind=malformed_"))


def _feed_payload_rejections(c: dict[str, int]) -> int:
    return c.get("feed_malformed", 0)


def _exec_or_ctl_rejections(c: dict[str, int]) -> int:
    return _sum_matching(c, lambda k: k.startswith("problems_total{kind=") and ("undecodable" in k or "malformed" in k))


def _bad_request_refusals(c: dict[str, int]) -> int:
    return _sum_matching(c, lambda k: k.startswith("refused_total{code=BAD_REQUEST"))


def _book_rejections(c: dict[str, int]) -> int:
    return c.get("book_malformed", 0) + c.get("problems_total{kind=handler_error}", 0)


def _not_commands(c: dict[str, int]) -> int:
    return c.get("cmd_decode_errors", 0) + c.get("problems_total{kind=not_a_command}", 0)


def _counter(name: str) -> Callable[[dict[str, int]], int]:
    return lambda c: c.get(name, 0)


Expectation = tuple[str, str, Callable[[dict[str, int]], int], int]  # (instance, label, counter, sent)


async def _expect_counted(fz: FuzzStack, base: dict[str, dict[str, int]], want: list[Expectation]) -> list[str]:
    """Wait until every counter grew by what was sent, then take one more fresh report (so an
    over-count shows too); return the mismatches."""

    def delta(inst: str, fn: Callable[[dict[str, int]], int]) -> int:
        return fn(fz.counters(inst)) - fn(base[inst])

    await fz.health.wait(lambda: all(delta(i, fn) >= n for i, _, fn, n in want), 15)
    await fz.fresh_counters(sorted({i for i, *_ in want}))
    return [f"{i}: {label}: sent {n}, counted {delta(i, fn)}" for i, label, fn, n in want if delta(i, fn) != n]


def _venue_channels(fz: FuzzStack, instance: str) -> list[str]:
    h = fz.health.current(instance)
    assert h is not None
    chans = []
    for name, state in h.subscriptions.items():
        if name.startswith("cmd:") or state != "Active":
            continue
        chans.append(name.removeprefix("ws:"))
    return sorted(chans)


async def _stable_ownership(fz: FuzzStack, quiet: float = 4.0, timeout: float = 40.0) -> None:
    """Wait until every market has exactly one feed handler and nothing changed for ``quiet`` s: a
    handler that just released a market counts the venue's last messages on it as unknown-channel
    frames, which would blur the exact accounting."""
    feeds = sorted(i for i in fz.stack.procs if i.startswith("feed-handler"))
    last: tuple[tuple[str, ...], ...] = ()
    since = time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        now = tuple(tuple(_venue_channels(fz, f)) for f in feeds)
        owned = [c for chs in now for c in chs if c.startswith("trades.")]
        if now != last or len(owned) != len(set(owned)) or len(set(owned)) != len(fz.stack.opt.markets):
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"feed-handler ownership did not settle: {last}")


# -- tests ----------------------------------------------------------------------------------------


async def _play_frames(fz: FuzzStack, batch: dict[str, list[tuple[str, str | bytes]]]) -> None:
    instances = sorted(batch)
    base = await fz.fresh_counters(instances)
    for inst, frames in batch.items():
        for _, frame in frames:
            assert await fz.relays[inst].inject(frame) == 1, f"{inst} is not connected through its relay"
    want: list[Expectation] = []
    for i in instances:
        payload = _router_payload_rejections if i.startswith("order-router") else _feed_payload_rejections
        n_env = sum(1 for k, _ in batch[i] if k == "env")
        n_payload = sum(1 for k, _ in batch[i] if k == "payload")
        want.append((i, f"envelope-level frames ({' + '.join(WS_ENVELOPE_COUNTERS)})", _envelope_rejections, n_env))
        want.append((i, "bad payloads on subscribed channels", payload, n_payload))
    problems = await _expect_counted(fz, base, want)
    shown = "\n".join(f"  {i} {k}: {f!r}"[:220] for i in instances for k, f in batch[i])
    assert not problems, "venue frames not counted exactly once:\n" + "\n".join(problems) + "\nframes:\n" + shown
    fz.assert_alive()


def test_codec_turns_invalid_utf8_into_decode_error() -> None:
    """``schemas.decode``/``decode_as`` promise ``DecodeError`` for bytes that are not a bus message;
    consumers catch exactly that. Invalid UTF-8 inside a msgpack string must not escape as
    ``UnicodeDecodeError`` (msgspec raises that, not its own ``DecodeError``)."""
    valid = s.encode(next(v for v in samples.SAMPLES if isinstance(v, s.SubmitOrder)))
    bad = bad_utf8(valid)
    for fn in (lambda: s.decode(bad), lambda: s.decode_as(bad, s.SubmitOrder)):
        try:
            fn()
        except s.DecodeError:
            continue
        except UnicodeDecodeError as exc:
            pytest.fail(f"schemas/codec.py lets {exc!r} escape instead of raising schemas.DecodeError")
        pytest.fail("invalid UTF-8 decoded without an error")


@pytest.mark.asyncio
async def test_malformed_venue_frames_are_counted(fuzz: FuzzStack) -> None:
    fz = fuzz
    instances = sorted(fz.relays)
    await _stable_ownership(fz)
    channels = {i: _venue_channels(fz, i) for i in instances}
    assert all(channels.values()), channels
    for batch in generated(frame_batch(channels)):
        await _play_frames(fz, batch)
    # Still serving after all of it.
    ok = await fz.health.wait(lambda: all(fz.health.state(i) in fz.stack.procs[i].ready_states for i in instances), 30)
    assert ok, {i: fz.health.state(i) for i in instances}


async def _play_bus(fz: FuzzStack, n_batch: int, batch: dict[str, list[bytes]]) -> None:
    acct = fz.account
    feeds = [i for i in fz.stack.procs if i.startswith("feed-handler")]
    base = await fz.fresh_counters(["book-builder-0", "order-router-0", "reconciler-0", "signer-0", *feeds])
    for i, data in enumerate(batch["md"]):
        await fz.js.publish(subjects.md("deltas", MKT), data, headers={"Nats-Msg-Id": f"fuzz-md-{n_batch}-{i}"})
    books = 0
    for data in batch["snapshot"]:
        reply = await fz.nc.request(subjects.book_snapshot(MKT), data, timeout=5)
        books += isinstance(s.decode(reply.data), BookSnapshot)
    for data in batch["resync"]:
        await fz.nc.publish(subjects.ctl_resync(MKT), data)
    for i, data in enumerate(batch["cmd"] + batch["cmd_wrong_type"]):
        await fz.js.publish(subjects.cmd(acct, MKT), data, headers={"Nats-Msg-Id": f"fuzz-cmd-{n_batch}-{i}"})
    for i, data in enumerate(batch["exec"]):
        subject = subjects.exec_order(acct, f"FUZZ-{n_batch}-{i}")
        await fz.js.publish(subject, data, headers={"Nats-Msg-Id": f"fuzz-ex-{n_batch}-{i}"})
    for data in batch["reconcile"]:
        await fz.nc.publish(subjects.ctl_reconcile(acct), data)
    refusals = 0
    for op in SIGNER_OPS:
        for data in batch[f"signer.{op}"]:
            reply = await fz.nc.request(subjects.signer(acct, op), data, timeout=5)
            refusals += b"BAD_REQUEST" in reply.data
    fz.stored_exec_poison += len(batch["exec"])
    n_signer = sum(len(batch[f"signer.{op}"]) for op in SIGNER_OPS)
    want: list[Expectation] = [
        # A message that escapes the codec as UnicodeDecodeError is counted as a handler error (and
        # invalidates the book until a resync) rather than as malformed: counted either way.
        ("book-builder-0", "md.paradex.deltas (book_malformed + handler_error)", _book_rejections, len(batch["md"])),
        (
            "book-builder-0",
            "snapshot request bodies",
            _counter("problems_total{kind=malformed_snapshot_request}"),
            len(batch["snapshot"]),
        ),
        (
            "order-router-0",
            "cmd.paradex (cmd_decode_errors + not_a_command)",
            _not_commands,
            len(batch["cmd"]) + len(batch["cmd_wrong_type"]),
        ),
        (
            "reconciler-0",
            "exec + ctl.reconcile + cmd (undecodable/malformed problems)",
            _exec_or_ctl_rejections,
            len(batch["exec"]) + len(batch["reconcile"]) + len(batch["cmd"]),
        ),
        ("signer-0", "signer requests (refused BAD_REQUEST)", _bad_request_refusals, n_signer),
    ]
    want += [
        (f, "ctl.resync", _counter("problems_total{kind=malformed_resync_request}"), len(batch["resync"]))
        for f in feeds
    ]
    problems = await _expect_counted(fz, base, want)
    assert books == len(batch["snapshot"]), "a malformed snapshot request got no book"
    assert refusals == n_signer, f"signer answered BAD_REQUEST to {refusals} of {n_signer} malformed requests"
    hint = "\n(see test_codec_turns_invalid_utf8_into_decode_error: a DecodeError-only handler lets it escape)"
    if any(p.startswith("reconciler") for p in problems):
        hint += (
            "\n(the reconciler also reads CMD -- services/reconciler/follower.py CommandIndex -- and returns on "
            "DecodeError without counting)"
        )
    assert not problems, "bus rejections not counted exactly once:\n" + "\n".join(problems) + hint
    fz.assert_alive()


@pytest.mark.asyncio
async def test_malformed_bus_messages_are_counted_by_every_consumer(fuzz: FuzzStack) -> None:
    for n_batch, batch in enumerate(generated(bus_batch())):
        await _play_bus(fuzz, n_batch, batch)


@pytest.mark.asyncio
async def test_restarted_consumers_count_stored_poison(fuzz: FuzzStack) -> None:
    fz = fuzz
    if not fz.stored_exec_poison:  # run alone: put some poison in the streams first
        for i in range(3):
            await fz.js.publish(
                subjects.exec_order(fz.account, f"FUZZ-R-{i}"),
                b"\xc1" * (i + 1),
                headers={"Nats-Msg-Id": f"fuzz-r-{i}"},
            )
        fz.stored_exec_poison = 3
    refs = 3
    for i in range(refs):
        # REF keeps one message per subject: each poison message gets its own (fake) market.
        await fz.js.publish(f"ref.paradex.instrument.FUZZ{i}-USD-PERP", b"\x92\x01" + bytes([i]))
    for inst in ("order-router-0", "reconciler-0"):
        p = fz.stack.procs[inst]
        rc = await asyncio.to_thread(p.term, 30.0)
        assert rc == 0, f"{inst} exited {rc} on SIGTERM:\n{p.log_tail(2000)}"
        p.start()
        await fz.health.wait_ready(p, 60)
    await fz.fresh_counters(["order-router-0", "reconciler-0"])
    router = fz.counters("order-router-0")
    recon = fz.counters("reconciler-0")
    # A process may read a stream more than once while it rebuilds (a load, then a follower that
    # starts before the undecodable tail): every poison message counted at least once, none skipped.
    assert router.get("problems_total{kind=undecodable_exec_event}", 0) >= fz.stored_exec_poison, router
    assert router.get("problems_total{kind=undecodable_reference}", 0) >= refs, router
    assert recon.get("problems_total{kind=undecodable_exec_event}", 0) >= fz.stored_exec_poison, recon
    fz.assert_alive()
