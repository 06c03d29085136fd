"""The instrument catalogue: ``GET /markets`` + ``/system/state``, with a local disk copy.

``refresh()`` reads the venue and writes what it got to a ``diskcache`` directory
(``FEED_CACHE_DIR``); ``load_cache()`` reads that copy back, so a restarted handler can publish
instruments and start its feeds while the venue's REST API is down (``source`` says where the
current definitions came from and is shown in health ``details``). Markets that are not
perpetuals, or whose definition cannot become a valid ``CryptoPerpetual``, are counted and skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diskcache

from schemas import CryptoPerpetual
from services.paradex.instruments import FeeDefaults, crypto_perpetual, market_spec
from services.paradex.normalize import MarketSpec, NormalizeError
from services.paradex.rest import RestClient

log = logging.getLogger("feed_handler.catalog")

Reporter = Callable[..., None]


class Catalog:
    def __init__(self, rest: RestClient, cache_dir: str | Path, *, fees: FeeDefaults, report: Reporter) -> None:
        self.rest = rest
        self.cache_dir = Path(cache_dir)
        self.fees = fees
        self.report = report
        self.raw: dict[str, dict[str, Any]] = {}
        self.instruments: dict[str, CryptoPerpetual] = {}
        self.specs: dict[str, MarketSpec] = {}
        self.system_status: str | None = None
        self.source = "none"
        self.fetched_ns = 0
        self.last_error = ""
        self._cache: diskcache.Cache | None = None

    @property
    def markets(self) -> list[str]:
        return sorted(self.instruments)

    def details(self) -> dict[str, str]:
        out = {
            "instruments_source": self.source,
            "instruments": str(len(self.instruments)),
            "system_status": self.system_status or "unknown",
        }
        if self.fetched_ns:
            out["instruments_fetched_ns"] = str(self.fetched_ns)
        if self.last_error:
            out["venue_rest_error"] = self.last_error[:200]
        return out

    async def refresh(self) -> set[str]:
        """Fetch from the venue; return the markets whose definition changed. Raises on failure."""
        try:
            rows = await self.rest.markets()
            status = await self.rest.system_state()
        except Exception as exc:
            self.last_error = repr(exc)
            raise
        self.last_error = ""
        changed = self._apply(rows, status, time.time_ns())
        self.source = "rest"
        self._write_cache(rows, status)
        return changed

    async def refresh_status(self) -> str:
        status = await self.rest.system_state()
        self.system_status = status
        return status

    def load_cache(self) -> bool:
        """Use the disk copy (venue unreachable at start). Returns False when there is none."""
        cache = self._open_cache()
        if cache is None:
            return False
        rows = cache.get("markets")
        if not isinstance(rows, list) or not rows:
            return False
        status = cache.get("system_state")
        fetched = cache.get("fetched_ns")
        self._apply(rows, status if isinstance(status, str) else "ok", time.time_ns())
        self.source = "cache"
        self.fetched_ns = fetched if isinstance(fetched, int) else 0
        log.warning("venue REST unavailable: using cached definitions of %d markets", len(self.instruments))
        return bool(self.instruments)

    def _apply(self, rows: list[Any], status: str, ts_init: int) -> set[str]:
        changed: set[str] = set()
        seen: set[str] = set()
        for row in rows:
            if not isinstance(row, dict):
                self.report("instrument_malformed", row=str(row)[:200])
                continue
            symbol = row.get("symbol")
            if row.get("asset_kind") not in (None, "PERP"):
                continue  # options, spot: not served by this pipeline
            try:
                inst = crypto_perpetual(row, ts_init, self.fees)
            except NormalizeError as exc:
                self.report("instrument_invalid", market=symbol, error=str(exc))
                continue
            seen.add(inst.raw_symbol)
            if self.raw.get(inst.raw_symbol) != row:
                changed.add(inst.raw_symbol)
                self.raw[inst.raw_symbol] = row
                self.instruments[inst.raw_symbol] = inst
                self.specs[inst.raw_symbol] = market_spec(inst)
        for gone in set(self.instruments) - seen:
            log.warning("market %s no longer listed", gone)
            self.instruments.pop(gone, None)
            self.specs.pop(gone, None)
            self.raw.pop(gone, None)
            changed.add(gone)
        self.system_status = status
        self.fetched_ns = ts_init
        return changed

    def _open_cache(self) -> diskcache.Cache | None:
        if self._cache is None:
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                self._cache = diskcache.Cache(str(self.cache_dir))
            except Exception as exc:  # noqa: BLE001 - a broken cache only costs the fallback
                self.report("instrument_cache_unavailable", dir=str(self.cache_dir), error=repr(exc))
                return None
        return self._cache

    def _write_cache(self, rows: list[Any], status: str) -> None:
        cache = self._open_cache()
        if cache is None:
            return
        try:
            with cache.transact():
                cache.set("markets", rows)
                cache.set("system_state", status)
                cache.set("fetched_ns", self.fetched_ns)
        except Exception as exc:  # noqa: BLE001 - as above
            self.report("instrument_cache_write_failed", error=repr(exc))

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
