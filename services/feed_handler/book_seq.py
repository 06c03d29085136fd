"""Sequence check of one market's venue book feed, at the source.

The deltas channel sends one ``"s"`` (the whole book) then ``"d"`` messages with ``seq_no`` =
previous + 1 (paradex-api.md §5.7). ``BookSequencer.check`` says what to do with each message:

* ``"s"`` → ``PUBLISH`` (a snapshot always restarts the sequence);
* ``"d"`` with ``seq_no == last + 1`` → ``PUBLISH`` (or ``SKIP_EMPTY`` for a delta without levels,
  which advances the sequence but is not published);
* ``"d"`` with ``seq_no <= last`` → ``DUPLICATE`` (dropped);
* ``"d"`` with ``seq_no > last + 1`` → ``GAP``: the caller resubscribes the channel; every ``"d"``
  until the fresh snapshot is ``AWAITING_SNAPSHOT`` (dropped);
* any ``"d"`` before the first snapshot (or after ``invalidate``) → ``AWAITING_SNAPSHOT``.

``prev_published`` is the ``sequence`` of the last message published for the market: it goes into
the ``Pdx-Prev-Seq`` header of the next non-snapshot message (the consumer's rule is
``prev_seq <= last_applied < sequence``).
"""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    PUBLISH = "publish"
    SKIP_EMPTY = "skip_empty"
    DUPLICATE = "duplicate"
    GAP = "gap"
    AWAITING_SNAPSHOT = "awaiting_snapshot"


class BookSequencer:
    __slots__ = ("awaiting_snapshot", "last_seq", "last_snapshot_seq", "prev_published")

    def __init__(self) -> None:
        self.last_seq: int | None = None
        self.prev_published: int | None = None
        self.last_snapshot_seq: int | None = None
        self.awaiting_snapshot = True

    def check(self, update_type: str, seq_no: int, has_levels: bool) -> Verdict:
        if update_type == "s":
            self.last_seq = seq_no
            self.last_snapshot_seq = seq_no
            self.awaiting_snapshot = False
            return Verdict.PUBLISH
        if self.awaiting_snapshot or self.last_seq is None:
            return Verdict.AWAITING_SNAPSHOT
        if seq_no <= self.last_seq:
            return Verdict.DUPLICATE
        if seq_no != self.last_seq + 1:
            self.awaiting_snapshot = True
            return Verdict.GAP
        self.last_seq = seq_no
        return Verdict.PUBLISH if has_levels else Verdict.SKIP_EMPTY

    def published(self, seq_no: int) -> None:
        self.prev_published = seq_no

    def invalidate(self) -> None:
        """The stream is being restarted (reconnect, resync request): wait for a snapshot."""
        self.awaiting_snapshot = True
