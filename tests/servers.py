"""Real servers for the tests: redis-server processes (standalone and a local cluster), on free loopback ports.

Tests stop, kill, freeze (SIGSTOP) and restart them to inject faults. Nothing here mocks Redis.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"


def free_port(*, also_plus: int = 0) -> int:
    """A free TCP port on loopback (and, with ``also_plus``, port + also_plus free too: cluster bus ports)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if also_plus and port + also_plus > 65535:
            continue
        if also_plus:
            with socket.socket() as s2:
                try:
                    s2.bind((HOST, port + also_plus))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port found")


def wait_for_port(port: int, timeout: float = 10.0, host: str = HOST) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.01)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


@dataclass(frozen=True)
class TLSFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost (made with the openssl CLI)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> TLSFiles:
        directory.mkdir(parents=True, exist_ok=True)
        ca, ca_key = directory / "ca.crt", directory / "ca.key"
        cert, key, csr = directory / "redis.crt", directory / "redis.key", directory / "redis.csr"
        ext = directory / "san.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for cmd in (
            ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=mobius-test-ca"],
            ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
            [
                "x509",
                "-req",
                "-in",
                csr,
                "-CA",
                ca,
                "-CAkey",
                ca_key,
                "-CAcreateserial",
                "-out",
                cert,
                "-days",
                "2",
                "-extfile",
                ext,
            ],
        ):
            subprocess.run(["openssl", *map(str, cmd)], check=True, capture_output=True, timeout=30)
        key.chmod(0o600)
        return cls(ca, cert, key)

    def server_args(self, port: int) -> list[str]:
        """redis-server options: TLS only on ``port`` (no plain TCP), TLS to the master too, no client certs."""
        return [
            "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(self.cert), "--tls-key-file",
            str(self.key), "--tls-ca-cert-file", str(self.ca), "--tls-replication", "yes", "--tls-auth-clients", "no",
        ]  # fmt: skip

    def client_kwargs(self) -> dict[str, object]:
        return {"ssl": True, "ssl_ca_certs": str(self.ca)}


@dataclass
class RedisServer:
    """One redis-server process on loopback. Restarting keeps the port (and, without persistence, loses data).
    With ``tls``, it listens for TLS only."""

    port: int = 0
    maxmemory: str = "64mb"
    policy: str = "allkeys-lru"
    extra_args: list[str] = field(default_factory=list)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mr-")))
    proc: subprocess.Popen[bytes] | None = None
    tls: TLSFiles | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{HOST}:{self.port}/0"

    def start(self) -> RedisServer:
        if not self.port:
            self.port = free_port()
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed: run `make test` (it installs it) or apt-get")
        args = [
            exe,
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory",
            self.maxmemory,
            "--maxmemory-policy",
            self.policy,
            "--dir",
            str(self.workdir),
            "--logfile",
            str(self.workdir / f"redis-{self.port}.log"),
            *(self.tls.server_args(self.port) if self.tls else []),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        client = self.client(  # no retries: redis-py 8 retries a refused HELLO (requirepass) for seconds
            socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
        try:
            while time.monotonic() < deadline:
                try:
                    if client.ping():
                        return
                except (redis.exceptions.ResponseError, redis.exceptions.AuthenticationError):
                    return  # it answered (e.g. NOAUTH): it is up
                except redis.exceptions.RedisError:
                    pass
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
                time.sleep(0.01)
        finally:
            client.close()
        raise TimeoutError(f"redis-server on {self.port} not ready after {timeout}s")

    def client(self, **kwargs: object) -> redis.Redis:
        """A plain synchronous redis-py client, for checking what the code under test did."""
        tls = self.tls.client_kwargs() if self.tls else {}
        return redis.Redis(host=HOST, port=self.port, **tls, **kwargs)  # type: ignore[arg-type]

    def kill(self) -> None:
        """SIGKILL: the server dies at once, as in a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing (a hung or partitioned Redis)."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def redis_server(**kwargs: object) -> Iterator[RedisServer]:
    server = RedisServer(**kwargs).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.close()


@dataclass
class RedisCluster:
    """A local 6-node Redis Cluster (3 primaries, 3 replicas) on free loopback ports (~2 s to start)."""

    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis+cluster://{HOST}:{self.nodes[0].port}/0"

    def start(self, size: int = 6) -> RedisCluster:
        workdir = Path(tempfile.mkdtemp(prefix="mc-"))
        ports: list[int] = []
        while len(ports) < size:
            port = free_port(also_plus=10000)
            if port not in ports and port + 10000 not in ports:
                ports.append(port)
        for port in ports:
            node_dir = workdir / str(port)
            node_dir.mkdir()
            server = RedisServer(
                port=port,
                workdir=node_dir,
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node_dir / "nodes.conf"),
                    "--cluster-node-timeout",
                    "2000",
                    "--repl-diskless-sync-delay",
                    "0",
                ],
            )
            self.nodes.append(server.start())
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"{HOST}:{p}" for p in ports],
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait for cluster_state:ok on every live node and for every replica's link to be up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._node_ok(n) for n in self.nodes if n.proc is not None and n.proc.poll() is None):
                return
            time.sleep(0.1)
        raise TimeoutError("the cluster did not reach cluster_state:ok with all replicas linked")

    @staticmethod
    def _node_ok(node: RedisServer) -> bool:
        try:
            with node.client(socket_timeout=1) as c:
                if c.cluster("info").get("cluster_state") != "ok":
                    return False
                repl = c.info("replication")
                return bool(repl.get("role") == "master" or repl.get("master_link_status") == "up")
        except redis.exceptions.RedisError:
            return False

    def primaries(self) -> list[RedisServer]:
        out = []
        for node in self.nodes:
            with contextlib.suppress(redis.exceptions.RedisError), node.client(socket_timeout=1) as c:
                if c.info("replication").get("role") == "master":
                    out.append(node)
        return out

    def close(self) -> None:
        for node in self.nodes:
            node.close()


SENTINEL_MASTER = "mymaster"
#: Sentinel timing of the test groups (and of the failover benchmark): a master is subjectively down after
#: 1 s without a reply, and a stuck failover is retried after 5 s. RECIPES.md: a replica is promoted ~2.2 s
#: after the master is SIGKILLed.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
#: The passwords of the shared authenticated group (tests/conftest.py ``auth_sentinel_group``).
GROUP_PASSWORD, GROUP_SENTINEL_PASSWORD = "data-pw", "sentinel-pw"


@dataclass
class SentinelGroup:
    """One master, two ``--replicaof`` replicas and three Sentinels (quorum 2) on free loopback ports.

    ``password`` protects the data nodes (requirepass + masterauth, and the Sentinels' ``auth-pass``);
    ``sentinel_password`` protects the Sentinels themselves. ~5 s until every Sentinel sees both replicas
    and both other Sentinels.
    """

    name: str = SENTINEL_MASTER
    password: str | None = None
    sentinel_password: str | None = None
    tls: TLSFiles | None = None  # TLS only, on every node and Sentinel
    replicas: int = 2
    sentinel_count: int = 3
    quorum: int = 2
    nodes: list[RedisServer] = field(default_factory=list)
    sentinels: list[RedisServer] = field(default_factory=list)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ms-")))

    def url(self, *, db: int = 0, user: str | None = None) -> str:
        """``redis+sentinel://host:port,.../<name>/<db>`` (no password: it comes from the environment); with
        TLS ``rediss+sentinel://...?ssl_ca_certs=<the test CA>``."""
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        auth = f"{user}@" if user else ""
        if self.tls:
            return f"rediss+sentinel://{auth}{hosts}/{self.name}/{db}?ssl_ca_certs={self.tls.ca}"
        return f"redis+sentinel://{auth}{hosts}/{self.name}/{db}"

    def start(self, timeout: float = 30.0) -> SentinelGroup:
        auth = ["--requirepass", self.password, "--masterauth", self.password] if self.password else []
        fast_sync = ["--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"]
        master = RedisServer(
            maxmemory="64mb", workdir=self._dir("master"), extra_args=[*auth, *fast_sync], tls=self.tls
        )
        self.nodes.append(master.start())
        for i in range(self.replicas):
            replica = RedisServer(
                maxmemory="64mb",
                workdir=self._dir(f"replica{i}"),
                extra_args=[*auth, *fast_sync, "--replicaof", HOST, str(master.port)],
                tls=self.tls,
            )
            self.nodes.append(replica.start())
        for i in range(self.sentinel_count):
            self.sentinels.append(self._start_sentinel(i, master.port))
        self.wait_ready(timeout)
        return self

    def _dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir()
        return path

    def _start_sentinel(self, i: int, master_port: int) -> RedisServer:
        workdir = self._dir(f"sentinel{i}")
        port = free_port()
        lines = [
            f"port {port}" if not self.tls else "port 0",
            f"bind {HOST}",
            f"dir {workdir}",
            f"logfile {workdir / 'sentinel.log'}",
            f"sentinel monitor {self.name} {HOST} {master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {self.name} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {self.name} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {self.name} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {self.name} {self.password}")
        if self.tls:
            lines += [
                f"tls-port {port}",
                f"tls-cert-file {self.tls.cert}",
                f"tls-key-file {self.tls.key}",
                f"tls-ca-cert-file {self.tls.ca}",
                "tls-replication yes",  # TLS to the data nodes too
                "tls-auth-clients no",
            ]
        if self.sentinel_password:  # the Sentinels talk to each other with it too
            lines += [
                f"requirepass {self.sentinel_password}",
                f"sentinel sentinel-pass {self.sentinel_password}",
            ]
        conf = workdir / "sentinel.conf"  # Sentinel rewrites its own file: one writable file each
        conf.write_text("\n".join(lines) + "\n")
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed: run `make test` (it installs it) or apt-get")
        server = RedisServer(port=port, workdir=workdir, tls=self.tls)
        server.proc = subprocess.Popen(
            [exe, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(port)
        return server

    def sentinel_client(self, i: int = 0) -> redis.Redis:
        return self.sentinels[i].client(password=self.sentinel_password, decode_responses=True)

    def node_client(self, node: RedisServer, **kwargs: object) -> redis.Redis:
        return node.client(password=self.password, **kwargs)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Every replica linked, and every Sentinel sees the master, all replicas and the other Sentinels."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready():
                return
            time.sleep(0.1)
        raise TimeoutError(f"the Sentinel group was not ready after {timeout}s (logs in {self.workdir})")

    def _ready(self) -> bool:
        live_replicas = [n for n in self.nodes if n is not self.master() and _running(n)]
        try:
            for node in live_replicas:
                with self.node_client(node, socket_timeout=1) as c:
                    if c.info("replication").get("master_link_status") != "up":
                        return False
            for i, sentinel in enumerate(self.sentinels):
                if not _running(sentinel):
                    continue
                with self.sentinel_client(i) as c:
                    state = c.sentinel_master(self.name)
                    if not state["is_master"] or state["is_sdown"] or state["is_odown"]:
                        return False
                    if state["num-slaves"] < len(live_replicas):
                        return False
                    if state["num-other-sentinels"] < self.sentinel_count - 1:
                        return False
        except redis.exceptions.RedisError:
            return False
        return True

    def master_port(self, i: int = 0) -> int:
        """The master's port as Sentinel ``i`` reports it now."""
        with self.sentinel_client(i) as c:
            _host, port = c.sentinel_get_master_addr_by_name(self.name)
        return int(port)

    def master(self) -> RedisServer:
        """The node the Sentinels agree is the master (the first node before any failover)."""
        if not self.sentinels:
            return self.nodes[0]
        port = self.master_port()
        return next(n for n in self.nodes if n.port == port)

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> RedisServer:
        """Wait until every live Sentinel names a new master, and that node says it is the master."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.exceptions.RedisError, StopIteration):
                ports = {self.master_port(i) for i, s in enumerate(self.sentinels) if _running(s)}
                if len(ports) == 1 and old_port not in ports:
                    node = next(n for n in self.nodes if n.port in ports)
                    with self.node_client(node, socket_timeout=1) as c:
                        if c.info("replication").get("role") == "master":
                            return node
            time.sleep(0.05)
        raise TimeoutError(f"no failover away from port {old_port} after {timeout}s")

    def close(self) -> None:
        for server in [*self.sentinels, *self.nodes]:
            server.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _running(server: RedisServer) -> bool:
    return server.proc is not None and server.proc.poll() is None


@contextlib.contextmanager
def sentinel_group(**kwargs: object) -> Iterator[SentinelGroup]:
    group = SentinelGroup(**kwargs)  # type: ignore[arg-type]
    try:
        yield group.start()
    finally:
        group.close()
