"""The rendered redis.conf runs on a real redis-server (started by the chart's start-redis.sh, see nodes.py),
and the chart's `helm test` script checks it: as the cache user, with the maxmemory the values ask for."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

import pytest

from tests.chart import helm
from tests.chart.helm import one, render
from tests.chart.nodes import chart_node, need, render_redis
from tests.servers import HOST


def load_helm_test() -> ModuleType:
    path = helm.CHART / "files" / "helm_test.py"
    spec = importlib.util.spec_from_file_location("helm_test", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["helm_test"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "redis.maxmemory": "300mb",
            "redis.maxmemoryPolicy": "allkeys-lfu",
            "redis.resources.limits.memory": "512Mi",
            "redis.extraConfig": {"maxmemory-samples": 7},
        },
    ],
)
def test_rendered_config_runs_and_the_helm_test_passes(values: dict[str, Any]) -> None:
    need("redis-server", "redis-cli")
    rendered = render_redis(values)
    test_env = {e["name"]: e.get("value") for e in one(render(values), "Pod")["spec"]["containers"][0]["env"]}
    with chart_node(rendered) as node:
        seen = load_helm_test().check_redis(
            f"redis://mobius-cache@{HOST}:{node.port}/0",
            rendered.passwords["mobius-cache"],
            test_env["EXPECT_MAXMEMORY"],
            5,
            key_prefix=test_env["KEY_PREFIX"],
            expect_acl=test_env["EXPECT_ACL"] == "true",
        )
        assert seen.startswith(f"{HOST}:{node.port} PONG, maxmemory {test_env['EXPECT_MAXMEMORY']}")
        with node.admin(decode_responses=True) as c:
            policy = c.config_get("maxmemory-policy")["maxmemory-policy"]
            assert policy == values.get("redis.maxmemoryPolicy", "allkeys-lru")
            assert c.config_get("save")["save"] == ""
            samples = values.get("redis.extraConfig", {}).get("maxmemory-samples", 5)
            assert c.config_get("maxmemory-samples")["maxmemory-samples"] == str(samples)


def test_helm_test_fails_clearly() -> None:
    need("redis-server", "redis-cli")
    rendered = render_redis({})
    helm_test = load_helm_test()
    with chart_node(rendered) as node:
        url = f"redis://mobius-cache@{HOST}:{node.port}/0"
        with pytest.raises(RuntimeError, match="NOAUTH"):
            helm_test.check_redis(url, "", "", 5)
        with pytest.raises(RuntimeError, match="WRONGPASS"):
            helm_test.check_redis(url, "wrong", "", 5)
        with pytest.raises(RuntimeError, match="maxmemory is 1073741824, expected 5"):
            helm_test.check_redis(url, rendered.passwords["mobius-cache"], "5", 5)


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
