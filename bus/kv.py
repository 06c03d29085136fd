"""Typed helpers over JetStream KV buckets (checkpoints, leases, health, watermarks).

Values are msgspec-encoded structs (or raw bytes). ``update`` is compare-and-swap on the revision,
which is how single-writer state (a lease, a checkpoint) is fenced against a stale writer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

T = TypeVar("T")

_enc = msgspec.msgpack.Encoder()


class CasConflict(RuntimeError):
    """The key changed since the revision the caller read."""


class Bucket:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, name: str) -> Bucket:
        return cls(await js.key_value(name))

    async def get(self, key: str) -> tuple[bytes, int] | None:
        """``(value, revision)`` or None when the key is missing or deleted."""
        try:
            e = await self.kv.get(key)
        except (KeyNotFoundError, NotFoundError):
            return None
        if e.value is None:
            return None
        return e.value, e.revision or 0

    async def get_struct(self, key: str, cls: type[T]) -> tuple[T, int] | None:
        got = await self.get(key)
        if got is None:
            return None
        return msgspec.msgpack.decode(got[0], type=cls), got[1]

    async def put(self, key: str, value: bytes | msgspec.Struct) -> int:
        return await self.kv.put(key, value if isinstance(value, bytes) else _enc.encode(value))

    async def create(self, key: str, value: bytes | msgspec.Struct) -> int:
        """Create only if absent; raises ``CasConflict`` if the key exists."""
        try:
            return await self.kv.create(key, value if isinstance(value, bytes) else _enc.encode(value))
        except KeyWrongLastSequenceError as exc:
            raise CasConflict(key) from exc

    async def update(self, key: str, value: bytes | msgspec.Struct, last: int) -> int:
        """Write only if the key is still at revision ``last``; raises ``CasConflict`` otherwise."""
        try:
            return await self.kv.update(key, value if isinstance(value, bytes) else _enc.encode(value), last=last)
        except KeyWrongLastSequenceError as exc:
            raise CasConflict(key) from exc

    async def delete(self, key: str, last: int | None = None) -> None:
        try:
            await self.kv.delete(key, last=last)
        except KeyWrongLastSequenceError as exc:
            raise CasConflict(key) from exc

    async def keys(self) -> list[str]:
        try:
            return list(await self.kv.keys())
        except Exception as exc:
            if type(exc).__name__ == "NoKeysError":
                return []
            raise

    async def items(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for k in await self.keys():
            got = await self.get(k)
            if got is not None:
                out[k] = got[0]
        return out

    async def watch(self, keys: str = ">") -> AsyncIterator[tuple[str, bytes | None, int]]:
        """Yield ``(key, value or None if deleted, revision)``: current values first, then live."""
        w = await self.kv.watch(keys)
        try:
            while True:
                e = await w.updates(timeout=None)
                if e is None:  # end of initial values
                    continue
                deleted = e.operation in ("DEL", "PURGE")
                yield e.key, None if deleted else e.value, e.revision or 0
        finally:
            await w.stop()
