"""The chart's clients doing their whole job against a chart Redis: the library, a sidecar process, the operator
and redis_exporter. The ACL, TLS and cluster tests run these under the users (and certificates) the chart makes,
so each shows that a user's rules are enough for every operation its client really sends."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from mobius_cache import MISS, Cache
from mobius_operator.reconcile import DesiredSettings, RedisTarget
from mobius_operator.redis_admin import Observation, ensure
from tests.chart.nodes import ChartNode, need
from tests.conftest import make_config
from tests.servers import HOST, free_port, wait_for_port
from tests.sidecar.procs import SidecarProcess

MB = 1024 * 1024


def cache_url(node: ChartNode, *, cluster: bool = False, user: str = "mobius-cache") -> str:
    """The URL the chart gives the sidecars, pointed at a local node (its CA in the query with TLS)."""
    scheme = ("rediss" if node.tls else "redis") + ("+cluster" if cluster else "")
    query = f"?ssl_ca_certs={node.tls.ca}" if node.tls else ""
    return f"{scheme}://{user}@{node.announce_host}:{node.port}/0{query}"


async def exercise_library(url: str, password: str) -> dict[str, Any]:
    """Every kind of operation of mobius_cache, as one client sees it; returns what it saw, asserting as it goes."""
    prefix = f"acl{uuid.uuid4().hex[:6]}:"
    config = make_config(url, prefix, redis_password=password, redis_min_connections=1)
    async with (
        Cache(config, registry=CollectorRegistry()) as cache,
        Cache(config, registry=CollectorRegistry()) as other,
    ):
        events: list[dict[str, Any]] = []
        other.on_invalidate(events.append)
        await other.invalidator.wait_subscribed()
        if not config.redis_url.split("://")[0].endswith("+cluster"):  # the near cache is off on a cluster
            assert await cache.wait_near(5.0), f"the near cache did not start: {cache.near_stats()}"

        assert await cache.set("project:1:metadata", {"name": "Atlas"}, ttl=60) == 60
        assert await cache.get("project:1:metadata") == {"name": "Atlas"}
        assert await cache.get("project:404:metadata") is MISS
        assert (
            await cache.exists("project:1:metadata")
            and 0 < (await cache.ttl("project:1:metadata") or 0) <= 60
        )
        await cache.set("search:a:results:1", [1, 2], tags=["project:1"], depends_on=["project:1:metadata"])
        await cache.set("search:b:results:1", [3], tags=["project:1"])
        assert await cache.set_many({"api:v1:x:1": "one", "api:v1:x:2": "two"}) == 2
        assert await cache.get_many(["api:v1:x:1", "api:v1:x:2", "api:v1:x:3"]) == {
            "api:v1:x:1": "one",
            "api:v1:x:2": "two",
        }
        assert await cache.add("config:flags", {"a": 1}) and not await cache.add("config:flags", {"a": 2})
        assert await cache.compare_and_set("config:flags", {"a": 1}, {"a": 3})
        assert (
            await cache.incr("api:v1:rate:alice", ttl=60) == 1
            and await cache.incr("api:v1:rate:alice", 5) == 6
        )
        assert await cache.get_or_set("document:7:embedding", lambda: [0.5, 0.25]) == [0.5, 0.25]

        assert await cache.invalidate("project:1:metadata", cascade=True) == 2  # the key and its dependent
        assert await cache.invalidate_tags("project:1") == 1  # search:b (search:a went with the cascade)
        assert await cache.invalidate_pattern("api:v1:x:*") == 2
        assert await cache.delete("config:flags") == 1
        assert await cache.get("search:b:results:1") is MISS

        deadline = time.monotonic() + 5
        while len(events) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert {e["kind"] for e in events} >= {"key", "tag", "pattern"}, events
        health = await cache.health()
        assert health["ok"] and health["maxmemory"] > 0, health
        return health


@contextmanager
def running_sidecar(url: str, password: str, **env: str) -> Iterator[SidecarProcess]:
    sidecar = SidecarProcess(url, env={"MOBIUS_REDIS_PASSWORD": password, **env}).start()
    try:
        yield sidecar
    finally:
        sidecar.terminate()


def exercise_sidecar(sidecar: SidecarProcess) -> dict[str, Any]:
    """The HTTP API's operations through a real sidecar; returns /v1/stats."""
    key = f"api:v1:acl:{uuid.uuid4().hex[:6]}"
    with sidecar.http() as http:
        put = http.put(
            f"/v1/cache/{key}?ttl=60&tag=acl",
            content=b'{"n": 1}',
            headers={"content-type": "application/json"},
        )
        assert put.status_code == 204, put.text
        got = http.get(f"/v1/cache/{key}")
        assert got.status_code == 200 and got.headers["x-cache"] == "hit" and got.json() == {"n": 1}
        assert http.head(f"/v1/cache/{key}").headers["x-cache-ttl"]
        cas = http.put(f"/v1/cache/{key}", content=b"2", headers={"if-match": put.headers["etag"]})
        assert cas.status_code == 204, cas.text
        assert http.post(f"/v1/cache/{key}:n/incr", json={"by": 2, "ttl": 60}).json() == {"value": 2}
        batch = http.post(
            "/v1/batch/set", json={"items": [{"key": f"{key}:b{i}", "value": i} for i in range(3)]}
        )
        assert batch.json() == {"stored": 3}
        hits = http.post("/v1/batch/get", json={"keys": [f"{key}:b0", f"{key}:b9"]}).json()
        assert list(hits["hits"]) == [f"{key}:b0"] and hits["misses"] == [f"{key}:b9"]
        tagged = http.post("/v1/invalidate", json={"tags": ["acl"]})
        assert tagged.json()["deleted"] == 1, tagged.text
        pattern = http.post("/v1/invalidate", json={"pattern": f"{key}:b*"})
        assert pattern.json()["deleted"] == 3, pattern.text
        assert http.delete(f"/v1/cache/{key}:n").json()["deleted"] == 1
        stats: dict[str, Any] = http.get("/v1/stats").json()
    assert stats["redis"].get("used_memory"), stats
    return stats


async def operator_applies(
    node: ChartNode, *, user: str = "mobius-operator", cluster: bool = False
) -> Observation:
    """The operator's redis_admin setting and verifying maxmemory / policy, logged in as ``user``."""
    target = RedisTarget(
        host=node.announce_host, port=node.port, tls=node.tls is not None, username=user, cluster=cluster
    )
    desired = DesiredSettings(maxmemory=48 * MB, maxmemory_policy="allkeys-lfu")
    return await ensure(target, node.rendered.passwords[user], desired, timeout=5)


@contextmanager
def running_exporter(node: ChartNode, *args: str) -> Iterator[str]:
    """prometheus-redis-exporter as the chart runs it (its user, no CONFIG, TLS CA); yields its /metrics URL."""
    need("prometheus-redis-exporter")
    port = free_port()
    scheme = "rediss" if node.tls else "redis"
    env = {
        "REDIS_ADDR": f"{scheme}://{node.announce_host}:{node.port}",
        "REDIS_USER": "mobius-exporter",
        "REDIS_PASSWORD": node.rendered.passwords["mobius-exporter"],
        "REDIS_EXPORTER_WEB_LISTEN_ADDRESS": f"{HOST}:{port}",
        "REDIS_EXPORTER_CONFIG_COMMAND": "-",
        "REDIS_EXPORTER_CONNECTION_TIMEOUT": "5s",
    }
    if node.tls:
        env["REDIS_EXPORTER_TLS_CA_CERT_FILE"] = str(node.tls.ca)
    exe = shutil.which("prometheus-redis-exporter")
    assert exe
    log = Path(tempfile.mkstemp(prefix="exporter-", suffix=".log")[1])
    with log.open("ab") as out:
        proc = subprocess.Popen([exe, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        yield f"http://{HOST}:{port}/metrics"
    finally:
        proc.terminate()
        proc.wait(10)
        log.unlink(missing_ok=True)


def scrape(url: str) -> dict[str, float]:
    """The exporter's samples without labels, plus key-group ones as name{labels}."""
    samples: dict[str, float] = {}
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def wait_for_samples(url: str, name: str, timeout: float = 15.0) -> dict[str, float]:
    """Scrape until a sample whose name starts with ``name`` shows up (the exporter connects lazily)."""
    deadline = time.monotonic() + timeout
    samples: dict[str, float] = {}
    while time.monotonic() < deadline:
        samples = scrape(url)
        if any(k.startswith(name) for k in samples):
            return samples
        time.sleep(0.2)
    raise AssertionError(f"no {name} after {timeout}s; redis_up={samples.get('redis_up')}")
