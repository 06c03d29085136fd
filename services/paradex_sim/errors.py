"""The venue's error vocabulary: ``ApiError`` carries an HTTP status and an ``ErrorCode`` from
paradex-api.md §4.9; REST turns it into ``{"error","message"[,"data"]}`` and the WS order methods
into a JSON-RPC error. Raised by request parsing, the order service and the engine's sync checks.
"""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, data: dict[str, object] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.data = data

    def body(self) -> dict[str, object]:
        # An empty code gives prod's bare {"message": ...} (JWT failures, paradex-api.md §2).
        out: dict[str, object] = {"error": self.code} if self.code else {}
        out["message"] = self.message
        if self.data is not None:
            out["data"] = self.data
        return out


def bad_request(code: str, message: str, data: dict[str, object] | None = None) -> ApiError:
    return ApiError(400, code, message, data)


def validation(message: str) -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", message)
