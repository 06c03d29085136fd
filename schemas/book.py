"""Messages of the built books that Nautilus has no class for: the snapshot reply, the validity
status, and the checkpoint value the book-builder keeps in KV ``book_checkpoints``.

* ``BookSnapshot`` -- the reply on ``book.paradex.snapshot.<MKT>`` (core request/reply). It carries
  every level of the book (best first, ``BookLevel`` = Nautilus ``BookOrder`` dicts), the venue
  ``sequence`` it reflects, and ``md_stream_seq``: the ``MD`` stream sequence up to which every
  ``md.paradex.deltas.<MKT>`` message is included. A late joiner applies the MD deltas from
  ``md_stream_seq + 1``: no gap and no overlap.
* ``BookStatus`` -- on ``book.paradex.status.<MKT>`` (stored in ``BOOK``) whenever a book's validity
  or staleness changes: ``VALID``, ``INVALID`` (gap, crossed, malformed, sequence regression --
  the builder asked the feed handler for a resync and ignores deltas until the next snapshot) or
  ``AWAITING_SNAPSHOT`` (no book yet).
* ``BookCheckpoint`` -- not a bus message: the KV value of one market's book with the MD stream
  sequence it reflects. ``levels`` is pre-encoded ``CheckpointLevels`` (``msgspec.Raw``) so an
  unchanged book is re-checkpointed without encoding its levels again.
"""

from __future__ import annotations

import msgspec

from schemas.base import Event, InstrumentIdStr, Sequence, UnixNanos
from schemas.data import BookLevel


class BookSnapshot(Event, kw_only=True):
    instrument_id: InstrumentIdStr
    bids: list[BookLevel] = msgspec.field(default_factory=list)
    asks: list[BookLevel] = msgspec.field(default_factory=list)
    sequence: Sequence = 0
    md_stream_seq: Sequence = 0
    state: str
    reason: str = ""
    live: bool = True
    builder: str = ""
    ts_event: UnixNanos
    ts_init: UnixNanos

    @property
    def valid(self) -> bool:
        return self.state == "VALID"


class BookStatus(Event, kw_only=True):
    instrument_id: InstrumentIdStr
    state: str
    reason: str = ""
    stale: bool = False
    sequence: Sequence = 0
    md_stream_seq: Sequence = 0
    builder: str = ""
    ts_event: UnixNanos
    ts_init: UnixNanos


class CheckpointLevels(msgspec.Struct, array_like=True, gc=False):
    """Price/size string pairs, best first."""

    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class BookCheckpoint(msgspec.Struct, kw_only=True, gc=False):
    version: int = 1
    market: str
    md_stream_seq: int
    sequence: int
    state: str
    reason: str = ""
    ts_event: int = 0
    ts_init: int = 0
    levels: msgspec.Raw


BOOK_TYPES: tuple[type[Event], ...] = (BookSnapshot, BookStatus)
