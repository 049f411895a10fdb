"""Keys and memory by cache namespace, end to end: a real redis-server holding 100k+ cache-shaped keys, the real
redis exporter configured exactly as the chart renders it, and a real Prometheus with the chart's relabelling
and alert rules, read through the dashboards' own panel queries.

The accuracy the checks hold the exporter to (it sums ``MEMORY USAGE`` with Redis's default of 5 samples):
- key counts equal what was written, exactly (a keyspace that does not change during the scan; under writes,
  SCAN may count a key twice when the table grows mid-scan, or miss a key added mid-scan);
- memory equals the full-precision ``MEMORY USAGE ... SAMPLES 0`` sum exactly for strings and small (listpack)
  sorted sets; large sorted sets (the tag indexes) are sampled and within 2% (0.6% seen);
- every group holds at least the bytes written into it, and all groups together account for 85-100% of what
  Redis grew by (94% seen: the keyspace's own hash tables belong to no key).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dashboards.preview import Prometheus
from tests.chart import helm
from tests.dashboards.keygroups import Group, chart_env, exporter, helm_missing, parse_groups, scrape_job
from tests.dashboards.keyspace import UNCLASSIFIED, Written, fill, group_of, pipelined
from tests.dashboards.panels import queries, substitute
from tests.dashboards.stack import K8S_NAMESPACE, REDIS_POD, Proc, _exe, poll, prometheus
from tests.servers import HOST, RedisServer, free_port, wait_for_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("prometheus", "prometheus-redis-exporter", "redis-server")),
        reason="needs prometheus, prometheus-redis-exporter and redis-server (`make test`)",
    ),
    pytest.mark.skipif(bool(helm_missing()), reason=helm_missing() or "helm present"),
]

KEYS = 100_000
ALERT = "MobiusCacheNamespaceMemoryShareHigh"
#: The live alert check renders the chart's PrometheusRule with this share; with ~64 MB of `document` values in
#: a 140 MB maxmemory (the whole keyspace takes ~116 MB), only `document` holds more (~43%).
SHARE = 0.4
MAXMEMORY = "140mb"
PANELS = (
    "Keys by namespace",
    "Memory by namespace",
    "Namespace share of maxmemory",
    "Index keys share",
    "Key-group scan duration",
)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def panel(title: str, ref: str = "A") -> str:
    found = [q for q in queries(("mobius-cache-redis.json",)) if q.title == title and q.ref_id == ref]
    assert found, f"no panel {title!r} [{ref}] on the Redis dashboard"
    return substitute(found[0].expr, rate_interval="4s", time_range="1m")


def exact_memory(server: RedisServer, prefix: str = "mobius:") -> dict[str, int]:
    """Every key's full-precision size (MEMORY USAGE ... SAMPLES 0: no sampling), summed by group."""
    client = server.client()
    try:
        names = [k.decode() for k in client.scan_iter(count=5000)]
    finally:
        client.close()
    sizes = pipelined(server.port, (("MEMORY", "USAGE", name, "SAMPLES", 0) for name in names))
    totals: dict[str, int] = {}
    for name, size in zip(names, sizes, strict=True):
        if name.startswith(prefix) and ":" in name[len(prefix) :]:
            group = group_of(prefix, name[len(prefix) :].partition(":")[0])
        else:
            group = UNCLASSIFIED
        totals[group] = totals.get(group, 0) + int(size)
    return totals


@dataclass
class Live:
    redis: RedisServer
    prom: Prometheus
    written: dict[str, Written]
    exact: dict[str, int]
    grown: int
    start: float
    seconds: float


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    began = time.monotonic()
    redis = RedisServer(maxmemory=MAXMEMORY, policy="noeviction", workdir=_mkdir(tmp_path / "redis")).start()
    procs: list[Proc] = []
    prom: Prometheus | None = None
    try:
        client = redis.client()
        empty = client.info("memory")["used_memory"]
        written = fill(redis.port, KEYS)
        grown = client.info("memory")["used_memory"] - empty
        client.close()
        exact = exact_memory(redis)
        main_port, groups_port, prom_port = free_port(), free_port(), free_port()
        main = Proc(
            "redis_exporter",
            [
                _exe("prometheus-redis-exporter"),
                "--redis.addr",
                f"redis://{HOST}:{redis.port}",
                "--web.listen-address",
                f"{HOST}:{main_port}",
            ],
            tmp_path / "exporter.log",
        )
        procs += [
            main.start(),
            exporter(redis.port, groups_port, tmp_path / "key-groups.log", chart_env()).start(),
        ]
        rule = helm.one(
            helm.render(
                {
                    "monitoring.prometheusRule.enabled": True,
                    "monitoring.prometheusRule.keyGroupMemoryShare": SHARE,
                },
                "--api-versions",
                "monitoring.coreos.com/v1/PrometheusRule",
            ),
            "PrometheusRule",
        )
        (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
        labels = {"namespace": K8S_NAMESPACE, "pod": REDIS_POD}
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": ["rules.yaml"],
            "scrape_configs": [
                {
                    "job_name": "redis",
                    "static_configs": [{"targets": [f"{HOST}:{main_port}"], "labels": labels}],
                },
                # A 100k-key scan takes ~0.3 s here, more on a busy machine: a wider timeout than the rest.
                {
                    **scrape_job("key-groups", groups_port, labels),
                    "scrape_interval": "2s",
                    "scrape_timeout": "2s",
                },
            ],
        }
        procs.append(prometheus(tmp_path, config, prom_port).start())
        prom = Prometheus(f"http://{HOST}:{prom_port}")
        start = time.time()
        total = sum(w.keys for w in written.values())

        def scraped() -> bool:
            for proc in procs:
                if not proc.alive():
                    raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
            try:  # Prometheus may still be starting: no answer yet, or 503 (Prometheus raises RuntimeError)
                rows = prom.query(f"sum({panel('Keys by namespace')})") if prom else []
            except (httpx.HTTPError, RuntimeError):
                return False
            return bool(rows) and float(rows[0]["value"][1]) == total

        poll("Prometheus to hold every key group", scraped, timeout=45, interval=0.25)
        poll(
            "the share alert to be evaluated",
            lambda: bool(prom and prom.query(f'ALERTS{{alertname="{ALERT}"}}')),
        )
        yield Live(redis, prom, written, exact, grown, start, time.monotonic() - began)
    finally:
        if prom is not None:
            prom.close()
        for proc in reversed(procs):
            proc.stop()
        redis.close()


def _by_group(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {row["metric"]["key_group"]: float(row["value"][1]) for row in rows}


def test_counts_and_memory_by_namespace_match_what_was_written(live: Live) -> None:
    """One live run (~10-20 s), all checks on it; the failures are reported together."""
    failures: list[str] = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            failures.append(message)

    keys = _by_group(live.prom.query(panel("Keys by namespace")))
    memory = _by_group(live.prom.query(panel("Memory by namespace")))
    expected = {"document", "search", "api", "user", "project", "config", "~tag", "~deps"}
    check(
        set(keys) == {group_of("mobius:", ns) for ns in expected} | {UNCLASSIFIED},
        f"groups seen: {sorted(keys)}",
    )
    check(sum(w.keys for w in live.written.values()) > 100_000, "fewer than 100k keys written")
    for group, written in live.written.items():
        check(
            keys.get(group) == written.keys,
            f"{group}: {keys.get(group)} keys reported, {written.keys} written",
        )
        reported, exact = memory.get(group, 0.0), live.exact[group]
        tolerance = 0.02 if group.endswith("~tag") else 0.0  # sampled (skiplist) sorted sets vs exact sizes
        check(
            abs(reported - exact) <= tolerance * exact,
            f"{group}: {reported:.0f} bytes reported, {exact} exact (SAMPLES 0), tolerance {tolerance:.0%}",
        )
        check(
            reported >= written.payload, f"{group}: {reported:.0f} bytes reported < {written.payload} written"
        )
    share_of_growth = sum(memory.values()) / live.grown
    check(0.85 <= share_of_growth <= 1.0, f"groups hold {share_of_growth:.1%} of what used_memory grew by")

    def empty_panels() -> list[str]:
        empty = []
        for q in queries(("mobius-cache-redis.json",)):
            if q.title not in PANELS:
                continue
            rows = live.prom.query_range(
                substitute(q.expr, rate_interval="4s", time_range="1m"), live.start, time.time(), 1.0
            )
            if not any(v not in ("NaN", "+Inf", "-Inf") for row in rows for _, v in row["values"]):
                empty.append(q.name)
        return empty

    # Recording rules and rates need an evaluation or two after the scrape that brought the groups.
    deadline = time.monotonic() + 15
    while (empty := empty_panels()) and time.monotonic() < deadline:
        time.sleep(1)
    check(not empty, f"panels without data: {empty}")
    index = float(live.prom.query(panel("Index keys share", "B"))[0]["value"][1])
    index_written = sum(live.exact[group_of("mobius:", k)] for k in ("~tag", "~deps")) / sum(
        live.exact.values()
    )
    check(abs(index - index_written) < 0.01, f"index memory share {index:.3f}, written {index_written:.3f}")

    alerts = live.prom.query(f'ALERTS{{alertname="{ALERT}"}}')
    pending = {(a["metric"]["key_group"], a["metric"]["alertstate"]) for a in alerts}
    check(pending == {("mobius:document", "pending")}, f"{ALERT} at a {SHARE} share: {pending}")
    check(live.seconds < 60, f"the live run took {live.seconds:.1f}s")
    assert not failures, "\n".join(failures)


def _scrape_groups(redis: RedisServer, workdir: Path, values: dict[str, Any]) -> dict[str, Group]:
    """One scrape of the chart-configured exporter (``values`` passed to the chart), straight from its /metrics."""
    port = free_port()
    proc = exporter(redis.port, port, workdir / "exporter.log", chart_env(values)).start()
    try:
        wait_for_port(port)
        return parse_groups(httpx.get(f"http://{HOST}:{port}/metrics", timeout=30).text)
    finally:
        proc.stop()


def test_prefixes_are_matched_literally(tmp_path: Path) -> None:
    """Lua magic characters in a prefix (`.`, `-`) match only themselves; keys of no prefix are unclassified."""
    with_values = {"exporter.keyGroups.prefixes": ["app-1.cache:", "mobius:"]}
    redis = RedisServer(workdir=_mkdir(tmp_path / "redis")).start()
    try:
        client = redis.client()
        for name, count in {
            "app-1.cache:user:{i}:session": 3,
            "app-1.cache:~tag:{i}": 1,
            "appX1Ycache:user:{i}": 2,  # would match if `-` or `.` were Lua pattern characters
            "mobius:search:{i}:results:1": 4,
            "mobius:nonamespace{i}": 5,  # no segment after the namespace: no group of its own
        }.items():
            for i in range(count):
                client.set(name.format(i=i), b"x")
        client.close()
        groups = _scrape_groups(redis, tmp_path, with_values)
    finally:
        redis.close()
    assert {name: g.keys for name, g in groups.items()} == {
        "app-1.cache:user": 3,
        "app-1.cache:~tag": 1,
        "mobius:search": 4,
        UNCLASSIFIED: 7,
    }


def test_groups_beyond_the_cap_are_summed_into_overflow(tmp_path: Path) -> None:
    """maxGroups keeps the largest groups by memory; the rest are one `overflow` group, nothing is lost."""
    redis = RedisServer(workdir=_mkdir(tmp_path / "redis")).start()
    try:
        client = redis.client()
        for n, namespace in enumerate(["big", "large", "mid", "small", "tiny"]):
            for i in range(10):
                client.set(f"mobius:{namespace}:{i}", b"x" * (2000 >> n))
        client.close()
        groups = _scrape_groups(redis, tmp_path, {"exporter.keyGroups.maxGroups": 2})
    finally:
        redis.close()
    assert set(groups) == {"mobius:big", "mobius:large", "overflow"}
    assert groups["overflow"].keys == 30
    assert groups["mobius:big"].memory > groups["mobius:large"].memory > groups["overflow"].memory / 3
