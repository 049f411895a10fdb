"""Property tests of the envelope: whatever the value, it comes back as it went in."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mobius_cache._envelope import decode, decode_entry, encode, encode_raw

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values, compress_over=st.sampled_from([0, 1, 64]))
def test_json_values_round_trip(value: Any, compress_over: int) -> None:
    assert decode(encode(value, compress_over=compress_over)) == value


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=2048), compress_over=st.sampled_from([0, 16]))
def test_bytes_round_trip_and_raw_entries(data: bytes, compress_over: int) -> None:
    assert decode(encode(data, compress_over=compress_over)) == data
    entry = decode_entry(encode_raw(data, "application/x-thing", compress_over=compress_over))
    assert entry.data == data and entry.content_type == "application/x-thing"


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_msgpack_round_trip(value: Any) -> None:
    assert decode(encode(value, "msgpack")) == value


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
@example(b"\x12\x00{not json")  # a JSON header over broken JSON
@example(b"\x11\x00\xff\xfe")  # a text header over invalid UTF-8
@example(b"\x13\x00\xc1")  # a msgpack header over an invalid byte
@example(b"\x12\x01garbage")  # "compressed", but not zlib
def test_any_stored_bytes_decode_without_crashing(stored: bytes) -> None:
    # Foreign or corrupted bytes: decode gives a value or raises our SerializationError, nothing else.
    from mobius_cache import SerializationError

    try:
        decode(stored)
        decode_entry(stored)
    except SerializationError:
        pass
