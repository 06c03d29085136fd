"""The bus schemas against the real nautilus_trader 1.221 objects.

(a) Every schema type with a Nautilus counterpart round-trips through the real object without loss
    (the shared samples plus fully-populated ones), the objects hold the right Python types, and the
    Nautilus ``to_dict`` of each object equals the bus dict except for the documented differences.
(b) Input that would abort the interpreter inside Nautilus raises ``ConversionError`` instead -- run
    in a child process, which must exit normally; control children show the same input given to
    Nautilus directly does abort. Input Nautilus would refuse or silently change is refused too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

pytest.importorskip(
    "nautilus_trader", reason="the nautilus extra is not installed (pip install 'paradex-bus[nautilus]')"
)

import schemas as s
from bus.book_client import LocalBook
from schemas.book import BookStatus
from services.nautilus import convert
from services.nautilus.convert import ConversionError, from_nautilus, to_nautilus
from tests.unit.samples import ACCT, EV, IID, SAMPLES, TS, UUID

pytestmark = pytest.mark.nautilus

ROOT = Path(__file__).resolve().parents[2]
BUS_ONLY = {"ReconciliationSummary", "ServiceHealth", "ResyncRequest", "ReconcileRequest", "BookSnapshot", "BookStatus"}


def _name(ev: Any) -> str:
    return type(ev).__name__


def _rich_samples() -> list[s.Event]:
    """Fully-populated variants: every optional field set, every order type, params everywhere."""
    out: list[s.Event] = []
    base_cmd = {"trader_id": "TRADER-001", "strategy_id": "MM-001", "command_id": UUID, "ts_init": TS}
    options = {
        "MARKET": s.OrderOptions(),
        "LIMIT": s.OrderOptions(price="65000.1", expire_time_ns=TS + 10**12, display_qty="0.005"),
        "STOP_MARKET": s.OrderOptions(trigger_price="64000.0", trigger_type="MARK_PRICE", expire_time_ns=0),
        "STOP_LIMIT": s.OrderOptions(
            price="63990.0", trigger_price="64000.0", trigger_type="LAST_PRICE", expire_time_ns=0, display_qty=None
        ),
        "MARKET_IF_TOUCHED": s.OrderOptions(trigger_price="66000.0", trigger_type="DEFAULT", expire_time_ns=0),
        "LIMIT_IF_TOUCHED": s.OrderOptions(
            price="66010.0", trigger_price="66000.0", trigger_type="DEFAULT", expire_time_ns=0, display_qty=None
        ),
    }
    for i, (order_type, opts) in enumerate(options.items()):
        init = s.OrderInitialized(
            **{**EV, "client_order_id": f"O-{i}"},
            order_side="SELL" if i % 2 else "BUY",
            order_type=order_type,
            quantity="0.010",
            time_in_force="GTD" if order_type == "LIMIT" else "GTC",
            post_only=order_type == "LIMIT",
            reduce_only=order_type.startswith("STOP"),
            options=opts,
            tags=["MM", "quote"],
            event_id=UUID,
            ts_init=TS,
            ts_event=TS,
        )
        out.append(init)
        out.append(s.SubmitOrder(**base_cmd, client_id="PARADEX", order=init, params={"stp": "EXPIRE_MAKER"}))
    cancel = s.CancelOrder(
        **base_cmd, client_id="PARADEX", instrument_id=IID, client_order_id="O-1", params={"reason": "requote"}
    )
    out += [
        s.ModifyOrder(
            **base_cmd,
            instrument_id=IID,
            client_order_id="O-1",
            quantity="0.020",
            trigger_price="64000.5",
            params={"x": "1"},
        ),
        cancel,
        s.CancelAllOrders(**base_cmd, instrument_id=IID, order_side="SELL", params={"a": "b"}),
        s.CancelAllOrders(**base_cmd, instrument_id=s.ALL_MARKETS_INSTRUMENT),
        s.BatchCancelOrders(**base_cmd, instrument_id=IID, cancels=[cancel, cancel], params={"batch": "1"}),
        s.FundingRateUpdate(instrument_id=IID, rate="0.00000001", ts_event=TS, ts_init=TS, next_funding_ns=TS + 1),
        s.FundingRateUpdate(instrument_id=IID, rate="-0.000500", ts_event=TS, ts_init=TS + 5, interval=60),
        s.InstrumentStatus(
            instrument_id=IID,
            action="HALT",
            reason="maintenance",
            trading_event="maintenance",
            is_trading=False,
            is_quoting=False,
            is_short_sell_restricted=False,
            ts_event=TS,
            ts_init=TS,
        ),
        s.CryptoPerpetual(
            id="ETH-USD-PERP.PARADEX",
            raw_symbol="ETH-USD-PERP",
            base_currency="ETH",
            quote_currency="USD",
            settlement_currency="USDC",
            price_precision=2,
            price_increment="0.01",
            size_precision=3,
            size_increment="0.001",
            multiplier="1",
            lot_size="0.001",
            max_quantity="1000.000",
            min_quantity="0.001",
            max_notional="1000000.00 USD",
            min_notional="10.00 USD",
            max_price="100000.00",
            min_price="0.01",
            margin_init="0.05",
            margin_maint="0.025",
            maker_fee="-0.00005",
            taker_fee="0.0003",
            ts_event=TS,
            ts_init=TS,
            info={"a": "1", "b": None, "c": ["x"], "d": {"e": "f"}, "n": 3, "t": True},
        ),
        s.CryptoPerpetual(
            id="KBONK-USD-PERP.PARADEX",
            raw_symbol="kBONK-USD-PERP",
            base_currency="KBONK",
            quote_currency="USD",
            settlement_currency="USDC",
            price_precision=8,
            price_increment="0.00000001",
            size_precision=0,
            size_increment="1",
            margin_init="0.1",
            margin_maint="0.05",
            maker_fee="0",
            taker_fee="0.0005",
            ts_event=TS,
            ts_init=TS,
        ),
        s.OrderUpdated(
            **EV,
            venue_order_id="123",
            account_id=ACCT,
            quantity="0.5",
            price=None,
            trigger_price="64000.0",
            event_id=UUID,
            ts_event=TS,
            ts_init=TS,
            reconciliation=True,
        ),
        s.OrderRejected(
            **EV,
            account_id=ACCT,
            reason="POST_ONLY_WOULD_CROSS",
            due_post_only=True,
            event_id=UUID,
            ts_event=TS,
            ts_init=TS,
        ),
        s.OrderFilled(
            **EV,
            venue_order_id="123",
            account_id=ACCT,
            trade_id="x" * 36,
            position_id="P-1",
            order_side="SELL",
            order_type="STOP_LIMIT",
            last_qty="0.001",
            last_px="63990.0",
            currency="USD",
            commission="-0.01279800 USDC",
            liquidity_side="TAKER",
            event_id=UUID,
            ts_event=TS,
            ts_init=TS,
            info={"fill_type": "FILL"},
            reconciliation=True,
        ),
        s.OrderStatusReport(
            account_id=ACCT,
            instrument_id=IID,
            venue_order_id="v-9",
            order_side=2,
            order_type=4,
            time_in_force=4,
            order_status=10,
            quantity="0.010",
            filled_qty="0.000",
            report_id=UUID,
            ts_accepted=TS,
            ts_last=TS + 1,
            ts_init=TS + 2,
            client_order_id="O-9",
            order_list_id="OL-1",
            venue_position_id="POS-1",
            linked_order_ids=["O-10", "O-11"],
            parent_order_id="O-8",
            contingency_type=1,
            expire_time=TS + 3_600_000_000_000,
            price="63990.0",
            trigger_price="64000.0",
            trigger_type=3,
            limit_offset="0.5",
            trailing_offset="10.25",
            trailing_offset_type=1,
            avg_px="0.00000001",
            display_qty="0.005",
            post_only=False,
            reduce_only=True,
            cancel_reason="none",
            ts_triggered=TS + 3,
        ),
        s.FillReport(
            account_id=ACCT,
            instrument_id=IID,
            venue_order_id="v-9",
            trade_id="t-9",
            order_side=2,
            last_qty="0.010",
            last_px="63990.0",
            commission="0.00000000 USDC",
            liquidity_side=0,
            report_id=UUID,
            ts_event=TS,
            ts_init=TS,
            client_order_id="O-9",
            venue_position_id="POS-1",
        ),
        s.PositionStatusReport(
            account_id=ACCT,
            instrument_id=IID,
            position_side=3,
            quantity="1.250",
            report_id=UUID,
            ts_last=TS,
            ts_init=TS,
            venue_position_id="POS-1",
            avg_px_open="64123.456789",
        ),
        s.PositionStatusReport(
            account_id=ACCT,
            instrument_id=IID,
            position_side=1,
            quantity="0.000",
            report_id=UUID,
            ts_last=TS,
            ts_init=TS,
        ),
        s.AccountState(
            account_id=ACCT,
            account_type="MARGIN",
            base_currency=None,
            balances=[
                s.AccountBalance(
                    total="1.00000000", locked="0.25000000", free="0.75000000", currency="USDC"
                ),
                s.AccountBalance(total="2.00", locked="0.00", free="2.00", currency="USD"),
            ],
            reported=False,
            event_id=UUID,
            ts_event=TS,
            ts_init=TS,
        ),
    ]
    book = LocalBook("BTC-USD-PERP")
    book.apply(
        s.OrderBookDeltas(
            instrument_id=IID,
            deltas=[
                s.OrderBookDelta(
                    instrument_id=IID,
                    action="CLEAR",
                    order=s.BookOrder(side="NO_ORDER_SIDE", price="0", size="0"),
                    flags=32,
                    sequence=5,
                    ts_event=TS,
                    ts_init=TS,
                ),
                s.OrderBookDelta(
                    instrument_id=IID,
                    action="ADD",
                    order=s.BookOrder(side="BUY", price="64999.9", size="0.5"),
                    flags=32,
                    sequence=5,
                    ts_event=TS,
                    ts_init=TS,
                ),
                s.OrderBookDelta(
                    instrument_id=IID,
                    action="ADD",
                    order=s.BookOrder(side="SELL", price="65000.0", size="1.25"),
                    flags=160,
                    sequence=5,
                    ts_event=TS,
                    ts_init=TS,
                ),
            ],
        )
    )
    out += [book.to_deltas(ts_init=TS), book.to_depth10(ts_init=TS)]
    return out


ALL = [e for e in SAMPLES if _name(e) not in BUS_ONLY] + _rich_samples()


# -- (a) round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ALL, ids=_name)
def test_round_trip_through_the_real_object(event: s.Event) -> None:
    obj = to_nautilus(event)
    assert type(obj).__module__.startswith("nautilus_trader") or isinstance(obj, convert.ParadexFundingRateUpdate)
    assert type(obj).__name__ == _name(event) or (
        isinstance(event, s.FundingRateUpdate | s.SubmitOrder) or _name(event) == "OrderInitialized"
    )
    back = from_nautilus(obj)
    assert type(back) is type(event)
    assert back == event, f"{s.to_dict(event)}\n!=\n{s.to_dict(back)}"
    assert s.encode(back) == s.encode(event)


def _book() -> LocalBook:
    deltas = next(e for e in _rich_samples() if isinstance(e, s.OrderBookDeltas))
    book = LocalBook("BTC-USD-PERP")
    book.apply(deltas)
    return book


def test_every_schema_type_is_covered() -> None:
    sampled = {_name(e) for e in ALL}
    assert {t.__name__ for t in convert.SCHEMA_TYPES} <= sampled
    assert set(s.TYPES_BY_NAME) - {t.__name__ for t in convert.SCHEMA_TYPES} <= BUS_ONLY
    status = BookStatus(instrument_id=IID, state="VALID", ts_event=TS, ts_init=TS)
    for ev in [*(e for e in SAMPLES if _name(e) in BUS_ONLY), _book().to_snapshot(ts_init=TS), status]:
        with pytest.raises(ConversionError, match="no Nautilus counterpart"):
            to_nautilus(ev)


def test_book_snapshot_becomes_a_nautilus_snapshot() -> None:
    from nautilus_trader.model.book import OrderBook
    from nautilus_trader.model.enums import BookType

    book = _book()
    deltas = convert.book_snapshot_to_deltas(book.to_snapshot(ts_init=TS), ts_init=TS)
    assert from_nautilus(deltas) == book.to_deltas(ts_init=TS)
    nt_book = OrderBook(deltas.instrument_id, BookType.L2_MBP)
    nt_book.apply_deltas(deltas)
    assert (str(nt_book.best_bid_price()), str(nt_book.best_ask_price())) == ("64999.9", "65000.0")
    assert str(nt_book.best_ask_size()) == "1.25" and deltas.deltas[-1].flags == 160


def test_nautilus_objects_hold_exact_python_types() -> None:
    from datetime import datetime

    from nautilus_trader.model.data import FundingRateUpdate
    from nautilus_trader.model.orders import LimitOrder, StopLimitOrder

    plain = to_nautilus(s.FundingRateUpdate(instrument_id=IID, rate="0.0000125", ts_event=TS, ts_init=TS))
    assert type(plain) is FundingRateUpdate and plain.rate == Decimal("0.0000125")
    assert isinstance(plain.rate, Decimal)
    with_interval = to_nautilus(
        s.FundingRateUpdate(instrument_id=IID, rate="-0.0001", ts_event=TS, ts_init=TS, interval=480, next_funding_ns=9)
    )
    assert isinstance(with_interval, FundingRateUpdate)
    assert (with_interval.interval, with_interval.next_funding_ns) == (480, 9)
    rich = _rich_samples()
    submits = [to_nautilus(e) for e in rich if isinstance(e, s.SubmitOrder)]
    assert {type(c.order) for c in submits} >= {LimitOrder, StopLimitOrder}
    assert all(c.params == {"stp": "EXPIRE_MAKER"} for c in submits)
    batch = to_nautilus(next(e for e in rich if isinstance(e, s.BatchCancelOrders)))
    assert batch.params == {"batch": "1"} and [c.params for c in batch.cancels] == [{"reason": "requote"}] * 2
    report = to_nautilus(next(e for e in rich if isinstance(e, s.OrderStatusReport)))
    assert isinstance(report.expire_time, datetime) and report.avg_px == Decimal("0.00000001")
    fill = to_nautilus(next(e for e in rich if isinstance(e, s.OrderFilled)))
    assert str(fill.commission) == "-0.01279800 USDC" and fill.commission.currency.precision == 8
    perp = to_nautilus(next(e for e in rich if isinstance(e, s.CryptoPerpetual)))
    assert perp.maker_fee == Decimal("-0.00005") and perp.max_notional.as_decimal() == Decimal("1000000")


def _documented_differences(name: str, bus: dict[str, Any], nautilus: dict[str, Any]) -> None:
    """Bring Nautilus 1.221's own dict to the bus spelling where docs/nautilus.md says they differ."""
    if name == "FundingRateUpdate":
        nautilus["rate"] = format(Decimal(nautilus["rate"]), "f")  # a Decimal, not text
        nautilus["type"] = "FundingRateUpdate"
        if "interval" in bus:
            nautilus["interval"] = bus["interval"]  # 1.221 has no such field (ParadexFundingRateUpdate)
    if "params" in bus:  # 1.221 command dicts have no params (they travel on the object)
        nautilus["params"] = bus["params"]
    if name == "BatchCancelOrders":
        for b, n in zip(bus["cancels"], nautilus["cancels"], strict=True):
            if "params" in b:
                n["params"] = b["params"]
    if name in ("OrderStatusReport", "ExecutionMassStatus"):
        reports = [nautilus] if name == "OrderStatusReport" else list(nautilus["order_reports"].values())
        for r in reports:  # an ISO datetime in Nautilus, int ns on the bus
            if r.get("expire_time"):
                import pandas as pd

                r["expire_time"] = int(pd.Timestamp(r["expire_time"]).value)


@pytest.mark.parametrize("event", ALL, ids=_name)
def test_nautilus_to_dict_is_the_bus_dict(event: s.Event) -> None:
    """The wire shape itself: Nautilus's own ``to_dict`` of the object is the bus dict."""
    obj = to_nautilus(event)
    nautilus = json.loads(json.dumps(type(obj).to_dict(obj), default=str))
    bus = json.loads(s.to_json(event))
    _documented_differences(_name(event), bus, nautilus)
    if _name(event) == "OrderStatusReport" and nautilus.get("avg_px"):
        nautilus["avg_px"] = format(Decimal(nautilus["avg_px"]), "f")
    assert nautilus == bus


# -- (b) refusing what Nautilus would abort on, refuse, or change -------------------------------------

# Each case: (label, a schema struct that is valid except for one identifier Nautilus aborts on).
_ABORT_CASES = textwrap.dedent(
    """
    import json, msgspec
    import schemas as s
    from tests.unit.samples import SAMPLES
    from services.nautilus.convert import ConversionError, to_nautilus, order_from_init, account_id, instrument_id

    def sample(name):
        return next(e for e in SAMPLES if type(e).__name__ == name)

    R = msgspec.structs.replace
    cases = {
        "ClientOrderId non-ASCII": lambda: to_nautilus(R(sample("OrderAccepted"), client_order_id="ordé")),
        "VenueOrderId non-ASCII": lambda: to_nautilus(R(sample("OrderAccepted"), venue_order_id="é")),
        "VenueOrderId non-ASCII in a report": lambda: to_nautilus(R(sample("OrderStatusReport"), venue_order_id="é")),
        "TradeId non-ASCII": lambda: to_nautilus(R(sample("OrderFilled"), trade_id="é")),
        "TradeId non-ASCII in a report": lambda: to_nautilus(R(sample("FillReport"), trade_id="é")),
        "TraderId without hyphen": lambda: to_nautilus(R(sample("OrderAccepted"), trader_id="TRADER")),
        "TraderId without hyphen in a command": lambda: to_nautilus(R(sample("CancelOrder"), trader_id="TRADER")),
        "TraderId non-ASCII": lambda: to_nautilus(R(sample("OrderSubmitted"), trader_id="é-1")),
        "StrategyId non-ASCII": lambda: to_nautilus(R(sample("OrderSubmitted"), strategy_id="é-1")),
        "AccountId non-ASCII": lambda: to_nautilus(R(sample("OrderSubmitted"), account_id="PARADEX-é")),
        "AccountId non-ASCII in AccountState": lambda: to_nautilus(R(sample("AccountState"), account_id="PARADEX-é")),
        "Venue non-ASCII": lambda: to_nautilus(R(sample("ExecutionMassStatus"), venue="é")),
        "Venue non-ASCII in an instrument id": lambda: to_nautilus(R(sample("TradeTick"), instrument_id="BTC.é")),
        "ClientId non-ASCII": lambda: to_nautilus(R(sample("CancelOrder"), client_id="é")),
        "OrderListId non-ASCII": lambda: to_nautilus(R(sample("OrderInitialized"), order_list_id="é")),
        "ExecAlgorithmId non-ASCII": lambda: to_nautilus(R(sample("OrderInitialized"), exec_algorithm_id="é")),
        "order_from_init non-ASCII": lambda: order_from_init(R(sample("OrderInitialized"), client_order_id="é")),
        "account_id helper": lambda: account_id("0xé"),
        "instrument_id helper": lambda: instrument_id("BTC-USD-PERP.PARADé"),
        "linked ClientOrderId non-ASCII": lambda: to_nautilus(R(sample("OrderStatusReport"), linked_order_ids=["é"])),
    }
    result = {}
    for label, fn in cases.items():
        try:
            fn()
            result[label] = "converted"
        except ConversionError as exc:
            result[label] = "ConversionError"
    print(json.dumps(result))
    """
)


def _child(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_would_abort_input_raises_conversion_error_and_the_process_survives() -> None:
    proc = _child(_ABORT_CASES)
    assert proc.returncode == 0, f"child died ({proc.returncode}):\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result) == 20
    assert {k: v for k, v in result.items() if v != "ConversionError"} == {}


@pytest.mark.parametrize(
    "direct",
    [
        "from nautilus_trader.model.identifiers import ClientOrderId; ClientOrderId('ordé')",
        "from nautilus_trader.model.identifiers import TraderId; TraderId('TRADER')",
        "from nautilus_trader.model.identifiers import VenueOrderId; VenueOrderId('é')",
    ],
    ids=["ClientOrderId", "TraderId", "VenueOrderId"],
)
def test_control_the_same_input_aborts_nautilus_directly(direct: str) -> None:
    """Proof that the cases above are real: handed to Nautilus directly, the interpreter dies (SIGABRT)."""
    proc = _child(f"{direct}\nprint('survived')")
    assert proc.returncode == -6, (proc.returncode, proc.stdout, proc.stderr[-500:])
    assert "survived" not in proc.stdout


def _refused(fn: Any, match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        fn()


def test_refuses_what_nautilus_would_reject_or_change() -> None:
    R = msgspec.structs.replace
    quote = next(e for e in SAMPLES if isinstance(e, s.QuoteTick))
    trade = next(e for e in SAMPLES if isinstance(e, s.TradeTick))
    fill = next(e for e in SAMPLES if isinstance(e, s.OrderFilled))
    depth = next(e for e in SAMPLES if isinstance(e, s.OrderBookDepth10))
    mass = next(e for e in SAMPLES if isinstance(e, s.ExecutionMassStatus))
    init = next(e for e in SAMPLES if isinstance(e, s.OrderInitialized))
    _refused(lambda: to_nautilus(R(quote, ask_price="65000.10")), "Nautilus refused it")  # precisions differ
    _refused(lambda: to_nautilus(R(trade, size="0")), "Nautilus refused it")
    _refused(lambda: to_nautilus(R(trade, price="65000.1.1")), "TradeTick")  # schema pattern
    _refused(lambda: to_nautilus(R(fill, commission="0.123456789 USDC")), "more decimals than USDC")
    _refused(lambda: to_nautilus(R(fill, commission="0.123 USD")), "more decimals than USD")
    _refused(
        lambda: to_nautilus(
            R(
                depth,
                bids=depth.bids + depth.bids[:1],
                bid_counts=[1] * 11,
                asks=depth.asks + depth.asks[:1],
                ask_counts=[1] * 11,
            )
        ),
        "at most 10",
    )
    _refused(lambda: to_nautilus(R(mass, order_reports={"999": mass.order_reports["123"]})), "venue_order_id")
    submit = next(e for e in SAMPLES if isinstance(e, s.SubmitOrder))
    no_price = R(submit, order=R(init, options=s.OrderOptions()))
    _refused(lambda: to_nautilus(no_price), "Nautilus refused it")  # a LIMIT order without a price
    _refused(lambda: to_nautilus(R(trade, ts_event=-1)), "TradeTick")
    _refused(lambda: from_nautilus(object()), "no bus schema")


def test_refuses_floats_and_unwritable_values_from_nautilus() -> None:
    from nautilus_trader.model.data import FundingRateUpdate
    from nautilus_trader.model.identifiers import InstrumentId

    float_rate = FundingRateUpdate(InstrumentId.from_str(IID), 0.0001, TS, TS)
    _refused(lambda: from_nautilus(float_rate), "float")
    submit = to_nautilus(next(e for e in SAMPLES if isinstance(e, s.SubmitOrder)))
    submit.params["x"] = 1.5
    _refused(lambda: from_nautilus(submit), "float")
    submit.params["x"] = Decimal("1.50")
    assert from_nautilus(submit).params == {"x": "1.50"}
    perp = to_nautilus(next(e for e in SAMPLES if isinstance(e, s.CryptoPerpetual)))
    perp.info["f"] = 1.5
    _refused(lambda: from_nautilus(perp), "does not fit the bus schema")
