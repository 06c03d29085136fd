"""``bus.Publisher`` with extra NATS headers per message (``Pdx-Seq``, ``Pdx-Md-Seq``).

The shared publisher only sets ``Nats-Msg-Id``; the built quotes must also carry the venue sequence
they reflect. This subclass keeps every property of the shared one (bounded buffer, retries with
the same Msg-Id, per-subject order) and merges the extra headers into the queued item.
"""

from __future__ import annotations

from bus.publisher import Publisher


class HeaderPublisher(Publisher):
    _extra_headers: dict[str, str] | None = None

    def publish_with_headers_nowait(
        self, subject: str, payload: bytes, msg_id: str | None, headers: dict[str, str]
    ) -> None:
        """``publish_nowait`` plus ``headers`` (same overflow policy: drop oldest, counted)."""
        self._extra_headers = headers
        try:
            self.publish_nowait(subject, payload, msg_id)
        finally:
            self._extra_headers = None

    def _enqueue(self, subject: str, payload: bytes, msg_id: str | None) -> None:
        super()._enqueue(subject, payload, msg_id)
        extra = self._extra_headers
        if extra:
            item = self._queue[-1]
            item.headers = {**item.headers, **extra} if item.headers else dict(extra)
