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


def test_every_command_a_redis_user_may_run_is_documented() -> None:
    """docs/deploy.md's table of Redis users names every command the rules file grants (all architectures)."""
    from tests.chart.nodes import acl_rules, render_redis

    docs = (helm.ROOT / "docs" / "deploy.md").read_text()
    section = docs[docs.index("## Redis users") : docs.index("## TLS")]
    for architecture in ("standalone", "replication", "cluster"):
        rendered = render_redis({"redis.architecture": architecture})
        for user, rules in acl_rules(rendered).items():
            if user == "default":
                continue
            assert f"`{user}`" in section, f"{user} is not documented"
            for token in rules.split():
                if token.startswith("+") and not token.startswith("+@"):
                    command = token[1:].upper()
                    words = command.split("|")
                    documented = " ".join(words) in section or (
                        len(words) == 2 and words[0] in section and words[1] in section
                    )
                    assert documented, f"{user}: {command} is granted but not documented in docs/deploy.md"
