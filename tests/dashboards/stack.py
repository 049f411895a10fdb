"""A live monitoring stack on loopback: redis-server, a real mobius-sidecar, prometheus-redis-exporter (and a
second one counting keys per cache namespace, configured as the chart configures it) and
Prometheus (1 s scrapes, the alert rules loaded), plus the workload that the live test and the previews use.

Prometheus scrapes static targets that carry ``namespace`` and ``pod`` target labels, exactly as Kubernetes
service discovery would, so the sidecar's own ``namespace`` label ends up as ``exported_namespace`` here too.
Everything binds 127.0.0.1; every wait is a poll with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from dashboards.preview import Prometheus
from tests.dashboards.panels import RULES_FILE
from tests.servers import HOST, RedisServer, free_port

K8S_NAMESPACE = "shop"
SIDECAR_POD = "shop-api-7d9f-0"
REDIS_POD = "mobius-redis-0"

ALERT = 'ALERTS{alertname="%s"}'

#: The measured workload: namespace -> (keys stored, keys never stored). Ratios 0.6 and 0.9 per pass.
KEYSPACE = {"search": (30, 20), "document": (45, 5)}
#: Keys written once besides (key template, count, value bytes), so every namespace has some memory.
SHELF = (
    ("document:shelf{i}:embedding", 300, 1536),
    ("api:v1:users:{i}", 200, 700),
    ("user:{i}:session", 200, 200),
    ("project:{i}:metadata", 100, 150),
    ("config:feature-{i}", 20, 2048),
)


def poll(what: str, check: Callable[[], bool], timeout: float = 15.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Proc:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _exe(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} is not installed: `make test` installs it (scripts/ensure-system-deps.sh)"
        )
    return path


def prometheus(workdir: Path, config: Mapping[str, Any], port: int) -> Proc:
    """Prometheus on loopback with ``config`` (rule files relative to ``workdir``), its data in ``workdir``."""
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
    args = [
        _exe("prometheus"),
        f"--config.file={path}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address={HOST}:{port}",
        "--log.level=warn",
    ]
    return Proc("prometheus", args, workdir / "prometheus.log")


@dataclass
class Tally:
    """What the workload itself saw: hits and lookups per cache namespace, from the sidecar's answers."""

    hits: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    lookups: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, namespace: str, hit: bool) -> None:
        self.lookups[namespace] += 1
        self.hits[namespace] += int(hit)

    def ratio(self, namespace: str | None = None) -> float:
        names = [namespace] if namespace else list(self.lookups)
        return sum(self.hits[n] for n in names) / sum(self.lookups[n] for n in names)


def key(namespace: str, i: int, stored: bool) -> str:
    kind = "stored" if stored else "absent"
    return f"search:{kind}{i}:results:1" if namespace == "search" else f"document:{kind}{i}:embedding"


@dataclass
class Stack:
    workdir: Path
    redis: RedisServer = field(init=False)
    sidecar: Proc = field(init=False)
    exporter: Proc = field(init=False)
    key_groups: Proc = field(init=False)
    prometheus: Proc = field(init=False)
    sidecar_port: int = 0
    prom_port: int = 0

    # --- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> Stack:
        (self.workdir / "redis").mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(
            maxmemory="4mb", policy="allkeys-lru", workdir=self.workdir / "redis"
        ).start()
        self.sidecar_port, exporter_port, self.prom_port = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOBIUS_")}
        env.update(
            # Fail fast while Redis is frozen: 0.25 s timeouts, no retry, the breaker opens after 3 failures.
            MOBIUS_REDIS_SOCKET_TIMEOUT="0.25",
            MOBIUS_REDIS_SOCKET_CONNECT_TIMEOUT="0.25",
            MOBIUS_RETRY_ATTEMPTS="0",
            MOBIUS_BREAKER_RESET_TIMEOUT="1.0",
            MOBIUS_REDIS_MIN_CONNECTIONS="2",
        )
        self.sidecar = Proc(
            "sidecar",
            [
                sys.executable,
                "-m",
                "mobius_cache.server",
                "--redis-url",
                self.redis.url,
                "--host",
                HOST,
                "--port",
                str(self.sidecar_port),
                "--log-level",
                "warning",
            ],
            self.workdir / "sidecar.log",
            env=env,
        ).start()
        self.exporter = Proc(
            "redis_exporter",
            [
                _exe("prometheus-redis-exporter"),
                "--redis.addr",
                f"redis://{HOST}:{self.redis.port}",
                "--web.listen-address",
                f"{HOST}:{exporter_port}",
                "--connection-timeout",
                "400ms",
            ],
            self.workdir / "exporter.log",
        ).start()
        # Imported here: tests.dashboards.keygroups builds on this module's Proc.
        from tests.dashboards.keygroups import chart_env, exporter, scrape_job

        key_groups_port = free_port()
        self.key_groups = exporter(
            self.redis.port, key_groups_port, self.workdir / "key-groups.log", chart_env()
        ).start()
        shutil.copy(RULES_FILE, self.workdir / "alerts.rules.yaml")
        config = self._prometheus_config(exporter_port)
        labels = {"namespace": K8S_NAMESPACE, "pod": REDIS_POD}
        config["scrape_configs"].append(scrape_job("redis-key-groups", key_groups_port, labels))
        self.prometheus = prometheus(self.workdir, config, self.prom_port).start()
        poll("the sidecar", lambda: self._ok(f"{self.sidecar_url}/healthz"), timeout=30)
        poll("Prometheus", lambda: self._ok(f"{self.prom_url}/-/ready"), timeout=30)
        return self

    def _prometheus_config(self, exporter_port: int) -> dict[str, Any]:
        def job(name: str, port: int, pod: str) -> dict[str, object]:
            labels = {"namespace": K8S_NAMESPACE, "pod": pod}
            return {"job_name": name, "static_configs": [{"targets": [f"{HOST}:{port}"], "labels": labels}]}

        return {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": ["alerts.rules.yaml"],
            "scrape_configs": [
                job("mobius-sidecar", self.sidecar_port, SIDECAR_POD),
                job("redis", exporter_port, REDIS_POD),
            ],
        }

    def _ok(self, url: str) -> bool:
        for proc in (self.sidecar, self.exporter, self.key_groups, self.prometheus):
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url, timeout=0.5).status_code == 200
        return False

    def close(self) -> None:
        for proc in (self.prometheus, self.key_groups, self.exporter, self.sidecar):
            with contextlib.suppress(Exception):
                proc.stop()
        with contextlib.suppress(Exception):
            self.redis.close()

    @property
    def sidecar_url(self) -> str:
        return f"http://{HOST}:{self.sidecar_port}"

    @property
    def prom_url(self) -> str:
        return f"http://{HOST}:{self.prom_port}"

    # --- observing ------------------------------------------------------------------------------------
    def sidecar_lookups(self) -> float:
        """Reads counted by the sidecar right now, from its own /metrics."""
        text = httpx.get(f"{self.sidecar_url}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("mobius_cache_requests_total{") and 'op="get' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_scraped(self, prom: Prometheus, timeout: float = 15.0) -> float:
        """Wait until Prometheus holds the sidecar's current read counters; returns that scrape's time."""
        expected = self.sidecar_lookups()
        query = 'sum(mobius_cache_requests_total{op=~"get|get_many"})'

        def caught_up() -> bool:
            rows = prom.query(query)
            return bool(rows) and float(rows[0]["value"][1]) >= expected

        poll(f"Prometheus to scrape {expected:.0f} reads", caught_up, timeout)
        return self.last_scrape(prom)

    def last_scrape(self, prom: Prometheus) -> float:
        rows = prom.query('timestamp(up{job="mobius-sidecar"})')
        return float(rows[0]["value"][1]) if rows else 0.0

    def wait_next_scrape(self, prom: Prometheus, after: float) -> None:
        poll("a fresh scrape of the sidecar", lambda: self.last_scrape(prom) > after)


@dataclass
class Run:
    """The times and counts the live test checks the dashboards against."""

    start: float = 0.0
    measured_from: float = 0.0
    measured_to: float = 0.0
    end: float = 0.0
    tally: Tally = field(default_factory=Tally)
    circuit_opened: bool = False
    redis_down_seen: bool = False


def read_pass(http: httpx.Client, tally: Tally | None, batch_size: int = 10) -> None:
    """GET every stored and every absent key of KEYSPACE, then the same keys again in batches."""
    for namespace, (stored, absent) in KEYSPACE.items():
        keys = [key(namespace, i, True) for i in range(stored)] + [
            key(namespace, i, False) for i in range(absent)
        ]
        for k in keys:
            response = http.get(f"/v1/cache/{k}")
            assert response.status_code in (200, 404), response.text
            if tally is not None:
                tally.add(namespace, response.headers["x-cache"] in ("hit", "hit-near"))
        for i in range(0, len(keys), batch_size):
            response = http.post("/v1/batch/get", json={"keys": keys[i : i + batch_size]})
            assert response.status_code == 200, response.text
            body = response.json()
            if tally is not None:
                for _ in body["hits"]:
                    tally.add(namespace, True)
                for _ in body["misses"]:
                    tally.add(namespace, False)


def stall(stack: Stack, http: httpx.Client, seconds: float = 0.08) -> None:
    """One read that Redis answers only after ``seconds`` (frozen, then thawed, well within the 0.25 s
    timeout): a slow operation (threshold 10 ms) that still succeeds."""
    stack.redis.freeze()
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(http.get, f"/v1/cache/{key('document', 4, True)}")
            time.sleep(seconds)
            stack.redis.thaw()
            assert pending.result(timeout=5).status_code in (200, 404)
    finally:
        stack.redis.thaw()


def drive(stack: Stack, prom: Prometheus) -> Run:
    """Populate, measure a known hit ratio, exercise invalidation and eviction, then freeze Redis."""
    run = Run(start=time.time())
    with httpx.Client(base_url=stack.sidecar_url, timeout=5.0) as http:
        for namespace, (stored, _absent) in KEYSPACE.items():
            for i in range(stored):
                params: dict[str, Any] = {"ttl": 600, "tag": [f"tag:{namespace}"]}
                if namespace == "search":  # dependency index keys too (the key-group panels show them)
                    params["depends_on"] = [f"project:{i % 3}:metadata"]
                r = http.put(f"/v1/cache/{key(namespace, i, True)}", params=params, content=b"v")
                assert r.status_code == 204, r.text
        # More keys, sized like their namespaces' values (~0.9 MB), for the key-group panels; not read again.
        for template, count, size in SHELF:
            items = [{"key": template.format(i=i), "value": "x" * size, "ttl": 600} for i in range(count)]
            r = http.post("/v1/batch/set", json={"items": items})
            assert r.status_code == 200 and r.json()["stored"] == count, r.text
        # Warm-up: every series the measured pass touches exists and has been scraped before it starts.
        read_pass(http, None)
        stack.wait_scraped(prom)
        run.measured_from = time.time()
        stack.wait_next_scrape(prom, run.measured_from)
        for _ in range(2):
            read_pass(http, run.tally)
        run.measured_to = stack.wait_scraped(prom) + 0.001
        # Invalidations of every kind, counters, deletes; then overfill maxmemory (4 MB) to cause evictions.
        assert http.post("/v1/invalidate", json={"keys": [key("search", 0, True)]}).status_code == 200
        assert http.post("/v1/invalidate", json={"pattern": "search:stored1*"}).status_code == 200
        assert http.post("/v1/invalidate", json={"tags": ["tag:document"]}).status_code == 200
        assert http.post("/v1/cache/api:v1:counter:x/incr", json={"by": 1, "ttl": 60}).status_code == 200
        assert http.delete(f"/v1/cache/{key('search', 2, True)}").status_code == 200
        blob = os.urandom(64 * 1024)
        for i in range(120):
            r = http.put(f"/v1/cache/api:v1:blob:{i}", params={"ttl": 2 if i % 2 else 600}, content=blob)
            assert r.status_code in (204, 503), r.text
        stall(stack, http)
        read_pass(http, None)
        stack.wait_scraped(prom)
        # Fault: Redis frozen. Reads time out (errors), the breaker opens (bypasses), writes fail (503),
        # an invalidation is queued for retry; the exporter reports redis_up 0.
        stack.redis.freeze()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not (run.circuit_opened and run.redis_down_seen):
                http.get(f"/v1/cache/{key('document', 1, True)}")
                http.put(f"/v1/cache/{key('document', 1, True)}", content=b"v")
                http.post("/v1/invalidate", json={"keys": [key("document", 3, True)]})
                # Seen once Prometheus has both scraped the fault and evaluated the alert rule on it.
                run.circuit_opened = run.circuit_opened or bool(prom.query(ALERT % "MobiusCacheCircuitOpen"))
                run.redis_down_seen = run.redis_down_seen or bool(prom.query(ALERT % "MobiusRedisDown"))
                time.sleep(0.1)
        finally:
            stack.redis.thaw()
        # Recovery: the breaker probes again and closes; traffic flows.
        poll(
            "the circuit to close",
            lambda: http.get(f"/v1/cache/{key('document', 1, True)}").headers.get("x-cache") != "bypass",
            timeout=15,
        )
        poll("redis_up 1 again", lambda: bool(prom.query("min(redis_up) == 1")), timeout=10)
        # A few seconds of normal traffic after the fault, so rates over the recovery have points.
        for _ in range(4):
            read_pass(http, None)
            stack.wait_next_scrape(prom, time.time())
    run.end = time.time()
    return run
