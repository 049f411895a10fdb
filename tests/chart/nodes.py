"""The chart's Redis as local processes: what `helm template` renders, run by the chart's own start scripts.

A :class:`Rendered` holds the Redis files of one render (redis.conf, the ACL rules, the Sentinel config, the
start and probe scripts) and the passwords of the rendered Secret. :class:`ChartNode` and
:class:`ChartSentinel` write those files into a private folder and run ``sh start-redis.sh`` /
``sh start-sentinel.sh`` exactly as the pods do; only where a pod and a test differ do the environment and the
extra command-line options differ: loopback addresses, free ports, temporary folders, test certificates.

The pod's data folder (`dir /data`) becomes a temporary one. One line is added to the rules, and only here: a superuser ``test-admin`` with which the tests read
``ACL LOG`` (to see what a user was refused) and check what the users did. Everything else is the shipped file.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.chart.helm import CHART, one, render
from tests.servers import HOST, free_port

TEST_ADMIN = "test-admin"
TEST_ADMIN_PASSWORD = "test-admin-password"
ADMIN_LINE = f"user {TEST_ADMIN} on ~* &* +@all"  # its password file is written next to the others


def need(*programs: str) -> None:
    import pytest

    for program in programs:
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (make test installs it)")


@dataclass(frozen=True)
class Rendered:
    """The Redis part of one render of the chart."""

    values: Mapping[str, Any]
    config: Mapping[str, str]  # redis.conf, users.acl (+ sentinel.conf, sentinel.acl)
    scripts: Mapping[str, str]
    passwords: Mapping[str, str]  # Redis user -> password, from the rendered Secret
    tls: Mapping[str, bytes]  # tls.crt, tls.key, ca.crt of the rendered Secret (when the chart makes one)

    @property
    def architecture(self) -> str:
        return str(self.values.get("redis.architecture", "standalone"))


def render_redis(values: Mapping[str, Any] | None = None) -> Rendered:
    values = dict(values or {})
    docs = render(values)
    config = one(docs, "ConfigMap", "mc-mobius-cache-redis")["data"]
    scripts = one(docs, "ConfigMap", "mc-mobius-cache-redis-scripts")["data"]
    secrets = [d for d in docs if d["kind"] == "Secret"]
    passwords: dict[str, str] = {}
    tls: dict[str, bytes] = {}
    for secret in secrets:
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        if secret["metadata"]["name"] == "mc-mobius-cache-redis":
            passwords = {k: v.decode() for k, v in data.items()}
        elif secret["metadata"]["name"] == "mc-mobius-cache-redis-tls":
            tls = data
    return Rendered(values, config, scripts, passwords, tls)


def acl_rules(rendered: Rendered, name: str = "users.acl") -> dict[str, str]:
    """User name -> the rules of its line, from the rendered rules file."""
    users = {}
    for line in rendered.config[name].splitlines():
        if line.startswith("user "):
            _, user, rules = line.split(" ", 2)
            users[user] = rules
    return users


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    def args(self) -> list[str]:
        return [
            "--tls-cert-file",
            str(self.cert),
            "--tls-key-file",
            str(self.key),
            "--tls-ca-cert-file",
            str(self.ca),
        ]


def make_tls(
    folder: Path, names: tuple[str, ...] = ("localhost",), ips: tuple[str, ...] = (HOST,)
) -> TlsFiles:
    """A CA and a server certificate for ``names``/``ips``, made with the openssl command (EC P-256, one day)."""
    need("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    san = ",".join([*(f"DNS:{n}" for n in names), *(f"IP:{ip}" for ip in ips)])
    ext = folder / "san.cnf"
    ext.write_text(
        f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(folder / "ca.key"),
        "-out",
        str(folder / "ca.crt"),
        "-days",
        "1",
        "-subj",
        "/CN=mobius-test-ca",
    )
    run(
        "req",
        *ec,
        "-keyout",
        str(folder / "tls.key"),
        "-out",
        str(folder / "tls.csr"),
        "-subj",
        "/CN=localhost",
    )
    run(
        "x509", "-req", "-in", str(folder / "tls.csr"), "-CA", str(folder / "ca.crt"), "-CAkey", str(folder / "ca.key"),
        "-CAcreateserial", "-out", str(folder / "tls.crt"), "-days", "1", "-extfile", str(ext),
    )  # fmt: skip
    return TlsFiles(folder / "ca.crt", folder / "tls.crt", folder / "tls.key")


def chart_tls(rendered: Rendered, folder: Path) -> TlsFiles:
    """The certificate the chart generated (genCA/genSignedCert), written out for a local server."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("ca.crt", "tls.crt", "tls.key"):
        (folder / name).write_bytes(rendered.tls[name])
    return TlsFiles(folder / "ca.crt", folder / "tls.crt", folder / "tls.key")


@dataclass
class _Process:
    """What ChartNode and ChartSentinel share: a private folder laid out like the pod's volumes."""

    rendered: Rendered
    tls: TlsFiles | None = None
    port: int = 0
    announce_host: str = HOST
    env: dict[str, str] = field(default_factory=dict)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mcn-")))
    proc: subprocess.Popen[bytes] | None = None
    started_env: dict[str, str] = field(default_factory=dict)

    def _layout(self, rules: str) -> dict[str, str]:
        config, passwords, scripts, run = (self.root / d for d in ("config", "passwords", "scripts", "run"))
        for folder in (config, passwords, scripts, run, self.root / "data"):
            folder.mkdir(exist_ok=True)
        for name, text in self.rendered.config.items():
            if name == rules:
                text = text.rstrip("\n") + "\n" + ADMIN_LINE + "\n"
            if name == "redis.conf":  # Redis changes into `dir` while it reads the file: the pod's /data
                assert "\ndir /data\n" in text
                text = text.replace("\ndir /data\n", f"\ndir {self.root / 'data'}\n")
            (config / name).write_text(text)
        for name, text in self.rendered.scripts.items():
            (scripts / name).write_text(text)
        for user, password in {**self.rendered.passwords, TEST_ADMIN: TEST_ADMIN_PASSWORD}.items():
            (passwords / user).write_text(password)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOBIUS_")}
        env.update(
            MOBIUS_REDIS_CONFIG_DIR=str(config),
            MOBIUS_REDIS_PASSWORDS_DIR=str(passwords),
            MOBIUS_REDIS_RUN_DIR=str(run),
            MOBIUS_REDIS_AUTH="on" if self.rendered.values.get("redis.auth.enabled", True) else "off",
        )
        if self.tls:
            env["MOBIUS_REDIS_TLS_CA"] = str(self.tls.ca)
        env.update(self.env)
        return env

    def _listen_args(self) -> list[str]:
        if self.tls:
            return ["--port", "0", "--tls-port", str(self.port), *self.tls.args()]
        return ["--port", str(self.port)]

    def probe(self, mode: str, **env: str) -> subprocess.CompletedProcess[str]:
        """The pod's probe (files/redis/probe.sh) as the kubelet runs it in this container."""
        assert self.started_env, "not started"
        run_env = {
            **self.started_env,
            "MOBIUS_REDIS_PORT": str(self.port),
            "MOBIUS_SENTINEL_PORT": str(self.port),
        }
        if self.rendered.passwords:
            run_env.update(
                MOBIUS_REDIS_CLI_USER="mobius-exporter",
                REDISCLI_AUTH=self.rendered.passwords["mobius-exporter"],
            )
        run_env.update(env)
        script = str(self.root / "scripts" / "probe.sh")
        return subprocess.run(["sh", script, mode], env=run_env, capture_output=True, text=True, timeout=30)

    def _start(self, script: str, env: dict[str, str], args: list[str]) -> None:
        self.started_env = env
        log = (self.root / "out.log").open("ab")
        self.proc = subprocess.Popen(
            ["sh", str(self.root / "scripts" / script), "--bind", HOST, *self._listen_args(), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        texts = [p.read_text(errors="replace")[-4000:] for p in sorted(self.root.glob("*.log"))]
        return "\n".join(texts)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def client(self, user: str | None = None, password: str | None = None, **kwargs: Any) -> redis.Redis:
        """A client logged in as ``user`` (its password from the Secret), over TLS when the node has it."""
        if user is not None and password is None:
            password = TEST_ADMIN_PASSWORD if user == TEST_ADMIN else self.rendered.passwords[user]
        tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.tls.ca)} if self.tls else {}
        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))  # a refusal is what many tests expect: no retries
        return redis.Redis(
            host=self.announce_host, port=self.port, username=user, password=password, **tls, **kwargs
        )

    def admin(self, **kwargs: Any) -> redis.Redis:
        """The test's superuser (or, without auth, the default user)."""
        if not self.rendered.values.get("redis.auth.enabled", True):
            return self.client(**kwargs)
        return self.client(TEST_ADMIN, **kwargs)

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the process exited:\n{self.log()}")
            try:
                with self.admin(socket_timeout=1, socket_connect_timeout=1) as c:
                    c.ping()
                return
            except redis.RedisError as exc:
                last = exc
                time.sleep(0.05)
        raise TimeoutError(f"not ready after {timeout}s ({last}):\n{self.log()}")


@dataclass
class ChartNode(_Process):
    """One Redis node started by the chart's start-redis.sh (``data`` survives restarts unless ``fresh``)."""

    def start(self) -> ChartNode:
        self.port = self.port or free_port(also_plus=10000)
        env = self._layout("users.acl")
        env.update(
            MOBIUS_REDIS_ARCHITECTURE=self.rendered.architecture,
            MOBIUS_REDIS_ANNOUNCE_HOST=self.announce_host,
            MOBIUS_REDIS_ANNOUNCE_PORT=str(self.port),
        )
        args = ["--dir", str(self.root / "data"), "--logfile", str(self.root / "redis.log")]
        self._start("start-redis.sh", env, args)
        self.wait_ready()
        return self

    def restart(self, *, fresh: bool = False) -> None:
        """Stop and start again on the same port; ``fresh`` empties the data folder (a new pod without a volume)."""
        self.stop()
        if fresh:
            shutil.rmtree(self.root / "data", ignore_errors=True)
        self.start()

    def acl_log(self) -> list[dict[str, Any]]:
        with self.admin(decode_responses=True) as c:
            return list(c.acl_log())


@dataclass
class ChartSentinel(_Process):
    """The Sentinel of one pod, started by the chart's start-sentinel.sh."""

    def start(self) -> ChartSentinel:
        self.port = self.port or free_port()
        env = self._layout("sentinel.acl")
        env.update(
            MOBIUS_REDIS_ANNOUNCE_HOST=self.announce_host, MOBIUS_SENTINEL_ANNOUNCE_PORT=str(self.port)
        )
        self._start("start-sentinel.sh", env, ["--logfile", str(self.root / "sentinel.log")])
        self.wait_ready()
        return self


@contextlib.contextmanager
def chart_node(rendered: Rendered, **kwargs: Any) -> Iterator[ChartNode]:
    node = ChartNode(rendered, **kwargs).start()
    try:
        yield node
    finally:
        node.close()


def script_path(name: str) -> Path:
    return CHART / "files" / "redis" / name
