"""The chart README's values table is generated from values.yaml, and every value is documented there."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from tests.chart import helm


def test_values_table_is_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(helm.ROOT / "scripts" / "chart_values_table.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _leaves(node: object, prefix: str = "") -> set[str]:
    if isinstance(node, dict) and node:
        return {leaf for key, value in node.items() for leaf in _leaves(value, f"{prefix}{key}.")}
    return {prefix.rstrip(".")}


def test_every_value_has_a_param_comment() -> None:
    text = (helm.CHART / "values.yaml").read_text()
    documented = set(re.findall(r"## @param (\S+)", text))
    for leaf in _leaves(yaml.safe_load(text)):
        assert any(leaf == d or leaf.startswith(d + ".") for d in documented), f"{leaf} has no ## @param"
