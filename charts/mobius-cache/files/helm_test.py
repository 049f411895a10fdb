"""`helm test` for mobius-cache: Redis answers as the cache user, the operator runs, the CacheConfig is Ready.

Standard library only, so it runs in any Python image. Every check has a deadline; the first failure is
printed with what was seen, and the exit code is 1.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def resp_command(sock: socket.socket, *args: str) -> Any:
    """Send one command in RESP and read one reply (simple, error, integer, bulk or flat array)."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    sock.sendall(payload.encode())
    reader = sock.makefile("rb")
    return _read_reply(reader)


def _read_reply(reader: Any) -> Any:
    line = reader.readline().rstrip(b"\r\n")
    if not line:
        raise ConnectionError("Redis closed the connection")
    kind, rest = line[:1], line[1:].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(f"Redis error: {rest}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reader.read(size + 2)[:-2].decode()
    if kind == b"*":
        return [_read_reply(reader) for _ in range(int(rest))]
    raise RuntimeError(f"unexpected reply from Redis: {line!r}")


@dataclass(frozen=True)
class RedisAddress:
    """What a Redis URL says: redis[s]://, redis[s]+cluster:// or redis[s]+sentinel://[user@]host:port,.../name/db."""

    tls: bool
    kind: str  # "", "cluster" or "sentinel"
    hosts: tuple[tuple[str, int], ...]
    username: str
    master_name: str
    ca_file: str


def parse_redis_url(url: str) -> RedisAddress:
    parsed = urllib.parse.urlsplit(url)
    scheme, _, kind = parsed.scheme.partition("+")
    default_port = 26379 if kind == "sentinel" else 6379
    hosts = []
    for item in parsed.netloc.rpartition("@")[2].split(","):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        hosts.append((host.strip("[]"), int(port or default_port)))
    username = urllib.parse.unquote(parsed.netloc.rpartition("@")[0].partition(":")[0])
    path = [p for p in parsed.path.split("/") if p]
    query = urllib.parse.parse_qs(parsed.query)
    return RedisAddress(
        tls=scheme == "rediss",
        kind=kind,
        hosts=tuple(hosts),
        username=username,
        master_name=path[0] if kind == "sentinel" and path else "",
        ca_file=(query.get("ssl_ca_certs") or [os.environ.get("REDIS_CA_FILE", "")])[0],
    )


def connect(address: RedisAddress, host: str, port: int, timeout: float) -> socket.socket:
    sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
    if address.tls:
        context = ssl.create_default_context(cafile=address.ca_file or None)
        sock = context.wrap_socket(sock, server_hostname=host)
    return sock


def locate_master(address: RedisAddress, timeout: float) -> tuple[str, int]:
    """Ask the Sentinels (their default user may, without a password) where the master is."""
    errors = []
    for host, port in address.hosts:
        try:
            with connect(address, host, port, timeout) as sock:
                reply = resp_command(sock, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", address.master_name)
        except (OSError, RuntimeError) as exc:
            errors.append(f"{host}:{port}: {exc}")
            continue
        if reply:
            return str(reply[0]), int(reply[1])
        errors.append(f"{host}:{port} does not know {address.master_name!r}")
    raise RuntimeError("no Sentinel named the master: " + "; ".join(errors))


def check_redis(
    url: str,
    password: str,
    expect_maxmemory: str,
    timeout: float,
    *,
    key_prefix: str = "",
    expect_acl: bool = False,
) -> str:
    """Log in as the URL's user and check what a client needs; return what was seen.

    PING; ``maxmemory`` (INFO memory) when the chart runs Redis; with ``key_prefix``, a SET/GET/UNLINK of a
    key of the cache's own; with ``expect_acl``, that the user may NOT run CONFIG (the ACL is in force); in a
    Redis Cluster, that cluster_state is ok. A Sentinel URL is followed to the master first.
    """
    address = parse_redis_url(url)
    host, port = address.hosts[0]
    seen = []
    if address.kind == "sentinel":
        host, port = locate_master(address, timeout)
        seen.append(f"master {host}:{port} (from the Sentinels)")
    with connect(address, host, port, timeout) as sock:
        if password:
            login = [address.username] if address.username else []
            resp_command(sock, "AUTH", *login, password)
        pong = resp_command(sock, "PING")
        if pong != "PONG":
            raise RuntimeError(f"PING answered {pong!r}")
        seen.append(f"{host}:{port} PONG")
        if expect_maxmemory:
            maxmemory = info_field(resp_command(sock, "INFO", "memory"), "maxmemory")
            if maxmemory != expect_maxmemory:
                raise RuntimeError(f"maxmemory is {maxmemory}, expected {expect_maxmemory}")
            seen.append(f"maxmemory {maxmemory}")
        if address.kind == "cluster":
            state = info_field(resp_command(sock, "CLUSTER", "INFO"), "cluster_state")
            if state != "ok":
                raise RuntimeError(f"cluster_state is {state}")
            seen.append("cluster_state ok")
        if expect_acl:
            try:
                resp_command(sock, "CONFIG", "GET", "maxmemory")
            except RuntimeError as exc:
                if "NOPERM" not in str(exc):
                    raise
                seen.append("CONFIG refused (NOPERM)")
            else:
                raise RuntimeError(
                    f"user {address.username or 'default'} may run CONFIG: the ACL is not in force"
                )
    if key_prefix:
        seen.append(round_trip(address, host, port, password, f"{key_prefix}helm-test", timeout))
    return ", ".join(seen)


def round_trip(address: RedisAddress, host: str, port: int, password: str, key: str, timeout: float) -> str:
    """SET, GET and UNLINK one key (following a cluster's MOVED once)."""
    token = os.urandom(8).hex()
    with connect(address, host, port, timeout) as sock:
        if password:
            resp_command(sock, "AUTH", *([address.username] if address.username else []), password)
        try:
            resp_command(sock, "SET", key, token, "EX", "60")
        except RuntimeError as exc:
            moved = str(exc).split()
            if len(moved) >= 5 and moved[2] == "MOVED":
                target_host, _, target_port = moved[4].rpartition(":")
                return round_trip(address, target_host, int(target_port), password, key, timeout)
            raise
        if resp_command(sock, "GET", key) != token:
            raise RuntimeError(f"GET {key} did not return what SET wrote")
        resp_command(sock, "UNLINK", key)
    return f"SET/GET/UNLINK {key} on {host}:{port}"


def info_field(info: str, name: str) -> str:
    for line in info.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"INFO has no {name}")


def kube_get(path: str, timeout: float) -> Any:
    """GET an object from the Kubernetes API with the pod's service account."""
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    with open(f"{SA_DIR}/token") as f:
        token = f.read().strip()
    context = ssl.create_default_context(cafile=f"{SA_DIR}/ca.crt")
    request = urllib.request.Request(
        f"https://{host}:{port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        return json.load(response)


def ready_condition(cacheconfig: dict[str, Any]) -> str | None:
    """Return None when the status is Ready for the current generation, else why not."""
    status = cacheconfig.get("status") or {}
    generation = cacheconfig.get("metadata", {}).get("generation")
    if status.get("observedGeneration") != generation:
        return (
            f"status describes generation {status.get('observedGeneration')}, the object is at {generation}"
        )
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            if condition.get("status") == "True":
                return None
            return f"Ready={condition.get('status')}: {condition.get('reason')}: {condition.get('message')}"
    return "no Ready condition yet"


def poll(what: str, check: Any, deadline: float) -> str:
    """Run check() until it returns a result or the deadline passes; raise with the last error."""
    last = "not tried"
    while time.monotonic() < deadline:
        try:
            return str(check())
        except Exception as exc:
            last = str(exc)
        time.sleep(2)
    raise TimeoutError(f"{what}: {last}")


def main() -> int:
    env = os.environ
    deadline = time.monotonic() + float(env.get("TEST_TIMEOUT", "120"))
    namespace = env.get("NAMESPACE", "default")
    checks: list[tuple[str, Any]] = [
        (
            "redis",
            lambda: check_redis(
                env["REDIS_URL"],
                env.get("REDIS_PASSWORD", ""),
                env.get("EXPECT_MAXMEMORY", ""),
                5,
                key_prefix=env.get("KEY_PREFIX", ""),
                expect_acl=env.get("EXPECT_ACL") == "true",
            ),
        )
    ]
    if env.get("OPERATOR_DEPLOYMENT"):

        def operator() -> str:
            deployment = kube_get(
                f"/apis/apps/v1/namespaces/{namespace}/deployments/{env['OPERATOR_DEPLOYMENT']}", 5
            )
            available = (deployment.get("status") or {}).get("availableReplicas") or 0
            if available < 1:
                raise RuntimeError("the operator Deployment has no available replica")
            return f"{available} available replica"

        checks.append(("operator", operator))
    if env.get("CACHECONFIG"):

        def cacheconfig() -> str:
            path = f"/apis/cache.mobius.io/v1alpha1/namespaces/{namespace}/cacheconfigs/{env['CACHECONFIG']}"
            problem = ready_condition(kube_get(path, 5))
            if problem:
                raise RuntimeError(problem)
            return "Ready"

        checks.append(("cacheconfig", cacheconfig))
    for name, check in checks:
        try:
            print(f"ok   {name}: {poll(name, check, deadline)}", flush=True)
        except TimeoutError as exc:
            print(f"FAIL {exc}", flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
