"""The operator's Redis administration against real redis-server processes: set, verify, and fail clearly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mobius_operator.reconcile import DesiredSettings, NodeState, RedisTarget, parse_target
from mobius_operator.redis_admin import RedisAuthError, RedisRefusedError, RedisUnreachableError, ensure
from tests.servers import (
    GROUP_PASSWORD,
    GROUP_SENTINEL_PASSWORD,
    HOST,
    RedisCluster,
    RedisServer,
    SentinelGroup,
    TLSFiles,
    free_port,
    sentinel_group,
)

MB = 1024 * 1024
WANT = DesiredSettings(maxmemory=20 * MB, maxmemory_policy="allkeys-lfu")


def settings(server: RedisServer) -> dict[str, str]:
    with server.client(decode_responses=True) as c:
        return {name: c.config_get(name)[name] for name in ("maxmemory", "maxmemory-policy")}


def target(port: int) -> RedisTarget:
    return RedisTarget(host=HOST, port=port)


async def test_ensure_sets_what_drifted_and_is_idempotent(redis_server: RedisServer) -> None:
    with redis_server.client() as c:
        c.set("k", "v")
        c.get("k")
    first = await ensure(target(redis_server.port), None, WANT, timeout=2)
    assert first.corrected == {
        "maxmemory": (str(64 * MB), str(20 * MB)),
        "maxmemory-policy": ("allkeys-lru", "allkeys-lfu"),
    }
    assert first.stats.max_memory == 20 * MB and first.stats.keys == 1 and first.stats.keyspace_hits == 1
    again = await ensure(target(redis_server.port), None, WANT, timeout=2)
    assert again.corrected == {}


async def test_nothing_listening_fails_fast_and_names_the_server() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(RedisUnreachableError, match=f"cannot reach Redis {HOST}:{port}"):
        await ensure(target(port), None, WANT, timeout=2)
    assert time.monotonic() - started < 1.0  # refused at once, no client-side retries


async def test_a_hung_redis_fails_within_the_timeout(redis_server: RedisServer) -> None:
    redis_server.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnreachableError, match="Timeout"):
            await ensure(target(redis_server.port), None, WANT, timeout=0.3)
        assert time.monotonic() - started < 2.0
    finally:
        redis_server.thaw()


async def test_wrong_or_missing_password(redis_server: RedisServer) -> None:
    with redis_server.client() as c:
        c.config_set("requirepass", "pw")
    for password in (None, "nope"):
        with pytest.raises(RedisAuthError, match="authentication failed"):
            await ensure(target(redis_server.port), password, WANT, timeout=2)
    assert (await ensure(target(redis_server.port), "pw", WANT, timeout=2)).stats.max_memory == 20 * MB


async def test_config_disabled_is_a_refusal_not_an_outage() -> None:
    server = RedisServer(extra_args=["--rename-command", "CONFIG", ""]).start()
    try:
        with pytest.raises(RedisRefusedError, match="refused the command"):
            await ensure(target(server.port), None, WANT, timeout=2)
    finally:
        server.close()


async def test_a_value_redis_rejects_is_a_refusal(redis_server: RedisServer) -> None:
    bad = DesiredSettings(maxmemory=20 * MB, maxmemory_policy="not-a-policy")
    with pytest.raises(RedisRefusedError, match="refused the command"):
        await ensure(target(redis_server.port), None, bad, timeout=2)


@pytest.mark.cluster
async def test_a_cluster_gets_the_settings_on_every_node(redis_cluster: RedisCluster) -> None:
    seed = redis_cluster.nodes[0]
    before = {n.port: settings(n) for n in redis_cluster.nodes}
    try:
        cluster_target = RedisTarget(host=HOST, port=seed.port, cluster=True)
        seen = await ensure(cluster_target, None, WANT, timeout=2)
        assert len({k.split()[0] for k in seen.corrected}) == 6  # every node was corrected
        for node in redis_cluster.nodes:
            assert settings(node) == {"maxmemory": str(20 * MB), "maxmemory-policy": "allkeys-lfu"}
        assert seen.stats.max_memory == 20 * MB
        assert (await ensure(cluster_target, None, WANT, timeout=2)).corrected == {}
    finally:  # the cluster is shared by the session: leave it as it was
        for node in redis_cluster.nodes:
            with node.client() as c:
                for name, value in before[node.port].items():
                    c.config_set(name, value)


# --- behind Sentinel: the master and every replica the Sentinels list -------------------------------------------------
PW, SENTINEL_PW = GROUP_PASSWORD, GROUP_SENTINEL_PASSWORD


@pytest.fixture
def group(auth_sentinel_group: SentinelGroup) -> Iterator[SentinelGroup]:
    """The shared group, its nodes' memory settings put back afterwards."""
    before = {n.port: node_settings(auth_sentinel_group, n) for n in auth_sentinel_group.nodes}
    yield auth_sentinel_group
    for node in auth_sentinel_group.nodes:
        with auth_sentinel_group.node_client(node) as c:
            for name, value in before[node.port].items():
                c.config_set(name, value)


def sentinel_target(group: SentinelGroup, url: str | None = None) -> RedisTarget:
    return parse_target({"url": url or group.url()})


def node_settings(group: SentinelGroup, node: RedisServer) -> dict[str, str]:
    with group.node_client(node, decode_responses=True) as c:
        return {name: c.config_get(name)[name] for name in ("maxmemory", "maxmemory-policy")}


async def test_every_node_behind_the_sentinels_gets_the_settings(group: SentinelGroup) -> None:
    seen = await ensure(sentinel_target(group), PW, WANT, timeout=2, sentinel_password=SENTINEL_PW)
    master = group.master()
    assert [(n.role, n.state) for n in seen.nodes] == [("master", "Applied"), *[("replica", "Applied")] * 2]
    assert {n.address for n in seen.nodes} == {f"{HOST}:{n.port}" for n in group.nodes}
    assert seen.nodes[0].address == f"{HOST}:{master.port}"
    for node in group.nodes:
        assert node_settings(group, node) == {"maxmemory": str(20 * MB), "maxmemory-policy": "allkeys-lfu"}
    assert len({k.split()[0] for k in seen.corrected}) == 3
    assert seen.stats.max_memory == 20 * MB  # the master's numbers
    again = await ensure(sentinel_target(group), PW, WANT, timeout=2, sentinel_password=SENTINEL_PW)
    assert again.corrected == {} and all(n.state == "Applied" for n in again.nodes)


async def test_a_node_that_refuses_is_named_and_the_others_still_configured(group: SentinelGroup) -> None:
    replica = next(n for n in group.nodes if n is not group.master())
    with group.node_client(replica) as c:
        c.execute_command("ACL", "SETUSER", "default", "-config")
    other = DesiredSettings(maxmemory=30 * MB, maxmemory_policy="allkeys-lru")
    try:
        with pytest.raises(RedisRefusedError, match="1 of 3 nodes") as caught:
            await ensure(sentinel_target(group), PW, other, timeout=2, sentinel_password=SENTINEL_PW)
        states = {n.address: n.state for n in caught.value.nodes}
        assert states.pop(f"{HOST}:{replica.port}") == "Refused"
        assert set(states.values()) == {"Applied"}
        for node in group.nodes:
            if node is not replica:
                assert node_settings(group, node)["maxmemory"] == str(30 * MB)
    finally:
        with group.node_client(replica) as c:
            c.execute_command("ACL", "SETUSER", "default", "+config")


async def test_sentinel_auth_and_master_name_errors_are_clear(group: SentinelGroup) -> None:
    with pytest.raises(RedisUnreachableError, match=r"Sentinels of mymaster@.*invalid username-password"):
        await ensure(sentinel_target(group), PW, WANT, timeout=2, sentinel_password="wrong")
    with pytest.raises(RedisUnreachableError, match=r"no healthy master 'nope'.*No such master"):
        url = group.url().replace("mymaster", "nope")
        await ensure(sentinel_target(group, url), PW, WANT, timeout=2, sentinel_password=SENTINEL_PW)
    with pytest.raises(
        RedisAuthError
    ) as caught:  # the Sentinels answer; every data node refuses the password
        await ensure(sentinel_target(group), "wrong", WANT, timeout=2, sentinel_password=SENTINEL_PW)
    assert {n.state for n in caught.value.nodes} == {"AuthenticationFailed"}


@pytest.mark.slow
async def test_down_nodes_are_reported_and_a_promoted_replica_is_configured() -> None:
    with sentinel_group() as g:
        target = parse_target({"url": g.url()})
        old = g.master()
        replicas = [n for n in g.nodes if n is not old]
        replicas[0].kill()  # the Sentinels flag it s_down after down-after-milliseconds
        deadline = time.monotonic() + 10
        while True:
            seen = await ensure(target, None, WANT, timeout=2)
            if any(n.state == "Down" for n in seen.nodes) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        states = {n.address: n.state for n in seen.nodes}
        assert states[f"{HOST}:{replicas[0].port}"] == "Down"
        down = next(n for n in seen.nodes if n.state == "Down")
        flags = down.message.removeprefix("flagged by the Sentinels: ").split(",")
        assert "slave" in flags and {"s_down", "disconnected"} & set(flags), down.message
        assert states[f"{HOST}:{old.port}"] == states[f"{HOST}:{replicas[1].port}"] == "Applied"

        old.kill()
        new = await asyncio.to_thread(g.wait_failover, old.port)
        assert new is replicas[1]
        with new.client() as c:  # as if set by someone else: the operator puts it back on the new master
            c.config_set("maxmemory-policy", "noeviction")
        seen = await ensure(target, None, WANT, timeout=2)
        assert seen.nodes[0] == NodeState(f"{HOST}:{new.port}", "master", "Applied")
        assert f"{HOST}:{new.port} maxmemory-policy" in seen.corrected
        assert {n.state for n in seen.nodes[1:]} == {"Down"}  # both dead nodes, now listed as its replicas


async def test_rediss_sentinel_configures_every_node_over_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = TLSFiles.make(tmp_path / "tls")
    monkeypatch.setenv(
        "SSL_CERT_FILE", str(tls.ca)
    )  # the operator trusts the system's CAs (no CA setting yet)
    group = SentinelGroup(tls=tls).start()
    try:
        target = parse_target({"url": group.url().split("?")[0]})
        assert target.tls
        seen = await ensure(target, None, WANT, timeout=2)
        assert [n.state for n in seen.nodes] == ["Applied"] * 3
        for node in group.nodes:
            assert node_settings(group, node)["maxmemory"] == str(20 * MB)
    finally:
        group.close()
