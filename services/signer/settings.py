"""The signer's settings: where the key comes from, validation tolerances, policy limits and JWT
timing. Read from the environment once at start (``SignerSettings.from_env``); every variable is
listed in ``docs/configuration.md``.

Only the *names* of key sources live here (an env var name, a file path, the dev-key directory);
the key material itself is read by ``services.signer.custody`` and nowhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from services.runtime import CommonSettings, common_kwargs, env_float, env_int, env_list, env_str


def _env_decimal(name: str, default: str, env: dict[str, str]) -> Decimal:
    raw = env_str(name, default, env)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{name} must be a decimal number, got {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name} must be a finite, non-negative decimal, got {raw!r}")
    return value


@dataclass
class SignerSettings(CommonSettings):
    # Key sources (the values of the key variables are read only by custody.load_key).
    key_dir: str = ".run/signer"
    l1_address: str = ""
    chain_id_override: str = ""
    queue_group: str = "signer"
    # Validation.
    max_timestamp_skew_ms: int = 30_000
    markets_refresh_s: float = 60.0
    # Policy. Empty allowed_markets = every venue market; 0 disables a numeric limit.
    allowed_markets: tuple[str, ...] = ()
    max_order_notional: Decimal = field(default_factory=lambda: Decimal("1000000"))
    max_orders_per_s: float = 1000.0
    order_burst: int = 2000
    max_auth_validity_s: int = 86_400
    mark_max_age_s: float = 10.0
    # JWT.
    jwt_refresh_after_s: float = 180.0
    jwt_signature_validity_s: int = 300
    jwt_min_force_interval_s: float = 1.0
    http_timeout_s: float = 10.0
    audit_ack_timeout_s: float = 5.0
    audit_deadline_s: float = 10.0

    @classmethod
    def from_env(cls, service: str = "signer", env: dict[str, str] | None = None) -> SignerSettings:  # type: ignore[override]
        e = dict(os.environ if env is None else env)
        return cls(
            **common_kwargs(service, e),  # type: ignore[arg-type]
            key_dir=env_str("SIGNER_KEY_DIR", ".run/signer", e),
            l1_address=env_str("PARADEX_L1_ADDRESS", "", e),
            chain_id_override=env_str("SIGNER_CHAIN_ID", "", e),
            queue_group=env_str("SIGNER_QUEUE_GROUP", "signer", e),
            max_timestamp_skew_ms=env_int("SIGNER_MAX_TIMESTAMP_SKEW_MS", 30_000, e),
            markets_refresh_s=env_float("SIGNER_MARKETS_REFRESH_S", 60.0, e),
            allowed_markets=tuple(env_list("SIGNER_ALLOWED_MARKETS", [], e)),
            max_order_notional=_env_decimal("SIGNER_MAX_ORDER_NOTIONAL", "1000000", e),
            max_orders_per_s=env_float("SIGNER_MAX_ORDERS_PER_S", 1000.0, e),
            order_burst=env_int("SIGNER_ORDER_BURST", 2000, e),
            max_auth_validity_s=env_int("SIGNER_MAX_AUTH_VALIDITY_S", 86_400, e),
            mark_max_age_s=env_float("SIGNER_MARK_MAX_AGE_S", 10.0, e),
            jwt_refresh_after_s=env_float("SIGNER_JWT_REFRESH_AFTER_S", 180.0, e),
            jwt_signature_validity_s=env_int("SIGNER_JWT_SIGNATURE_VALIDITY_S", 300, e),
            jwt_min_force_interval_s=env_float("SIGNER_JWT_MIN_FORCE_INTERVAL_S", 1.0, e),
            http_timeout_s=env_float("SIGNER_HTTP_TIMEOUT_S", 10.0, e),
            audit_ack_timeout_s=env_float("SIGNER_AUDIT_ACK_TIMEOUT_S", 5.0, e),
            audit_deadline_s=env_float("SIGNER_AUDIT_DEADLINE_S", 10.0, e),
        )
