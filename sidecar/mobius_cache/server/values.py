"""How stored values travel inside JSON bodies (the batch endpoints), and which media types are accepted.

Pure functions, no I/O. In a batch reply a JSON value is inlined, text becomes a string and anything else
(binary, msgpack, float vectors) becomes ``{"$base64": "..."}``; ``batch/set`` accepts the same shapes, so a
value read in a batch can be written back unchanged.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

__all__ = [
    "BASE64_KEY",
    "DEFAULT_CONTENT_TYPE",
    "decode_json_value",
    "encode_for_json",
    "normalize_content_type",
]

BASE64_KEY = "$base64"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
_MEDIA_TYPE_RE = re.compile(rf"^\s*({_TOKEN})/({_TOKEN})\s*(;[^\x00-\x1f\x7f]*)?$")
_MAX_CONTENT_TYPE_LEN = 255


def normalize_content_type(value: str | None) -> str | None:
    """The media type to store, or None when ``value`` is not a media type (the caller answers 415).

    A missing header means opaque bytes. Type and subtype are lower-cased; parameters are kept as sent.
    """
    if value is None or not value.strip():
        return DEFAULT_CONTENT_TYPE
    if len(value) > _MAX_CONTENT_TYPE_LEN:
        return None
    match = _MEDIA_TYPE_RE.match(value)
    if match is None:
        return None
    kind, sub, params = match.groups()
    return f"{kind.lower()}/{sub.lower()}{(params or '').rstrip()}"


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip()
    return media == "application/json" or media.endswith("+json")


def _is_text(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().startswith("text/")


def encode_for_json(data: bytes, content_type: str) -> Any:
    """A stored payload as a JSON-ready value: inline JSON, a string for text, else ``{"$base64": ...}``."""
    if _is_json(content_type):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # labelled JSON but is not: hand it over untouched
    elif _is_text(content_type):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {BASE64_KEY: base64.b64encode(data).decode("ascii")}


def decode_json_value(value: Any) -> Any:
    """A value from a JSON body as the Python value to store: ``{"$base64": s}`` becomes bytes.

    Raises ValueError (with a message for the client) on bad base64.
    """
    if isinstance(value, dict) and len(value) == 1 and BASE64_KEY in value:
        encoded = value[BASE64_KEY]
        if not isinstance(encoded, str):
            raise ValueError(f"{BASE64_KEY} must be a base64 string")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{BASE64_KEY} is not valid base64") from None
    return value
