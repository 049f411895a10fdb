"""The sidecar injector in the chart: webhook configuration, certificate, Service, the operator's settings, and the
sidecar it injects compared with the one a pod carries itself when the injector is off.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import celpy
import celpy.adapter
import pytest

from mobius_operator.injection import INJECT, SIDECAR_URL
from mobius_operator.webhook import WEBHOOK_ID
from tests.chart import helm
from tests.chart.admitted import OPERATOR, admitted, injector_env, injector_settings, sidecar_of
from tests.chart.helm import find, one, pod_spec, render

EXAMPLE = "mc-mobius-cache-example"
INJECTOR_KINDS = ("MutatingWebhookConfiguration", "Service", "Secret")


def webhook(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (hook,) = one(docs, "MutatingWebhookConfiguration")["webhooks"]
    return dict(hook)


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = pod_spec(one(docs, "Deployment", OPERATOR))["containers"]
    return dict(container)


# --- the webhook configuration -------------------------------------------------------------------------------
def test_the_webhook_reaches_the_operator_through_its_service() -> None:
    docs = render({})
    hook = webhook(docs)
    service_ref = hook["clientConfig"]["service"]
    assert service_ref == {"name": OPERATOR, "namespace": "cache", "path": f"/{WEBHOOK_ID}", "port": 443}
    service = one(docs, "Service", OPERATOR)
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (443, "webhook")
    container = operator_container(docs)
    assert {"name": "webhook", "containerPort": 9443} in container["ports"]
    assert injector_env(docs)["MOBIUS_INJECTOR_LISTEN_PORT"] == "9443"
    assert injector_env(docs)["MOBIUS_INJECTOR_LISTEN_HOST"] == "0.0.0.0"
    assert container["readinessProbe"] == {"tcpSocket": {"port": "webhook"}, "periodSeconds": 5}
    moved = render({"injector.port": 10443})
    assert {"name": "webhook", "containerPort": 10443} in operator_container(moved)["ports"]
    assert injector_env(moved)["MOBIUS_INJECTOR_LISTEN_PORT"] == "10443"


def test_the_webhook_defaults() -> None:
    hook = webhook(render({}))
    assert hook["name"] == "sidecar.cache.mobius.io"
    assert hook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "operations": ["CREATE"],
            "scope": "Namespaced",
        }
    ]
    assert hook["failurePolicy"] == "Ignore", "a down operator must never block an app's rollout"
    assert hook["sideEffects"] == "NoneOnDryRun"
    assert hook["timeoutSeconds"] == 5
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["admissionReviewVersions"] == ["v1"]


def test_fail_reaches_the_webhook_and_the_operator_together() -> None:
    docs = render({"injector.failurePolicy": "Fail", "injector.timeoutSeconds": 10})
    assert webhook(docs)["failurePolicy"] == "Fail"
    assert webhook(docs)["timeoutSeconds"] == 10
    settings = injector_settings(docs)
    assert settings is not None and settings.template().deny_invalid is True
    assert settings.lookup_timeout == 9, "the CacheConfig read gives up before the API server does"


def _cel(expression: str, obj: dict[str, Any]) -> bool:
    env = celpy.Environment()
    result = env.program(env.compile(expression)).evaluate({"object": celpy.adapter.json_to_cel(obj)})
    return bool(result)


@pytest.mark.parametrize(
    ("metadata", "sent"),
    [
        ({"annotations": {INJECT: "true"}}, True),
        ({"annotations": {INJECT: "false"}}, True),  # the operator opts it out, and reports bad values
        ({"annotations": {"other": "x"}}, False),
        ({"labels": {INJECT: "true"}}, False),
        ({}, False),
    ],
)
def test_only_annotated_pods_are_sent_to_the_webhook(metadata: dict[str, Any], sent: bool) -> None:
    """The matchCondition, evaluated with a CEL implementation as the API server does."""
    (condition,) = webhook(render({}))["matchConditions"]
    assert _cel(condition["expression"], {"metadata": metadata}) is sent


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions, all ANDed)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", ()):
        value, present = labels.get(expr["key"]), expr["key"] in labels
        ok = {
            "In": present and value in expr.get("values", ()),
            "NotIn": not present or value not in expr.get("values", ()),
            "Exists": present,
            "DoesNotExist": not present,
        }[expr["operator"]]
        if not ok:
            return False
    return True


def _ns(name: str, **labels: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": name, **labels}


def test_namespaces_default_all_but_system_and_opted_out() -> None:
    selector = webhook(render({}))["namespaceSelector"]
    assert _selects(selector, _ns("shop"))
    assert _selects(selector, _ns("cache"))
    assert not _selects(selector, _ns("kube-system"))
    assert not _selects(selector, _ns("kube-node-lease"))
    assert not _selects(selector, _ns("legacy", **{"cache.mobius.io/injection": "disabled"}))


def test_namespaces_can_be_opt_in_and_are_the_release_only_with_namespace_scope() -> None:
    opt_in = {"matchLabels": {"cache.mobius.io/injection": "enabled"}}
    selector = webhook(render({"injector.namespaceSelector": opt_in}))["namespaceSelector"]
    assert _selects(selector, _ns("shop", **{"cache.mobius.io/injection": "enabled"}))
    assert not _selects(selector, _ns("shop"))
    assert not _selects(selector, _ns("kube-system", **{"cache.mobius.io/injection": "enabled"}))
    teams = {"matchExpressions": [{"key": "team", "operator": "In", "values": ["search", "shop"]}]}
    selector = webhook(render({"injector.namespaceSelector": teams}))["namespaceSelector"]
    assert _selects(selector, _ns("a", team="search")) and not _selects(selector, _ns("b", team="ops"))
    assert not _selects(selector, _ns("c", team="shop", **{"cache.mobius.io/injection": "disabled"}))
    # With operator.scope=namespace the operator reads CacheConfigs and records Events in its namespace only.
    narrow = webhook(render({"operator.scope": "namespace", "injector.namespaceSelector": opt_in}))[
        "namespaceSelector"
    ]
    assert narrow["matchLabels"] == {"kubernetes.io/metadata.name": "cache"}
    assert _selects(narrow, _ns("cache")) and not _selects(
        narrow, _ns("shop", **{"cache.mobius.io/injection": "enabled"})
    )


# --- the certificate -----------------------------------------------------------------------------------------
def _openssl(*args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_certificate_is_signed_by_the_ca_bundle_for_the_service_names(tmp_path: Path) -> None:
    docs = render({})
    secret = one(docs, "Secret", f"{OPERATOR}-webhook-tls")
    assert secret["type"] == "kubernetes.io/tls"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    bundle = base64.b64decode(webhook(docs)["clientConfig"]["caBundle"]).decode()
    assert bundle.strip() == data["ca.crt"].strip(), "a fresh install trusts exactly its own CA"
    (tmp_path / "ca.pem").write_text(bundle)
    (tmp_path / "tls.crt").write_text(data["tls.crt"])
    assert "OK" in _openssl("verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "tls.crt"))
    text = _openssl("x509", "-noout", "-ext", "subjectAltName", "-in", str(tmp_path / "tls.crt"))
    names = {n.strip() for n in text.splitlines()[-1].split(",")}
    assert names == {
        f"DNS:{n}"
        for n in (
            OPERATOR,
            f"{OPERATOR}.cache",
            f"{OPERATOR}.cache.svc",
            f"{OPERATOR}.cache.svc.cluster.local",
        )
    }
    # The private key belongs to the certificate.
    key_pub = _openssl("pkey", "-pubout", stdin=data["tls.key"])
    cert_pub = _openssl("x509", "-noout", "-pubkey", "-in", str(tmp_path / "tls.crt"))
    assert key_pub == cert_pub
    # It is mounted where the operator reads it.
    container = operator_container(docs)
    env = injector_env(docs)
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "webhook-tls"]
    assert env["MOBIUS_INJECTOR_CERT_FILE"] == f"{mount['mountPath']}/tls.crt"
    assert env["MOBIUS_INJECTOR_KEY_FILE"] == f"{mount['mountPath']}/tls.key"
    (volume,) = [
        v for v in pod_spec(one(docs, "Deployment", OPERATOR))["volumes"] if v["name"] == "webhook-tls"
    ]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]


def test_every_render_makes_a_new_certificate() -> None:
    """Rotation on upgrade: each render is a new CA and certificate (``helm template`` is not cached here)."""
    first, second = (helm.template({}) for _ in range(2))
    assert first.returncode == second.returncode == 0
    bundles = [webhook(helm.objects(r.stdout))["clientConfig"]["caBundle"] for r in (first, second)]
    assert bundles[0] != bundles[1]


# --- the operator's settings and what gets injected ----------------------------------------------------------
def test_the_operator_reads_every_sidecar_setting_from_the_chart() -> None:
    values = {
        "sidecar.image": {
            "repository": "registry.example.com/sidecar",
            "tag": "2.0.0",
            "pullPolicy": "Always",
        },
        "sidecar.port": 18787,
        "sidecar.metricsPort": 19787,
        "sidecar.resources": {"requests": {"cpu": "100m", "memory": "200Mi"}, "limits": {"memory": "400Mi"}},
        "redis.auth.existingSecret": "my-redis",
        "cacheConfig.name": "shared",
    }
    settings = injector_settings(render(values))
    assert settings is not None
    template = settings.template()
    assert template.image == "registry.example.com/sidecar:2.0.0"
    assert template.image_pull_policy == "Always"
    assert (template.port, template.metrics_port) == (18787, 19787)
    assert template.resources == values["sidecar.resources"]
    assert template.security_context["runAsUser"] == 10001
    # Injected sidecars log in as the cache's ACL user (docs/deploy.md, "Redis users").
    assert template.redis.url == "redis://mobius-cache@mc-mobius-cache-redis.cache.svc.cluster.local:6379/0"
    assert (template.redis.secret_name, template.redis.secret_key) == ("my-redis", "mobius-cache")
    assert template.client_label == "mc-mobius-cache-client"
    assert template.default_config == "shared"
    assert template.deny_invalid is False


def test_a_new_sidecar_tag_reaches_new_pods() -> None:
    """helm upgrade --set sidecar.image.tag=...: the operator's pod template changes (so it is rolled) and the
    sidecar it injects from then on has the new tag."""
    old, new = (render({"example.enabled": True, "sidecar.image.tag": tag}) for tag in ("0.1.0", "0.2.0"))
    assert operator_container(old)["env"] != operator_container(new)["env"]
    assert sidecar_of(admitted(old, EXAMPLE))["image"] == "mobius/cache-sidecar:0.1.0"
    assert sidecar_of(admitted(new, EXAMPLE))["image"] == "mobius/cache-sidecar:0.2.0"


def test_the_example_app_is_one_annotation() -> None:
    docs = render({"example.enabled": True})
    template = one(docs, "Deployment", EXAMPLE)["spec"]["template"]
    assert template["metadata"]["annotations"] == {INJECT: "true"}
    assert [c["name"] for c in template["spec"]["containers"]] == ["app"]
    assert "initContainers" not in template["spec"]
    pod = admitted(docs, EXAMPLE)
    sidecar = sidecar_of(pod)
    assert sidecar in pod["spec"]["initContainers"] and sidecar["restartPolicy"] == "Always"
    (app,) = pod["spec"]["containers"]
    assert {"name": SIDECAR_URL, "value": "http://127.0.0.1:8787"} in app["env"]
    # The example app reads that variable.
    assert f'os.environ.get("{SIDECAR_URL}"' in (helm.CHART / "files" / "example_app.py").read_text()


VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "metrics-off": {"sidecar.metricsPort": 0},
    "auth-off": {"redis.auth.enabled": False},
    "tls": {"redis.tls.enabled": True},
    "tls-existing-certificate": {"redis.tls.enabled": True, "redis.tls.existingSecret": "corp-tls"},
    "cluster": {"redis.architecture": "cluster"},
    "external-redis": {
        "redis.enabled": False,
        "externalRedis.url": "rediss://cache.example.com:6380/0",
        "externalRedis.existingSecret": "managed",
    },
    "tuned": {
        "sidecar.port": 18000,
        "sidecar.resources": {
            "requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {"cpu": 2, "memory": "2Gi"},
        },
        "sidecar.containerSecurityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True},
        "sidecar.image.digest": "sha256:" + "a" * 64,
    },
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_the_injected_sidecar_is_the_chart_sidecar_made_native(name: str) -> None:
    """One sidecar, two makers: the chart's template (injector off) and the operator (injector on) agree on every
    field but the two that make it a native sidecar."""
    values = {**VARIANTS[name], "example.enabled": True}
    injected_pod = admitted(render({**values, "injector.enabled": True}), EXAMPLE)
    carried_pod = admitted(render({**values, "injector.enabled": False}), EXAMPLE)
    injected, carried = sidecar_of(injected_pod), sidecar_of(carried_pod)
    assert injected.pop("restartPolicy") == "Always"
    assert "/readyz" in injected.pop("startupProbe")["exec"]["command"][-1]
    assert injected == carried
    volumes = {v["name"]: v for v in injected_pod["spec"]["volumes"] if v["name"].startswith("mobius-")}
    assert volumes == {
        v["name"]: v for v in carried_pod["spec"]["volumes"] if v["name"].startswith("mobius-")
    }
    label = "mc-mobius-cache-client"
    assert injected_pod["metadata"]["labels"][label] == carried_pod["metadata"]["labels"][label] == "true"


def test_the_injected_sidecar_is_locked_down() -> None:
    sidecar = sidecar_of(admitted(render({"example.enabled": True}), EXAMPLE))
    context = sidecar["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert "limits" in sidecar["resources"]


# --- switched off --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [{"injector.enabled": False}, {"operator.enabled": False}])
def test_without_the_injector_nothing_of_it_is_rendered(values: dict[str, Any]) -> None:
    docs = render({**values, "example.enabled": True})
    assert not find(docs, "MutatingWebhookConfiguration")
    assert not find(docs, "Service", OPERATOR)
    assert not find(docs, "Secret", f"{OPERATOR}-webhook-tls")
    assert injector_env(docs) == {}
    for deployment in find(docs, "Deployment", OPERATOR):
        (container,) = pod_spec(deployment)["containers"]
        assert [p["name"] for p in container["ports"]] == ["health"]
        assert "readinessProbe" not in container
    # The example pod then carries its sidecar itself.
    template = one(docs, "Deployment", EXAMPLE)["spec"]["template"]
    assert "annotations" not in template["metadata"]
    assert [c["name"] for c in template["spec"]["containers"]] == ["app", "mobius-sidecar"]


def test_native_sidecars_need_kubernetes_1_29() -> None:
    old = helm.template({}, "--kube-version", "1.28.9")
    assert old.returncode != 0
    assert "injector.enabled needs Kubernetes 1.29 or newer (native sidecars)" in old.stderr
    assert helm.template({"injector.enabled": False}, "--kube-version", "1.28.9").returncode == 0
    assert helm.template({}, "--kube-version", "1.29.0").returncode == 0


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"injector.failurePolicy": "Sometimes"}, "/injector/failurePolicy"),
        ({"injector.timeoutSeconds": 60}, "/injector/timeoutSeconds"),
        ({"injector.timeoutSeconds": 1}, "/injector/timeoutSeconds"),
        ({"injector.reinvocationPolicy": "Always"}, "/injector/reinvocationPolicy"),
        ({"injector.port": 443}, "/injector/port"),
        ({"injector.namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}, "operator"),
        ({"injector.namespaceSelector": {"matchLabelz": {}}}, "matchLabelz"),
        ({"injector.enabld": True}, "enabld"),
    ],
)
def test_bad_injector_values_are_refused(values: dict[str, Any], where: str) -> None:
    result = helm.template(values)
    assert result.returncode != 0, f"{values} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert where in result.stderr, result.stderr
