"""values.schema.json refuses bad values before anything renders, and says which value and why."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart import helm


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 3}, "additional properties 'replicas' not allowed"),
        ({"redis.maxmemoryPolicy": "lru"}, "at '/redis/maxmemoryPolicy': value must be one of"),
        ({"redis.maxmemory": "1 gigabyte"}, "at '/redis/maxmemory'"),
        ({"redis.maxmemory": "0"}, "at '/redis/maxmemory'"),
        ({"redis.persistence.mode": "both"}, "at '/redis/persistence/mode'"),
        ({"redis.service.port": 70000}, "at '/redis/service/port'"),
        ({"redis.resources.limits.memory": "lots"}, "at '/redis/resources/limits/memory'"),
        ({"redis.image.pullPolicy": "Sometimes"}, "at '/redis/image/pullPolicy'"),
        ({"externalRedis.url": "http://redis:6379"}, "at '/externalRedis/url'"),
        ({"operator.scope": "everywhere"}, "at '/operator/scope'"),
        ({"cacheConfig.defaultTTL": 0}, "at '/cacheConfig/defaultTTL'"),
        ({"cacheConfig.keyPrefix": "my prefix"}, "at '/cacheConfig/keyPrefix'"),
        ({"cacheConfig.strategies": {"user": {"ttl": 60, "slidng": True}}}, "'slidng' not allowed"),
        ({"monitoring.serviceMonitor.interval": "soon"}, "at '/monitoring/serviceMonitor/interval'"),
        ({"redis.auth": {"enabled": "yes"}}, "at '/redis/auth/enabled'"),
        ({"sidecar.metricsPort": 80}, "at '/sidecar/metricsPort'"),
        ({"monitoring.podMonitor.interval": "often"}, "at '/monitoring/podMonitor/interval'"),
    ],
)
def test_bad_values_are_refused_with_the_path(values: dict[str, Any], message: str) -> None:
    result = helm.template(values)
    assert result.returncode != 0, f"{values} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_lint_applies_the_schema_too() -> None:
    result = helm.run_helm("lint", "--strict", str(helm.CHART), "--set", "redis.maxmemoryPolicy=lru")
    assert result.returncode != 0
    assert "maxmemoryPolicy" in result.stdout + result.stderr
