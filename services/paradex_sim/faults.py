"""Fault injection registry (admin API only; never reachable from the Paradex paths).

Each fault has a kind, a scope (channel glob, market, account, HTTP method and path glob) and a
budget: ``count`` (how many times it fires, then it is removed) and/or ``duration_s`` (active
window). With neither it stays until deleted. Kinds:

* ``ws_stale``        -- notifications on matching channels are silently not sent (connection stays up)
* ``ws_reject``       -- WebSocket upgrades are refused with HTTP 503
* ``book_seq_skip``   -- the next deltas update(s) of a market are not sent: clients see a seq gap
* ``book_seq_dup``    -- the next deltas update(s) of a market are sent twice
* ``private_drop``    -- private ``orders``/``fills`` messages are not sent
* ``private_dup``     -- private ``orders``/``fills`` messages are sent twice
* ``rest_delay``      -- matching REST calls are delayed by ``delay_ms`` then served normally
* ``rest_error``      -- matching REST calls fail with ``status`` (5xx or 429) without any effect
* ``rest_timeout``    -- matching REST calls hang ``seconds`` (default 35) then get 503, no effect
* ``rest_lost_reply`` -- matching REST calls take effect, then the reply is lost: the connection is
  cut (``mode: "drop"``) or an error ``status`` is returned (``mode: "status"``)

The hot paths check one boolean per category before looking at any fault.
"""

from __future__ import annotations

import fnmatch
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

KINDS = (
    "ws_stale", "ws_reject", "book_seq_skip", "book_seq_dup", "private_drop", "private_dup",
    "rest_delay", "rest_error", "rest_timeout", "rest_lost_reply",
)
PRIVATE_CHANNELS = ("orders", "fills")


@dataclass
class Fault:
    id: str
    kind: str
    channel: str | None = None
    market: str | None = None
    account: str | None = None
    method: str | None = None
    path: str | None = None
    status: int = 500
    delay_ms: int = 0
    seconds: float = 35.0
    mode: str = "drop"
    count: int | None = None
    until: float | None = None
    fired: int = 0
    created: float = field(default_factory=time.monotonic)

    def expired(self, now: float) -> bool:
        return (self.until is not None and now >= self.until) or (self.count is not None and self.count <= 0)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "fired": self.fired}
        for k in ("channel", "market", "account", "method", "path"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        if self.kind in ("rest_error", "rest_lost_reply"):
            out["status"] = self.status
        if self.kind == "rest_lost_reply":
            out["mode"] = self.mode
        if self.kind == "rest_delay":
            out["delay_ms"] = self.delay_ms
        if self.kind == "rest_timeout":
            out["seconds"] = self.seconds
        out["count_left"] = self.count
        out["seconds_left"] = None if self.until is None else max(0.0, round(self.until - time.monotonic(), 3))
        return out


class FaultRegistry:
    def __init__(self) -> None:
        self.faults: dict[str, Fault] = {}
        self._ids = itertools.count(1)
        self.stale_active = False
        self.book_active = False
        self.private_active = False
        self.rest_active = False
        self.reject_active = False
        self.history: list[dict[str, Any]] = []

    # -- admin --------------------------------------------------------------------------------------

    def add(self, spec: dict[str, Any]) -> Fault:
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        f = Fault(id=f"f{next(self._ids)}", kind=str(kind))
        for k in ("channel", "market", "account", "path", "mode"):
            if spec.get(k) is not None:
                setattr(f, k, str(spec[k]))
        if spec.get("method") is not None:
            f.method = str(spec["method"]).upper()
        if f.account is not None:
            f.account = f.account.lower()
        if spec.get("status") is not None:
            f.status = int(spec["status"])
        if spec.get("delay_ms") is not None:
            f.delay_ms = int(spec["delay_ms"])
        if spec.get("seconds") is not None:
            f.seconds = float(spec["seconds"])
        if spec.get("count") is not None:
            f.count = int(spec["count"])
            if f.count < 1:
                raise ValueError("count must be >= 1")
        if spec.get("duration_s") is not None:
            f.until = time.monotonic() + float(spec["duration_s"])
        self._validate(f)
        self.faults[f.id] = f
        self._flags()
        return f

    @staticmethod
    def _validate(f: Fault) -> None:
        if f.kind == "ws_stale" and not f.channel:
            raise ValueError("ws_stale needs a channel (glob), e.g. 'trades.BTC-USD-PERP' or 'bbo.*'")
        if f.kind in ("book_seq_skip", "book_seq_dup") and not f.market:
            raise ValueError(f"{f.kind} needs a market")
        if f.kind in ("book_seq_skip", "book_seq_dup") and f.count is None and f.until is None:
            f.count = 1
        if f.kind in ("private_drop", "private_dup") and f.channel not in PRIVATE_CHANNELS:
            raise ValueError("private faults need channel 'orders' or 'fills'")
        if f.kind.startswith("rest_") and not f.path:
            raise ValueError("REST faults need a path glob relative to /v1, e.g. '/orders' or '/orders*'")
        if f.kind == "rest_error" and not (f.status == 429 or 500 <= f.status <= 599):
            raise ValueError("rest_error status must be 429 or 5xx")
        if f.kind == "rest_lost_reply" and f.mode not in ("drop", "status"):
            raise ValueError("rest_lost_reply mode must be 'drop' or 'status'")
        if f.kind == "rest_delay" and f.delay_ms <= 0:
            raise ValueError("rest_delay needs delay_ms > 0")

    def remove(self, fault_id: str) -> bool:
        f = self.faults.pop(fault_id, None)
        self._flags()
        return f is not None

    def clear(self) -> int:
        n = len(self.faults)
        self.faults.clear()
        self._flags()
        return n

    def list(self) -> list[dict[str, Any]]:
        self._expire()
        return [f.to_json() for f in self.faults.values()]

    def _expire(self) -> None:
        now = time.monotonic()
        dead = [fid for fid, f in self.faults.items() if f.expired(now)]
        for fid in dead:
            del self.faults[fid]
        if dead:
            self._flags()

    def _flags(self) -> None:
        kinds = {f.kind for f in self.faults.values()}
        self.stale_active = "ws_stale" in kinds
        self.book_active = bool(kinds & {"book_seq_skip", "book_seq_dup"})
        self.private_active = bool(kinds & {"private_drop", "private_dup"})
        self.rest_active = any(k.startswith("rest_") for k in kinds)
        self.reject_active = "ws_reject" in kinds

    def _take(self, f: Fault) -> bool:
        now = time.monotonic()
        if f.expired(now):
            self.faults.pop(f.id, None)
            self._flags()
            return False
        f.fired += 1
        if f.count is not None:
            f.count -= 1
        self.history.append({"id": f.id, "kind": f.kind, "at": time.time()})
        if len(self.history) > 10_000:
            del self.history[:1000]
        if f.count is not None and f.count <= 0:
            self.faults.pop(f.id, None)
            self._flags()
        return True

    # -- queries from the hot paths ------------------------------------------------------------------

    def suppress(self, channel: str, key: str) -> bool:
        for f in list(self.faults.values()):
            if f.kind != "ws_stale" or not fnmatch.fnmatchcase(channel, f.channel or ""):
                continue
            if f.account is not None and not key.startswith(f.account + "|"):
                continue
            if self._take(f):
                return True
        return False

    def book_action(self, market: str) -> str | None:
        for f in list(self.faults.values()):
            if f.kind in ("book_seq_skip", "book_seq_dup") and f.market == market and self._take(f):
                return "skip" if f.kind == "book_seq_skip" else "dup"
        return None

    def private_action(self, channel: str, account: str, market: str) -> str | None:
        for f in list(self.faults.values()):
            if f.kind not in ("private_drop", "private_dup") or f.channel != channel:
                continue
            if (f.account is not None and f.account != account) or (f.market is not None and f.market != market):
                continue
            if self._take(f):
                return "drop" if f.kind == "private_drop" else "dup"
        return None

    def rest_fault(self, method: str, path: str) -> Fault | None:
        for f in list(self.faults.values()):
            if not f.kind.startswith("rest_"):
                continue
            if f.method is not None and f.method != method:
                continue
            if not fnmatch.fnmatchcase(path, f.path or ""):
                continue
            if self._take(f):
                return f
        return None

    def ws_reject(self) -> bool:
        return any(f.kind == "ws_reject" and self._take(f) for f in list(self.faults.values()))
