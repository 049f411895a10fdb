"""Pure pieces without Redis: the envelope, the breaker, keys and TTL rules, the config model, the public API."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

import mobius_cache
from mobius_cache import CacheConfig, InvalidKeyError, InvalidTTLError, SerializationError, parse_memory
from mobius_cache._breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from mobius_cache._envelope import decode, decode_entry, encode, encode_raw, etag_of
from mobius_cache._keys import KeySpace, validate_key


def test_public_api_is_exactly_all() -> None:
    exported = {n for n in dir(mobius_cache) if not n.startswith("_")}
    assert set(mobius_cache.__all__) <= exported
    assert exported - set(mobius_cache.__all__) <= {"server", "strategies"}  # subpackages, once imported
    assert sorted(mobius_cache.__all__) == sorted(set(mobius_cache.__all__))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("100", 100),
        ("1kb", 1024),
        ("1k", 1000),
        ("512mb", 512 * 1024**2),
        ("1gb", 1024**3),
        ("2GB", 2 * 1024**3),
        (" 10 mb ", 10 * 1024**2),
        (5, 5),
    ],
)
def test_parse_memory_uses_redis_units(text: Any, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["", "lots", "1tb", "-1mb", "1.5gb", "\u0661mb", -1, True])
def test_parse_memory_rejects(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_memory(bad)


def test_config_spec_round_trip() -> None:
    spec = {
        "maxMemory": "512mb",
        "evictionPolicy": "allkeys-lfu",
        "defaultTTL": 600,
        "maxTTL": 7200,
        "keyPrefix": "app:",
        "strategies": {"search": {"ttl": 120}, "user": {"ttl": 900, "sliding": True, "evictable": False}},
        "redis": {"host": "redis", "port": 6380},
    }
    cfg = CacheConfig.from_spec(spec)
    assert cfg.max_memory_bytes == 512 * 1024**2
    assert cfg.eviction_policy == "allkeys-lfu"
    assert (cfg.default_ttl, cfg.max_ttl, cfg.cache_prefix) == (600, 7200, "app:")
    assert cfg.redis_url == "redis://redis:6380/0"
    assert cfg.strategies["search"].ttl == 120
    assert "document" in cfg.strategies  # defaults kept for namespaces the spec does not mention
    again = CacheConfig.from_spec(cfg.to_spec(), redis_url=cfg.redis_url)
    assert again == cfg


def test_config_spec_is_validated_like_the_env() -> None:
    with pytest.raises(ValidationError):
        CacheConfig.from_spec({"defaultTTL": 100, "maxTTL": 10})
    with pytest.raises(ValidationError):
        CacheConfig.from_spec({"strategies": {"search": {"ttl": -1}}})
    with pytest.raises(ValidationError):
        CacheConfig.from_spec({"strategies": {"search": {"unknown": 1}}})


def test_envelope_formats_and_header() -> None:
    assert encode("hé")[:2] == bytes([0x11, 0]) and decode(encode("hé")) == "hé"
    assert encode(b"\x00")[:2] == bytes([0x10, 0])
    assert encode({"a": 1})[:2] == bytes([0x12, 0])
    assert decode(encode({"a": [1, None]}, "msgpack")) == {"a": [1, None]}
    assert decode(encode([1.5, 2.0], "float32")) == [1.5, 2.0]
    with pytest.raises(SerializationError):
        encode(1, "text")
    with pytest.raises(SerializationError):
        encode(1, "pickle")


def test_envelope_compression_round_trip() -> None:
    big = {"text": "abc" * 10_000}
    stored = encode(big, compress_over=1000)
    assert stored[1] & 1 and len(stored) < 2000
    assert decode(stored) == big


def test_raw_entries_keep_their_content_type() -> None:
    stored = encode_raw(b"<p>hi</p>", "text/html; charset=utf-8")
    entry = decode_entry(stored)
    assert (entry.data, entry.content_type) == (b"<p>hi</p>", "text/html; charset=utf-8")
    assert entry.etag == etag_of(stored) and entry.value == "<p>hi</p>"
    with pytest.raises(SerializationError):
        encode_raw(b"x", "text/ünicode")


def test_foreign_bytes_decode_without_failing() -> None:
    assert decode(b"42") == 42 and decode(b"-7") == -7
    assert decode(b"\xff\xfe") == b"\xff\xfe"
    assert decode(b"") == b""
    assert decode_entry(b"12").content_type.startswith("text/plain")


def test_breaker_states() -> None:
    now = [0.0]
    changes: list[tuple[int, int]] = []
    b = CircuitBreaker(3, 1.0, clock=lambda: now[0], on_change=lambda o, n: changes.append((o, n)))
    for _ in range(2):
        b.record_failure()
    assert b.state == CLOSED and b.allow()
    b.record_failure()
    assert b.state == OPEN and not b.allow()
    assert b.retry_after() == 1.0
    now[0] = 1.0
    assert b.allow()  # the one probe
    assert b.state == HALF_OPEN and not b.allow()  # nobody else
    b.record_failure()
    assert b.state == OPEN and not b.allow()
    now[0] = 2.5
    assert b.allow()
    b.record_success()
    assert b.state == CLOSED and b.allow()
    assert changes == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


def test_success_resets_the_failure_count() -> None:
    b = CircuitBreaker(3, 1.0)
    b.record_failure()
    b.record_failure()
    b.record_success()
    b.record_failure()
    b.record_failure()
    assert b.state == CLOSED


def test_keys_and_ttls() -> None:
    ks = KeySpace(CacheConfig(max_ttl=1000, default_ttl=100))
    assert ks.full("user:1:session") == "mobius:user:1:session"
    assert ks.ns_label("user:1:session") == "user" and ks.ns_label("weird:1") == "other"
    assert ks.resolve_ttl("other:1", None) == 100
    assert ks.resolve_ttl("user:1:session", None) == 1000  # strategy 1800, clamped
    assert ks.resolve_ttl("other:1", 5000) == 1000
    assert ks.resolve_ttl("other:1", 5.0) == 5
    for bad in (0, -5, 1.5, "5", None.__class__):
        with pytest.raises(InvalidTTLError):
            ks.resolve_ttl("other:1", bad)
    assert validate_key("ü" * 256) == "ü" * 256
    with pytest.raises(InvalidKeyError):
        validate_key("ü" * 257)


def test_the_layering_contract_covers_every_library_module() -> None:
    """import-linter checks that the library never imports FastAPI or kopf; a new module must be in it."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    contracts = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    listed = set(contracts[0]["source_modules"])
    modules = {
        f"mobius_cache.{p.stem}"
        for p in (root / "sidecar/mobius_cache").glob("_*.py")
        if p.stem != "__init__"
    }
    assert modules | {"mobius_cache.strategies"} == listed
