"""The signer process: the only holder of the Stark key, serving signatures and JWTs over NATS
request/reply.

Start-up: harden the process (no core dumps, not dumpable), load the key (``custody``), learn the
chain id and account from ``GET /system/config`` (or ``SIGNER_CHAIN_ID`` / ``PARADEX_ACCOUNT``),
build the signing tables, load market rules (``GET /markets``), then subscribe, in queue group
``SIGNER_QUEUE_GROUP`` so several instances can share the load, to

* ``signer.paradex.<account>.{order,modify,auth,onboarding,jwt}`` and
* ``signer.paradex.whoami`` (account address, public key, chain -- never the private key).

Background loops keep the market rules, the mark prices used for priceless orders and the JWT
fresh. On SIGTERM the subscriptions are drained (queued requests are answered), in-flight JWT/mark
tasks finish, and the audit buffer is flushed by the runtime. A key that cannot be loaded stops
the process with exit code 2 before it serves anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from nats.aio.subscription import Subscription

from bus import subjects
from services.paradex import signing
from services.paradex.rest import ParadexError, RestClient, UnknownOutcome
from services.runtime import Service
from services.signer import custody
from services.signer.audit import Auditor
from services.signer.custody import KeyLoadError, LoadedKey
from services.signer.handlers import Handlers, Identity
from services.signer.jwt_manager import JwtManager
from services.signer.policy import MarkCache, Policy
from services.signer.settings import SignerSettings
from services.signer.validation import MarketCatalog

WHOAMI_SUBJECT = f"signer.{subjects.VENUE}.whoami"
OPS = ("order", "modify", "auth", "onboarding", "jwt")
EXIT_KEY_REFUSED = 2


class SignerService(Service):
    name = "signer"

    def __init__(self, settings: SignerSettings, warm_up: threading.Thread | None = None) -> None:
        super().__init__(settings)
        self.cfg = settings
        self._warm_up = warm_up
        self.rest: RestClient | None = None
        self._http: httpx.AsyncClient | None = None
        self.loaded: LoadedKey | None = None
        self.identity: Identity | None = None
        self.catalog = MarketCatalog()
        self.handlers: Handlers | None = None
        self.jwt: JwtManager | None = None
        self.marks: MarkCache | None = None
        self.venue_config: dict[str, Any] | None = None
        self.auditor: Auditor | None = None
        self._subs: list[Subscription] = []
        self._loops: list[asyncio.Task[None]] = []
        self.counter_sources.append(self._counters)

    # -- lifecycle --------------------------------------------------------------------------------

    async def preflight(self) -> None:
        custody.harden_process()
        self.rest = self._rest_client()
        l1_configured = any(os.environ.get(v) for v in (custody.L1_KEY_ENV, custody.L1_KEY_FILE_ENV))
        try:
            if l1_configured:
                # Deriving from an L1 key needs the venue's l1_chain_id first.
                await self._wait_for_venue_config()
                if self.venue_config is None:
                    return
                chain = int(str(self.venue_config.get("l1_chain_id", "0")))
                self.loaded = custody.load_key(
                    paradex_env=self.cfg.paradex_env, key_dir=self.cfg.key_dir, l1_chain_id=lambda: chain
                )
            else:
                self.loaded = custody.load_key(paradex_env=self.cfg.paradex_env, key_dir=self.cfg.key_dir)
        except (KeyLoadError, ValueError) as exc:
            self.log.error("refusing to start: %s", exc, extra={"ctx": {"error": str(exc)}})
            raise SystemExit(EXIT_KEY_REFUSED) from None
        key = self.loaded.custody
        self.details["public_key"] = hex(key.public_key)
        self.details["key_source"] = key.source
        self.log.info("key loaded", extra={"ctx": {"public_key": hex(key.public_key), "source": key.source}})

    def _rest_client(self) -> RestClient:
        # Loading the CA bundle costs ~0.2-0.7 s of start-up; a plain-http venue (the local
        # simulator) has no use for it, so only https URLs get a verifying client.
        secure = self.cfg.rest_url.lower().startswith("https://")
        self._http = client = httpx.AsyncClient(
            timeout=self.cfg.http_timeout_s,
            verify=secure,
            headers={"User-Agent": "paradex-bus-signer", "Accept": "application/json"},
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
        )
        return RestClient(self.cfg.rest_url, timeout=self.cfg.http_timeout_s, get_retries=1, client=client)

    async def run(self) -> None:
        if self.loaded is None:
            await self.stopping.wait()
            return
        if not await self._resolve_identity():
            return
        assert self.identity is not None and self.rest is not None
        key = self.loaded.custody
        if self._warm_up is not None:
            await asyncio.to_thread(self._warm_up.join)
        key.warm_up()
        ident = self.identity
        self.details.update({"account": ident.account, "chain_id": ident.chain_id})
        auditor = Auditor(
            self.publisher,
            self.js,
            ident.account,
            self.settings.instance,
            ack_timeout=self.cfg.audit_ack_timeout_s,
            retry_deadline=self.cfg.audit_deadline_s,
        )
        self.auditor = auditor
        self.marks = MarkCache(self._fetch_mark, self.cfg.mark_max_age_s)
        self.jwt = JwtManager(
            self.rest,
            key,
            account=ident.account,
            chain_id=ident.chain_id,
            paradex_env=self.cfg.paradex_env,
            l1_address=self.loaded.l1_address or self.cfg.l1_address or None,
            refresh_after_s=self.cfg.jwt_refresh_after_s,
            signature_validity_s=self.cfg.jwt_signature_validity_s,
            min_force_interval_s=self.cfg.jwt_min_force_interval_s,
            audit=auditor.record,
            report=self.problems.report,
        )
        policy = Policy(
            allowed_markets=self.cfg.allowed_markets,
            max_order_notional=self.cfg.max_order_notional,
            max_orders_per_s=self.cfg.max_orders_per_s,
            order_burst=self.cfg.order_burst,
        )
        self.handlers = Handlers(
            identity=ident,
            custody=key,
            catalog=self.catalog,
            policy=policy,
            marks=self.marks,
            auditor=auditor,
            jwt=self.jwt,
            metrics=self.metrics,
            problems=self.problems,
            max_skew_ms=self.cfg.max_timestamp_skew_ms,
            max_auth_validity_s=self.cfg.max_auth_validity_s,
        )
        # One bounded attempt at the market rules before serving orders; the loop keeps trying.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._refresh_markets(), 5.0)
        await self._subscribe()
        self.set_state("Serving")
        self._loops = [
            asyncio.create_task(self._markets_loop(), name="signer-markets"),
            asyncio.create_task(self._marks_loop(), name="signer-marks"),
            asyncio.create_task(self.jwt.run(self.stopping), name="signer-jwt"),
        ]
        await self.stopping.wait()

    async def stop_intake(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.drain()
        self._subs = []
        self.subscriptions = {k: "drained" for k in self.subscriptions}

    async def drain(self) -> None:
        if self.handlers is not None:
            await self.handlers.drain(self.settings.drain_timeout / 2)
        for t in self._loops:
            t.cancel()
        for t in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.rest is not None:
            await self.rest.close()
        if self._http is not None:
            await self._http.aclose()

    # -- identity ---------------------------------------------------------------------------------

    async def _wait_for_venue_config(self) -> None:
        assert self.rest is not None
        delay = 0.25
        while not self.stopping.is_set():
            try:
                cfg = await self.rest.system_config()
                if isinstance(cfg, dict):
                    self.venue_config = cfg
                    return
                self.problems.report("venue_config_invalid", body=str(cfg)[:200])
            except (ParadexError, UnknownOutcome) as exc:
                self.set_state("WaitingForVenue")
                self.problems.report("venue_config_unavailable", error=str(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            delay = min(delay * 2, 5.0)

    async def _resolve_identity(self) -> bool:
        """Chain id and account: from overrides, else from ``/system/config``. False when stopping."""
        assert self.loaded is not None
        key = self.loaded.custody
        account = self.settings.account
        chain = self.cfg.chain_id_override
        if (not account or not chain) and self.venue_config is None:
            await self._wait_for_venue_config()
            if self.venue_config is None:
                return False
        cfg = self.venue_config or {}
        if not chain:
            chain = str(cfg.get("starknet_chain_id", ""))
            if not chain:
                self.log.error("GET /system/config has no starknet_chain_id; set SIGNER_CHAIN_ID")
                raise SystemExit(EXIT_KEY_REFUSED)
        derived: str | None = None
        try:
            derived = hex(
                signing.account_address(
                    key.public_key, int(cfg["paraclear_account_hash"], 16), int(cfg["paraclear_account_proxy_hash"], 16)
                )
            )
        except (KeyError, TypeError, ValueError):
            derived = None
        if not account:
            if derived is None:
                self.log.error("cannot derive the account address (no class hashes); set PARADEX_ACCOUNT")
                raise SystemExit(EXIT_KEY_REFUSED)
            account = derived
        account = account.lower()
        try:
            subjects.token(account)
            int(account, 16)
        except ValueError:
            self.log.error("PARADEX_ACCOUNT must be a 0x-hex address, got %r", account)
            raise SystemExit(EXIT_KEY_REFUSED) from None
        if derived is not None and int(derived, 16) != int(account, 16):
            # Legitimate for a subkey (the key signs for its main account); worth knowing otherwise.
            self.log.warning(
                "PARADEX_ACCOUNT differs from the address derived from this key (subkey?)",
                extra={"ctx": {"account": account, "derived": derived}},
            )
        self.identity = Identity(account, chain, self.cfg.paradex_env, self.settings.instance)
        return True

    # -- subscriptions ----------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        assert self.identity is not None and self.handlers is not None
        h = self.handlers
        callbacks = {
            "order": h.on_order,
            "modify": h.on_modify,
            "auth": h.on_auth,
            "onboarding": h.on_onboarding,
            "jwt": h.on_jwt,
        }
        group = self.cfg.queue_group
        for op in OPS:
            subject = subjects.signer(self.identity.account, op)
            self._subs.append(await self.nc.subscribe(subject, queue=group, cb=h.guarded(op, callbacks[op])))
            self.subscriptions[subject] = "serving"
        self._subs.append(await self.nc.subscribe(WHOAMI_SUBJECT, queue=group, cb=h.guarded("whoami", h.on_whoami)))
        self.subscriptions[WHOAMI_SUBJECT] = "serving"
        await self.nc.flush()
        self.log.info(
            "serving",
            extra={"ctx": {"account": self.identity.account, "chain_id": self.identity.chain_id, "group": group}},
        )

    # -- venue data -------------------------------------------------------------------------------

    async def _refresh_markets(self) -> bool:
        assert self.rest is not None
        try:
            rows = await self.rest.markets()
        except (ParadexError, UnknownOutcome) as exc:
            self.problems.report("markets_refresh_failed", error=str(exc)[:300])
            return False
        bad = self.catalog.update(rows)
        for symbol in bad:
            self.problems.report("market_row_malformed", market=symbol)
        self.details["markets"] = str(len(self.catalog.rules))
        return True

    async def _markets_loop(self) -> None:
        while True:
            ok = self.catalog.loaded
            await asyncio.sleep(self.cfg.markets_refresh_s if ok else 2.0)
            await self._refresh_markets()

    async def _fetch_mark(self, market: str) -> Decimal | None:
        assert self.rest is not None
        rows = await self.rest.markets_summary(market)
        for row in rows:
            if isinstance(row, dict) and row.get("symbol") == market:
                try:
                    mark = Decimal(str(row.get("mark_price")))
                except InvalidOperation:
                    return None
                return mark if mark.is_finite() and mark > 0 else None
        return None

    async def _marks_loop(self) -> None:
        assert self.marks is not None
        period = max(1.0, self.cfg.mark_max_age_s / 2)
        while True:
            await asyncio.sleep(period)
            for market in self.marks.recently_used():
                try:
                    mark = await self._fetch_mark(market)
                except (ParadexError, UnknownOutcome) as exc:
                    self.problems.report("mark_fetch_failed", market=market, error=str(exc)[:300])
                    continue
                if mark is not None:
                    self.marks.put(market, mark)

    # -- health -----------------------------------------------------------------------------------

    def _counters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if self.handlers is not None:
            out["signatures_issued"] = self.handlers.signed
            out.update({f"requests{{op={op}}}": n for op, n in self.handlers.requests.items()})
        if self.jwt is not None:
            out["jwt_refreshes"] = self.jwt.refreshes
            out["onboarded"] = self.jwt.onboarded
        if self.auditor is not None:
            out["audit_stored"] = self.auditor.stored
            out["audit_retried"] = self.auditor.retried
            out["audit_failed"] = self.auditor.failed
        if self.rest is not None:
            out.update(self.rest.stats.as_counters())
        return out

    def health_snapshot(self) -> tuple[str, dict[str, str], dict[str, int], dict[str, str]]:
        if self.jwt is not None:
            self.details["jwt"] = self.jwt.status()
        return super().health_snapshot()


def main() -> None:
    from services.runtime import run_service

    # Build the signing tables (~0.3 s of CPU) while the process connects and loads its key, so a
    # restarted signer serves sooner; run() waits for it before subscribing.
    warm_up = threading.Thread(target=signing.warm_up, name="signer-tables", daemon=True)
    warm_up.start()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    run_service(lambda: SignerService(SignerSettings.from_env(), warm_up))
