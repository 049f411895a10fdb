"""Write the values table of charts/mobius-cache/README.md from the `## @param` comments of values.yaml.

values.yaml is the one source: `python scripts/chart_values_table.py` rewrites the table between the
<!-- values-table --> markers, `--check` exits 1 when the README is out of date (a chart test runs it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "mobius-cache"
BEGIN, END = "<!-- values-table -->", "<!-- /values-table -->"
SECTION = re.compile(r"\s*## @section (.+)")
PARAM = re.compile(r"\s*## @param (\S+) (.+)")


def _lookup(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"@param {path} names no value in values.yaml")
        node = node[part]
    return node


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def table(values_text: str) -> str:
    """The Markdown tables, one per @section, in the order of values.yaml."""
    values = yaml.safe_load(values_text)
    lines: list[str] = []
    for line in values_text.splitlines():
        if match := SECTION.match(line):
            lines += ["", f"### {match.group(1)}", "", "| Name | Description | Default |", "|---|---|---|"]
        elif match := PARAM.match(line):
            path, description = match.groups()
            default = _default(_lookup(values, path))
            lines.append(f"| `{path}` | {_cell(description)} | `{_cell(default)}` |")
    return "\n".join(lines).strip() + "\n"


def render_readme(readme: str, values_text: str) -> str:
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table(values_text)}{END}{tail}"


def main(argv: list[str]) -> int:
    readme_path = CHART / "README.md"
    readme = readme_path.read_text()
    fresh = render_readme(readme, (CHART / "values.yaml").read_text())
    if "--check" in argv:
        if fresh != readme:
            print("charts/mobius-cache/README.md is out of date: run python scripts/chart_values_table.py")
            return 1
        return 0
    readme_path.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
