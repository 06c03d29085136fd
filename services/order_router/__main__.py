"""``python -m services.order_router``: the order router for ``PARADEX_ACCOUNT`` (or the signer's account)."""

from services.order_router.service import OrderRouter
from services.order_router.settings import RouterSettings
from services.runtime import run_service


def main() -> None:
    run_service(lambda: OrderRouter(RouterSettings.from_env()))


if __name__ == "__main__":
    main()
