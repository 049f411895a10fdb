"""Pure parts of the sidecar: media types, JSON value shapes, settings, policy parsing, CLI checks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mobius_cache.server.policy import PolicyError, parse_policy
from mobius_cache.server.settings import SidecarSettings, UnsafeBindError, is_loopback
from mobius_cache.server.values import decode_json_value, encode_for_json, normalize_content_type

URL = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (None, "application/octet-stream"),
        ("", "application/octet-stream"),
        ("Application/JSON", "application/json"),
        ("text/plain; charset=utf-8", "text/plain; charset=utf-8"),
        ("application/vnd.api+json", "application/vnd.api+json"),
        ("nonsense", None),
        ("text/", None),
        ("a/b\x01", None),
        ("x/" + "y" * 300, None),
    ],
)
def test_content_types(given: str | None, stored: str | None) -> None:
    assert normalize_content_type(given) == stored


def test_json_value_shapes_round_trip() -> None:
    assert encode_for_json(b'{"a": [1, null]}', "application/json") == {"a": [1, None]}
    assert encode_for_json("héllo".encode(), "text/plain; charset=utf-8") == "héllo"
    binary = encode_for_json(b"\x00\xff", "application/octet-stream")
    assert binary == {"$base64": "AP8="}
    assert decode_json_value(binary) == b"\x00\xff"
    assert decode_json_value({"a": 1}) == {"a": 1}
    # Labelled JSON that is not JSON is handed over as bytes rather than failing the whole batch.
    assert encode_for_json(b"{oops", "application/json") == {"$base64": "e29vcHM="}
    with pytest.raises(ValueError, match="base64"):
        decode_json_value({"$base64": "***"})


def test_loopback_detection() -> None:
    assert (
        is_loopback("127.0.0.1")
        and is_loopback("::1")
        and is_loopback("localhost")
        and is_loopback("127.5.0.1")
    )
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.com")


def test_non_loopback_bind_needs_a_token() -> None:
    with pytest.raises(UnsafeBindError, match="MOBIUS_SIDECAR_TOKEN"):
        SidecarSettings(sidecar_host="0.0.0.0").check_bind()
    SidecarSettings(sidecar_host="0.0.0.0", sidecar_token="s3cret").check_bind()
    SidecarSettings().check_bind()


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBIUS_SIDECAR_PORT", "9999")
    monkeypatch.setenv("MOBIUS_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("MOBIUS_SIDECAR_TOKEN", "")
    settings = SidecarSettings()
    assert (settings.sidecar_port, settings.max_body_bytes, settings.sidecar_token) == (9999, 2048, None)
    assert settings.access_log is False and settings.sidecar_host == "127.0.0.1"


def test_policy_json_and_yaml() -> None:
    doc = {"defaultTTL": 120, "maxTTL": 600, "keyPrefix": "p1:", "strategies": {"search": {"ttl": 30}}}
    from_json = parse_policy(json.dumps(doc), redis_url=URL)
    from_yaml = parse_policy(
        "defaultTTL: 120\nmaxTTL: 600\nkeyPrefix: 'p1:'\nstrategies: {search: {ttl: 30}}\n", redis_url=URL
    )
    assert from_json == from_yaml
    assert from_json.default_ttl == 120 and from_json.cache_prefix == "p1:"
    assert from_json.strategies["search"].ttl == 30
    assert "user" in from_json.strategies  # unspecified namespaces keep their default strategies


def test_policy_keeps_the_sidecars_redis_url() -> None:
    config = parse_policy(json.dumps({"redis": {"url": "redis://elsewhere:6379/0"}}), redis_url=URL)
    assert config.redis_url == URL


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON or YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ('{"defaultTTL": -5}', "default_ttl"),
        ('{"defaultTTL": 100, "maxTTL": 10}', "must not exceed"),
        ('{"evictionPolicy": "sometimes"}', "eviction_policy"),
        ('{"strategies": {"search": {"ttl": "soon"}}}', "ttl"),
        ('{"strategies": []}', "strategies"),
    ],
)
def test_broken_policies_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(text, redis_url=URL)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mobius_cache.server", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_cli_refuses_public_bind_without_token() -> None:
    result = _cli("--host", "0.0.0.0", "--port", "1")
    assert result.returncode == 2
    assert "refusing to bind 0.0.0.0" in result.stderr and "MOBIUS_SIDECAR_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_reports_bad_values_clearly() -> None:
    result = _cli("--port", "70000")
    assert result.returncode == 2 and "sidecar_port" in result.stderr and "Traceback" not in result.stderr
    result = _cli("--redis-url", "http://nope")
    assert result.returncode == 2 and "redis_url" in result.stderr and "Traceback" not in result.stderr
