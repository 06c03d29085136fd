"""Prometheus metrics per process (``prometheus-client``), plus a plain snapshot of the counters
for ``ServiceHealth``.

Counters are created once by name; ``inc(name, labels)`` is the hot-path call. The HTTP endpoint
serves ``/metrics`` on the configured port (0 disables it).
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

log = logging.getLogger("runtime.metrics")


class Metrics:
    def __init__(self, service: str) -> None:
        self.service = service.replace("-", "_")
        self.registry = CollectorRegistry()
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._plain: dict[str, int] = {}
        self.port: int | None = None

    def counter(self, name: str, doc: str = "", labels: tuple[str, ...] = ()) -> Counter:
        c = self._counters.get(name)
        if c is None:
            c = Counter(f"pdx_{self.service}_{name}", doc or name, labels, registry=self.registry)
            self._counters[name] = c
        return c

    def gauge(self, name: str, doc: str = "", labels: tuple[str, ...] = ()) -> Gauge:
        g = self._gauges.get(name)
        if g is None:
            g = Gauge(f"pdx_{self.service}_{name}", doc or name, labels, registry=self.registry)
            self._gauges[name] = g
        return g

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        """Increment a counter (created on first use) and its plain mirror for health messages."""
        c = self.counter(name, labels=tuple(sorted(labels)))
        (c.labels(**labels) if labels else c).inc(amount)
        key = name if not labels else name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"
        self._plain[key] = self._plain.get(key, 0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        g = self.gauge(name, labels=tuple(sorted(labels)))
        (g.labels(**labels) if labels else g).set(value)

    def snapshot(self) -> dict[str, int]:
        return dict(self._plain)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int | None:
        """Start ``/metrics`` on ``addr:port``; if the port is taken, try the next 20 ports."""
        if port <= 0:
            return None
        for p in range(port, port + 20):
            try:
                start_http_server(p, addr=addr, registry=self.registry)
            except OSError as exc:  # taken by another process of the stack: the next one is ours
                log.debug("metrics port %d unavailable: %s", p, exc)
            else:
                self.port = p
                return p
        log.error("no free metrics port in %d..%d; metrics endpoint disabled", port, port + 19)
        return None
