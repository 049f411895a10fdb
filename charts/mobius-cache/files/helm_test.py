"""`helm test` for mobius-cache: Redis answers, the operator runs, and the CacheConfig's status says Ready.

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


def check_redis(url: str, password: str, expect_maxmemory: str, timeout: float) -> str:
    """PING (and CONFIG GET maxmemory when the chart runs Redis): return what was seen."""
    parsed = urllib.parse.urlparse(url.replace("+cluster://", "://"))
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
    if parsed.scheme == "rediss":
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    with sock:
        if password:
            resp_command(sock, "AUTH", password)
        pong = resp_command(sock, "PING")
        if pong != "PONG":
            raise RuntimeError(f"PING answered {pong!r}")
        if not expect_maxmemory:
            return f"{host}:{port} PONG"
        _, maxmemory = resp_command(sock, "CONFIG", "GET", "maxmemory")
        if maxmemory != expect_maxmemory:
            raise RuntimeError(f"maxmemory is {maxmemory}, expected {expect_maxmemory}")
        return f"{host}:{port} PONG, maxmemory {maxmemory}"


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
                env["REDIS_URL"], env.get("REDIS_PASSWORD", ""), env.get("EXPECT_MAXMEMORY", ""), 5
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
