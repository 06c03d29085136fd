"""Run the example market maker on a stock Nautilus ``TradingNode`` against the paradex-bus.

With the local stack up (``make up``)::

    .venv/bin/python examples/run_market_maker.py --market BTC-USD-PERP --size 0.001

The account defaults to ``PARADEX_ACCOUNT``, else the one account with an ``AccountState`` on the
bus (the local stack has exactly one). Stop with Ctrl-C (the strategy cancels its quotes and
closes its position), or pass ``--run-secs N``. ``--report FILE`` writes what the strategy saw and
did as JSON when the node stops (used by tests/nautilus/test_node.py).
"""

from __future__ import annotations

import time

T_PROCESS = time.monotonic()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from decimal import Decimal  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nautilus_trader.model.identifiers import InstrumentId  # noqa: E402

from examples.market_maker import MarketMaker, MarketMakerConfig  # noqa: E402
from services.nautilus.node import build_node, paradex_node_config  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--market", default="BTC-USD-PERP", help="Paradex market symbol")
    p.add_argument("--account", default=os.environ.get("PARADEX_ACCOUNT"), help="account address (0x...)")
    p.add_argument("--nats-url", default=os.environ.get("NATS_URL"), help="NATS server(s), default NATS_URL")
    p.add_argument("--trader-id", default="TRADER-001")
    p.add_argument("--size", type=Decimal, default=Decimal("0.001"), help="quote size in base units")
    p.add_argument("--edge-ticks", type=int, default=1, help="distance of each quote from mid, in ticks")
    p.add_argument("--requote-ticks", type=int, default=1, help="move a quote once its target moved this much")
    p.add_argument("--max-position", type=Decimal, default=Decimal("0.01"))
    p.add_argument("--max-order-age", type=float, default=20.0, help="cancel quotes older than this (s)")
    p.add_argument("--no-flatten", action="store_true", help="keep the position on stop")
    p.add_argument("--quotes", choices=["venue", "book"], default="venue", help="venue BBO or built-book quotes")
    p.add_argument("--run-secs", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    p.add_argument("--report", type=Path, help="write the strategy's report here (JSON) when the node stops")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


T_IMPORTED = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    config = paradex_node_config(
        trader_id=args.trader_id,
        account=args.account.lower() if args.account else None,
        nats_url=args.nats_url,
        quotes_source=args.quotes,
        log_level=args.log_level,
    )
    node = build_node(config)
    strategy = MarketMaker(
        MarketMakerConfig(
            instrument_id=InstrumentId.from_str(f"{args.market}.PARADEX"),
            trade_size=args.size,
            edge_ticks=args.edge_ticks,
            requote_ticks=args.requote_ticks,
            max_position=args.max_position,
            max_order_age_secs=args.max_order_age,
            flatten_on_stop=not args.no_flatten,
        )
    )
    node.trader.add_strategy(strategy)
    built = time.monotonic() - t0
    if args.run_secs > 0:
        node.get_event_loop().call_later(args.run_secs, node.stop)
    try:
        node.run()
    finally:
        started = strategy.started_monotonic
        report = {
            **strategy.report(),
            "import_secs": round(T_IMPORTED - T_PROCESS, 3),
            "build_secs": round(built, 3),
            "start_secs": round(started - t0, 3) if started else None,
            "run_secs": round(time.monotonic() - t0, 3),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        node.dispose()
        if args.report:
            args.report.write_text(json.dumps(report, indent=2, sort_keys=True))
    return 0 if report["started"] else 1


if __name__ == "__main__":
    sys.exit(main())
