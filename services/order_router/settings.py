"""Order-router settings: every knob from the environment, each with a default that works offline.

Common variables (``PARADEX_ACCOUNT``, ``PARADEX_REST_URL``, ``PARADEX_WS_URL``, ``NATS_URL`` ...)
come from ``services.runtime.settings.common_kwargs``; the router's own are prefixed ``ROUTER_``:

==================================  =======  ==========================================================
variable                            default  meaning
==================================  =======  ==========================================================
ROUTER_DURABLE                      derived  durable consumer name on ``CMD`` (``order-router-<acct>``)
ROUTER_MAX_CONCURRENT               256      commands processed at once (other orders never wait on one)
ROUTER_CMD_ACK_WAIT_S               10       JetStream ack wait of the command consumer
ROUTER_RECV_WINDOW_MS               10000    ``recv_window`` sent with every order; bounds how long a
                                             signed request can still be accepted by the venue
ROUTER_UNKNOWN_GRACE_S              5        extra wait after a signature's recv_window expired before an
                                             order the venue never heard of is declared not placed
ROUTER_SUBMIT_RETRY_BUDGET_S        30       how long a submit that provably did not reach the venue
                                             (429, connection refused) keeps being retried
ROUTER_INFLIGHT_INTERVAL_S          1        in-flight check loop period
ROUTER_INFLIGHT_THRESHOLD_S         5        age of SUBMITTED / PENDING_* before the venue is queried
ROUTER_OPEN_CHECK_INTERVAL_S        15       open-order audit period (0 = off): one ``GET /orders``
ROUTER_FILL_GRACE_S                 2        wait for WS fills the venue says exist before fetching them
ROUTER_REST_TIMEOUT_S               10       REST timeout (a timeout is an unknown outcome)
ROUTER_RATE_ORDERS_PER_S / _PER_MIN 800 / 17250   client-side buckets for order writes (§4.10)
ROUTER_RATE_GETS_PER_S / _PER_MIN   120 / 600     client-side buckets for private GETs
ROUTER_MARK_MAX_AGE_S               30       older marks are refreshed from REST; no mark: no band check
ROUTER_SYSTEM_STATE_INTERVAL_S      5        ``GET /system/state`` poll period
ROUTER_PRETRADE                     1        pre-trade checks on (0 lets the venue decide everything)
ROUTER_LEASE                        1        single active router per account (KV ``leases``)
ROUTER_BATCH_WINDOW_MS              20       how long a batch submit waits for its remaining members
ROUTER_WS                           1        follow the private WebSocket
ROUTER_BALANCE_REFRESH_S            5        min. interval between ``GET /balance`` for AccountState
ROUTER_ACCOUNT_STATE_INTERVAL_S     0.25     AccountState at most this often (the newest venue summary)
ROUTER_SIGNER_TIMEOUT_S             2        signer request timeout
ROUTER_TEST_CRASH_AT                ""       test hook: ``after_sign`` | ``after_submit`` -> os._exit(137)
ROUTER_TEST_CRASH_COID              ""       ...only for client order ids starting with this prefix
==================================  =======  ==========================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from services.runtime.settings import CommonSettings, common_kwargs, env_bool, env_float, env_int, env_str

SERVICE = "order-router"
CRASH_POINTS = ("after_sign", "after_submit")


@dataclass
class RouterSettings(CommonSettings):
    durable: str = ""
    max_concurrent: int = 256
    cmd_ack_wait: float = 10.0
    recv_window_ms: int = 10_000
    unknown_grace: float = 5.0
    submit_retry_budget: float = 30.0
    inflight_interval: float = 1.0
    inflight_threshold: float = 5.0
    open_check_interval: float = 15.0
    fill_grace: float = 2.0
    rest_timeout: float = 10.0
    orders_per_s: int = 800
    orders_per_min: int = 17_250
    gets_per_s: int = 120
    gets_per_min: int = 600
    mark_max_age: float = 30.0
    system_state_interval: float = 5.0
    pretrade: bool = True
    lease: bool = True
    lease_renew: float = 1.0
    batch_window: float = 0.02
    ws_enabled: bool = True
    balance_refresh: float = 5.0
    account_interval: float = 0.25
    signer_timeout: float = 2.0
    crash_at: str = ""
    crash_coid: str = ""

    @classmethod
    def from_env(cls, service: str = SERVICE, env: dict[str, str] | None = None) -> RouterSettings:
        e = dict(os.environ if env is None else env)
        crash_at = env_str("ROUTER_TEST_CRASH_AT", "", e)
        if crash_at and crash_at not in CRASH_POINTS:
            raise ValueError(f"ROUTER_TEST_CRASH_AT must be one of {', '.join(CRASH_POINTS)}, got {crash_at!r}")
        return cls(
            **common_kwargs(service, e),  # type: ignore[arg-type]
            durable=env_str("ROUTER_DURABLE", "", e),
            max_concurrent=max(1, env_int("ROUTER_MAX_CONCURRENT", 256, e)),
            cmd_ack_wait=env_float("ROUTER_CMD_ACK_WAIT_S", 10.0, e),
            recv_window_ms=max(10, env_int("ROUTER_RECV_WINDOW_MS", 10_000, e)),
            unknown_grace=env_float("ROUTER_UNKNOWN_GRACE_S", 5.0, e),
            submit_retry_budget=env_float("ROUTER_SUBMIT_RETRY_BUDGET_S", 30.0, e),
            inflight_interval=env_float("ROUTER_INFLIGHT_INTERVAL_S", 1.0, e),
            inflight_threshold=env_float("ROUTER_INFLIGHT_THRESHOLD_S", 5.0, e),
            open_check_interval=env_float("ROUTER_OPEN_CHECK_INTERVAL_S", 15.0, e),
            fill_grace=env_float("ROUTER_FILL_GRACE_S", 2.0, e),
            rest_timeout=env_float("ROUTER_REST_TIMEOUT_S", 10.0, e),
            orders_per_s=env_int("ROUTER_RATE_ORDERS_PER_S", 800, e),
            orders_per_min=env_int("ROUTER_RATE_ORDERS_PER_MIN", 17_250, e),
            gets_per_s=env_int("ROUTER_RATE_GETS_PER_S", 120, e),
            gets_per_min=env_int("ROUTER_RATE_GETS_PER_MIN", 600, e),
            mark_max_age=env_float("ROUTER_MARK_MAX_AGE_S", 30.0, e),
            system_state_interval=env_float("ROUTER_SYSTEM_STATE_INTERVAL_S", 5.0, e),
            pretrade=env_bool("ROUTER_PRETRADE", True, e),
            lease=env_bool("ROUTER_LEASE", True, e),
            lease_renew=env_float("ROUTER_LEASE_RENEW_S", 1.0, e),
            batch_window=env_float("ROUTER_BATCH_WINDOW_MS", 20.0, e) / 1000.0,
            ws_enabled=env_bool("ROUTER_WS", True, e),
            balance_refresh=env_float("ROUTER_BALANCE_REFRESH_S", 5.0, e),
            account_interval=env_float("ROUTER_ACCOUNT_STATE_INTERVAL_S", 0.25, e),
            signer_timeout=env_float("ROUTER_SIGNER_TIMEOUT_S", 2.0, e),
            crash_at=crash_at,
            crash_coid=env_str("ROUTER_TEST_CRASH_COID", "", e),
        )

    def durable_for(self, account: str) -> str:
        """One durable per account, so a replacement instance resumes where the last one stopped."""
        return self.durable or f"order-router-{account}"
