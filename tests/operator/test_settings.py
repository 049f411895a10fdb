"""The operator's own settings (``MOBIUS_OPERATOR_*``) and the console script's refusal of bad ones."""

from __future__ import annotations

import pytest

from mobius_operator.__main__ import main
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
