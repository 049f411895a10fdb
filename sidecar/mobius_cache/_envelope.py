"""The stored form of a value: a two-byte versioned header, an optional content type, the payload.

::

    byte 0   (VERSION << 4) | format      format: RAW 0, TEXT 1, JSON 2, MSGPACK 3, FLOAT32 4
    byte 1   flags                        bit 0: payload zlib-compressed; bit 1: content type follows
    [byte 2  n, then n bytes of ASCII content type]   only with flag bit 1
    payload

Every language can read it (the sidecar serves the payload with its content type); nothing is pickled. Bytes
without a valid header (a counter written by INCR, a value written by another tool) decode as an integer when
they are one, else as raw bytes, so reading foreign data never fails.
"""

from __future__ import annotations

import hashlib
import zlib
from array import array
from dataclasses import dataclass
from typing import Any, Final

import msgpack
import orjson

from ._exceptions import SerializationError, ValueTooLargeError

__all__ = [
    "Entry",
    "decode",
    "decode_entry",
    "decode_entry_kind",
    "decode_foreign",
    "decode_payload",
    "encode",
    "encode_raw",
    "etag_of",
]

VERSION: Final = 1
RAW, TEXT, JSON, MSGPACK, FLOAT32 = 0, 1, 2, 3, 4
_F_COMPRESSED: Final = 0x01
_F_CTYPE: Final = 0x02

_H_RAW = bytes([VERSION << 4 | RAW, 0])
_H_TEXT = bytes([VERSION << 4 | TEXT, 0])
_H_JSON = bytes([VERSION << 4 | JSON, 0])
_H_MSGPACK = bytes([VERSION << 4 | MSGPACK, 0])
_H_FLOAT32 = bytes([VERSION << 4 | FLOAT32, 0])

CONTENT_TYPES: Final = {
    RAW: "application/octet-stream",
    TEXT: "text/plain; charset=utf-8",
    JSON: "application/json",
    MSGPACK: "application/msgpack",
    FLOAT32: "application/x-float32-vector",
}
_INT_CT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored value as the sidecar serves it: the payload bytes, what they are, and the ETag."""

    data: bytes
    content_type: str
    etag: str
    format: int

    @property
    def value(self) -> Any:
        """The payload decoded as Python code would get it from ``Cache.get``."""
        return decode_payload(self.format, self.data)


def etag_of(stored: bytes) -> str:
    """A strong ETag: SHA-1 of the stored bytes. Redis's Lua ``redis.sha1hex`` computes the same value, which
    is what makes compare-and-set atomic on the server."""
    return '"' + hashlib.sha1(stored, usedforsecurity=False).hexdigest() + '"'


def encode(value: Any, serializer: str = "auto", *, limit: int = 0, compress_over: int = 0) -> bytes:
    """Encode a Python value. ``auto``: str → text, bytes → raw, anything else → JSON (orjson)."""
    try:
        if serializer == "auto":
            if type(value) is str:
                header, payload = _H_TEXT, value.encode("utf-8", "surrogatepass")
            elif isinstance(value, bytes | bytearray | memoryview):
                header, payload = _H_RAW, bytes(value)
            else:
                header, payload = _H_JSON, orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
        elif serializer == "json":
            header, payload = _H_JSON, orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
        elif serializer == "msgpack":
            header, payload = _H_MSGPACK, msgpack.packb(value, use_bin_type=True)
        elif serializer == "float32":
            header, payload = _H_FLOAT32, _pack_floats(value)
        elif serializer == "text":
            if not isinstance(value, str):
                raise SerializationError(f"the text serializer takes str, not {type(value).__name__}")
            header, payload = _H_TEXT, value.encode("utf-8", "surrogatepass")
        elif serializer == "bytes":
            if not isinstance(value, bytes | bytearray | memoryview):
                raise SerializationError(f"the bytes serializer takes bytes, not {type(value).__name__}")
            header, payload = _H_RAW, bytes(value)
        else:
            raise SerializationError(f"unknown serializer {serializer!r}")
    except SerializationError:
        raise
    except (TypeError, ValueError, OverflowError, orjson.JSONEncodeError) as exc:
        raise SerializationError(f"cannot encode {type(value).__name__} as {serializer}: {exc}") from exc
    return _finish(header, payload, limit, compress_over)


def encode_raw(data: bytes, content_type: str, *, limit: int = 0, compress_over: int = 0) -> bytes:
    """Store bytes exactly as given with their content type (the sidecar's PUT). JSON and text content types map
    to those formats, so Python code reading the key gets a dict or str, not bytes."""
    ct = content_type.strip() or CONTENT_TYPES[RAW]
    base = ct.split(";", 1)[0].strip().lower()
    if base == "application/json" and ct == CONTENT_TYPES[JSON]:
        return _finish(_H_JSON, data, limit, compress_over)
    if ct == CONTENT_TYPES[TEXT]:
        return _finish(_H_TEXT, data, limit, compress_over)
    if ct == CONTENT_TYPES[RAW]:
        return _finish(_H_RAW, data, limit, compress_over)
    if base == "application/json":
        fmt = JSON
    elif base.startswith("text/"):
        fmt = TEXT
    elif base == "application/msgpack":
        fmt = MSGPACK
    else:
        fmt = RAW
    ct_bytes = ct.encode("ascii", "strict") if ct.isascii() else b""
    if not ct_bytes or len(ct_bytes) > 255:
        raise SerializationError("a content type must be ASCII and at most 255 bytes")
    header = bytes([VERSION << 4 | fmt, _F_CTYPE, len(ct_bytes)]) + ct_bytes
    return _finish(header, data, limit, compress_over)


def _finish(header: bytes, payload: bytes, limit: int, compress_over: int) -> bytes:
    # The limit is on the value as the caller sees it, before compression: it bounds what a reader must
    # hold in memory, and a compressible value does not get to be larger.
    if limit and len(header) + len(payload) > limit:
        raise ValueTooLargeError(len(header) + len(payload), limit)
    if compress_over and len(payload) > compress_over:
        packed = zlib.compress(payload, 1)
        if len(packed) < len(payload):
            header = bytes([header[0], header[1] | _F_COMPRESSED]) + header[2:]
            payload = packed
    return header + payload


def _split(stored: bytes) -> tuple[int, bytes, str | None] | None:
    """(format, payload, explicit content type) of an envelope, or None when it is not one."""
    if len(stored) < 2 or stored[0] >> 4 != VERSION or (stored[0] & 0x0F) > FLOAT32 or stored[1] > 3:
        return None
    fmt, flags = stored[0] & 0x0F, stored[1]
    ctype = None
    start = 2
    if flags & _F_CTYPE:
        if len(stored) < 3:
            return None
        n = stored[2]
        ctype = stored[3 : 3 + n].decode("ascii", "replace")
        start = 3 + n
    payload = stored[start:]
    if flags & _F_COMPRESSED:
        try:
            payload = zlib.decompress(payload)
        except zlib.error:
            return None
    return fmt, payload, ctype


def decode(stored: bytes) -> Any:
    """Decode stored bytes back into the Python value. Fast path first: JSON and text without flags."""
    head = stored[:2]
    try:
        if head == _H_JSON:
            return orjson.loads(stored[2:])
        if head == _H_TEXT:
            return stored[2:].decode("utf-8", "surrogatepass")
    except ValueError as exc:  # orjson.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise SerializationError(f"stored value cannot be decoded: {exc}") from exc
    parts = _split(stored)
    if parts is None:
        return decode_foreign(stored)
    fmt, payload, _ = parts
    return decode_payload(fmt, payload)


def decode_entry(stored: bytes) -> Entry:
    return decode_entry_kind(stored)[0]


def decode_entry_kind(stored: bytes) -> tuple[Entry, bool]:
    """:func:`decode_entry`, and whether ``stored`` is foreign (no envelope: decoded as :func:`decode` would)."""
    parts = _split(stored)
    if parts is None:
        ct = _INT_CT if _is_int(stored) else CONTENT_TYPES[RAW]
        return Entry(stored, ct, etag_of(stored), RAW), True
    fmt, payload, ctype = parts
    return Entry(payload, ctype or CONTENT_TYPES[fmt], etag_of(stored), fmt), False


def decode_payload(fmt: int, payload: bytes) -> Any:
    try:
        if fmt == JSON:
            return orjson.loads(payload)
        if fmt == TEXT:
            return payload.decode("utf-8", "surrogatepass")
        if fmt == MSGPACK:
            return msgpack.unpackb(payload, raw=False)
        if fmt == FLOAT32:
            floats = array("f")
            floats.frombytes(payload)
            return floats.tolist()
        return payload
    except (ValueError, msgpack.UnpackException) as exc:
        raise SerializationError(f"stored value cannot be decoded: {exc}") from exc


def _is_int(stored: bytes) -> bool:
    return 0 < len(stored) <= 20 and stored.lstrip(b"-").isdigit()


def decode_foreign(stored: bytes) -> Any:
    return int(stored) if _is_int(stored) else stored


def _pack_floats(value: Any) -> bytes:
    """float32 little-endian: 4 bytes a dimension (JSON spends ~10-20). Accepts any float sequence or ndarray."""
    tobytes = getattr(value, "astype", None)
    if tobytes is not None:  # numpy without importing it
        return bytes(value.astype("<f4").tobytes())
    floats = array("f", value)
    if floats.itemsize != 4:  # pragma: no cover - every supported platform has 4-byte C floats
        raise SerializationError("this platform has no 4-byte float")
    return floats.tobytes()
