"""``python -m services.feed_handler``: run one feed-handler instance."""

from __future__ import annotations

import sys

from services.feed_handler.service import FeedHandler
from services.feed_handler.settings import FeedSettings
from services.runtime import run_service


def main(argv: list[str] | None = None) -> None:
    settings = FeedSettings.from_env().apply_args(sys.argv[1:] if argv is None else argv)
    run_service(lambda: FeedHandler(settings))


if __name__ == "__main__":
    main()
