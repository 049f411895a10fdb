"""Fixtures of the operator tests: the KMock Kubernetes emulator (real HTTP) and the real operator in a thread.

``cluster`` is a KMock emulator that serves the resources the operator uses, with a kubeconfig pointing at it;
``run_operator(...)`` starts the real kopf operator (fresh registry) with a short reconcile interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest
from kopf.testing import KopfRunner

from mobius_operator.handlers import register
from mobius_operator.settings import OperatorSettings

CC = "cache.mobius.io/v1alpha1/cacheconfigs"
CC_PATH = "/apis/cache.mobius.io/v1alpha1/namespaces/{ns}/cacheconfigs"
NS = "shop"


@dataclass
class Cluster:
    """The emulated API server plus small helpers that go through its real HTTP API."""

    kmock: Any
    kubeconfig: Path

    async def create(
        self, name: str, spec: dict[str, Any], *, ns: str = NS, created: str | None = None
    ) -> None:
        body = {
            "apiVersion": "cache.mobius.io/v1alpha1",
            "kind": "CacheConfig",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "resourceVersion": "1",
                "creationTimestamp": created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            "spec": spec,
        }
        resp = await self.kmock.post(CC_PATH.format(ns=ns), json=body)
        assert resp.status < 300, await resp.text()

    async def update_spec(self, name: str, spec: dict[str, Any], *, ns: str = NS) -> None:
        obj = self.get(name, ns=ns)
        generation = int(obj["metadata"].get("generation", 1)) + 1
        patch = {"metadata": {"generation": generation}, "spec": spec}
        resp = await self.kmock.patch(
            f"{CC_PATH.format(ns=ns)}/{name}",
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert resp.status < 300, await resp.text()

    async def delete(self, name: str, *, ns: str = NS) -> None:
        resp = await self.kmock.delete(f"{CC_PATH.format(ns=ns)}/{name}")
        assert resp.status < 300, await resp.text()

    def get(self, name: str, *, ns: str = NS, resource: str = CC) -> dict[str, Any]:
        return dict(self.kmock.objects[resource, ns, name].raw)

    def maybe(self, name: str, *, ns: str = NS, resource: str = CC) -> dict[str, Any] | None:
        try:
            obj = self.kmock.objects[resource, ns, name]
        except KeyError:
            return None
        return None if obj.deleted else dict(obj.raw)

    def condition(self, name: str, type_: str, *, ns: str = NS) -> dict[str, Any]:
        obj = self.maybe(name, ns=ns) or {}
        for cond in obj.get("status", {}).get("conditions", []):
            if cond["type"] == type_:
                return dict(cond)
        return {}

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        out = []
        for (resource, _ns, _name), obj in self.kmock.objects.items():
            if resource.plural == "events" and not obj.deleted:
                raw = obj.raw
                if reason is None or raw.get("reason") == reason:
                    out.append(dict(raw))
        return out

    def watching(self) -> bool:
        """Has the operator opened its watch on CacheConfigs? (KMock's request log; no public accessor.)"""
        return any(
            r.action == kmock.action.WATCH and r.resource is not None and r.resource.plural == "cacheconfigs"
            for r in list(self.kmock._requests)
        )

    async def add_secret(self, name: str, data: dict[str, str], *, ns: str = NS) -> None:
        import base64

        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        resp = await self.kmock.post(f"/api/v1/namespaces/{ns}/secrets", json=body)
        assert resp.status < 300, await resp.text()


async def eventually(check: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, or fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if isinstance(last, Awaitable):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout}s; last value: {last!r}")


def _kubeconfig(path: Path, url: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: kmock\n"
        f"clusters:\n- name: kmock\n  cluster:\n    server: {url}\n"
        "users:\n- name: kmock\n  user: {}\n"
        "contexts:\n- name: kmock\n  context:\n    cluster: kmock\n    user: kmock\n    namespace: default\n"
    )
    return path


class Emulator(kmock.KubernetesEmulator):
    """KMock plus one API-server behaviour kopf relies on for Events: ``metadata.generateName``.

    KMock 0.8 stores every generateName-only object under the name None, so the second Event gets 409.
    """

    async def _handle(self, request: Any) -> Any:
        data = request.data
        if request.action == kmock.action.CREATE and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:8]
        return await super()._handle(request)


@pytest.fixture
async def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    """KMock with discovery for everything the operator touches (see RECIPES: kopf waits silently otherwise)."""
    async with Emulator() as emulator, kmock.Server(emulator):
        yield await _prepare(emulator, tmp_path, monkeypatch)


async def _prepare(kmock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    ri = kmock.ResourceInfo
    kmock.resources[CC] = ri(
        kind="CacheConfig",
        namespaced=True,
        verbs=["list", "watch", "get", "patch", "create", "delete"],
        subresources=["status"],
        shortnames=["cachecfg"],
    )
    kmock.resources["v1/configmaps"] = ri(
        kind="ConfigMap", namespaced=True, verbs=["get", "list", "create", "patch"]
    )
    kmock.resources["v1/secrets"] = ri(kind="Secret", namespaced=True, verbs=["get", "create"])
    kmock.resources["v1/events"] = ri(kind="Event", namespaced=True, verbs=["create", "patch"])
    kmock.resources["events.k8s.io/v1/events"] = ri(kind="Event", namespaced=True, verbs=["create", "patch"])
    kmock.resources["v1/namespaces"] = ri(kind="Namespace", namespaced=False, verbs=["list", "watch", "get"])
    kmock.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = ri(
        kind="CustomResourceDefinition", namespaced=False, verbs=["list", "watch", "get"]
    )
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "kubeconfig", str(kmock.url))))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return Cluster(kmock=kmock, kubeconfig=tmp_path / "kubeconfig")


@pytest.fixture
def run_operator(
    cluster: Cluster,
) -> Iterator[Callable[..., contextlib.AbstractAsyncContextManager[KopfRunner]]]:
    """``async with run_operator(interval=0.5): ...`` runs the real operator (kopf CLI, own thread and loop).

    It returns once the operator watches CacheConfigs, so objects created in the block arrive as one ADDED
    event (created earlier, KMock would replay them on the watch too, and the create handler runs twice).
    """

    @contextlib.asynccontextmanager
    async def start(*, interval: float = 0.5, **options: Any) -> AsyncIterator[KopfRunner]:
        settings = OperatorSettings(
            reconcile_interval=interval,
            redis_timeout=0.5,
            retry_backoff=0.2,
            retry_backoff_cap=1.0,
            **options,
        )
        registry = register(kopf.OperatorRegistry(), settings)
        # Cluster-wide: KMock 0.8 cannot parse GET /api/v1/namespaces, which kopf lists in namespaced mode.
        args = ["run", "--standalone", "--all-namespaces", "--verbose"]
        runner = KopfRunner(args, registry=registry, timeout=30)
        runner.__enter__()
        try:
            await eventually(cluster.watching, timeout=10, what="the operator watching cacheconfigs")
            yield runner
        finally:
            # Stop it from another thread: joining it here would block this loop, and with it the emulator
            # that the operator's last requests are waiting for.
            await asyncio.to_thread(runner.__exit__, *sys.exc_info())

    yield start
