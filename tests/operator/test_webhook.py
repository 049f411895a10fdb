"""The running injector: the real operator (kopf, its webhook server, a fresh registry) against the KMock API
emulator, sent real AdmissionReview requests over HTTPS, as the API server sends them.

The operator runs with exactly the ``MOBIUS_INJECTOR_*`` environment the chart renders, and serves the certificate
the chart generates; the client trusts only the chart's caBundle and checks the certificate against the Service's
DNS name, as the API server does. Only the listen address and port (loopback, a free port) and the certificate's
path are changed for the test. What KMock cannot show (the API server calling the webhook, matchConditions,
failurePolicy, reinvocation, the stored pod) is listed in docs/injection.md for the real-server tests.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import pytest

from mobius_operator.injection import CONFIG, INJECT, PORT, SIDECAR, SIDECAR_URL, Injected, decide
from mobius_operator.settings import InjectorSettings
from mobius_operator.webhook import WEBHOOK_ID
from tests.chart import helm
from tests.chart.admitted import injector_env
from tests.chart.conftest import _ensure_helm
from tests.operator.conftest import CC_PATH, NS, Cluster, eventually
from tests.servers import free_port

SERVICE_DNS = "mc-mobius-cache-operator.cache.svc"
TLS_SECRET = "mc-mobius-cache-operator-webhook-tls"


@dataclass(frozen=True)
class ChartTLS:
    """What one render of the chart holds for the webhook: the certificate, its key, and the caBundle."""

    cert: str
    key: str
    bundle: str
    env: dict[str, str]


def render_chart(**values: Any) -> ChartTLS:
    reason = _ensure_helm()
    if reason:
        pytest.skip(reason)
    result = helm.template(values)
    assert result.returncode == 0, result.stderr
    docs = helm.objects(result.stdout)
    secret = helm.one(docs, "Secret", TLS_SECRET)["data"]
    (hook,) = helm.one(docs, "MutatingWebhookConfiguration")["webhooks"]
    return ChartTLS(
        cert=base64.b64decode(secret["tls.crt"]).decode(),
        key=base64.b64decode(secret["tls.key"]).decode(),
        bundle=base64.b64decode(hook["clientConfig"]["caBundle"]).decode(),
        env=injector_env(docs),
    )


@dataclass
class Webhook:
    """The operator's webhook server as the API server sees it."""

    url: str
    tls: ChartTLS
    cert_dir: Path

    def client(self, bundle: str | None = None) -> httpx.AsyncClient:
        context = ssl.create_default_context(cadata=bundle or self.tls.bundle)
        return httpx.AsyncClient(verify=context, timeout=10)

    async def review(
        self, pod: dict[str, Any], *, dry_run: bool = False, bundle: str | None = None
    ) -> dict[str, Any]:
        """POST one AdmissionReview for a pod CREATE; return the response part."""
        uid = str(uuid.uuid4())
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": pod["metadata"]["namespace"],
                "operation": "CREATE",
                "userInfo": {
                    "username": "system:serviceaccount:kube-system:replicaset-controller",
                    "groups": ["system:serviceaccounts", "system:authenticated"],
                },
                "object": pod,
                "oldObject": None,
                "dryRun": dry_run,
                "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
            },
        }
        async with self.client(bundle) as client:
            # The API server dials the Service and checks the certificate against its DNS name.
            resp = await client.post(self.url, json=review, extensions={"sni_hostname": SERVICE_DNS})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
        response: dict[str, Any] = body["response"]
        assert response["uid"] == uid
        return response


def pod(annotations: dict[str, str] | None = None, *, name: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": NS, "labels": {"app": "web"}}
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = "web-5f7c9-"
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-5f7c9",
                "uid": "a3c0e3a6-0000-4000-8000-000000000001",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "web", "image": "shop/web:1"}]},
    }


def patched(pod_: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    assert response["allowed"] is True, response
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    result: dict[str, Any] = jsonpatch.apply_patch(pod_, ops)
    return result


@pytest.fixture
def chart_tls() -> ChartTLS:
    return render_chart()


@pytest.fixture
def injector_environment(
    chart_tls: ChartTLS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The chart's MOBIUS_INJECTOR_* environment, with the test's address, port and certificate files."""
    cert_dir = tmp_path / "webhook"
    cert_dir.mkdir()
    (cert_dir / "tls.crt").write_text(chart_tls.cert)
    (cert_dir / "tls.key").write_text(chart_tls.key)
    env = dict(chart_tls.env)
    env |= {
        "MOBIUS_INJECTOR_LISTEN_HOST": "127.0.0.1",
        "MOBIUS_INJECTOR_LISTEN_PORT": str(free_port()),
        "MOBIUS_INJECTOR_CERT_FILE": str(cert_dir / "tls.crt"),
        "MOBIUS_INJECTOR_KEY_FILE": str(cert_dir / "tls.key"),
        "MOBIUS_INJECTOR_CERT_CHECK_INTERVAL": "0.2",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env


@pytest.fixture
def start_webhook(
    cluster: Cluster, run_operator: Any, injector_environment: dict[str, str], chart_tls: ChartTLS
) -> Any:
    """``async with start_webhook(FAILURE_POLICY="Fail") as hook:`` runs the operator with its webhook server."""
    import contextlib

    cluster.kmock.resources["v1/pods"] = cluster.kmock.ResourceInfo(
        kind="Pod", namespaced=True, verbs=["create", "get", "list", "watch"]
    )

    @contextlib.asynccontextmanager
    async def start(**overrides: str) -> AsyncIterator[Webhook]:
        for name, value in overrides.items():
            os.environ[f"MOBIUS_INJECTOR_{name}"] = value
        port = int(os.environ["MOBIUS_INJECTOR_LISTEN_PORT"])
        hook = Webhook(
            url=f"https://127.0.0.1:{port}/{WEBHOOK_ID}",
            tls=chart_tls,
            cert_dir=Path(injector_environment["MOBIUS_INJECTOR_CERT_FILE"]).parent,
        )
        async with run_operator():
            await eventually(lambda: _serving(hook), timeout=15, what="the webhook server answering")
            yield hook

    return start


async def _serving(hook: Webhook) -> bool:
    try:
        async with hook.client() as client:
            await client.post(hook.url, content=b"{}", extensions={"sni_hostname": SERVICE_DNS})
    except httpx.TransportError:
        return False
    return True


# --- over the wire -------------------------------------------------------------------------------------------
async def test_an_annotated_pod_is_patched_over_https(start_webhook: Any, chart_tls: ChartTLS) -> None:
    async with start_webhook() as hook:
        before = pod({INJECT: "true"})
        response = await hook.review(before)
        after = patched(before, response)

    # Exactly what the pure function decides with the chart's settings.
    with pytest.MonkeyPatch.context() as env:
        for name, value in chart_tls.env.items():
            env.setenv(name, value)
        template = InjectorSettings().template()
    expected = decide(before, template)
    assert isinstance(expected, Injected)
    assert after == jsonpatch.apply_patch(before, expected.patch)

    (sidecar,) = after["spec"]["initContainers"]
    assert sidecar["name"] == SIDECAR and sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == chart_tls.env["MOBIUS_INJECTOR_IMAGE"]
    assert {"name": SIDECAR_URL, "value": "http://127.0.0.1:8787"} in after["spec"]["containers"][0]["env"]
    assert after["metadata"]["labels"]["mc-mobius-cache-client"] == "true"
    assert "warnings" not in response


async def test_pods_that_need_nothing_are_allowed_unchanged(start_webhook: Any) -> None:
    async with start_webhook() as hook:
        for annotations in (None, {"other": "x"}, {INJECT: "false"}):
            response = await hook.review(pod(annotations))
            assert response["allowed"] is True and "patch" not in response, (annotations, response)
        # Injecting twice changes nothing: the patched pod comes back without a patch.
        once = patched(pod({INJECT: "true"}), await hook.review(pod({INJECT: "true"})))
        again = await hook.review(once)
        assert again["allowed"] is True and "patch" not in again


async def test_the_cacheconfig_a_pod_names_is_read_from_the_api(start_webhook: Any, cluster: Cluster) -> None:
    spec = {
        "redis": {"url": "redis://search-redis.shop.svc:6379/1", "passwordSecretRef": {"name": "search"}},
        "maxMemory": "64mb",
    }
    body = {
        "apiVersion": "cache.mobius.io/v1alpha1",
        "kind": "CacheConfig",
        "metadata": {"name": "search", "namespace": NS, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
        "spec": spec,
    }
    async with start_webhook() as hook:
        resp = await cluster.kmock.post(CC_PATH.format(ns=NS), json=body)
        assert resp.status < 300
        after = patched(
            pod({INJECT: "true", CONFIG: "search"}),
            await hook.review(pod({INJECT: "true", CONFIG: "search"})),
        )
    (sidecar,) = after["spec"]["initContainers"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in sidecar["env"]}
    assert env["MOBIUS_REDIS_URL"] == "redis://search-redis.shop.svc:6379/1"
    assert env["MOBIUS_REDIS_PASSWORD"] == {"secretKeyRef": {"name": "search", "key": "password"}}
    volume = next(v for v in after["spec"]["volumes"] if v["name"] == "mobius-policy")
    assert volume["configMap"]["name"] == "search-policy"


async def test_bad_annotations_with_ignore_are_admitted_with_a_warning_and_an_event(
    start_webhook: Any, cluster: Cluster
) -> None:
    async with start_webhook() as hook:
        response = await hook.review(pod({INJECT: "true", CONFIG: "nope"}))
        assert response["allowed"] is True and "patch" not in response
        (warning,) = response["warnings"]
        assert "CacheConfig shop/nope (cache.mobius.io/config) does not exist" in warning
        events = await eventually(
            lambda: cluster.events("InvalidAnnotation"), what="an InvalidAnnotation Event"
        )
    (event,) = events
    assert event["type"] == "Warning" and event["message"] == warning
    # At admission the pod has no name yet: the Event goes to the ReplicaSet that creates it.
    assert event["involvedObject"]["kind"] == "ReplicaSet" and event["involvedObject"]["name"] == "web-5f7c9"
    assert event["metadata"]["namespace"] == NS


async def test_a_hand_made_sidecar_is_left_alone_with_an_event_on_the_pod(
    start_webhook: Any, cluster: Cluster
) -> None:
    mine = pod({INJECT: "true"}, name="legacy")
    mine["spec"]["containers"].append({"name": SIDECAR, "image": "mobius/cache-sidecar:0.0.9"})
    async with start_webhook(FAILURE_POLICY="Fail") as hook:
        response = await hook.review(mine)
        assert response["allowed"] is True and "patch" not in response  # never denied: the pod is valid
        assert "left as it is" in response["warnings"][0]
        (event,) = await eventually(lambda: cluster.events("SidecarConflict"), what="a SidecarConflict Event")
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "name": "legacy", "namespace": NS}


async def test_bad_annotations_with_fail_are_denied(start_webhook: Any, cluster: Cluster) -> None:
    async with start_webhook(FAILURE_POLICY="Fail") as hook:
        response = await hook.review(pod({INJECT: "true", PORT: "80", "cache.mobius.io/memory": "lots"}))
    assert response["allowed"] is False and "patch" not in response
    status = response["status"]
    assert status["code"] == 400
    assert status["message"].startswith("cannot inject the mobius-cache sidecar: ")
    assert (
        "cache.mobius.io/memory must be" in status["message"]
        and "cache.mobius.io/port must be" in status["message"]
    )
    assert not cluster.events("InvalidAnnotation"), "a denial is reported by the API server, not by an Event"


async def test_a_dry_run_records_no_event(start_webhook: Any, cluster: Cluster) -> None:
    async with start_webhook() as hook:
        response = await hook.review(pod({INJECT: "maybe"}), dry_run=True)
        assert response["allowed"] is True and response["warnings"]
        # A real request after it: its Event arrives, the dry run's never did.
        await hook.review(pod({INJECT: "perhaps"}))
        events = await eventually(
            lambda: cluster.events("InvalidAnnotation"), what="the real request's Event"
        )
    assert len(events) == 1 and "'perhaps'" in events[0]["message"]


async def test_the_server_serves_only_the_charts_certificate(start_webhook: Any) -> None:
    other = render_chart()  # another install: another CA
    async with start_webhook() as hook:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await hook.review(pod(None), bundle=other.bundle)
        async with hook.client() as client:  # the certificate names the Service, not the address
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.post(hook.url, json={})


async def test_a_renewed_certificate_is_served_without_a_restart(start_webhook: Any) -> None:
    """helm upgrade writes a new certificate into the Secret; the kubelet updates the mounted files; the operator
    serves the new one (the chart keeps the previous CA in the caBundle meanwhile)."""
    renewed = render_chart()
    async with start_webhook() as hook:
        await hook.review(pod(None))  # the install's certificate
        (hook.cert_dir / "tls.key").write_text(renewed.key)
        (hook.cert_dir / "tls.crt").write_text(renewed.cert)
        started = time.monotonic()

        async def renewed_served() -> bool:
            try:
                await hook.review(pod(None), bundle=renewed.bundle)
            except httpx.ConnectError:
                return False
            return True

        await eventually(renewed_served, timeout=10, what="the renewed certificate served")
        took = time.monotonic() - started
    assert took < 5, f"the renewed certificate took {took:.1f}s to be served (check interval 0.2 s)"


async def test_admission_latency(start_webhook: Any, cluster: Cluster) -> None:
    """Loose limit: far below the webhook's 5 s timeout. The figures are printed for the report."""
    body = {
        "apiVersion": "cache.mobius.io/v1alpha1",
        "kind": "CacheConfig",
        "metadata": {"name": "search", "namespace": NS, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
        "spec": {"redis": {"url": "redis://search-redis.shop.svc:6379/1"}},
    }
    async with start_webhook() as hook:
        assert (await cluster.kmock.post(CC_PATH.format(ns=NS), json=body)).status < 300
        timings: dict[str, list[float]] = {"chart default": [], "named CacheConfig": []}
        async with hook.client() as client:
            for _ in range(40):
                for what, annotations in (
                    ("chart default", {INJECT: "true"}),
                    ("named CacheConfig", {INJECT: "true", CONFIG: "search"}),
                ):
                    review = {
                        "apiVersion": "admission.k8s.io/v1",
                        "kind": "AdmissionReview",
                        "request": {
                            "uid": str(uuid.uuid4()),
                            "kind": {"group": "", "version": "v1", "kind": "Pod"},
                            "resource": {"group": "", "version": "v1", "resource": "pods"},
                            "namespace": NS,
                            "operation": "CREATE",
                            "userInfo": {"username": "test"},
                            "object": pod(annotations),
                        },
                    }
                    started = time.perf_counter()
                    resp = await client.post(hook.url, json=review, extensions={"sni_hostname": SERVICE_DNS})
                    timings[what].append(time.perf_counter() - started)
                    assert resp.json()["response"]["patchType"] == "JSONPatch"
    for what, seen in timings.items():
        median, worst = statistics.median(seen) * 1000, max(seen) * 1000
        print(f"admission, {what}: median {median:.1f} ms, max {worst:.1f} ms over {len(seen)} requests")
        assert worst < 2500, f"{what}: {worst:.0f} ms, half the webhook's timeout"


def _pod(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "labels": {"app": "example"},
            "annotations": annotations,
        }
    }


@pytest.mark.parametrize(
    ("pods", "restarted"),
    [
        ([_pod("p1", {INJECT: "true"})], True),  # admitted before the webhook answered: restart once
        ([_pod("p1", {INJECT: "true", "cache.mobius.io/injected": "true"})], False),  # injected: leave it
    ],
    ids=["missed", "injected"],
)
async def test_the_example_app_is_restarted_only_when_it_missed_the_sidecar(
    cluster: Any, pods: list[dict[str, Any]], restarted: bool
) -> None:
    from mobius_operator.kube import Kube
    from mobius_operator.webhook import restart_uninjected

    km = cluster.kmock
    ri = km.ResourceInfo
    km.resources["apps/v1/deployments"] = ri(kind="Deployment", namespaced=True, verbs=["get", "patch"])
    km.resources["v1/pods"] = ri(kind="Pod", namespaced=True, verbs=["list"])
    km.objects["apps/v1/deployments", "shop", "example"] = {
        "metadata": {"name": "example", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "example"}}, "template": {"metadata": {}}},
    }
    for pod in pods:
        km.objects["v1/pods", "shop", pod["metadata"]["name"]] = pod
    settings = InjectorSettings(restart_uninjected=["example"], namespace="shop")
    api = await Kube.connect()
    try:
        await restart_uninjected({"api": api}, settings, attempts=2, every=0.01)
    finally:
        await api.close()
    template = dict(km.objects["apps/v1/deployments", "shop", "example"].raw)["spec"]["template"]
    annotations = template["metadata"].get("annotations") or {}
    assert ("kubectl.kubernetes.io/restartedAt" in annotations) is restarted
