"""Hot reload of the operator's policy file: good changes apply within 5 s, broken files are refused."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from mobius_cache import CacheConfig
from tests.servers import RedisServer
from tests.sidecar.procs import SidecarProcess


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # atomic, like the kubelet's symlink swap


def _until(check: Callable[[], bool], timeout: float = 5.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s")


def _ttl_of(http: httpx.Client, key: str) -> int:
    return int(http.put(f"/v1/cache/{key}", content=b"x").headers["x-cache-ttl"])


def test_policy_changes_apply_without_restart(
    tmp_path: Path, shared_redis: RedisServer, start_sidecar: Callable[..., SidecarProcess], ns: str
) -> None:
    policy = tmp_path / "policy.json"
    # Exactly what the operator writes: CacheConfig.from_spec(spec).to_spec()
    spec = CacheConfig.from_spec({"defaultTTL": 111, "keyPrefix": f"{ns}a:"}).to_spec()
    _write(policy, json.dumps(spec))
    # Polled 4x a second here to keep the test short; the default (1 s) is well inside the 5 s contract.
    proc = start_sidecar(
        shared_redis.url, args=["--policy-file", str(policy)], env={"MOBIUS_POLICY_POLL_INTERVAL": "0.25"}
    )
    with proc.http() as http, shared_redis.client() as r:
        assert _ttl_of(http, "thing") == 111
        assert r.exists(f"{ns}a:thing")
        assert http.get("/readyz").json()["policy"]["error"] is None

        spec.update(defaultTTL=222, keyPrefix=f"{ns}b:", strategies={"search": {"ttl": 33}})
        _write(policy, json.dumps(spec))
        took = _until(lambda: _ttl_of(http, "thing") == 222)
        assert took < 5
        assert _ttl_of(http, "search:q:results:1") == 33
        assert r.exists(f"{ns}b:thing")

        # YAML is accepted too.
        _write(policy, f"defaultTTL: 333\nkeyPrefix: '{ns}b:'\n")
        _until(lambda: _ttl_of(http, "thing") == 333)

        # A broken file is refused with a log line; the last good policy stays in force.
        _write(policy, "{ this is : not valid")
        _until(lambda: http.get("/readyz").json()["policy"]["error"] is not None)
        assert _ttl_of(http, "thing") == 333
        _write(policy, json.dumps({"defaultTTL": -1}))
        _until(lambda: "default_ttl" in (http.get("/readyz").json()["policy"]["error"] or ""))
        assert _ttl_of(http, "thing") == 333
        assert "policy" in proc.log() and "refused" in proc.log()

        # Fixing the file applies it again.
        _write(policy, json.dumps({"defaultTTL": 444, "keyPrefix": f"{ns}b:"}))
        _until(lambda: _ttl_of(http, "thing") == 444)
        assert http.get("/readyz").json()["policy"]["error"] is None


def test_broken_policy_at_start_keeps_the_environment_settings(
    tmp_path: Path, shared_redis: RedisServer, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("- not\n- a mapping\n")
    proc = start_sidecar(
        shared_redis.url, args=["--policy-file", str(policy)], env={"MOBIUS_DEFAULT_TTL": "77"}
    )
    with proc.http() as http:
        assert http.get("/readyz").json()["policy"]["error"].startswith("the policy must be a mapping")
        assert _ttl_of(http, "envttl") == 77
        policy.write_text("defaultTTL: 88\n")
        _until(lambda: _ttl_of(http, "envttl") == 88)


def test_missing_policy_file_at_start_is_waited_for(
    tmp_path: Path, shared_redis: RedisServer, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    """The chart mounts the operator's ConfigMap as optional: the file may appear after the sidecar starts."""
    policy = tmp_path / "policy" / "policy.json"  # not even the directory exists yet
    # The default poll interval (1 s): the 5 s contract must hold without tuning.
    proc = start_sidecar(
        shared_redis.url, args=["--policy-file", str(policy)], env={"MOBIUS_DEFAULT_TTL": "55"}
    )
    with proc.http() as http:
        assert _ttl_of(http, "waiting") == 55
        assert "does not exist yet" in http.get("/readyz").json()["policy"]["error"]
        # Let the watcher poll the missing file twice more: the log must not grow a line per poll.
        time.sleep(2.2)
        policy.parent.mkdir()
        t0 = time.monotonic()
        _write(policy, json.dumps({"defaultTTL": 66}))
        _until(lambda: _ttl_of(http, "waiting") == 66)
        assert time.monotonic() - t0 < 5
        ready = http.get("/readyz").json()["policy"]
        assert ready["error"] is None and ready["reloads"] == 1
    log = proc.log()
    assert log.count("does not exist yet") == 1, log
    assert "refused" not in log, log
