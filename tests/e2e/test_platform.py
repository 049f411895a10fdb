"""The chart end to end on the one-node cluster: pods really run, from images made on this machine.

One release for the whole module, driven step by step in file order, as a user would: install and `helm test`,
change the CacheConfig, use the cache through the injected sidecar, scrape it with Prometheus, kill Redis,
inject into new pods, upgrade the images and uninstall. Tests talk to pods only through loopback
(`kubectl port-forward`, `kubectl exec`, the API server's proxy).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dashboards.preview import Prometheus
from tests.dashboards.panels import RULES_FILE, queries, substitute
from tests.e2e.conftest import STATE_DIR, VERSION, images, port_forward
from tests.kube.cluster import CHART, ROOT, Cluster, wait_for
from tests.servers import free_port

NS = "mobius-e2e"
RELEASE = "mc"
REDIS_POD = f"{RELEASE}-mobius-cache-redis-0"
OPERATOR = f"{RELEASE}-mobius-cache-operator"
EXAMPLE = f"{RELEASE}-mobius-cache-example"
CACHECONFIG = f"{RELEASE}-mobius-cache"
NODE = "mobius-node"
VALUES = [
    "--set", "example.enabled=true",
    "--set", "redis.maxmemory=200mb",
    "--set", "redis.resources.requests.memory=256Mi",
    "--set", "redis.resources.limits.memory=256Mi",
    "--set", "operator.reconcileInterval=3",
]  # fmt: skip


def redis_cli(kube: Cluster, *args: str) -> str:
    """redis-cli in the Redis container as the operator's ACL user (CONFIG GET/SET, INFO), with its password
    from the Secret the container mounts."""
    login = '--user mobius-operator --pass "$(cat /etc/redis-passwords/mobius-operator)"'
    command = f"redis-cli {login} --no-auth-warning " + " ".join(args)
    return kube.kubectl("exec", "-n", NS, REDIS_POD, "-c", "redis", "--", "sh", "-c", command).stdout.strip()


def redis_config(kube: Cluster) -> tuple[int, str]:
    lines = redis_cli(kube, "config", "get", "maxmemory*").splitlines()
    values = dict(zip(lines[::2], lines[1::2], strict=True))
    return int(values["maxmemory"]), values["maxmemory-policy"]


def redis_config_now(kube: Cluster) -> tuple[int, str] | None:
    """Redis's settings, or None while its container is not there to ask (being replaced)."""
    try:
        return redis_config(kube)
    except AssertionError:
        return None


def condition(kube: Cluster, name: str, kind: str = "Ready") -> dict[str, Any]:
    obj = kube.get("cacheconfig", name, NS) or {}
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}.get(kind, {})


def example_pod(kube: Cluster) -> dict[str, Any]:
    pods = [
        p
        for p in kube.items("pods", NS, "app.kubernetes.io/component=example")
        if not p["metadata"].get("deletionTimestamp")
    ]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def restarts(pod: dict[str, Any]) -> int:
    statuses = pod["status"].get("containerStatuses", []) + pod["status"].get("initContainerStatuses", [])
    return sum(s.get("restartCount", 0) for s in statuses)


@pytest.fixture(scope="module")
def kube(node_cluster: Cluster) -> Iterator[Cluster]:
    # A namespace left by an interrupted run is finished off first (the cluster may be reused).
    node_cluster.kubectl("delete", "namespace", NS, "--ignore-not-found", "--timeout=180s", timeout=200)
    node_cluster.kubectl("create", "namespace", NS)
    try:
        yield node_cluster
    finally:
        node_cluster.kubectl("uncordon", NODE, check=False)
        node_cluster.helm("uninstall", RELEASE, "-n", NS, "--wait", check=False)
        node_cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def test_helm_install_wait_brings_every_pod_up_and_helm_test_passes(kube: Cluster) -> None:
    started = time.monotonic()
    kube.helm("install", RELEASE, str(CHART), "-n", NS, "--wait", "--timeout", "5m", *VALUES, timeout=360)
    took = time.monotonic() - started
    pods = kube.items("pods", NS)
    assert {p["metadata"]["name"].rsplit("-", 2)[0] for p in pods} >= {
        f"{RELEASE}-mobius-cache-operator",
        EXAMPLE,
    }
    for pod in pods:
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert pod["status"]["phase"] == "Running" and ready["Ready"] == "True", pod["metadata"]["name"]
    redis = kube.get("pod", REDIS_POD, NS)
    assert redis is not None
    assert {c["name"] for c in redis["spec"]["containers"]} == {"redis", "exporter", "key-groups"}
    # The default CacheConfig (created by the in-cluster operator) is Ready with Redis's real settings.
    wait_for(
        "the default CacheConfig Ready", lambda: condition(kube, CACHECONFIG).get("status") == "True", 120
    )
    assert redis_config(kube) == (200 * 1024 * 1024, "allkeys-lru")
    result = kube.helm("test", RELEASE, "-n", NS, "--logs", timeout=300)
    assert "cacheconfig: Ready" in result.stdout, result.stdout
    print(f"helm install --wait took {took:.1f} s")


def injected(pod: dict[str, Any]) -> bool:
    return (pod["metadata"].get("annotations") or {}).get("cache.mobius.io/injected") == "true"


def test_the_example_pod_got_the_sidecar_injected(kube: Cluster) -> None:
    # Its first pod may have been admitted before the injector answered: the operator then restarts it once.
    wait_for(
        "an injected example pod",
        lambda: any(injected(p) for p in kube.items("pods", NS, "app.kubernetes.io/component=example")),
        90,
    )
    kube.kubectl("rollout", "status", "-n", NS, f"deployment/{EXAMPLE}", "--timeout=120s", timeout=150)
    wait_for(
        "one example pod",
        lambda: (
            len(
                [
                    p
                    for p in kube.items("pods", NS, "app.kubernetes.io/component=example")
                    if not p["metadata"].get("deletionTimestamp")
                ]
            )
            == 1
        ),
        90,
    )
    pod = example_pod(kube)
    (sidecar,) = [c for c in pod["spec"]["initContainers"] if c["name"] == "mobius-sidecar"]
    assert sidecar["restartPolicy"] == "Always" and "startupProbe" in sidecar
    app = next(c for c in pod["spec"]["containers"] if c["name"] == "app")
    env = {e["name"]: e.get("value") for e in app.get("env", [])}
    assert env["MOBIUS_SIDECAR_URL"] == "http://127.0.0.1:8787"
    assert pod["metadata"]["annotations"]["cache.mobius.io/injected"] == "true"


def test_the_app_uses_the_cache_through_its_sidecar(kube: Cluster) -> None:
    pod = example_pod(kube)
    name = pod["metadata"]["name"]

    def hits() -> bool:
        logs = kube.kubectl("logs", "-n", NS, name, "-c", "app", "--tail=5").stdout
        return "X-Cache=hit" in logs

    wait_for("the example app to log cache hits", hits, timeout=60)
    with port_forward(kube, NS, f"pod/{name}", 8787) as port:
        got = httpx.get(f"http://127.0.0.1:{port}/v1/cache/config:example-{name}", timeout=5)
    assert got.status_code == 200 and got.headers["x-cache"] in ("hit", "hit-near")
    assert "written_at" in got.json()


def test_a_cacheconfig_change_reaches_redis_and_the_running_sidecar(kube: Cluster) -> None:
    before = restarts(example_pod(kube))
    patch = {"spec": {"maxMemory": "150mb", "evictionPolicy": "allkeys-lfu", "defaultTTL": 120}}
    kube.kubectl("patch", "cacheconfig", CACHECONFIG, "-n", NS, "--type=merge", "-p", json.dumps(patch))
    wait_for("Redis reconfigured", lambda: redis_config_now(kube) == (150 * 1024 * 1024, "allkeys-lfu"), 60)
    name = example_pod(kube)["metadata"]["name"]

    def effective_ttl() -> bool:
        with port_forward(kube, NS, f"pod/{name}", 8787) as port:
            put = httpx.put(f"http://127.0.0.1:{port}/v1/cache/e2e:ttl-probe", content=b"x", timeout=5)
        return put.headers.get("x-cache-ttl") == "120"

    wait_for("the sidecar to apply the new default TTL (policy hot reload)", effective_ttl, 120, interval=3)
    assert restarts(example_pod(kube)) == before, "the sidecar was restarted instead of reloading"


def scrape_targets(kube: Cluster) -> list[dict[str, Any]]:
    """The pods' metrics ports as Prometheus file_sd targets, each reached through the API server's pod proxy.

    Debian's Prometheus is built without Kubernetes service discovery, so the test does the discovery (the
    ports named `mobius-metrics`, `metrics` and `key-groups`) and Prometheus re-reads the file.
    """
    targets = []
    for pod in kube.items("pods", NS):
        if pod["status"].get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
            continue
        name = pod["metadata"]["name"]
        for container in pod["spec"].get("containers", []) + pod["spec"].get("initContainers", []):
            for port in container.get("ports", []):
                if port.get("name") in ("mobius-metrics", "metrics", "key-groups"):
                    targets.append(
                        {
                            "targets": [kube.server.removeprefix("https://")],
                            "labels": {
                                "__metrics_path__": f"/api/v1/namespaces/{NS}/pods/{name}:{port['containerPort']}/proxy/metrics",
                                "namespace": NS,
                                "pod": name,
                            },
                        }
                    )
    return targets


def prometheus_config(kube: Cluster, targets_file: Path) -> dict[str, Any]:
    """Prometheus on this machine scrapes pods through the API server's proxy, with the admin's certificate."""
    tls = {
        "ca_file": str(kube.pki / "ca.crt"),
        "cert_file": str(kube.pki / "admin.crt"),
        "key_file": str(kube.pki / "admin.key"),
    }
    return {
        "global": {"scrape_interval": "2s", "scrape_timeout": "1500ms", "evaluation_interval": "2s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [
            {
                "job_name": "mobius-pods",
                "scheme": "https",
                "tls_config": tls,
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "2s"}],
            }
        ],
    }


@pytest.fixture(scope="module")
def targets_file(kube: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("targets") / "targets.json"
    path.write_text(json.dumps(scrape_targets(kube)))
    return path


@pytest.fixture(scope="module")
def prometheus(
    kube: Cluster, targets_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    folder = tmp_path_factory.mktemp("prometheus")
    (folder / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(kube, targets_file)))
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prom = Prometheus(f"http://127.0.0.1:{port}")
    try:
        yield prom
    finally:
        prom.close()
        proc.terminate()
        proc.wait(10)
        log.close()


def test_prometheus_scrapes_through_the_api_server_and_every_dashboard_query_has_data(
    kube: Cluster, prometheus: Prometheus, targets_file: Path
) -> None:
    wanted = {REDIS_POD, example_pod(kube)["metadata"]["name"]}

    def targets_up() -> bool:
        targets_file.write_text(json.dumps(scrape_targets(kube)))  # the discovery, again (pods come and go)
        try:
            rows = prometheus.query("up")
        except (RuntimeError, httpx.HTTPError):
            return False
        return wanted <= {r["metric"]["pod"] for r in rows if r["value"][1] == "1"}

    wait_for(
        f"Prometheus to scrape the sidecar and the exporters of {sorted(wanted)}", targets_up, timeout=60
    )
    started = time.time()
    # Traffic for every panel: the example app writes and reads every 5 s; add misses and a burst of hits.
    name = example_pod(kube)["metadata"]["name"]
    with (
        port_forward(kube, NS, f"pod/{name}", 8787) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        for i in range(40):
            http.put(f"/v1/cache/search:e2e{i}:results:1", content=b"[]")
            http.get(f"/v1/cache/search:e2e{i}:results:1")
            http.get(f"/v1/cache/search:none{i}:results:1")
    time.sleep(8)  # a few scrapes of the new counts
    end = time.time()
    empty = []
    for q in queries():
        expr = substitute(q.expr, rate_interval="10s", time_range=f"{int(end - started) + 30}s")
        rows = prometheus.query_range(expr, started, end, 2.0)
        values = [v for row in rows for _, v in row["values"]]
        if not any(v not in ("NaN", "+Inf", "-Inf") for v in values):
            empty.append(q.name)
    assert not empty, f"dashboard panels without data: {empty}"


def test_redis_killed_the_sidecar_bypasses_then_everything_recovers(kube: Cluster) -> None:
    pod = example_pod(kube)
    name, before = pod["metadata"]["name"], restarts(pod)
    redis_uid = (kube.get("pod", REDIS_POD, NS) or {})["metadata"]["uid"]
    with (
        port_forward(kube, NS, f"pod/{name}", 8787) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        assert http.put("/v1/cache/config:e2e-kill", content=b"v").status_code == 204
        # The node cordoned first, so the replacement pod waits: an outage long enough to be seen (a
        # StatefulSet otherwise has Redis back within a second or two, before any read notices).
        kube.kubectl("cordon", NODE)
        kube.kubectl("delete", "pod", REDIS_POD, "-n", NS, "--grace-period=0", "--force", "--wait=false")
        seen: set[str] = set()
        slowest = 0.0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "bypass" not in seen:
            started = time.monotonic()
            got = http.get("/v1/cache/config:e2e-kill", timeout=5)
            # A killed pod's connections are black-holed (its IP is gone, nothing answers): a read in flight
            # waits out the sidecar image's Redis timeout (1 s) once, the breaker opens and the next reads
            # bypass at once. Nothing may wait longer than that.
            slowest = max(slowest, time.monotonic() - started)
            assert time.monotonic() - started < 2.5, "a read hung past the Redis timeout while Redis was away"
            seen.add(got.headers.get("x-cache", ""))
            time.sleep(0.1)
        kube.kubectl("uncordon", NODE)
        assert "bypass" in seen, f"never saw X-Cache: bypass while Redis was away (saw {seen})"
        print(f"slowest read while Redis was away: {slowest:.2f} s")

        def redis_back() -> bool:
            new = kube.get("pod", REDIS_POD, NS)
            return bool(
                new
                and new["metadata"]["uid"] != redis_uid
                and all(s.get("ready") for s in new["status"].get("containerStatuses", []))
            )

        wait_for("the StatefulSet to bring Redis back", redis_back, timeout=120)
        # The new Redis starts from the chart's redis.conf (200mb, allkeys-lru): the operator sets it back.
        wait_for(
            "the operator to re-apply the CacheConfig",
            lambda: redis_config_now(kube) == (150 * 1024 * 1024, "allkeys-lfu"),
            60,
        )
        wait_for(
            "a DriftCorrected Event",
            lambda: [e for e in kube.events(NS, CACHECONFIG) if e["reason"] == "DriftCorrected"],
            timeout=30,
        )

        def writes_again() -> bool:
            return http.put("/v1/cache/config:e2e-kill", content=b"w", timeout=5).status_code == 204

        wait_for("the sidecar to write again", writes_again, timeout=60, interval=1)
    assert restarts(example_pod(kube)) == before, "the app or its sidecar restarted"


SNIFF = Path(__file__).with_name("sniff.py")
PROBE = """
import json, socket
out = {}
for name, (host, port) in {"gateway": ("192.0.2.1", 80), "public": ("1.1.1.1", 443), "private": ("10.0.0.1", 80)}.items():
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, port)); out[name] = "connected"
    except OSError as exc:
        out[name] = type(exc).__name__
    finally:
        s.close()
for name in ("example.com", "kubernetes.default.svc.cluster.local"):
    try:
        out[name] = socket.gethostbyname(name)
    except OSError as exc:
        out[name] = type(exc).__name__
s = socket.create_connection(("kubernetes.default.svc.cluster.local", 443), timeout=3); s.close()
out["api-server"] = "connected"
print(json.dumps(out))
"""


def drops(chain: str = "MOBIUS-FORWARD") -> int:
    out = subprocess.run(
        ["iptables", "-t", "mangle", "-L", chain, "-v", "-n", "-x"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(int(line.split()[0]) for line in out.splitlines()[2:] if " DROP " in f" {line} ")


def test_no_packet_from_a_pod_leaves_this_machine(kube: Cluster) -> None:
    """A pod trying outside addresses gets nothing: the guard rules drop it, and nothing is seen on eth0."""
    before = drops()
    sniffer = subprocess.Popen(
        [sys.executable, str(SNIFF), "--seconds", "25"], stdout=subprocess.PIPE, text=True
    )
    image = f"mobius/cache-sidecar:{VERSION}"
    kube.kubectl(
        "run", "netprobe", "-n", NS, "--image", image, "--image-pull-policy=IfNotPresent", "--restart=Never",
        "--command", "--", "python3", "-c", PROBE,
    )  # fmt: skip
    try:
        wait_for(
            "the probe pod to finish",
            lambda: (
                (kube.get("pod", "netprobe", NS) or {}).get("status", {}).get("phase")
                in ("Succeeded", "Failed")
            ),
            timeout=60,
        )
        result = json.loads(kube.kubectl("logs", "-n", NS, "netprobe").stdout.strip().splitlines()[-1])
    finally:
        kube.kubectl("delete", "pod", "netprobe", "-n", NS, "--wait=false", check=False)
    leaked = sniffer.communicate(timeout=60)[0].strip()
    assert (
        result["gateway"] != "connected"
        and result["public"] != "connected"
        and result["private"] != "connected"
    )
    assert result["example.com"] == "gaierror", "an outside name resolved: DNS has an upstream"
    assert result["kubernetes.default.svc.cluster.local"] == "10.96.0.1"
    assert result["api-server"] == "connected"
    assert drops() > before, "the guard rules saw nothing to drop"
    assert leaked == "0", f"{leaked} pod or Service packets were seen on the uplink"


def test_injection_on_the_real_api_server(kube: Cluster) -> None:
    other = "e2e-inject"
    kube.kubectl("create", "namespace", other)
    try:
        secret = kube.get("secret", f"{RELEASE}-mobius-cache-redis", NS)
        assert secret is not None
        copy = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret["metadata"]["name"], "namespace": other},
        }
        kube.apply({**copy, "data": secret["data"]})
        for name, annotations in (("with", {"cache.mobius.io/inject": "true"}), ("without", {})):
            kube.apply(_deployment(name, other, annotations))
        kube.kubectl("rollout", "status", "-n", other, "deployment/with", "--timeout=120s", timeout=150)
        kube.kubectl("rollout", "status", "-n", other, "deployment/without", "--timeout=120s", timeout=150)
        injected = kube.items("pods", other, "app=with")[0]
        plain = kube.items("pods", other, "app=without")[0]
        assert [c["name"] for c in injected["spec"].get("initContainers", [])] == ["mobius-sidecar"]
        assert "initContainers" not in plain["spec"] and "cache.mobius.io/injected" not in plain[
            "metadata"
        ].get("annotations", {})
        env = {e["name"] for e in injected["spec"]["containers"][0]["env"]}
        assert "MOBIUS_SIDECAR_URL" in env
        # The operator down: failurePolicy Ignore admits new pods (without the sidecar), never blocks a rollout.
        kube.kubectl("scale", "-n", NS, f"deployment/{OPERATOR}", "--replicas=0")
        wait_for(
            "the operator to be gone",
            lambda: not kube.items("pods", NS, "app.kubernetes.io/component=operator"),
            60,
        )
        kube.apply(_deployment("while-down", other, {"cache.mobius.io/inject": "true"}))
        kube.kubectl("rollout", "status", "-n", other, "deployment/while-down", "--timeout=120s", timeout=150)
        admitted = kube.items("pods", other, "app=while-down")[0]
        assert "initContainers" not in admitted["spec"]
        metrics = kube.kubectl("get", "--raw", "/metrics").stdout
        assert any(
            line.startswith("apiserver_admission_webhook_fail_open_count") and not line.endswith(" 0")
            for line in metrics.splitlines()
        ), "the API server did not count the fail-open"
    finally:
        kube.kubectl("scale", "-n", NS, f"deployment/{OPERATOR}", "--replicas=1", check=False)
        kube.kubectl(
            "rollout",
            "status",
            "-n",
            NS,
            f"deployment/{OPERATOR}",
            "--timeout=120s",
            check=False,
            timeout=150,
        )
        kube.kubectl("delete", "namespace", other, "--wait=false", check=False)


def _deployment(name: str, namespace: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": f"mobius/cache-sidecar:{VERSION}",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["python3", "-c", "import time; time.sleep(3600)"],
                        }
                    ]
                },
            },
        },
    }


def test_helm_upgrade_to_new_image_tags_rolls_the_operator_and_new_pods_get_the_new_sidecar(
    kube: Cluster,
) -> None:
    tag = f"{VERSION}-e2e"
    host = images.engine()
    for name in images.IMAGES:
        images.docker("tag", f"{name}:{VERSION}", f"{name}:{tag}", host=host)
    env = {**kube.env(), "MOBIUS_CLUSTER_DIR": str(STATE_DIR)}
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cluster" / "cluster.py"), "load-images",
         f"mobius/cache-operator:{tag}", f"mobius/cache-sidecar:{tag}"],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    kube.helm(
        "upgrade", RELEASE, str(CHART), "-n", NS, "--wait", "--timeout", "5m", *VALUES,
        "--set", f"operator.image.tag={tag}", "--set", f"sidecar.image.tag={tag}", timeout=360,
    )  # fmt: skip
    operator = kube.items("pods", NS, "app.kubernetes.io/component=operator")
    assert [p["spec"]["containers"][0]["image"] for p in operator] == [f"mobius/cache-operator:{tag}"]
    kube.kubectl("rollout", "restart", "-n", NS, f"deployment/{EXAMPLE}")
    kube.kubectl("rollout", "status", "-n", NS, f"deployment/{EXAMPLE}", "--timeout=120s", timeout=150)
    sidecar = next(c for c in example_pod(kube)["spec"]["initContainers"] if c["name"] == "mobius-sidecar")
    assert sidecar["image"] == f"mobius/cache-sidecar:{tag}"


def test_helm_uninstall_cleans_up(kube: Cluster) -> None:
    kube.helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "2m", timeout=150)

    kinds = "pods,cacheconfigs,configmaps,secrets,services,statefulsets,deployments,persistentvolumeclaims"
    left: list[str] = []

    def empty() -> bool:
        out = kube.kubectl("get", kinds, "-n", NS, "-o", "name").stdout.split()
        left[:] = [name for name in out if name != "configmap/kube-root-ca.crt"]
        return not left

    try:
        wait_for("the release's objects (and the operator-owned CacheConfig) to be gone", empty, timeout=90)
    except AssertionError:
        raise AssertionError(f"helm uninstall left {left}") from None
    webhooks = kube.kubectl("get", "mutatingwebhookconfigurations", "-o", "name").stdout
    assert RELEASE not in webhooks
