"""A cache-shaped keyspace of known content, for the key-group test and benchmark.

Six namespaces with their own value sizes, written under the cache prefix with TTLs like the cache writes them;
the search results are written through the library's own indexed-write script (``SET_INDEXED``), so the tag and
dependency index keys are real sorted sets named by :class:`mobius_cache._keys.KeySpace`, and a few keys of
another application (outside the prefix) fall into the exporter's ``unclassified`` group.

``fill`` returns what it wrote, group by group, in the exporter's own group names (``<prefix><namespace>``):
the key count and the payload (key and value bytes; for an index, its name plus each member and its 8-byte
score), which Redis's own accounting can only exceed.
"""

from __future__ import annotations

import itertools
import socket
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import hiredis

from mobius_cache import CacheConfig
from mobius_cache._keys import KeySpace
from mobius_cache._scripts import SET_INDEXED
from tests.servers import HOST

TTL = 3600
#: Keys of an application that does not use the cache layer (no prefix): the exporter's "unclassified" group.
OUTSIDE = "legacy-sessions:{i}"
UNCLASSIFIED = "unclassified"
#: Members per tag index (above Redis's 128-entry listpack limit, so a skiplist whose size MEMORY USAGE samples)
#: and per dependency index (a listpack, measured exactly).
TAG_MEMBERS = 300
DEPS_MEMBERS = 50


@dataclass(frozen=True)
class Namespace:
    """One cache namespace: its share of the keys, its value size and its logical key template."""

    name: str
    share: float
    value_bytes: int
    template: str


NAMESPACES = (
    Namespace("document", 0.34, 1536, "document:{i}:embedding"),  # 384 float32
    Namespace("search", 0.26, 400, "search:{i:08x}:results:1"),  # tagged, and depends on a project
    Namespace("api", 0.16, 700, "api:v1:users:{i:08x}"),
    Namespace("user", 0.12, 180, "user:{i}:session"),
    Namespace("project", 0.08, 120, "project:{i}:metadata"),
    Namespace("config", 0.03, 2048, "config:feature-{i}"),
)
OUTSIDE_SHARE = 0.01


@dataclass
class Written:
    """What ``fill`` wrote into one group: keys and payload bytes."""

    keys: int = 0
    payload: int = 0


def group_of(prefix: str, namespace: str) -> str:
    """The exporter's group name for a namespace (or ``~tag`` / ``~deps``) under ``prefix``."""
    return f"{prefix}{namespace}"


def _value(size: int, i: int) -> bytes:
    head = f"{i}:".encode()
    return head + b"v" * (size - len(head))


Command = tuple[str | bytes | int, ...]


def pipelined(port: int, commands: Iterable[Command], chunk: int = 5000) -> list[Any]:
    """Send ``commands`` over one connection, ``chunk`` at a time, then return the replies in order (errors
    as ``hiredis.ReplyError`` values). Redis works on a chunk while the next one is packed; it keeps the
    replies until they are read (small ones: a normal client's output buffer has no limit). hiredis packs
    and parses, so 100k commands take a second or two, where redis-py's pipeline takes several."""
    replies: list[Any] = []
    reader = hiredis.Reader()
    with socket.create_connection((HOST, port)) as sock:
        sent = 0
        for part in _batched(commands, chunk):
            # (hiredis's type stub says a 1-tuple; any tuple of arguments is what it packs)
            sock.sendall(b"".join(hiredis.pack_command(command) for command in part))  # type: ignore[arg-type]
            sent += len(part)
        while len(replies) < sent:
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("Redis closed the connection")
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                replies.append(reply)
    return replies


def _batched(items: Iterable[Command], size: int) -> Iterator[tuple[Command, ...]]:
    """itertools.batched of Python 3.12."""
    iterator = iter(items)
    while part := tuple(itertools.islice(iterator, size)):
        yield part


def fill(port: int, total: int, prefix: str = "mobius:") -> dict[str, Written]:
    """Write about ``total`` keys (index keys included) into the Redis on ``port``; returns what each group
    received."""
    keys = KeySpace(CacheConfig(cache_prefix=prefix))
    written: defaultdict[str, Written] = defaultdict(Written)
    index_members: defaultdict[str, list[str]] = defaultdict(list)
    commands: list[Command] = [("SCRIPT", "LOAD", SET_INDEXED.source)]
    for ns in NAMESPACES:
        count = int(total * ns.share)
        tags = max(1, count // TAG_MEMBERS)
        parents = max(1, count // DEPS_MEMBERS)
        group = written[group_of(prefix, ns.name)]
        for i in range(count):
            name = keys.full(ns.template.format(i=i))
            value = _value(ns.value_bytes, i)
            if ns.name == "search":
                tag_key = keys.tag_key(f"project:{i % tags}")
                deps_key = keys.deps_key(keys.full(f"project:{i % parents}:metadata"))
                commands.append(("EVALSHA", SET_INDEXED.sha, 3, name, tag_key, deps_key, value, TTL, ""))
                index_members[tag_key].append(name)
                index_members[deps_key].append(name)
            else:
                commands.append(("SET", name, value, "EX", TTL))
            group.keys += 1
            group.payload += len(name.encode()) + len(value)
    for i in range(int(total * OUTSIDE_SHARE)):
        name, value = OUTSIDE.format(i=i), _value(100, i)
        commands.append(("SET", name, value, "EX", TTL))
        written[UNCLASSIFIED].keys += 1
        written[UNCLASSIFIED].payload += len(name) + len(value)
    errors = [reply for reply in pipelined(port, commands) if isinstance(reply, hiredis.ReplyError)]
    if errors:
        raise RuntimeError(f"{len(errors)} writes failed, the first: {errors[0]}")
    for index_key, members in index_members.items():
        kind = index_key[len(prefix) :].partition(":")[0]  # "~tag" or "~deps"
        group = written[group_of(prefix, kind)]
        group.keys += 1
        group.payload += len(index_key.encode()) + sum(len(m.encode()) + 8 for m in members)
    return dict(written)
