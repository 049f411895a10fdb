"""The operator's own settings (``MOBIUS_OPERATOR_*``) and the console script's refusal of bad ones."""

from __future__ import annotations

import pytest

from mobius_operator.__main__ import main
from mobius_operator.handlers import default_cacheconfig
from mobius_operator.settings import InjectorSettings, OperatorSettings


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


def test_the_injector_is_off_unless_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    assert InjectorSettings().enabled is False  # an operator outside the chart serves no webhook
    monkeypatch.setenv("MOBIUS_INJECTOR_ENABLED", "true")
    with pytest.raises(ValueError) as caught:
        InjectorSettings()
    for name in ("IMAGE", "REDIS_URL", "CERT_FILE", "KEY_FILE"):
        assert f"MOBIUS_INJECTOR_{name}" in str(caught.value)


def test_the_injector_reads_the_charts_json_values(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "ENABLED": "true",
        "IMAGE": "mobius/cache-sidecar:0.2.0",
        "REDIS_URL": "redis://r.cache.svc:6379/0",
        "REDIS_SECRET_NAME": "r",
        "REDIS_SECRET_KEY": "redis-password",
        "CERT_FILE": "/etc/mobius/webhook/tls.crt",
        "KEY_FILE": "/etc/mobius/webhook/tls.key",
        "RESOURCES": '{"limits":{"cpu":2,"memory":"256Mi"},"requests":{"cpu":"50m"}}',
        "SECURITY_CONTEXT": '{"runAsNonRoot":true,"capabilities":{"drop":["ALL"]}}',
        "METRICS_PORT": "0",
        "FAILURE_POLICY": "Fail",
        "DEFAULT_CONFIG": "mobius-cache",
    }
    for name, value in env.items():
        monkeypatch.setenv(f"MOBIUS_INJECTOR_{name}", value)
    template = InjectorSettings().template()
    assert template.resources == {"limits": {"cpu": 2, "memory": "256Mi"}, "requests": {"cpu": "50m"}}
    assert template.security_context == {"runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert template.metrics_port is None and template.deny_invalid is True
    assert template.redis.secret_name == "r" and template.default_config == "mobius-cache"
    assert template.client_label is None


@pytest.mark.parametrize(
    ("name", "value"),
    [("FAILURE_POLICY", "Maybe"), ("PORT", "80"), ("RESOURCES", "lots"), ("LISTEN_PORT", "0")],
)
def test_a_bad_injector_setting_stops_the_console_script(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    monkeypatch.setenv(f"MOBIUS_INJECTOR_{name}", value)
    assert main(["--all-namespaces"]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err and name.lower() in err


def test_an_enabled_injector_without_its_certificate_stops_the_console_script(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MOBIUS_INJECTOR_ENABLED", "1")
    monkeypatch.setenv("MOBIUS_INJECTOR_IMAGE", "x")
    monkeypatch.setenv("MOBIUS_INJECTOR_REDIS_URL", "redis://r:6379/0")
    assert main(["--all-namespaces"]) == 2
    err = capsys.readouterr().err
    assert "these are not set: MOBIUS_INJECTOR_CERT_FILE, MOBIUS_INJECTOR_KEY_FILE" in err
