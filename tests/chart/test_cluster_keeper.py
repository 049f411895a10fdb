"""redis.architecture=cluster: the chart's cluster keeper (files/redis_cluster.py), the same file the keeper
Deployment and the check Job run, against Redis nodes started by the chart's start-redis.sh with the rendered
cluster config and ACL rules. It forms the cluster, does nothing on a healthy one, brings a replaced pod back
and forgets the node it replaced, and moves slots (with their keys) to the shards a scale-up adds.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from redis.cluster import ClusterNode as PyClusterNode
from redis.cluster import RedisCluster

from tests.chart import clients, helm
from tests.chart.nodes import TEST_ADMIN, ChartNode, Rendered, TlsFiles, chart_tls, need, render_redis
from tests.servers import HOST

VALUES = {"redis.architecture": "cluster", "redis.cluster.nodeTimeout": 2000}


def load_keeper() -> ModuleType:
    path = helm.CHART / "files" / "redis_cluster.py"
    spec = importlib.util.spec_from_file_location("redis_cluster", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["redis_cluster"] = module
    spec.loader.exec_module(module)
    return module


keeper = load_keeper()


# ------------------------------------------------------------------------------------------- planning


def node_line(i: int, *, master: str = "", slots: str = "", flags: str = "", myself: bool = False) -> str:
    role = "slave" if master else "master"
    all_flags = ",".join(f for f in ("myself" if myself else "", role, flags) if f)
    return (
        f"{i:040x} 10.0.0.{i}:6379@16379,pod-{i} {all_flags} {master or '-'} 0 0 1 connected {slots}".rstrip()
    )


def member(i: int, lines: list[str], *, link_up: bool = True) -> Any:
    view = tuple(keeper.parse_nodes("\n".join(lines)))
    return keeper.Member(f"pod-{i}", 6379, f"10.0.0.{i}", f"{i:040x}", view, link_up, cluster_ok=True)


HEALTHY = [
    node_line(0, slots="0-5461"),
    node_line(1, slots="5462-10922"),
    node_line(2, slots="10923-16383"),
    node_line(3, master=f"{0:040x}"),
    node_line(4, master=f"{1:040x}"),
    node_line(5, master=f"{2:040x}"),
]


def test_parse_nodes_reads_hostnames_slots_and_flags() -> None:
    text = (
        "abc 10.1.2.3:6379@16379,mc-redis-0.h.svc myself,master - 0 0 3 connected 0-10 12 [13->-def] [14-<-def]\n"
        "def :0@0 master,fail,noaddr - 0 0 2 disconnected\n"
    )
    a, d = keeper.parse_nodes(text)
    assert (a.ip, a.port, a.hostname, a.slot_count) == ("10.1.2.3", 6379, "mc-redis-0.h.svc", 12)
    assert (a.migrating, a.importing) == (((13, "def"),), ((14, "def"),))
    assert a.is_master and not a.failed and a.named("mc-redis-0.h.svc", 6379)
    assert d.failed and d.slots == () and d.named("", 0)


def test_slots_are_split_evenly() -> None:
    assert keeper.split_slots(3) == [(0, 5461), (5462, 10922), (10923, 16383)]
    parts = keeper.split_slots(7)
    assert parts[0][0] == 0 and parts[-1][1] == 16383
    assert {b - a + 1 for a, b in parts} <= {2340, 2341}


def test_a_new_cluster_needs_every_pod_then_is_formed_from_pod_0() -> None:
    fresh = [member(i, [node_line(i, myself=True)]) for i in range(6)]
    waiting = keeper.plan([*fresh[:5], keeper.Member("pod-5", 6379)], 3, 1)
    assert not waiting.actions and "no answer from pod-5:6379" in waiting.waiting[0]
    todo = keeper.plan(fresh, 3, 1)
    assert [(a.member, a.command[:2]) for a in todo.actions] == [(0, ("CLUSTER", "MEET"))] * 5 + [
        (i, ("CLUSTER", "ADDSLOTSRANGE")) for i in range(3)
    ]
    assert [a.command[2:] for a in todo.actions[5:]] == [(0, 5461), (5462, 10922), (10923, 16383)]


def test_a_healthy_cluster_needs_nothing() -> None:
    members = [member(i, HEALTHY) for i in range(6)]
    todo = keeper.plan(members, 3, 1)
    assert (todo.actions, todo.moves, todo.waiting, todo.refused) == ([], [], [], [])
    assert keeper.health(members, 3, 1) == []


def test_a_replaced_pod_is_met_made_a_replica_and_its_old_node_forgotten() -> None:
    ghost = node_line(5, master=f"{2:040x}", flags="fail").replace(f"{5:040x}", "f" * 40)
    view = [*HEALTHY[:5], ghost]
    new = keeper.Member(
        "pod-5", 6379, "10.0.0.5", f"{5:040x}", tuple(keeper.parse_nodes(node_line(5, myself=True)))
    )
    members = [*(member(i, view) for i in range(5)), new]
    first = keeper.plan(members, 3, 1)
    assert ("CLUSTER", "MEET", "10.0.0.5", 6379) in [a.command for a in first.actions]
    assert [a.member for a in first.actions if a.command[1] == "FORGET"] == [0, 1, 2, 3, 4]
    met = [*HEALTHY[:5], node_line(5)]
    members = [*(member(i, met) for i in range(5)), member(5, met)]
    second = keeper.plan(members, 3, 1)
    assert [a.command for a in second.actions] == [("CLUSTER", "REPLICATE", f"{2:040x}")]


def test_a_failed_master_is_not_forgotten_while_its_replica_can_take_over() -> None:
    dead = node_line(0, slots="0-5461", flags="fail")
    view = [dead, *HEALTHY[1:]]
    new = keeper.Member(
        "pod-0", 6379, "10.0.0.9", "9" * 40, tuple(keeper.parse_nodes(node_line(9, myself=True)))
    )
    todo = keeper.plan([new, *(member(i, view) for i in range(1, 6))], 3, 1)
    assert not [a for a in todo.actions if a.command[1] == "FORGET"]
    problems = keeper.health([new, *(member(i, view) for i in range(1, 6))], 3, 1)
    assert any("is failed" in p for p in problems) and any(
        "pod-0:6379 is not in the cluster" in p for p in problems
    )


def test_an_interrupted_move_is_finished_first() -> None:
    lines = [*HEALTHY]
    lines[0] = node_line(0, slots=f"0-5461 [100->-{6:040x}]")
    lines.append(node_line(6, slots=f"[100-<-{0:040x}]"))
    members = [
        member(i, [*lines[:i], lines[i].replace("master", "myself,master", 1), *lines[i + 1 :]])
        for i in range(7)
    ]
    todo = keeper.plan(members, 4, 1)
    assert [(m.source, m.target, m.slots) for m in todo.moves] == [(0, 6, (100,))]


def test_a_master_that_lost_its_address_unfailed_is_failed_over_by_its_replica() -> None:
    stuck = f"{0:040x} :0@0,pod-0 master,noaddr - 0 0 1 disconnected 0-5461"
    view = [stuck, *HEALTHY[1:]]
    new = keeper.Member(
        "pod-0", 6379, "10.0.0.0", "e" * 40, tuple(keeper.parse_nodes(node_line(14, myself=True)))
    )
    todo = keeper.plan([new, *(member(i, view) for i in range(1, 6))], 3, 1)
    assert [(a.member, a.command) for a in todo.actions if a.command[1] != "MEET"] == [
        (3, ("CLUSTER", "FAILOVER", "FORCE"))
    ]


def test_scaling_in_is_refused() -> None:
    todo = keeper.plan([member(i, HEALTHY) for i in range(6)], 2, 1)
    assert todo.refused and "scaling in is not supported" in todo.refused[0]


def test_a_scale_up_moves_slots_to_the_new_masters() -> None:
    view = [*HEALTHY, node_line(6), node_line(7)]
    members = [member(i, view) for i in range(8)]
    learning = keeper.plan([*members[:6], replace(members[6], cluster_ok=False), members[7]], 4, 1)
    assert not learning.moves and learning.waiting == ["pod-6:6379 is still learning the slot map"]
    todo = keeper.plan(members, 4, 1)
    assert [a.command for a in todo.actions] == [("CLUSTER", "REPLICATE", f"{6:040x}")]
    moved = sum(len(m.slots) for m in todo.moves)
    assert {m.target for m in todo.moves} == {6} and moved == keeper.MIGRATE_SLOTS_PER_ROUND


# ------------------------------------------------------------------------------------- real processes


@dataclass
class Cluster:
    rendered: Rendered
    size: int = 6
    shards: int = 3
    replicas: int = 1
    tls: TlsFiles | None = None
    nodes: list[ChartNode] = field(default_factory=list)

    def start(self) -> Cluster:
        for _ in range(self.size):
            self.nodes.append(ChartNode(self.rendered, tls=self.tls).start())
        return self

    def add(self, count: int) -> None:
        for _ in range(count):
            self.nodes.append(ChartNode(self.rendered, tls=self.tls).start())

    def settings(self) -> Any:
        return keeper.Settings(
            nodes=tuple((HOST, n.port) for n in self.nodes),
            shards=self.shards,
            replicas=self.replicas,
            user="mobius-admin",
            password=self.rendered.passwords["mobius-admin"],
            tls_ca=str(self.tls.ca) if self.tls else None,
        )

    def keep(self, timeout: float = 60.0) -> list[str]:
        """Reconcile like the keeper Deployment (every 0.5 s here) until healthy; returns what it did."""
        done: list[str] = []
        deadline = time.monotonic() + timeout
        problems: list[str] = ["not checked"]
        while time.monotonic() < deadline:
            settings = self.settings()
            problems = keeper.health(keeper.observe(settings), settings.shards, settings.replicas)
            if not problems:
                return done
            todo, log = keeper.reconcile(settings)
            assert not todo.refused, todo.refused
            done += log
            time.sleep(0.5)
        raise TimeoutError(f"not healthy after {timeout}s: {problems}\n" + "\n".join(done[-20:]))

    def client(self, user: str = "mobius-cache") -> RedisCluster:
        tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.tls.ca)} if self.tls else {}
        return RedisCluster(
            startup_nodes=[PyClusterNode(HOST, n.port) for n in self.nodes if n.alive()],
            username=user,
            password=self.rendered.passwords[user],
            **tls,
        )

    def refused(self) -> list[tuple[str, str]]:
        seen = []
        for node in self.nodes:
            if node.alive():
                seen += [(e["username"], e["object"]) for e in node.acl_log() if e["username"] != TEST_ADMIN]
        return seen

    def role(self, node: ChartNode) -> str:
        with node.admin(decode_responses=True) as c:
            return str(c.info("replication")["role"])

    def close(self) -> None:
        for node in self.nodes:
            node.close()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    need("redis-server", "redis-cli")
    group = Cluster(render_redis(VALUES)).start()
    try:
        yield group
    finally:
        group.close()


@pytest.mark.slow
def test_the_keeper_forms_the_cluster_and_then_does_nothing(cluster: Cluster) -> None:
    not_yet = cluster.nodes[0].probe("ready")
    assert not_yet.returncode != 0 and "cluster_state is fail" in not_yet.stderr, "ready before it is formed"
    done = cluster.keep()
    assert [n.probe("ready").returncode for n in cluster.nodes] == [0] * 6
    assert any("ADDSLOTSRANGE" in line for line in done) and any("REPLICATE" in line for line in done)
    assert [cluster.role(n) for n in cluster.nodes] == ["master"] * 3 + ["slave"] * 3
    todo, log = keeper.reconcile(cluster.settings())
    assert (log, todo.waiting, todo.refused) == ([], [], []), "a second run changed something"
    assert cluster.refused() == [], "the admin or the replication user lacks a command"
    with cluster.client() as rc:
        for i in range(100):
            rc.set(f"mobius:k{i}", i)
        assert rc.get("mobius:k42") == b"42"
    assert cluster.refused() == [], "the cache user lacks a cluster command"
    env = {
        "MOBIUS_CLUSTER_NODES": " ".join(f"{HOST}:{n.port}" for n in cluster.nodes),
        "MOBIUS_CLUSTER_SHARDS": "3",
        "MOBIUS_REDIS_USER": "mobius-admin",
        "MOBIUS_REDIS_PASSWORD": cluster.rendered.passwords["mobius-admin"],
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert keeper.main(["wait", "--timeout", "5"]) == 0
        mp.setenv("MOBIUS_CLUSTER_SHARDS", "4")
        assert keeper.main(["wait", "--timeout", "1"]) == 1


@pytest.mark.slow
async def test_the_library_and_the_operator_use_the_cluster(cluster: Cluster) -> None:
    cluster.keep()
    seed = cluster.nodes[0]
    await clients.exercise_library(
        clients.cache_url(seed, cluster=True), cluster.rendered.passwords["mobius-cache"]
    )
    seen = await clients.operator_applies(seed, cluster=True)
    assert len({k.split()[0] for k in seen.corrected}) == 6, "every node got the settings"
    assert cluster.refused() == []


@pytest.mark.slow
@pytest.mark.parametrize("downtime", [3.0, 0.0], ids=["failed-over-first", "address-taken-at-once"])
def test_a_killed_primary_is_replaced_and_its_new_pod_rejoins(cluster: Cluster, downtime: float) -> None:
    """A pod killed and replaced by an empty one. After 3 s the cluster has failed the primary over by
    itself; at once, the new node answers at the old address before the primary is marked failed, Redis
    stops probing it, and only the keeper's CLUSTER FAILOVER FORCE on its replica gets the shard back."""
    cluster.keep()
    with cluster.client() as rc:
        for i in range(200):
            rc.set(f"mobius:k{i}", i)
    victim = cluster.nodes[0]
    with victim.admin(decode_responses=True) as c:
        old_id = c.execute_command("CLUSTER", "MYID")
    victim.kill()
    time.sleep(downtime)
    victim.restart(fresh=True)
    done = cluster.keep()
    assert any(f"CLUSTER FORGET {old_id}" in line for line in done), done
    assert any("CLUSTER REPLICATE" in line for line in done), done
    assert cluster.role(victim) == "slave"
    with cluster.client() as rc:
        assert [rc.get(f"mobius:k{i}") for i in range(200)] == [str(i).encode() for i in range(200)]
    with cluster.nodes[1].admin(decode_responses=True) as c:
        assert old_id not in c.execute_command("CLUSTER", "NODES")
    assert cluster.refused() == []


@pytest.mark.slow
def test_a_scale_up_adds_a_shard_and_keeps_every_key(cluster: Cluster) -> None:
    cluster.keep()
    with cluster.client() as rc:
        for i in range(500):
            rc.set(f"mobius:k{i}", i)
    cluster.add(2)
    cluster.shards = 4
    done = cluster.keep(timeout=120)
    assert any("moving" in line for line in done)
    with cluster.nodes[0].admin(decode_responses=True) as c:
        nodes = keeper.parse_nodes(c.execute_command("CLUSTER", "NODES"))
    counts = sorted(n.slot_count for n in nodes if n.is_master)
    assert len(counts) == 4 and counts[0] >= 4096 * (1 - keeper.BALANCE_THRESHOLD), counts
    with cluster.client() as rc:
        assert [rc.get(f"mobius:k{i}") for i in range(500)] == [str(i).encode() for i in range(500)]
    assert cluster.refused() == []


@pytest.mark.slow
async def test_a_tls_cluster_forms_and_serves(tmp_path: Path) -> None:
    need("redis-server", "redis-cli")
    rendered = render_redis({**VALUES, "redis.tls.enabled": True})
    assert "tls-cluster yes" in rendered.config["redis.conf"].splitlines()
    group = Cluster(rendered, tls=chart_tls(rendered, tmp_path / "tls")).start()
    try:
        group.keep()
        seed = group.nodes[0]
        url = clients.cache_url(seed, cluster=True)
        assert url.startswith("rediss+cluster://")
        await clients.exercise_library(url, rendered.passwords["mobius-cache"])
        assert group.refused() == []
    finally:
        group.close()
