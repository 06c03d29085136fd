"""``python -m services.reconciler``: run the reconciler for one account."""

from __future__ import annotations

from services.reconciler.service import Reconciler
from services.reconciler.settings import ReconSettings
from services.runtime import run_service


def main() -> None:
    settings = ReconSettings.from_env()
    run_service(lambda: Reconciler(settings))


if __name__ == "__main__":
    main()
