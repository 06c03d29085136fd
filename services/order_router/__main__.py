"""``python -m services.order_router``: the order router for ``PARADEX_ACCOUNT`` (or the signer's account)."""

import importlib.util
import sys

from services.order_router.service import OrderRouter
from services.order_router.settings import RouterSettings
from services.runtime import run_service


def _no_sniffio_lookups() -> None:
    """httpcore tries ``import sniffio`` on every request and treats ImportError as "asyncio". When
    sniffio is not installed, each failed import walks sys.path (~0.2 ms, several times per request);
    a ``None`` entry in ``sys.modules`` makes the same ImportError instant. No effect when installed."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def main() -> None:
    _no_sniffio_lookups()
    run_service(lambda: OrderRouter(RouterSettings.from_env()))


if __name__ == "__main__":
    main()
