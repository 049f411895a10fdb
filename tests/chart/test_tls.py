"""redis.tls.enabled on a real redis-server: the rendered TLS config with the certificate the chart generates.

Every client (the library, a sidecar process, the operator, redis_exporter, the helm test) talks rediss:// and
checks the server's certificate against the chart's CA; the plain port is closed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.chart import clients
from tests.chart.nodes import (
    TEST_ADMIN,
    ChartNode,
    Rendered,
    chart_node,
    chart_tls,
    make_tls,
    need,
    render_redis,
)
from tests.chart.test_rendered_redis import load_helm_test


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return render_redis({"redis.tls.enabled": True})


@pytest.fixture(scope="module")
def node(rendered: Rendered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartNode]:
    need("redis-server", "redis-cli")
    with chart_node(rendered, tls=chart_tls(rendered, tmp_path_factory.mktemp("tls"))) as n:
        yield n


@pytest.fixture
def fresh_log(node: ChartNode) -> ChartNode:
    with node.admin() as c:
        c.acl_log_reset()
    return node


def refused(node: ChartNode) -> list[tuple[str, str]]:
    return [(e["username"], e["object"]) for e in node.acl_log() if e["username"] != TEST_ADMIN]


def test_only_tls_is_served(node: ChartNode, rendered: Rendered) -> None:
    conf = rendered.config["redis.conf"].splitlines()
    assert "port 0" in conf and "tls-port 6379" in conf and "tls-replication yes" in conf
    with node.admin(decode_responses=True) as c:
        assert c.config_get("port") == {"port": "0"}
        assert c.config_get("tls-port") == {"tls-port": str(node.port)}
    plain = redis.Redis(
        host=node.announce_host,
        port=node.port,
        socket_timeout=2,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 0),
    )
    with plain, pytest.raises(redis.ConnectionError):
        plain.ping()


def test_the_certificate_is_checked(node: ChartNode, tmp_path: Path) -> None:
    password = node.rendered.passwords["mobius-cache"]
    once = Retry(NoBackoff(), 0)
    system_trust = redis.Redis(
        host=node.announce_host,
        port=node.port,
        ssl=True,
        username="mobius-cache",
        password=password,
        retry=once,
    )
    with system_trust, pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        system_trust.ping()
    other_ca = make_tls(tmp_path / "other").ca
    stranger = redis.Redis(
        host=node.announce_host,
        port=node.port,
        ssl=True,
        ssl_ca_certs=str(other_ca),
        username="mobius-cache",
        password=password,
        retry=once,
    )
    with stranger, pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        stranger.ping()
    wrong_name = redis.Redis(
        host="localhost", port=node.port, ssl=True, ssl_ca_certs=str(node.tls.ca) if node.tls else None,
        username="mobius-cache", password=password,
    )  # fmt: skip
    with wrong_name:
        assert wrong_name.ping(), "localhost is one of the names the chart's certificate carries"


async def test_the_library_works_over_tls(fresh_log: ChartNode) -> None:
    url = clients.cache_url(fresh_log)
    assert url.startswith("rediss://mobius-cache@") and url.endswith(
        f"?ssl_ca_certs={fresh_log.tls.ca if fresh_log.tls else ''}"
    )
    await clients.exercise_library(url, fresh_log.rendered.passwords["mobius-cache"])
    assert refused(fresh_log) == []


def test_a_sidecar_process_works_over_tls(fresh_log: ChartNode) -> None:
    with clients.running_sidecar(
        clients.cache_url(fresh_log), fresh_log.rendered.passwords["mobius-cache"]
    ) as sidecar:
        clients.exercise_sidecar(sidecar)
    assert refused(fresh_log) == []


async def test_the_operator_works_over_tls(fresh_log: ChartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    assert fresh_log.tls is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(fresh_log.tls.ca))  # as the chart sets it in the operator's pod
    try:
        seen = await clients.operator_applies(fresh_log)
        assert seen.stats.max_memory == 48 * clients.MB
    finally:
        with fresh_log.admin() as c:
            c.config_set("maxmemory", "1gb")
            c.config_set("maxmemory-policy", "allkeys-lru")
    assert refused(fresh_log) == []


def test_the_exporter_works_over_tls(fresh_log: ChartNode) -> None:
    with clients.running_exporter(fresh_log) as metrics:
        samples = clients.wait_for_samples(metrics, "redis_memory_max_bytes")
    assert samples["redis_up"] == 1 and samples["redis_memory_max_bytes"] == 1024**3
    assert refused(fresh_log) == []


def test_the_helm_test_works_over_tls(node: ChartNode) -> None:
    seen = load_helm_test().check_redis(
        clients.cache_url(node),
        node.rendered.passwords["mobius-cache"],
        str(1024**3),
        5,
        key_prefix="mobius:",
        expect_acl=True,
    )
    assert "PONG" in seen and "SET/GET/UNLINK" in seen


def test_an_existing_certificate_works_the_same(tmp_path: Path) -> None:
    """redis.tls.existingSecret: the chart renders no certificate; the server uses the one it is given."""
    need("redis-server", "redis-cli")
    rendered = render_redis({"redis.tls.enabled": True, "redis.tls.existingSecret": "corp-redis-tls"})
    assert not rendered.tls
    with chart_node(rendered, tls=make_tls(tmp_path / "corp")) as node, node.client("mobius-cache") as c:
        assert c.set("mobius:k", "v") and c.get("mobius:k") == b"v"


def test_the_probes_work_over_tls(node: ChartNode) -> None:
    assert node.probe("ready").returncode == 0
