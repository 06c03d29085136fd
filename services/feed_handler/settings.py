"""Feed-handler settings: ``CommonSettings`` plus ``FEED_*`` environment variables and CLI flags.

Every variable (all optional; the defaults work against the local simulator):

=====================================  ==========  ===========================================================
``FEED_MODE``                          ``shard``   ``shard``: split markets with other instances through KV
                                                   leases; ``replica``: serve every market (hot standby; the
                                                   deterministic Msg-Ids store each event once)
``FEED_MARKETS``                       all         comma list of markets to serve (default: every perpetual)
``FEED_CACHE_DIR``                     ``.run/feed_handler/cache``  disk copy of ``/markets`` for a start
                                                   while the venue REST API is down
``FEED_INSTRUMENT_REFRESH_S``          300         re-read ``/markets`` this often (also on ``markets`` events)
``FEED_STATUS_INTERVAL_S``             5           poll ``/system/state`` this often
``FEED_IDLE_TIMEOUT_S``                30          resubscribe bbo / deltas / markets_summary after this long
                                                   without a message (0 = off)
``FEED_TRADES_IDLE_TIMEOUT_S``         0           same for trades (off: quiet markets trade rarely)
``FEED_FUNDING_IDLE_TIMEOUT_S``        120         same for funding_data
``FEED_MARKETS_CHANNEL``               1           subscribe the ``markets`` channel (spec changes)
``FEED_TRADE_BACKFILL_S``              100         after a takeover or reconnect, fetch missed trades from
                                                   ``GET /trades`` up to this far back (0 = off; keep it
                                                   below the MD duplicate window, 120 s)
``FEED_TRADE_AUDIT_S``                 5           compare each market's trades with ``GET /trades`` this
                                                   often and publish what the socket missed (0 = off)
``FEED_RESYNC_MIN_INTERVAL_S``         1           at most one requested book resync per market this often
``FEED_PUBLISH_BUFFER``                200000      messages buffered while NATS is unreachable (oldest
                                                   dropped and counted beyond it)
``FEED_LEASE_TTL_S``                   4           must equal the ``leases`` bucket TTL (``BUS_KV_LEASES_TTL``)
``FEED_LEASE_SCAN_S``                  0.1         how often free leases are looked for
``FEED_LEASE_ORPHAN_GRACE_S``          1           a market free this long is taken beyond the fair share
``FEED_LEASE_PROBE_S``                 0.3         liveness probe of other lease holders ("no responders"
                                                   twice this far apart: its leases are released at once)
``FEED_HANDOVER_GRACE_S``              2           after a rebalance release, keep publishing this long
``FEED_WS_PING_S``                     5           our WebSocket ping interval
``FEED_WS_ZOMBIE_S``                   20          no frame at all for this long → reconnect
``FEED_WS_BACKOFF_MAX_S``              30          reconnect backoff cap
``FEED_WS_COMPRESSION``                auto        ``deflate``/``none``; auto = none on loopback, else deflate
``FEED_SUB_ACK_TIMEOUT_S``             5           subscribe ack timeout
``FEED_SUB_MAX_RETRIES``               5           fast retries before ``Degraded``
``FEED_SUB_RETRY_MAX_S``               8           cap of the fast retry backoff
``FEED_SUB_DEGRADED_RETRY_S``          15          retry interval of an exhausted subscription
``FEED_REST_TIMEOUT_S``                10          REST request timeout
``FEED_MAKER_FEE`` / ``FEED_TAKER_FEE`` 0 / 0      fees for markets whose definition carries none
=====================================  ==========  ===========================================================

CLI flags of ``python -m services.feed_handler``: ``--mode shard|replica``, ``--standby`` (= replica),
``--markets A,B``; flags win over the environment.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from urllib.parse import urlparse

from services.paradex.instruments import FeeDefaults
from services.paradex.ws_types import WsConfig
from services.runtime.settings import CommonSettings, common_kwargs, env_bool, env_float, env_int, env_list, env_str

MODES = ("shard", "replica")


@dataclass
class FeedSettings(CommonSettings):
    mode: str = "shard"
    markets: list[str] = field(default_factory=list)
    cache_dir: str = ".run/feed_handler/cache"
    instrument_refresh: float = 300.0
    status_interval: float = 5.0
    idle_timeout: float = 30.0
    trades_idle_timeout: float = 0.0
    funding_idle_timeout: float = 120.0
    markets_channel: bool = True
    trade_backfill: float = 100.0
    resync_min_interval: float = 1.0
    trade_audit: float = 5.0
    lease_ttl: float = 4.0
    lease_scan: float = 0.1
    lease_orphan_grace: float = 1.0
    lease_probe: float = 0.3
    handover_grace: float = 2.0
    rest_timeout: float = 10.0
    fees: FeeDefaults = field(default_factory=FeeDefaults)
    ws: WsConfig = field(default_factory=WsConfig)

    @classmethod
    def from_env(cls, service: str = "feed-handler", env: dict[str, str] | None = None) -> FeedSettings:  # type: ignore[override]
        e = dict(os.environ if env is None else env)
        base = common_kwargs(service, e)
        ws_url = str(base["ws_url"])
        compression = env_str("FEED_WS_COMPRESSION", "auto", e).lower()
        if compression == "auto":
            host = urlparse(ws_url).hostname or ""
            compression = "none" if host in ("127.0.0.1", "localhost", "::1") else "deflate"
        ws = WsConfig(
            ping_interval=env_float("FEED_WS_PING_S", 5.0, e),
            zombie_timeout=env_float("FEED_WS_ZOMBIE_S", 20.0, e),
            backoff_max=env_float("FEED_WS_BACKOFF_MAX_S", 30.0, e),
            sub_ack_timeout=env_float("FEED_SUB_ACK_TIMEOUT_S", 5.0, e),
            sub_max_retries=env_int("FEED_SUB_MAX_RETRIES", 5, e),
            sub_retry_max=env_float("FEED_SUB_RETRY_MAX_S", 8.0, e),
            degraded_retry_interval=env_float("FEED_SUB_DEGRADED_RETRY_S", 15.0, e),
            compression=None if compression == "none" else compression,
        )
        base["publish_buffer"] = env_int("FEED_PUBLISH_BUFFER", int(base["publish_buffer"]), e)  # type: ignore[arg-type]
        s = cls(
            **base,  # type: ignore[arg-type]
            mode=env_str("FEED_MODE", "shard", e).lower(),
            markets=env_list("FEED_MARKETS", [], e),
            cache_dir=env_str("FEED_CACHE_DIR", ".run/feed_handler/cache", e),
            instrument_refresh=env_float("FEED_INSTRUMENT_REFRESH_S", 300.0, e),
            status_interval=env_float("FEED_STATUS_INTERVAL_S", 5.0, e),
            idle_timeout=env_float("FEED_IDLE_TIMEOUT_S", 30.0, e),
            trades_idle_timeout=env_float("FEED_TRADES_IDLE_TIMEOUT_S", 0.0, e),
            funding_idle_timeout=env_float("FEED_FUNDING_IDLE_TIMEOUT_S", 120.0, e),
            markets_channel=env_bool("FEED_MARKETS_CHANNEL", True, e),
            trade_backfill=env_float("FEED_TRADE_BACKFILL_S", 100.0, e),
            resync_min_interval=env_float("FEED_RESYNC_MIN_INTERVAL_S", 1.0, e),
            trade_audit=env_float("FEED_TRADE_AUDIT_S", 5.0, e),
            lease_ttl=env_float("FEED_LEASE_TTL_S", env_float("BUS_KV_LEASES_TTL", 4.0, e), e),
            lease_scan=env_float("FEED_LEASE_SCAN_S", 0.1, e),
            lease_orphan_grace=env_float("FEED_LEASE_ORPHAN_GRACE_S", 1.0, e),
            lease_probe=env_float("FEED_LEASE_PROBE_S", 0.3, e),
            handover_grace=env_float("FEED_HANDOVER_GRACE_S", 2.0, e),
            rest_timeout=env_float("FEED_REST_TIMEOUT_S", 10.0, e),
            fees=FeeDefaults(maker=env_str("FEED_MAKER_FEE", "0", e), taker=env_str("FEED_TAKER_FEE", "0", e)),
            ws=ws,
        )
        s.validate()
        return s

    def apply_args(self, argv: list[str] | None = None) -> FeedSettings:
        p = argparse.ArgumentParser(prog="python -m services.feed_handler", description=_DESCRIPTION)
        p.add_argument("--mode", choices=MODES, help="shard (split markets, default) or replica (serve all)")
        p.add_argument("--standby", action="store_true", help="replica mode: a hot standby serving every market")
        p.add_argument("--markets", help="comma-separated markets to serve (default: all)")
        a = p.parse_args(argv)
        if a.mode:
            self.mode = a.mode
        if a.standby:
            self.mode = "replica"
        if a.markets:
            self.markets = [m.strip() for m in a.markets.split(",") if m.strip()]
        self.validate()
        return self

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"FEED_MODE must be one of {MODES}, not {self.mode!r}")
        if self.lease_scan <= 0 or self.lease_ttl <= 0:
            raise ValueError("lease timings must be positive")


_DESCRIPTION = (
    "Paradex public market data onto JetStream: trades, BBO, book deltas, mark/index/funding, "
    "instrument definitions and statuses. Environment variables: see services/feed_handler/settings.py."
)
