"""The runtime every service process shares: settings, logs, metrics, problems, health, lifecycle."""

from services.runtime.metrics import Metrics
from services.runtime.problems import Problems
from services.runtime.service import Service, run_service
from services.runtime.settings import (
    CommonSettings,
    common_kwargs,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
)

__all__ = [
    "CommonSettings",
    "Metrics",
    "Problems",
    "Service",
    "common_kwargs",
    "env_bool",
    "env_float",
    "env_int",
    "env_list",
    "env_str",
    "run_service",
]
