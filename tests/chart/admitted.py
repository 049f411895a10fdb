"""The pods a rendered chart leads to once admitted: a workload's template run through the sidecar injector.

The injector is configured exactly as the rendered operator Deployment configures it (its ``MOBIUS_INJECTOR_*``
environment, parsed by the operator's own ``InjectorSettings``), and decides with the operator's own pure function:
so chart tests see the sidecar the API server would store, and a chart value that does not reach the operator
shows up as a failing test.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any
from unittest import mock

import jsonpatch

from mobius_operator.injection import SIDECAR, Injected, decide
from mobius_operator.settings import InjectorSettings
from tests.chart.helm import find, one, pod_spec

OPERATOR = "mc-mobius-cache-operator"


def injector_env(docs: Iterable[dict[str, Any]]) -> dict[str, str]:
    """The operator container's MOBIUS_INJECTOR_* variables ({} when the chart runs no injector)."""
    deployments = find(list(docs), "Deployment", OPERATOR)
    if not deployments:
        return {}
    (container,) = pod_spec(deployments[0])["containers"]
    env = {}
    for e in container.get("env", ()):
        if e["name"].startswith("MOBIUS_INJECTOR_"):
            # fieldRef metadata.namespace: the release's namespace (tests render into "cache").
            env[e["name"]] = e.get("value", "cache")
    return env


def injector_settings(docs: Iterable[dict[str, Any]]) -> InjectorSettings | None:
    """The injector's settings as the operator reads them from that environment, or None without an injector."""
    env = injector_env(docs)
    if not env:
        return None
    with mock.patch.dict(os.environ, env):
        return InjectorSettings()


def admitted(docs: list[dict[str, Any]], workload: str, namespace: str = "cache") -> dict[str, Any]:
    """The pod the API server stores for ``workload``'s template (injected when the chart's injector is on)."""
    template = one(docs, "Deployment", workload)["spec"]["template"]
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "generateName": f"{workload}-", "namespace": namespace},
        "spec": template["spec"],
    }
    settings = injector_settings(docs)
    if settings is None:
        return pod
    decision = decide(pod, settings.template())
    if not isinstance(decision, Injected):
        return pod
    result: dict[str, Any] = jsonpatch.apply_patch(pod, decision.patch)
    return result


def sidecar_of(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod's mobius-sidecar container, injected (an init container) or carried by the pod itself."""
    spec = pod["spec"]
    (sidecar,) = [c for c in [*spec.get("initContainers", ()), *spec["containers"]] if c["name"] == SIDECAR]
    return dict(sidecar)
