"""Settings every process shares, read from environment variables with defaults that work offline.

Each service extends ``CommonSettings`` with its own fields; every variable is documented in
``docs/configuration.md``. Nothing here reads the Stark private key (only the signer does).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from bus.connection import NatsSettings

SIM_REST_URL = "http://127.0.0.1:8000/v1"
SIM_WS_URL = "ws://127.0.0.1:8001/v1"

VENUE_URLS = {
    "sim": (SIM_REST_URL, SIM_WS_URL),
    "testnet": ("https://api.testnet.paradex.trade/v1", "wss://ws.api.testnet.paradex.trade/v1"),
    "prod": ("https://api.prod.paradex.trade/v1", "wss://ws.api.prod.paradex.trade/v1"),
}


def env_str(name: str, default: str, env: dict[str, str] | None = None) -> str:
    e = os.environ if env is None else env
    v = e.get(name)
    return v if v not in (None, "") else default


def env_int(name: str, default: int, env: dict[str, str] | None = None) -> int:
    return int(env_str(name, str(default), env))


def env_float(name: str, default: float, env: dict[str, str] | None = None) -> float:
    return float(env_str(name, str(default), env))


def env_bool(name: str, default: bool, env: dict[str, str] | None = None) -> bool:
    return env_str(name, "1" if default else "0", env).lower() in ("1", "true", "yes", "on")


def env_list(name: str, default: list[str], env: dict[str, str] | None = None) -> list[str]:
    raw = env_str(name, "", env)
    return [x.strip() for x in raw.split(",") if x.strip()] if raw else list(default)


def default_instance() -> str:
    return f"{socket.gethostname().split('.')[0]}-{os.getpid()}"


@dataclass
class CommonSettings:
    """Shared by every service. ``service`` is fixed by the process; the rest comes from env."""

    service: str
    instance: str = field(default_factory=default_instance)
    nats: NatsSettings = field(default_factory=NatsSettings)
    metrics_port: int = 0
    metrics_addr: str = "127.0.0.1"
    log_level: str = "INFO"
    log_format: str = "json"
    health_interval: float = 2.0
    paradex_env: str = "sim"
    rest_url: str = SIM_REST_URL
    ws_url: str = SIM_WS_URL
    account: str = ""
    drain_timeout: float = 10.0
    publish_buffer: int = 200_000

    @classmethod
    def from_env(cls, service: str, env: dict[str, str] | None = None) -> CommonSettings:
        return cls(**common_kwargs(service, env))


def common_kwargs(service: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """The ``CommonSettings`` fields from env, for subclasses to extend with their own."""
    e = dict(os.environ if env is None else env)
    paradex_env = env_str("PARADEX_ENV", "sim", e)
    rest_default, ws_default = VENUE_URLS.get(paradex_env, VENUE_URLS["sim"])
    prefix = service.upper().replace("-", "_")
    return {
        "service": service,
        "instance": env_str("INSTANCE_ID", default_instance(), e),
        "nats": NatsSettings.from_env(e, user_prefix=prefix),
        "metrics_port": env_int(f"{prefix}_METRICS_PORT", env_int("METRICS_PORT", 0, e), e),
        "metrics_addr": env_str("METRICS_ADDR", "127.0.0.1", e),
        "log_level": env_str("LOG_LEVEL", "INFO", e),
        "log_format": env_str("LOG_FORMAT", "json", e),
        "health_interval": env_float("HEALTH_INTERVAL", 2.0, e),
        "paradex_env": paradex_env,
        "rest_url": env_str("PARADEX_REST_URL", rest_default, e),
        "ws_url": env_str("PARADEX_WS_URL", ws_default, e),
        "account": env_str("PARADEX_ACCOUNT", "", e).lower(),
        "drain_timeout": env_float("DRAIN_TIMEOUT", 10.0, e),
        "publish_buffer": env_int("PUBLISH_BUFFER", 200_000, e),
    }
