"""Book-builder settings (environment variables, all with offline defaults) and market ownership.

Ownership decides which ``md.paradex.deltas.<MKT>`` markets this instance builds:

* ``BOOK_BUILDER_MARKETS=BTC-USD-PERP,ETH-USD-PERP`` -- exactly these markets. The MD consumer
  filters on one subject per market (server-side, nothing else crosses the wire).
* ``BOOK_BUILDER_SHARD=i/n`` -- the markets whose ``zlib.crc32(market) % n == i``. The consumer
  filters ``md.paradex.deltas.>`` and drops the other shards' messages by subject before decoding
  (cheap: no decode), so run n instances with ``0/n`` .. ``n-1/n`` to split every market.
* Both -- the listed markets that also fall in the shard. Neither -- every market.

Two instances with the same ownership may run side by side (hot standby): their outputs carry the
same deterministic Msg-Ids, so JetStream stores each once, and either answers snapshot requests.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field

from bus import subjects
from services.runtime.settings import CommonSettings, common_kwargs, env_float, env_int, env_list, env_str

SERVICE = "book-builder"
DELTAS_PREFIX = "md.paradex.deltas."


def shard_of(market: str, shards: int) -> int:
    """The shard that owns ``market`` among ``shards`` (stable across processes and versions)."""
    return zlib.crc32(market.encode()) % shards


@dataclass(frozen=True)
class Ownership:
    markets: frozenset[str] = frozenset()
    shard: int = 0
    shards: int = 1

    @classmethod
    def parse(cls, markets: list[str], shard_spec: str) -> Ownership:
        shard, shards = 0, 1
        if shard_spec:
            try:
                a, b = shard_spec.split("/")
                shard, shards = int(a), int(b)
            except ValueError:
                raise ValueError(f"BOOK_BUILDER_SHARD must look like 'i/n', got {shard_spec!r}") from None
            if shards < 1 or not 0 <= shard < shards:
                raise ValueError(f"BOOK_BUILDER_SHARD {shard_spec!r}: need 0 <= i < n")
        for m in markets:
            subjects.token(m)
        own = cls(frozenset(markets), shard, shards)
        if markets and not own.filter_subjects():
            raise ValueError(f"none of BOOK_BUILDER_MARKETS falls in shard {shard_spec}: nothing to build")
        return own

    def owns(self, market: str) -> bool:
        if self.markets and market not in self.markets:
            return False
        return self.shards == 1 or shard_of(market, self.shards) == self.shard

    def filter_subjects(self) -> list[str]:
        """Subject filters of the MD consumer."""
        if self.markets:
            return [subjects.md("deltas", m) for m in sorted(self.markets) if self.owns(m)]
        return [DELTAS_PREFIX + ">"]

    def describe(self) -> str:
        parts = []
        if self.markets:
            parts.append(f"markets={','.join(sorted(self.markets))}")
        if self.shards > 1:
            parts.append(f"shard={self.shard}/{self.shards}")
        return " ".join(parts) or "all markets"


@dataclass
class BookBuilderSettings(CommonSettings):
    ownership: Ownership = field(default_factory=Ownership)
    depth_interval: float = 0.1  # seconds between depth10 of a market; 0 = on every change
    checkpoint_interval: float = 1.0
    stale_after: float = 30.0
    resync_retry: float = 5.0
    max_replay: int = 200_000
    regression_threshold: int = 50
    bucket: str = "book_checkpoints"

    @classmethod
    def from_env(cls, service: str = SERVICE, env: dict[str, str] | None = None) -> BookBuilderSettings:
        e = dict(os.environ if env is None else env)
        return cls(
            **common_kwargs(service, e),  # type: ignore[arg-type]
            ownership=Ownership.parse(env_list("BOOK_BUILDER_MARKETS", [], e), env_str("BOOK_BUILDER_SHARD", "", e)),
            depth_interval=env_float("BOOK_BUILDER_DEPTH_INTERVAL_MS", 100.0, e) / 1000.0,
            checkpoint_interval=env_float("BOOK_BUILDER_CHECKPOINT_INTERVAL", 1.0, e),
            stale_after=env_float("BOOK_BUILDER_STALE_AFTER", 30.0, e),
            resync_retry=env_float("BOOK_BUILDER_RESYNC_RETRY", 5.0, e),
            max_replay=env_int("BOOK_BUILDER_MAX_REPLAY", 200_000, e),
            regression_threshold=env_int("BOOK_BUILDER_REGRESSION_THRESHOLD", 50, e),
            bucket=env_str("BOOK_BUILDER_BUCKET", "book_checkpoints", e),
        )
