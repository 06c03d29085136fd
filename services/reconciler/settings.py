"""Reconciler settings: ``CommonSettings`` plus ``RECON_*`` environment variables.

Every variable is optional; the defaults work against the local simulator.

=================================  =================  ==========================================================
``PARADEX_ACCOUNT``                (from signer)      the account to reconcile; unset = ask the signer (``whoami``)
``RECON_STATE_DIR``                ``.run/reconciler`` diskcache of the fill-dedupe set and published-report keys
``RECON_ORDERS_INTERVAL_S``        10                 periodic run over open orders + history/fills since the
                                                      watermark (0 = off)
``RECON_POSITIONS_INTERVAL_S``     60                 periodic full run that also checks positions, balances and
                                                      the account (0 = off)
``RECON_OVERLAP_S``                60                 every history/fills query starts this far before the stored
                                                      watermark, so rows that become visible late (or carry a
                                                      venue timestamp earlier than the newest one already seen)
                                                      are still read; duplicates are dropped by fill id. Each
                                                      run reads about (overlap + interval) of the account's
                                                      history: raise it for a slow venue, lower it for volume
``RECON_INITIAL_LOOKBACK_S``       0                  first run with no stored watermark: read this far back
                                                      (0 = the venue's whole history; nothing missed)
``RECON_GRACE_MS``                 3000               an order the venue or the bus changed less than this long ago
                                                      is left for the next run (the router is likely publishing it)
``RECON_PAGE_SIZE``                5000               page size of ``/orders-history`` and ``/fills`` (the venue's
                                                      maximum: fewest calls against the rate limit)
``RECON_REST_RATE``                8                  client-side token bucket for our private GETs, per second
                                                      (the venue allows 10/s sustained per account, shared with the
                                                      order router)
``RECON_REST_BURST``               40                 bucket size
``RECON_REST_TIMEOUT_S``           10                 REST request timeout
``RECON_REST_RETRIES``             2                  retries of a GET on timeout/5xx/429 within one run
``RECON_MAX_LOOKUPS``              50                 single-order lookups per run (orders the bulk reads missed)
``RECON_POSITION_RECHECKS``        1                  re-reads of fills + positions before a mismatch is unresolved
``RECON_RUN_TIMEOUT_S``            120                a run that takes longer is abandoned (counted, unresolved)
``RECON_PUBLISH_TIMEOUT_S``        30                 how long a run waits for its corrections to be stored
``RECON_TRADER_ID``                ``TRADER-001``     trader id of orders materialised as external
``RECON_CMD_LOOKBACK_S``           86400              how far back ``CMD`` is read to recognise our own orders
                                                      whose events never reached ``EXEC`` (router killed mid-submit)
``RECON_MASS_STATUS_MAX_BYTES``    900000             cap of the ExecutionMassStatus message (fill reports beyond it
                                                      are left out and counted)
``RECON_FUNDING_CHECK``            1                  read ``/funding/payments`` of markets with a position on full runs
                                                      (counted only: funding payments are never fills)
=================================  =================  ==========================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from services.runtime.settings import CommonSettings, common_kwargs, env_bool, env_float, env_int, env_str

SERVICE = "reconciler"


@dataclass
class ReconSettings(CommonSettings):
    state_dir: str = ".run/reconciler"
    orders_interval: float = 10.0
    positions_interval: float = 60.0
    overlap_s: float = 60.0
    initial_lookback_s: float = 0.0
    grace_ms: int = 3000
    page_size: int = 5000
    rest_rate: float = 8.0
    rest_burst: int = 40
    rest_timeout: float = 10.0
    rest_retries: int = 2
    max_lookups: int = 50
    position_rechecks: int = 1
    run_timeout: float = 120.0
    publish_timeout: float = 30.0
    trader_id: str = "TRADER-001"
    cmd_lookback_s: float = 86400.0
    mass_status_max_bytes: int = 900_000
    funding_check: bool = True

    @classmethod
    def from_env(cls, service: str = SERVICE, env: dict[str, str] | None = None) -> ReconSettings:  # type: ignore[override]
        e = dict(os.environ if env is None else env)
        s = cls(
            **common_kwargs(service, e),  # type: ignore[arg-type]
            state_dir=env_str("RECON_STATE_DIR", ".run/reconciler", e),
            orders_interval=env_float("RECON_ORDERS_INTERVAL_S", 10.0, e),
            positions_interval=env_float("RECON_POSITIONS_INTERVAL_S", 60.0, e),
            overlap_s=env_float("RECON_OVERLAP_S", 60.0, e),
            initial_lookback_s=env_float("RECON_INITIAL_LOOKBACK_S", 0.0, e),
            grace_ms=env_int("RECON_GRACE_MS", 3000, e),
            page_size=env_int("RECON_PAGE_SIZE", 5000, e),
            rest_rate=env_float("RECON_REST_RATE", 8.0, e),
            rest_burst=env_int("RECON_REST_BURST", 40, e),
            rest_timeout=env_float("RECON_REST_TIMEOUT_S", 10.0, e),
            rest_retries=env_int("RECON_REST_RETRIES", 2, e),
            max_lookups=env_int("RECON_MAX_LOOKUPS", 50, e),
            position_rechecks=env_int("RECON_POSITION_RECHECKS", 1, e),
            run_timeout=env_float("RECON_RUN_TIMEOUT_S", 120.0, e),
            publish_timeout=env_float("RECON_PUBLISH_TIMEOUT_S", 30.0, e),
            trader_id=env_str("RECON_TRADER_ID", "TRADER-001", e),
            cmd_lookback_s=env_float("RECON_CMD_LOOKBACK_S", 86400.0, e),
            mass_status_max_bytes=env_int("RECON_MASS_STATUS_MAX_BYTES", 900_000, e),
            funding_check=env_bool("RECON_FUNDING_CHECK", True, e),
        )
        s.validate()
        return s

    def validate(self) -> None:
        if not 1 <= self.page_size <= 5000:
            raise ValueError("RECON_PAGE_SIZE must be in 1..5000 (the venue's page_size range)")
        if self.rest_rate <= 0 or self.rest_burst < 1:
            raise ValueError("RECON_REST_RATE must be > 0 and RECON_REST_BURST >= 1")
        if self.overlap_s < 0 or self.initial_lookback_s < 0 or self.grace_ms < 0:
            raise ValueError("RECON_OVERLAP_S, RECON_INITIAL_LOOKBACK_S and RECON_GRACE_MS must be >= 0")
        if self.orders_interval < 0 or self.positions_interval < 0:
            raise ValueError("RECON_*_INTERVAL_S must be >= 0 (0 = off)")
        if "-" not in self.trader_id:
            raise ValueError("RECON_TRADER_ID must look like NAME-TAG (Nautilus TraderId)")
        if self.max_lookups < 0 or self.position_rechecks < 0:
            raise ValueError("RECON_MAX_LOOKUPS and RECON_POSITION_RECHECKS must be >= 0")
