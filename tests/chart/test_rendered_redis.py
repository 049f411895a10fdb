"""The rendered redis.conf runs on a real redis-server, and the chart's `helm test` script checks it.

The server binds loopback here (command-line options win over the file) and its `dir /data` line points at a
temporary folder (Redis changes into it while it reads the file); everything else is the file as rendered.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.chart import helm
from tests.chart.helm import one, render
from tests.servers import HOST, free_port, wait_for_port

PASSWORD = "s3cret-from-the-secret"


def load_helm_test() -> ModuleType:
    path = helm.CHART / "files" / "helm_test.py"
    spec = importlib.util.spec_from_file_location("helm_test", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["helm_test"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def rendered_redis(request: pytest.FixtureRequest) -> Iterator[tuple[int, dict[str, Any]]]:
    """redis-server started with the chart's redis.conf and --requirepass, as the StatefulSet does."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    values: dict[str, Any] = request.param
    docs = render(values)
    conf = one(docs, "ConfigMap", "mc-mobius-cache-redis")["data"]["redis.conf"]
    workdir = Path(tempfile.mkdtemp(prefix="mc-"))
    assert "\ndir /data\n" in conf
    (workdir / "redis.conf").write_text(conf.replace("\ndir /data\n", f"\ndir {workdir}\n"))
    port = free_port()
    args = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "/etc/redis/redis.conf"
    auth = [PASSWORD if a == "$(REDIS_PASSWORD)" else a for a in args[1:]]
    proc = subprocess.Popen(
        [
            "redis-server",
            str(workdir / "redis.conf"),
            *auth,
            "--bind",
            HOST,
            "--port",
            str(port),
            "--logfile",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=10)
        yield port, values
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize(
    "rendered_redis",
    [
        {},
        {
            "redis.maxmemory": "300mb",
            "redis.maxmemoryPolicy": "allkeys-lfu",
            "redis.resources.limits.memory": "512Mi",
            "redis.extraConfig": {"maxmemory-samples": 7},
        },
    ],
    indirect=True,
)
def test_rendered_config_runs_and_the_helm_test_passes(rendered_redis: tuple[int, dict[str, Any]]) -> None:
    port, values = rendered_redis
    helm_test = load_helm_test()
    test_env = {e["name"]: e.get("value") for e in one(render(values), "Pod")["spec"]["containers"][0]["env"]}
    seen = helm_test.check_redis(f"redis://{HOST}:{port}/0", PASSWORD, test_env["EXPECT_MAXMEMORY"], 5)
    assert seen == f"{HOST}:{port} PONG, maxmemory {test_env['EXPECT_MAXMEMORY']}"
    sock = __import__("socket").create_connection((HOST, port), timeout=5)
    with sock:
        helm_test.resp_command(sock, "AUTH", PASSWORD)
        policy = helm_test.resp_command(sock, "CONFIG", "GET", "maxmemory-policy")[1]
        assert policy == values.get("redis.maxmemoryPolicy", "allkeys-lru")
        assert helm_test.resp_command(sock, "CONFIG", "GET", "save")[1] == ""


@pytest.mark.parametrize("rendered_redis", [{}], indirect=True)
def test_helm_test_fails_clearly(rendered_redis: tuple[int, dict[str, Any]]) -> None:
    port, _ = rendered_redis
    helm_test = load_helm_test()
    with pytest.raises(RuntimeError, match=r"NOAUTH|WRONGPASS"):
        helm_test.check_redis(f"redis://{HOST}:{port}/0", "", "", 5)
    with pytest.raises(RuntimeError, match="WRONGPASS"):
        helm_test.check_redis(f"redis://{HOST}:{port}/0", "wrong", "", 5)
    with pytest.raises(RuntimeError, match="maxmemory is 1073741824, expected 5"):
        helm_test.check_redis(f"redis://{HOST}:{port}/0", PASSWORD, "5", 5)


def test_ready_condition_reads_honest_status() -> None:
    helm_test = load_helm_test()
    ready = {"type": "Ready", "status": "True"}
    assert helm_test.ready_condition({"metadata": {"generation": 2}, "status": {}}) is not None
    stale = {"metadata": {"generation": 2}, "status": {"observedGeneration": 1, "conditions": [ready]}}
    assert "generation 1" in helm_test.ready_condition(stale)
    fresh = {"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "conditions": [ready]}}
    assert helm_test.ready_condition(fresh) is None
    failing = {"type": "Ready", "status": "False", "reason": "RedisUnreachable", "message": "timeout"}
    bad = {"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "conditions": [failing]}}
    assert helm_test.ready_condition(bad) == "Ready=False: RedisUnreachable: timeout"
