"""The wire codec: msgpack bytes <-> tagged schema structs, and the Nautilus dict form.

One reusable encoder and one decoder over the union of every registered schema type. Decoding
validates identifiers, decimal strings and timestamps (see ``schemas.base``); any failure raises
``DecodeError`` with a message that names the offending field.
"""

from __future__ import annotations

from typing import Any, TypeVar, Union

import msgspec

from schemas.base import Event
from schemas.book import BOOK_TYPES
from schemas.commands import COMMAND_TYPES
from schemas.data import DATA_TYPES
from schemas.events import ACCOUNT_TYPES, ORDER_EVENT_TYPES
from schemas.instruments import INSTRUMENT_TYPES
from schemas.reports import REPORT_TYPES
from schemas.service import SERVICE_TYPES

T = TypeVar("T", bound=msgspec.Struct)


class DecodeError(ValueError):
    """Raised for bytes that are not a valid bus message (malformed, unknown type, bad field)."""


ALL_TYPES: tuple[type[Event], ...] = (
    *DATA_TYPES,
    *INSTRUMENT_TYPES,
    *COMMAND_TYPES,
    *ORDER_EVENT_TYPES,
    *ACCOUNT_TYPES,
    *REPORT_TYPES,
    *SERVICE_TYPES,
    *BOOK_TYPES,
)
TYPES_BY_NAME: dict[str, type[Event]] = {cls.__name__: cls for cls in ALL_TYPES}

AnyEvent = Union[ALL_TYPES]  # type: ignore[valid-type]  # noqa: UP007 - built from a runtime tuple

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(AnyEvent)
_json_encoder = msgspec.json.Encoder()
_typed_decoders: dict[type, msgspec.msgpack.Decoder[Any]] = {}


def encode(obj: msgspec.Struct) -> bytes:
    """Struct -> msgpack bytes (dict form, ``"type"`` first)."""
    return _encoder.encode(obj)


def decode(data: bytes | bytearray | memoryview) -> Any:
    """msgpack bytes -> the tagged struct named by its ``"type"``; raises ``DecodeError``."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(_explain(exc, data)) from None
    except UnicodeDecodeError as exc:  # msgspec lets invalid UTF-8 in a string escape as this
        raise DecodeError(f"invalid UTF-8 in a string field: {exc}") from None


def decode_as(data: bytes | bytearray | memoryview, cls: type[T]) -> T:
    """Decode into one known type (also for structs outside the event union, e.g. signer replies)."""
    dec = _typed_decoders.get(cls)
    if dec is None:
        dec = _typed_decoders[cls] = msgspec.msgpack.Decoder(cls)
    try:
        return dec.decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(_explain(exc, data)) from None
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8 in a string field: {exc}") from None


def to_dict(obj: msgspec.Struct) -> dict[str, Any]:
    """The Nautilus ``to_dict()`` form: plain dict, enums as Nautilus writes them, ``"type"`` first."""
    return msgspec.to_builtins(obj)


def from_dict(data: dict[str, Any]) -> Any:
    """Inverse of ``to_dict``: validate a Nautilus-shaped dict into its struct."""
    try:
        return msgspec.convert(data, AnyEvent)
    except msgspec.ValidationError as exc:
        raise DecodeError(str(exc)) from None


def to_json(obj: msgspec.Struct) -> bytes:
    """One JSON line of the Nautilus dict form (what ``pdx tail --json`` prints)."""
    return _json_encoder.encode(obj)


def _explain(exc: msgspec.DecodeError, data: bytes | bytearray | memoryview) -> str:
    text = str(exc)
    if "Invalid value" in text and "$.type" in text:
        try:
            kind = msgspec.msgpack.decode(data).get("type")
        except Exception:  # noqa: BLE001 - only used to enrich the message
            kind = None
        return f"unknown message type {kind!r}: {text}"
    return text
