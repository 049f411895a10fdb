"""The operator's own settings (``MOBIUS_OPERATOR_*``) and the console script's refusal of bad ones."""

from __future__ import annotations

import pytest

from mobius_operator.__main__ import main
from mobius_operator.handlers import default_cacheconfig
from mobius_operator.settings import OperatorSettings


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = OperatorSettings()
    assert (defaults.reconcile_interval, defaults.redis_timeout, defaults.memory_limit_bytes) == (
        30.0,
        5.0,
        None,
    )
    monkeypatch.setenv("MOBIUS_OPERATOR_RECONCILE_INTERVAL", "2.5")
    monkeypatch.setenv("MOBIUS_OPERATOR_REDIS_MEMORY_LIMIT", "1536Mi")
    monkeypatch.setenv("MOBIUS_MAX_MEMORY", "5mb")  # the cache's settings are not the operator's
    settings = OperatorSettings()
    assert settings.reconcile_interval == 2.5
    assert settings.memory_limit_bytes == 1536 * 1024 * 1024


@pytest.mark.parametrize(
    ("name", "value"),
    [("RECONCILE_INTERVAL", "0"), ("RECONCILE_INTERVAL", "soon"), ("REDIS_MEMORY_LIMIT", "two gigs")],
)
def test_a_bad_setting_stops_the_console_script_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    monkeypatch.setenv(f"MOBIUS_OPERATOR_{name}", value)
    assert main(["--all-namespaces"]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err and name.lower() in err


DEFAULT = '{"name": "shop-cache", "spec": {"redis": {"url": "redis://r:6379/0"}}, "labels": {"team": "shop"}}'


def test_the_default_cacheconfig_comes_as_json_with_its_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBIUS_OPERATOR_DEFAULT_CACHECONFIG", DEFAULT)
    monkeypatch.setenv("MOBIUS_OPERATOR_OWNER_DEPLOYMENT", "mc-mobius-cache-operator")
    monkeypatch.setenv("MOBIUS_OPERATOR_NAMESPACE", "shop")
    settings = OperatorSettings()
    assert settings.default_cacheconfig is not None
    body = default_cacheconfig(settings.default_cacheconfig, "shop", "mc-mobius-cache-operator", "uid-1")
    assert body["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "mc-mobius-cache-operator",
            "uid": "uid-1",
            "blockOwnerDeletion": False,
        }
    ]
    assert (body["metadata"]["name"], body["metadata"]["namespace"]) == ("shop-cache", "shop")
    assert body["metadata"]["labels"] == {"team": "shop"}
    assert body["spec"] == {"redis": {"url": "redis://r:6379/0"}}


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"DEFAULT_CACHECONFIG": DEFAULT}, "OWNER_DEPLOYMENT"),  # no owner: it would outlive the release
        (
            {"DEFAULT_CACHECONFIG": "{not json", "OWNER_DEPLOYMENT": "o", "NAMESPACE": "n"},
            "default_cacheconfig",
        ),
        (
            {
                "DEFAULT_CACHECONFIG": '{"name": "Bad_Name", "spec": {}}',
                "OWNER_DEPLOYMENT": "o",
                "NAMESPACE": "n",
            },
            "name",
        ),
        (
            {
                "DEFAULT_CACHECONFIG": '{"name": "x", "spec": {}, "colour": 1}',
                "OWNER_DEPLOYMENT": "o",
                "NAMESPACE": "n",
            },
            "colour",
        ),
    ],
)
def test_a_bad_default_cacheconfig_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str], fragment: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"MOBIUS_OPERATOR_{name}", value)
    assert main(["--all-namespaces"]) == 2
    assert fragment in capsys.readouterr().err
