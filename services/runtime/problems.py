"""Counting and logging what went wrong: every occurrence counted, log lines rate-limited.

``problems.report("malformed_frame", channel=..., error=...)`` increments
``pdx_<service>_problems_total{kind="malformed_frame"}`` and logs the first occurrence of each kind
with its context, then at most one line per kind every ``interval`` seconds carrying the number of
occurrences not logged in between. Nothing is dropped, rejected or deduplicated silently.
"""

from __future__ import annotations

import logging
import time

from services.runtime.metrics import Metrics


class Problems:
    def __init__(self, metrics: Metrics, logger: logging.Logger, interval: float = 10.0) -> None:
        self.metrics = metrics
        self.log = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self.counts: dict[str, int] = {}

    def report(self, kind: str, /, level: int = logging.WARNING, **context: object) -> None:
        """``kind`` is positional-only, so context may itself carry a ``kind=`` (e.g. a message type)."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.metrics.inc("problems_total", kind=kind)
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) >= self.interval:
            self._last[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
            ctx = {**context, "problem": kind, "count": self.counts[kind]}
            if suppressed:
                ctx["not_logged_since_last"] = suppressed
            detail = " ".join(f"{k}={v}" for k, v in context.items())
            self.log.log(level, "%s (%d so far) %s", kind, self.counts[kind], detail, extra={"ctx": ctx})
        else:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
