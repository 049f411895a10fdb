"""Run the real helm binary on the chart and hand back the rendered objects.

Pure helpers plus one subprocess call each; the fixtures in conftest.py decide where helm lives.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mobius-cache"
HELM = ROOT / ".tools" / "bin" / "helm"
TIMEOUT = 60


def helm_env() -> dict[str, str]:
    """Keep helm's cache, config and data inside .tools, as the Makefile does."""
    env = dict(os.environ)
    for kind in ("CACHE", "CONFIG", "DATA"):
        env[f"HELM_{kind}_HOME"] = str(ROOT / ".tools" / "helm" / kind.lower())
    return env


@dataclass(frozen=True)
class Result:
    """What one helm command returned."""

    returncode: int
    stdout: str
    stderr: str


def run_helm(*args: str) -> Result:
    proc = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, env=helm_env(), timeout=TIMEOUT, check=False
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def set_args(values: Mapping[str, Any]) -> list[str]:
    """--set-json for each dotted key, so types survive (true, 2, "1gb")."""
    args: list[str] = []
    for key, value in values.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def template(values: Mapping[str, Any] | None = None, *extra: str, release: str = "mc") -> Result:
    return run_helm("template", release, str(CHART), "--namespace", "cache", *set_args(values or {}), *extra)


def objects(manifest: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def find(docs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    names = [d["metadata"]["name"] for d in found]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {names}"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Pod or of a workload's template."""
    spec: dict[str, Any] = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    return spec


@functools.cache
def _cached_template(values_json: str, extra: tuple[str, ...]) -> Result:
    return template(json.loads(values_json), *extra)


def render(values: Mapping[str, Any] | None = None, *extra: str) -> list[dict[str, Any]]:
    """Render the chart (once per value set in a session), assert it succeeded, return its objects."""
    result = _cached_template(json.dumps(dict(values or {}), sort_keys=True), tuple(extra))
    assert result.returncode == 0, result.stderr
    return objects(result.stdout)


def default_cacheconfig(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The release's default CacheConfig as the operator will create it (from its Deployment's environment)."""
    for doc in find(docs, "Deployment"):
        for container in pod_spec(doc)["containers"]:
            for env in container.get("env", []):
                if env["name"] == "MOBIUS_OPERATOR_DEFAULT_CACHECONFIG":
                    wanted = json.loads(env["value"])
                    return {
                        "apiVersion": "cache.mobius.io/v1alpha1",
                        "kind": "CacheConfig",
                        "metadata": {"name": wanted["name"], "labels": wanted["labels"]},
                        "spec": wanted["spec"],
                    }
    raise AssertionError("no Deployment asks the operator for a default CacheConfig")
