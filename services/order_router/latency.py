"""Where the time of a submit goes, per hop, from the command stored in ``CMD`` to OrderAccepted
stored in ``EXEC`` (shown in ``ServiceHealth.details`` as ``lat_<hop>_p50_us`` / ``_p99_us``, read by
``bench/order_bench.py``).

Hops of one order (all on this machine's clock):

====================  ==========================================================================
``bus_in``            command stored in CMD -> delivered to the router
``submit_events``     delivered -> OrderInitialized and OrderSubmitted stored (pre-trade checks incl.)
``sign``              the signer's round trip (request -> signature), overlapping ``submit_events``
``sign_wait``         OrderSubmitted stored -> signature in hand (the part of ``sign`` not overlapped)
``rest``              POST /orders sent -> venue reply (the venue's time, and the network's)
``venue_ws``          venue reply -> the WS order update that says OPEN (the venue's time; 0 when
                      the WS update came first)
``ws_handle``         WS update received -> OrderAccepted built (decode, per-order lock)
``publish_out``       OrderAccepted built -> stored in EXEC
``total``             command stored -> OrderAccepted stored
``own``               ``total`` - ``rest`` - ``venue_ws``: what the pipeline itself adds
``router``            ``own`` - ``sign_wait``: what the router adds besides waiting for the signer
====================  ==========================================================================

Only orders accepted through the normal path are measured (denials, rejections and unknown
outcomes are not latency samples). Reservoirs keep the last ``MAX_SAMPLES`` per hop.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

MAX_SAMPLES = 20_000
HOPS = (
    "bus_in", "submit_events", "sign", "sign_wait", "rest", "venue_ws", "ws_handle", "publish_out", "total", "own",
    "router",
)
MAX_TRACKED = 20_000


@dataclass
class _Marks:
    stored: int = 0
    received: int = 0
    submitted: int = 0
    sign_start: int = 0
    sign_end: int = 0
    signed: int = 0
    post_start: int = 0
    post_end: int = 0
    ws_in: int = 0
    built: int = 0


class LatencyTracker:
    def __init__(self) -> None:
        self._marks: dict[str, _Marks] = {}
        self.samples: dict[str, deque[int]] = {h: deque(maxlen=MAX_SAMPLES) for h in HOPS}

    def start(self, coid: str, stored_ns: int, received_ns: int) -> None:
        if len(self._marks) >= MAX_TRACKED:
            self._marks.pop(next(iter(self._marks)))
        self._marks[coid] = _Marks(stored=stored_ns, received=received_ns)

    def mark(self, coid: str, name: str, ns: int | None = None) -> None:
        m = self._marks.get(coid)
        if m is not None and not getattr(m, name):
            setattr(m, name, ns or time.time_ns())

    def forget(self, coid: str) -> None:
        self._marks.pop(coid, None)

    def accepted(self, coid: str, stored_ns: int) -> None:
        """OrderAccepted of ``coid`` was stored at ``stored_ns``: record its hops."""
        m = self._marks.pop(coid, None)
        if m is None or not (m.stored and m.received and m.submitted and m.post_start and m.post_end):
            return
        ws_in = m.ws_in or m.post_end
        built = m.built or stored_ns
        hops = {
            "bus_in": m.received - m.stored,
            "submit_events": m.submitted - m.received,
            "sign_wait": max(0, (m.signed or m.submitted) - m.submitted),
            "rest": m.post_end - m.post_start,
            "venue_ws": max(0, ws_in - m.post_end),
            "ws_handle": max(0, built - ws_in),
            "publish_out": stored_ns - built,
            "total": stored_ns - m.stored,
        }
        hops["own"] = hops["total"] - hops["rest"] - hops["venue_ws"]
        hops["router"] = hops["own"] - hops["sign_wait"]
        if m.sign_start and m.sign_end:
            hops["sign"] = m.sign_end - m.sign_start
        for h, v in hops.items():
            self.samples[h].append(max(0, v))

    def summary(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for h, values in self.samples.items():
            if not values:
                continue
            ordered = sorted(values)
            out[f"lat_{h}_p50_us"] = str(_pct(ordered, 0.50) // 1000)
            out[f"lat_{h}_p99_us"] = str(_pct(ordered, 0.99) // 1000)
        if self.samples["total"]:
            out["lat_samples"] = str(len(self.samples["total"]))
        return out

    def reset(self) -> None:
        for values in self.samples.values():
            values.clear()


def _pct(ordered: list[int], p: float) -> int:
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]
