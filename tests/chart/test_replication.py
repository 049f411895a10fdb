"""redis.architecture=replication on real processes: three Redis nodes and three Sentinels, each started by the
chart's own start scripts with the rendered config and ACL rules, as the StatefulSet's pods run them.

The replicas log in to the master as mobius-replication, the Sentinels watch and fail over as mobius-sentinel,
and clients find the master through the Sentinels' default user (lookups only) -- the failover proves the
Sentinel user's rules are enough for a real promotion and reconfiguration.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from tests.chart.nodes import (
    TEST_ADMIN,
    ChartNode,
    ChartSentinel,
    Rendered,
    TlsFiles,
    chart_tls,
    need,
    render_redis,
)
from tests.chart.test_rendered_redis import load_helm_test
from tests.servers import HOST, free_port

MASTER = "mobius-cache"
VALUES = {
    "redis.architecture": "replication",
    "redis.sentinel.downAfterMilliseconds": 1000,
    "redis.sentinel.failoverTimeout": 5000,
}


def wait(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise TimeoutError(what)


@dataclass
class Group:
    """The StatefulSet's three pods: a Redis node and a Sentinel each, on loopback ports."""

    rendered: Rendered
    tls: TlsFiles | None = None
    host: str = HOST  # the name the pods announce: "localhost" stands for a pod's DNS name
    nodes: list[ChartNode] = field(default_factory=list)
    sentinels: list[ChartSentinel] = field(default_factory=list)

    def start(self) -> Group:
        ports = [free_port() for _ in range(3)]
        sentinel_ports = [free_port() for _ in range(3)]
        env = {
            "MOBIUS_REDIS_BOOTSTRAP_MASTER": f"{self.host} {ports[0]}",
            "MOBIUS_SENTINEL_ADDRESSES": " ".join(f"{self.host}:{p}" for p in sentinel_ports),
            "MOBIUS_SENTINEL_MASTER": MASTER,
        }
        for port in ports:  # OrderedReady: pod 0 first
            node = ChartNode(self.rendered, tls=self.tls, port=port, announce_host=self.host, env=dict(env))
            self.nodes.append(node.start())
        for port in sentinel_ports:
            sentinel = ChartSentinel(
                self.rendered, tls=self.tls, port=port, announce_host=self.host, env=dict(env)
            )
            self.sentinels.append(sentinel.start())
        wait("every replica linked and every Sentinel seeing the whole group", self.ready)
        return self

    def sentinel(self, i: int = 0) -> redis.Redis:
        """A Sentinel's default user: no password, lookups only."""
        tls = {"ssl": True, "ssl_ca_certs": str(self.tls.ca)} if self.tls else {}
        return redis.Redis(
            host=self.host, port=self.sentinels[i].port, decode_responses=True, socket_timeout=2, **tls
        )

    def master_port(self, i: int = 0) -> int:
        with self.sentinel(i) as s:
            return int(s.sentinel_get_master_addr_by_name(MASTER)[1])

    def node(self, port: int) -> ChartNode:
        return next(n for n in self.nodes if n.port == port)

    def ready(self) -> bool:
        master = self.master_port()
        for node in self.nodes:
            if not node.alive():
                continue
            with node.admin(decode_responses=True) as c:
                info = c.info("replication")
            if node.port != master and info.get("master_link_status") != "up":
                return False
        for i in range(len(self.sentinels)):
            with self.sentinel(i) as s:
                state = s.sentinel_master(MASTER)
            replicas = sum(1 for n in self.nodes if n.alive()) - 1
            if state["is_sdown"] or state["num-slaves"] < replicas or state["num-other-sentinels"] < 2:
                return False
        return True

    def refused(self) -> list[tuple[str, str]]:
        seen = []
        for node in self.nodes:
            if node.alive():
                seen += [(e["username"], e["object"]) for e in node.acl_log() if e["username"] != TEST_ADMIN]
        return seen

    def url(self, user: str = "mobius-cache") -> str:
        scheme = "rediss" if self.tls else "redis"
        hosts = ",".join(f"{self.host}:{s.port}" for s in self.sentinels)
        query = f"?ssl_ca_certs={self.tls.ca}" if self.tls else ""
        return f"{scheme}+sentinel://{user}@{hosts}/{MASTER}/0{query}"

    def close(self) -> None:
        for process in [*self.sentinels, *self.nodes]:
            process.close()


@pytest.fixture
def group() -> Iterator[Group]:
    need("redis-server", "redis-cli")
    g = Group(render_redis(VALUES)).start()
    try:
        yield g
    finally:
        g.close()


def test_the_rendered_sentinel_config_keeps_a_quorum() -> None:
    conf = render_redis(VALUES).config["sentinel.conf"].splitlines()
    assert f"sentinel monitor {MASTER} @MASTER_HOST@ @MASTER_PORT@ 2" in conf
    assert f"sentinel down-after-milliseconds {MASTER} 1000" in conf
    assert "sentinel resolve-hostnames yes" in conf and "sentinel announce-hostnames yes" in conf
    five = render_redis({**VALUES, "redis.replicas": 4}).config["sentinel.conf"]
    assert f"sentinel monitor {MASTER} @MASTER_HOST@ @MASTER_PORT@ 3" in five


@pytest.mark.slow
def test_the_group_forms_fails_over_and_takes_a_restarted_pod_back(group: Group) -> None:
    helm_test = load_helm_test()
    password = group.rendered.passwords["mobius-cache"]
    first = group.master_port()
    assert first == group.nodes[0].port, "pod 0 is the first master"
    assert [n.probe("ready").returncode for n in group.nodes] == [0, 0, 0]
    assert [s.probe("sentinel").returncode for s in group.sentinels] == [0, 0, 0]
    assert group.refused() == [], "a replica or a Sentinel lacks a command"
    seen = helm_test.check_redis(
        group.url(), password, str(1024**3), 5, key_prefix="mobius:", expect_acl=True
    )
    assert f"master {HOST}:{first} (from the Sentinels)" in seen
    assert group.refused() == [("mobius-cache", "config|get")], "only the helm test's deliberate CONFIG"

    group.node(first).kill()
    wait("a new master", lambda: group.master_port() != first and group.master_port(2) != first, timeout=30)
    second = group.master_port()
    with group.node(second).admin(decode_responses=True) as c:
        wait("the promoted node is the master", lambda: c.info("replication")["role"] == "master")
    wait("the other replica follows the new master", group.ready)
    seen = helm_test.check_redis(group.url(), password, "", 5, key_prefix="mobius:")
    assert f"master {HOST}:{second}" in seen
    refused = [r for r in group.refused() if r != ("mobius-cache", "config|get")]
    assert refused == [], "the failover needed a command the Sentinel user lacks"

    # The old master's pod comes back empty: start-redis.sh asks the Sentinels and starts as a replica.
    group.node(first).restart(fresh=True)
    wait("the restarted pod replicates the new master", group.ready)
    with group.node(first).admin(decode_responses=True) as c:
        info = c.info("replication")
    assert info["role"] == "slave" and int(info["master_port"]) == second
    assert group.node(first).probe("ready").returncode == 0


def test_redis_py_finds_the_master_with_the_cache_user(group: Group) -> None:
    """What a Sentinel-aware client does (SENTINEL MASTERS/SLAVES/GET-MASTER-ADDR-BY-NAME): both without a
    Sentinel password (the default user) and logged in to the Sentinels as mobius-cache."""
    password = group.rendered.passwords["mobius-cache"]
    for sentinel_login in ({}, {"username": "mobius-cache", "password": password}):
        sentinel = Sentinel(
            [(HOST, s.port) for s in group.sentinels], sentinel_kwargs=sentinel_login, socket_timeout=2
        )
        master = sentinel.master_for(MASTER, username="mobius-cache", password=password)
        master.set("mobius:via-sentinel", "1")
        assert sentinel.discover_slaves(MASTER), "the replicas are visible"
        replica = sentinel.slave_for(MASTER, username="mobius-cache", password=password)
        wait("the write reaches a replica", lambda r=replica: r.get("mobius:via-sentinel") == b"1", timeout=5)
        with pytest.raises(redis.exceptions.NoPermissionError):
            sentinel.sentinels[0].execute_command("SENTINEL", "FAILOVER", MASTER)
    assert group.refused() == []


def test_tls_replication_and_sentinels_by_name(tmp_path: Path) -> None:
    """TLS everywhere, and every pod known by a DNS name ("localhost" here, a pod's name in the cluster): the
    Sentinels resolve and announce names, and clients check the chart's certificate against them."""
    need("redis-server", "redis-cli")
    rendered = render_redis({**VALUES, "redis.tls.enabled": True})
    group = Group(rendered, tls=chart_tls(rendered, tmp_path / "tls"), host="localhost").start()
    try:
        with group.sentinel() as s:
            assert s.sentinel_get_master_addr_by_name(MASTER)[0] == "localhost"
            assert {r["ip"] for r in s.sentinel_slaves(MASTER)} == {"localhost"}
        seen = load_helm_test().check_redis(
            group.url(),
            rendered.passwords["mobius-cache"],
            str(1024**3),
            5,
            key_prefix="mobius:",
            expect_acl=True,
        )
        assert "from the Sentinels" in seen and "SET/GET/UNLINK" in seen
        plain = redis.Redis(
            host=HOST, port=group.sentinels[0].port, socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )
        with plain, pytest.raises(redis.ConnectionError):
            plain.ping()
        assert group.refused() == [("mobius-cache", "config|get")], "only the helm test's CONFIG"
    finally:
        group.close()
