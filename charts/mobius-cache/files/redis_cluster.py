"""Form and keep a Redis Cluster of the mobius-cache chart: the cluster keeper.

The chart runs this file in two places, both with the operator image (Python and redis-py):
- ``keep``: a one-replica Deployment that reconciles every few seconds. It is the only writer, so two runs
  never race: it forms the cluster on a first install, meets pods that come back empty (a replaced pod is a
  new node), makes them replicas of the shard that lacks one, forgets the nodes they replaced, gives orphaned
  slots to a live master, and on scale-up (``redis.cluster.shards`` raised) moves slots, with their keys, to the
  new masters.
- ``wait``: the post-install/post-upgrade hook Job; it changes nothing and succeeds once the cluster matches
  the values (every pod in, every slot served, the shards and replicas asked for), so ``helm install --wait``
  and ``helm upgrade`` fail with a clear report instead of leaving a half-formed cluster behind.

Every step is idempotent: running ``reconcile`` on a healthy cluster does nothing. Planning is pure
(:func:`plan`, :func:`health`): it reads what every pod reported and returns the actions; the I/O around it
is small. The tests run this same file against local redis-server processes.

Configuration (environment):
    MOBIUS_CLUSTER_NODES              "host:port ..." of every pod, in StatefulSet order (host = announced name)
    MOBIUS_CLUSTER_SHARDS             masters holding slots
    MOBIUS_CLUSTER_REPLICAS_PER_SHARD replicas of each master
    MOBIUS_REDIS_USER                 the ACL user (mobius-admin); MOBIUS_REDIS_PASSWORD_FILE its password
    MOBIUS_REDIS_TLS_CA               CA certificate file: connect with TLS and verify the nodes' names
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

SLOTS = 16384
MIGRATE_BATCH = 100  # keys per MIGRATE
MIGRATE_SLOTS_PER_ROUND = 256  # slots moved per reconcile, so a round stays short and the loop stays live
BALANCE_THRESHOLD = 0.02  # like redis-cli --cluster rebalance: ignore differences under 2% of the ideal


# ----------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ClusterNode:
    """One line of CLUSTER NODES."""

    id: str
    ip: str
    port: int
    hostname: str
    flags: frozenset[str]
    master_id: str
    slots: tuple[tuple[int, int], ...]
    migrating: tuple[tuple[int, str], ...] = ()  # (slot, target id): only on the "myself" line
    importing: tuple[tuple[int, str], ...] = ()  # (slot, source id)

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "noaddr"})

    @property
    def slot_count(self) -> int:
        return sum(end - start + 1 for start, end in self.slots)

    def named(self, host: str, port: int) -> bool:
        """Whether this node announced ``host:port`` (its hostname, or its IP when it announces none)."""
        return (self.hostname or self.ip) == host and self.port == port


def parse_nodes(text: str) -> list[ClusterNode]:
    """CLUSTER NODES text into nodes; slots being imported or migrated (``[..]``) are left out."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address, _, rest = fields[1].partition("@")
        hostname = rest.partition(",")[2]
        ip, _, port = address.rpartition(":")
        slots, migrating, importing = [], [], []
        for item in fields[8:]:
            if item.startswith("["):
                slot, arrow, other = item.strip("[]").partition("->-")
                if arrow:
                    migrating.append((int(slot), other))
                else:
                    slot, _, other = item.strip("[]").partition("-<-")
                    importing.append((int(slot), other))
                continue
            start, _, end = item.partition("-")
            slots.append((int(start), int(end or start)))
        nodes.append(
            ClusterNode(
                id=fields[0],
                ip=ip,
                port=int(port or 0),
                hostname=hostname,
                flags=frozenset(fields[2].split(",")),
                master_id="" if fields[3] == "-" else fields[3],
                slots=tuple(slots),
                migrating=tuple(migrating),
                importing=tuple(importing),
            )
        )
    return nodes


@dataclass(frozen=True)
class Member:
    """A pod the values ask for, as it answered (``myid`` is "" when it did not)."""

    host: str
    port: int
    ip: str = ""
    myid: str = ""
    view: tuple[ClusterNode, ...] = ()
    link_up: bool = False  # a replica's master_link_status
    cluster_ok: bool = False  # its cluster_state

    @property
    def reachable(self) -> bool:
        return bool(self.myid)

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def me(self) -> ClusterNode | None:
        return next((n for n in self.view if n.id == self.myid), None)


@dataclass(frozen=True)
class Action:
    """One change: ``command`` sent to ``member`` (an index into the members). ``why`` is logged."""

    member: int
    command: tuple[str | int, ...]
    why: str


@dataclass(frozen=True)
class MoveSlots:
    """Move ``slots`` (their keys included) from one master to another."""

    source: int
    target: int
    slots: tuple[int, ...]
    why: str


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    moves: list[MoveSlots] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # why nothing more can be done yet
    refused: list[str] = field(default_factory=list)  # what the keeper will not do (e.g. scale in)


# ------------------------------------------------------------------------------------------- planning


def ranges(slots: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted slots as (start, end) runs."""
    out: list[tuple[int, int]] = []
    for slot in sorted(slots):
        if out and out[-1][1] == slot - 1:
            out[-1] = (out[-1][0], slot)
        else:
            out.append((slot, slot))
    return out


def split_slots(shards: int) -> list[tuple[int, int]]:
    """The slot range of each of ``shards`` masters, as even as possible."""
    out, start = [], 0
    for i in range(shards):
        size = SLOTS // shards + (1 if i < SLOTS % shards else 0)
        out.append((start, start + size - 1))
        start += size
    return out


def seed_of(members: Sequence[Member]) -> Member | None:
    """The member whose view knows the most assigned slots (then the most nodes): the cluster as it is."""
    reachable = [m for m in members if m.reachable]
    if not reachable:
        return None
    return max(
        reachable,
        key=lambda m: (sum(n.slot_count for n in m.view if not n.failed), len(m.view), -members.index(m)),
    )


def plan(members: Sequence[Member], shards: int, replicas: int) -> Plan:
    """What to do next, from what every member reported. Pure: the caller runs the actions."""
    out = Plan()
    seed = seed_of(members)
    if seed is None:
        out.waiting.append("no Redis node answers")
        return out
    if not any(n.slots for n in seed.view):
        return _plan_create(members, shards, out)
    index = {m.myid: i for i, m in enumerate(members) if m.reachable}
    view = {n.id: n for n in seed.view}
    seed_i = members.index(seed)

    for m in members:
        if not m.reachable:
            out.waiting.append(f"{m.name} does not answer")
        elif m.myid not in view or len(m.view) < 2:
            out.actions.append(
                Action(seed_i, ("CLUSTER", "MEET", m.ip, m.port), f"{m.name} is not in the cluster")
            )

    for node in seed.view:
        replaced = [m for m in members if m.reachable and node.named(m.host, m.port) and m.myid != node.id]
        unknown = not any(node.named(m.host, m.port) for m in members)
        # A failed master that still holds slots waits for its replica to take over (forgetting it now
        # would cost that replica the votes it needs), unless no live replica is left to do so.
        taking_over = node.is_master and node.slots and _replica_count(seed.view, node.id) > 0
        if taking_over and "noaddr" in node.flags and "fail" not in node.flags:
            # Another node answered at its address before it was marked failed: Redis then stops probing
            # it, never marks it failed, and its replica never takes over by itself. Make the replica do it.
            heir = min(
                (n for n in seed.view if n.master_id == node.id and n.id in index), key=lambda n: index[n.id]
            )
            why = f"{node.id[:8]} lost its address to another node before it was marked failed"
            out.actions.append(Action(index[heir.id], ("CLUSTER", "FAILOVER", "FORCE"), why))
        elif node.failed and (replaced or unknown) and not taking_over:
            why = f"{node.id[:8]} ({node.hostname or node.ip}:{node.port}) failed and " + (
                "was replaced by a new node" if replaced else "is no pod of this release"
            )
            for i, m in enumerate(members):
                if m.reachable and m.myid != node.id and any(n.id == node.id for n in m.view):
                    out.actions.append(Action(i, ("CLUSTER", "FORGET", node.id), why))
    if out.actions:
        return out  # meet and forget first; the rest is decided on the next, settled view

    live = [n for n in seed.view if not n.failed and n.id in index]
    masters = [n for n in live if n.is_master and n.slots]
    empty = sorted((n for n in live if n.is_master and not n.slots), key=lambda n: index[n.id])
    if len(masters) > shards:
        out.refused.append(
            f"{len(masters)} masters hold slots but the values ask for {shards} shards: scaling in is not "
            "supported (move to a new release instead)"
        )

    # Slots of a failed master are not orphans: its replica takes them over, or, once its pod is replaced,
    # the forget above releases them. Only slots nobody claims are handed out here.
    owned = {s for n in seed.view for a, b in n.slots for s in range(a, b + 1)}
    orphans = [s for s in range(SLOTS) if s not in owned]
    if orphans:
        target = empty[0] if empty else min(masters, key=lambda n: n.slot_count) if masters else None
        if target is None:
            out.waiting.append(f"{len(orphans)} slots have no owner and no master can take them")
        else:
            for start, end in ranges(orphans):
                out.actions.append(
                    Action(
                        index[target.id],
                        ("CLUSTER", "ADDSLOTSRANGE", start, end),
                        f"slots {start}-{end} lost every copy",
                    )
                )
        return out

    while empty and len(masters) < shards:
        masters.append(empty.pop(0))  # a new shard: it gets slots by the moves below
    planned = list(seed.view)  # the view as the REPLICATEs planned so far leave it
    for node in empty:
        need = _fewest_replicas(masters, planned, replicas, index)
        member = members[index[node.id]]
        if need is None:
            out.waiting.append(f"{member.name} is a spare master: every shard has its {replicas} replicas")
        elif not any(n.id == need.id for n in member.view):
            out.waiting.append(f"{member.name} does not know {need.id[:8]} yet")
        else:
            out.actions.append(
                Action(index[node.id], ("CLUSTER", "REPLICATE", need.id), f"a replica for {need.id[:8]}")
            )
            planned = [n for n in planned if n.id != node.id] + [_as_replica(node, need.id)]
    unfinished = _unfinished_moves(members, index)
    if unfinished:
        out.moves.extend(unfinished)
        return out
    moves = _balance(masters, index)
    # A new master refuses the keys of a slot (CLUSTERDOWN) until it knows every slot's owner and its
    # cluster_state is ok.
    learning = {
        i
        for i in {m.target for m in moves}
        if not members[i].cluster_ok or sum(n.slot_count for n in members[i].view) < SLOTS
    }
    out.moves.extend(m for m in moves if m.target not in learning)
    out.waiting += [f"{members[i].name} is still learning the slot map" for i in sorted(learning)]
    return out


def _unfinished_moves(members: Sequence[Member], index: dict[str, int]) -> list[MoveSlots]:
    """Slots left MIGRATING/IMPORTING by an interrupted move: finish them (moving a slot again is safe)."""
    moves = []
    for i, m in enumerate(members):
        me = m.me()
        if me is None:
            continue
        for slot, target in me.migrating:
            if target in index:
                moves.append(MoveSlots(i, index[target], (slot,), "finishing an interrupted move"))
        for slot, source in me.importing:
            if source in index and not any(
                slot == s for s, _ in (members[index[source]].me() or me).migrating
            ):
                moves.append(MoveSlots(index[source], i, (slot,), "finishing an interrupted move"))
    return moves


def _fewest_replicas(
    masters: Sequence[ClusterNode], view: Sequence[ClusterNode], replicas: int, index: dict[str, int]
) -> ClusterNode | None:
    """The master with the fewest replicas, if it has fewer than asked (the lowest pod first on a tie)."""
    short = [m for m in masters if _replica_count(view, m.id) < replicas]
    return min(short, key=lambda m: (_replica_count(view, m.id), index[m.id]), default=None)


def _replica_count(view: Sequence[ClusterNode], master_id: str) -> int:
    return sum(1 for n in view if n.master_id == master_id and not n.failed)


def _as_replica(node: ClusterNode, master_id: str) -> ClusterNode:
    flags = (node.flags - {"master"}) | {"slave"}
    return ClusterNode(node.id, node.ip, node.port, node.hostname, flags, master_id, ())


def _plan_create(members: Sequence[Member], shards: int, out: Plan) -> Plan:
    """A new cluster: every pod must answer; the first ``shards`` pods get the slots and all meet pod 0."""
    missing = [m.name for m in members if not m.reachable]
    if missing:
        out.waiting.append(f"forming the cluster needs every pod; no answer from {', '.join(missing)}")
        return out
    if len(members) < shards:
        out.refused.append(f"{shards} shards need at least {shards} pods, there are {len(members)}")
        return out
    first = members[0]
    for m in members[1:]:
        if not any(n.id == m.myid for n in first.view):
            out.actions.append(Action(0, ("CLUSTER", "MEET", m.ip, m.port), f"forming: {m.name} meets pod 0"))
    for i, (start, end) in enumerate(split_slots(shards)):
        out.actions.append(
            Action(i, ("CLUSTER", "ADDSLOTSRANGE", start, end), f"forming: shard {i} gets {start}-{end}")
        )
    return out


def _balance(masters: Sequence[ClusterNode], index: dict[str, int]) -> list[MoveSlots]:
    """Moves that bring each master near an even share (only what is off by more than the threshold)."""
    if len(masters) < 2:
        return []
    ordered = sorted(masters, key=lambda n: index[n.id])
    ideal = {
        n.id: SLOTS // len(ordered) + (1 if i < SLOTS % len(ordered) else 0) for i, n in enumerate(ordered)
    }
    short = {n.id: ideal[n.id] - n.slot_count for n in ordered if n.slot_count < ideal[n.id]}
    if not any(gap > ideal[i] * BALANCE_THRESHOLD for i, gap in short.items()):
        return []
    spare = {n.id: [s for a, b in n.slots for s in range(a, b + 1)][ideal[n.id] :] for n in ordered}
    moves, budget = [], MIGRATE_SLOTS_PER_ROUND
    for target_id, gap in short.items():
        for source in ordered:
            take = min(gap, len(spare[source.id]), budget)
            if take <= 0:
                continue
            slots = tuple(spare[source.id][:take])
            spare[source.id] = spare[source.id][take:]
            gap, budget = gap - take, budget - take
            moves.append(MoveSlots(index[source.id], index[target_id], slots, "balancing the shards"))
    return moves


def health(members: Sequence[Member], shards: int, replicas: int) -> list[str]:
    """Everything that keeps the cluster from matching the values ([] = healthy). Pure."""
    problems = [f"{m.name} does not answer" for m in members if not m.reachable]
    seed = seed_of(members)
    if seed is None:
        return problems or ["no Redis node answers"]
    view = {n.id: n for n in seed.view}
    for m in members:
        if m.reachable and (m.myid not in view or len(m.view) < 2):
            problems.append(f"{m.name} is not in the cluster")
    problems += [f"{n.id[:8]} ({n.hostname or n.ip}:{n.port}) is failed" for n in seed.view if n.failed]
    owned = sum(n.slot_count for n in seed.view if not n.failed)
    if owned < SLOTS:
        problems.append(f"{SLOTS - owned} of {SLOTS} slots have no live owner")
    masters = [n for n in seed.view if n.is_master and n.slots and not n.failed]
    if len(masters) != shards:
        problems.append(f"{len(masters)} masters hold slots, the values ask for {shards}")
    for n in masters:
        count = _replica_count(seed.view, n.id)
        if count < replicas:
            problems.append(f"master {n.hostname or n.ip}:{n.port} has {count} of {replicas} replicas")
    for m in members:
        me = m.me()
        if me is not None and not me.is_master and not m.link_up:
            problems.append(f"replica {m.name} has not synced with its master yet")
    index = {m.myid: i for i, m in enumerate(members) if m.reachable}
    if all(n.id in index for n in masters) and _balance(masters, index):
        counts = ", ".join(f"{n.hostname or n.ip}:{n.port} {n.slot_count}" for n in masters)
        problems.append(f"slots are still being moved to even out the shards ({counts})")
    return problems


# ------------------------------------------------------------------------------------------------ I/O


def run(client: redis.Redis, *args: str | int) -> Any:
    """One command (redis-py's execute_command is untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Settings:
    nodes: tuple[tuple[str, int], ...]
    shards: int
    replicas: int
    user: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    timeout: float = 3.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        nodes = []
        for item in env["MOBIUS_CLUSTER_NODES"].split():
            host, _, port = item.rpartition(":")
            nodes.append((host, int(port)))
        password = env.get("MOBIUS_REDIS_PASSWORD")
        if env.get("MOBIUS_REDIS_PASSWORD_FILE"):
            with open(env["MOBIUS_REDIS_PASSWORD_FILE"]) as f:
                password = f.read()
        return cls(
            nodes=tuple(nodes),
            shards=int(env["MOBIUS_CLUSTER_SHARDS"]),
            replicas=int(env.get("MOBIUS_CLUSTER_REPLICAS_PER_SHARD", "1")),
            user=env.get("MOBIUS_REDIS_USER") or None,
            password=password or None,
            tls_ca=env.get("MOBIUS_REDIS_TLS_CA") or None,
        )

    def client(self, host: str, port: int) -> redis.Redis:
        return redis.Redis(
            host=host,
            port=port,
            username=self.user,
            password=self.password,
            ssl=bool(self.tls_ca),
            ssl_ca_certs=self.tls_ca,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            decode_responses=True,
        )


def observe(settings: Settings) -> list[Member]:
    """Ask every pod who it is and what it sees; a pod that does not answer is just unreachable."""
    members = []
    for host, port in settings.nodes:
        try:
            ip = socket.gethostbyname(host)
            with settings.client(host, port) as c:
                myid = str(run(c, "CLUSTER", "MYID"))
                view = tuple(parse_nodes(str(run(c, "CLUSTER", "NODES"))))
                link_up = c.info("replication").get("master_link_status") == "up"
                cluster_ok = "cluster_state:ok" in str(run(c, "CLUSTER", "INFO"))
            members.append(Member(host, port, ip, myid, view, link_up, cluster_ok))
        except (OSError, redis.RedisError):
            members.append(Member(host, port))
    return members


def apply(settings: Settings, members: Sequence[Member], todo: Plan, log: list[str]) -> None:
    """Run the plan's actions and slot moves; an error is logged and left for the next round."""
    for action in todo.actions:
        m = members[action.member]
        log.append(f"{m.name}: {' '.join(map(str, action.command))}  ({action.why})")
        try:
            with settings.client(m.host, m.port) as c:
                run(c, *action.command)
        except redis.RedisError as exc:
            log.append(f"  failed: {exc}")
    for move in todo.moves:
        source, target = members[move.source], members[move.target]
        log.append(f"moving {len(move.slots)} slots {source.name} -> {target.name} ({move.why})")
        others = [
            m for m in members if m.reachable and m.myid not in (source.myid, target.myid) and _is_master(m)
        ]
        try:
            with (
                settings.client(source.host, source.port) as src,
                settings.client(target.host, target.port) as dst,
            ):
                peers = [settings.client(m.host, m.port) for m in others]
                try:
                    for slot in move.slots:
                        move_slot(settings, src, dst, peers, source, target, slot)
                finally:
                    for peer in peers:
                        peer.close()
        except redis.RedisError as exc:
            log.append(f"  failed: {exc}")


def _is_master(member: Member) -> bool:
    me = member.me()
    return me is not None and me.is_master


def move_slot(
    settings: Settings,
    src: redis.Redis,
    dst: redis.Redis,
    peers: Sequence[redis.Redis],
    source: Member,
    target: Member,
    slot: int,
) -> None:
    """The documented resharding steps: IMPORTING/MIGRATING, MIGRATE the keys in batches, then NODE everywhere."""
    run(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", source.myid)
    run(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", target.myid)
    auth: list[str] = ["AUTH2", settings.user or "default", settings.password] if settings.password else []
    while keys := run(src, "CLUSTER", "GETKEYSINSLOT", slot, MIGRATE_BATCH):
        timeout_ms = int(settings.timeout * 1000)
        run(src, "MIGRATE", target.ip, target.port, "", 0, timeout_ms, "REPLACE", *auth, "KEYS", *keys)
    run(dst, "CLUSTER", "SETSLOT", slot, "NODE", target.myid)
    run(src, "CLUSTER", "SETSLOT", slot, "NODE", target.myid)
    for peer in peers:
        with contextlib.suppress(redis.RedisError):  # gossip tells it soon enough
            run(peer, "CLUSTER", "SETSLOT", slot, "NODE", target.myid)


def reconcile(settings: Settings) -> tuple[Plan, list[str]]:
    """One round: observe, plan, apply. Returns the plan and what was done."""
    members = observe(settings)
    todo = plan(members, settings.shards, settings.replicas)
    log: list[str] = []
    apply(settings, members, todo, log)
    return todo, log


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    keep = sub.add_parser("keep", help="reconcile forever")
    keep.add_argument("--interval", type=float, default=5.0)
    sub.add_parser("reconcile", help="one round, then exit")
    wait = sub.add_parser("wait", help="change nothing; exit 0 once the cluster matches the values")
    wait.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    settings = Settings.from_env()

    if args.mode == "wait":
        deadline = time.monotonic() + args.timeout
        problems = ["not checked yet"]
        while time.monotonic() < deadline:
            problems = health(observe(settings), settings.shards, settings.replicas)
            if not problems:
                print(
                    f"the cluster is healthy: {settings.shards} shards x (1 + {settings.replicas})",
                    flush=True,
                )
                return 0
            time.sleep(2)
        print("the cluster does not match the values:\n- " + "\n- ".join(problems), flush=True)
        return 1

    while True:
        todo, log = reconcile(settings)
        for line in log + [f"waiting: {w}" for w in todo.waiting] + [f"REFUSED: {r}" for r in todo.refused]:
            print(line, flush=True)
        if args.mode == "reconcile":
            return 1 if todo.refused else 0
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
