"""The one node: containerd + runc + CNI (Debian's), kubelet, kube-scheduler, kube-proxy (built here), CoreDNS.

The container runtime is a containerd of its own (config, socket, state under the cluster's state directory),
separate from the one the Docker Engine runs. Images come from the local Docker Engine only: the project's
images, the images the chart names (Redis and the exporter, made from Debian's packages because no registry
answers), CoreDNS built from source and the pause image compiled from the Kubernetes module's own source; they
are exported from Docker and imported into containerd, so `imagePullPolicy: IfNotPresent` never pulls.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import network
import procs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import images  # scripts/images.py: the Docker Engine

HERE = Path(__file__).resolve().parent
NODE_NAME = "mobius-node"
KUBE_PAUSE = "registry.k8s.io/pause:3.10.1"
COREDNS_VERSION = "v1.14.7"
COREDNS_IMAGE = f"local/coredns:{COREDNS_VERSION}"
CNI_BIN = "/usr/lib/cni"
NETNS_DIR = Path("/var/run/netns")
CHART_VALUES = HERE.parent.parent / "charts" / "mobius-cache" / "values.yaml"
# The third-party images the chart names (read from its values), made locally from Debian's packages
# (scripts/cluster/dockerfiles/*.Dockerfile) because no registry answers here.
CHART_IMAGE_RECIPES = {"redis": "redis.Dockerfile", "exporter": "redis-exporter.Dockerfile"}


def chart_image_refs() -> dict[str, str]:
    """{recipe: "repository:tag"} for Redis and the exporter, as the chart's values.yaml names them."""
    import yaml  # the project's venv has it; only the node needs it

    values = yaml.safe_load(CHART_VALUES.read_text())
    images = {"redis": values["redis"]["image"], "exporter": values["exporter"]["image"]}
    return {key: f"{image['repository']}:{image['tag']}" for key, image in images.items()}


def containerd_config(state_dir: Path) -> Path:
    d = state_dir / "containerd"
    d.mkdir(parents=True, exist_ok=True)
    path = d / "config.toml"
    path.write_text(
        f"""version = 2
root = "{d / "root"}"
state = "{d / "state"}"
[grpc]
  address = "{d / "containerd.sock"}"
[ttrpc]
  address = "{d / "containerd.sock.ttrpc"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{KUBE_PAUSE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Some sandboxes (this machine's VM among them) refuse a lower oom_score_adj even to root: clamp instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{state_dir / "cni" / "net.d"}"
"""
    )
    return path


def containerd_socket(state_dir: Path) -> Path:
    return state_dir / "containerd" / "containerd.sock"


def ctr(state_dir: Path, *args: str, stdin: IO[bytes] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["ctr", "--address", str(containerd_socket(state_dir)), "--namespace", "k8s.io", *args],
        stdin=stdin,
        capture_output=True,
        check=False,
    )


def start_containerd(state_dir: Path, log: Path) -> int:
    exe = shutil.which("containerd")
    if exe is None:
        raise RuntimeError(
            "containerd is missing: apt-get install containerd (scripts/ensure-system-deps.sh installs it)"
        )
    pid = procs.spawn([exe, "--config", str(containerd_config(state_dir))], log)
    procs.wait_until("containerd", lambda: ctr(state_dir, "version").returncode == 0, 30, log)
    return pid


# -- images ------------------------------------------------------------------------------------------------------
def _import_rootfs(host: str | None, ref: str, files: dict[str, Path], entrypoint: list[str]) -> None:
    """An image of just these files (FROM scratch), via `docker import`."""
    with tempfile.TemporaryDirectory(prefix="mobius-img-") as tmp:
        tar_path = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar_path, "w") as tar:
            for target, source in files.items():
                info = tar.gettarinfo(str(source), arcname=target)
                info.mode = 0o755
                info.uid = info.gid = 0
                with source.open("rb") as handle:
                    tar.addfile(info, handle)
        change = f"ENTRYPOINT {json.dumps(entrypoint)}"
        result = images.docker("import", "--change", change, str(tar_path), ref, host=host, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"docker import {ref} failed: {result.stderr}")


def pause_image(host: str | None, kube_source: Path) -> str:
    """registry.k8s.io/pause, compiled (static) from build/pause/linux/pause.c of the pinned Kubernetes module."""
    if images.has_image(KUBE_PAUSE, host):
        return KUBE_PAUSE
    version = KUBE_PAUSE.rsplit(":", 1)[1]
    with tempfile.TemporaryDirectory(prefix="mobius-pause-") as tmp:
        binary = Path(tmp) / "pause"
        subprocess.run(
            ["gcc", "-Os", "-Wall", "-static", f"-DVERSION=v{version}", "-o", str(binary),
             str(kube_source / "build" / "pause" / "linux" / "pause.c")],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(["strip", str(binary)], check=True)
        _import_rootfs(host, KUBE_PAUSE, {"pause": binary}, ["/pause"])
    return KUBE_PAUSE


def coredns_image(host: str | None, binary: Path) -> str:
    if not images.has_image(COREDNS_IMAGE, host):
        _import_rootfs(host, COREDNS_IMAGE, {"coredns": binary}, ["/coredns"])
    return COREDNS_IMAGE


def chart_images(host: str | None, base: str) -> list[str]:
    """The third-party images the chart names, built from Debian's packages on the local base."""
    built = []
    for key, ref in chart_image_refs().items():
        dockerfile = CHART_IMAGE_RECIPES[key]
        if not images.has_image(ref, host):
            with tempfile.TemporaryDirectory(prefix="mobius-chartimg-") as tmp:
                context = Path(tmp)
                if key == "exporter":
                    shutil.copy("/usr/bin/prometheus-redis-exporter", context / "redis_exporter")
                result = images.docker(
                    "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
                    "-f", str(HERE / "dockerfiles" / dockerfile), "-t", ref, str(context),
                    host=host, check=False,
                )  # fmt: skip
                if result.returncode != 0:
                    raise RuntimeError(f"building {ref} failed: {result.stderr[-2000:]}")
        built.append(ref)
    return built


def load_images(state_dir: Path, host: str | None, refs: list[str]) -> None:
    """Export from Docker, import into the node's containerd (k8s.io namespace), skipping what it has.

    A reference is loaded again when Docker's image is another one than the one loaded last (a rebuilt project
    image); the image ids loaded are kept in ``containerd/loaded/``, written once the import succeeded.
    """
    have = ctr(state_dir, "images", "ls", "-q").stdout.decode().split()
    stamps = state_dir / "containerd" / "loaded"
    ids = {
        ref: images.docker("image", "inspect", ref, "--format", "{{.Id}}", host=host).stdout.strip()
        for ref in refs
    }
    want = [r for r in refs if _normalized(r) not in have or not _stamped(stamps, r, ids[r])]
    if not want:
        return
    save = subprocess.Popen(["docker", "save", *want], stdout=subprocess.PIPE, env=images.docker_env(host))
    result = ctr(state_dir, "images", "import", "-", stdin=save.stdout)
    save.wait()
    if result.returncode != 0 or save.returncode != 0:
        raise RuntimeError(f"loading images into containerd failed: {result.stderr.decode()}")
    stamps.mkdir(parents=True, exist_ok=True)
    for ref in want:
        (stamps / _stamp_name(ref)).write_text(ids[ref])


def _normalized(ref: str) -> str:
    name = ref if "/" in ref.split(":")[0] else f"library/{ref}"
    return name if name.split("/")[0].count(".") or name.startswith("localhost") else f"docker.io/{name}"


def _stamp_name(ref: str) -> str:
    return ref.replace("/", "_").replace(":", "_")


def _stamped(stamps: Path, ref: str, image_id: str) -> bool:
    stamp = stamps / _stamp_name(ref)
    return stamp.exists() and stamp.read_text() == image_id


# -- kubelet, scheduler, kube-proxy --------------------------------------------------------------------------------
def kubelet_config(state_dir: Path, pki: Path, port: int, healthz: int) -> Path:
    resolv = state_dir / "kubelet-resolv.conf"
    resolv.write_text("# no upstream DNS: pods resolve cluster names only\n")
    path = state_dir / "kubelet.yaml"
    path.write_text(
        f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {network.NODE_IP}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {pki / "ca.crt"}}}
authorization: {{mode: Webhook}}
tlsCertFile: {pki / "kubelet-serving.crt"}
tlsPrivateKeyFile: {pki / "kubelet-serving.key"}
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: unix://{containerd_socket(state_dir)}
clusterDNS: [{network.DNS_IP}]
clusterDomain: cluster.local
resolvConf: {resolv}
podLogsDir: {state_dir / "pod-logs"}
failSwapOn: false
serializeImagePulls: false
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
evictionHard: {{memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%}}
maxPods: 60
# Mounted ConfigMaps (the sidecars' policy) are refreshed at each pod sync: every 10 s rather than every minute.
syncFrequency: 10s
"""
    )
    return path


def kube_proxy_config(state_dir: Path, kubeconfig: Path, healthz: int, metrics: int) -> Path:
    path = state_dir / "kube-proxy.yaml"
    path.write_text(
        f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
mode: iptables
clusterCIDR: {network.CLUSTER_CIDR}
hostnameOverride: {NODE_NAME}
healthzBindAddress: 127.0.0.1:{healthz}
metricsBindAddress: 127.0.0.1:{metrics}
nodePortAddresses: ["{network.NODE_IP}/32"]
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
iptables: {{masqueradeAll: false, localhostNodePorts: false, syncPeriod: 10s, minSyncPeriod: 1s}}
"""
    )
    return path


COREDNS_MANIFEST = """
apiVersion: v1
kind: ServiceAccount
metadata: {{name: coredns, namespace: kube-system}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "system:coredns"}}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "system:coredns"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}}
subjects: [{{kind: ServiceAccount, name: coredns, namespace: kube-system}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: coredns, namespace: kube-system}}
data:
  # Cluster names only: no `forward` plugin, so nothing is ever asked of an upstream resolver.
  Corefile: |
    .:53 {{
        errors
        health {{
            lameduck 2s
        }}
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {{
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }}
        cache 30
        reload
    }}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: coredns, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{k8s-app: kube-dns}}}}
  template:
    metadata: {{labels: {{k8s-app: kube-dns}}}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      priorityClassName: system-cluster-critical
      containers:
        - name: coredns
          image: {image}
          imagePullPolicy: IfNotPresent
          args: [-conf, /etc/coredns/Corefile]
          ports:
            - {{name: dns, containerPort: 53, protocol: UDP}}
            - {{name: dns-tcp, containerPort: 53, protocol: TCP}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}
          readinessProbe: {{httpGet: {{path: /ready, port: 8181}}, periodSeconds: 2}}
          livenessProbe: {{httpGet: {{path: /health, port: 8080}}, periodSeconds: 10}}
          resources: {{requests: {{cpu: 20m, memory: 32Mi}}, limits: {{memory: 128Mi}}}}
          volumeMounts: [{{name: config, mountPath: /etc/coredns, readOnly: true}}]
      volumes:
        - {{name: config, configMap: {{name: coredns}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: kube-dns, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  clusterIP: {dns_ip}
  selector: {{k8s-app: kube-dns}}
  ports:
    - {{name: dns, port: 53, protocol: UDP}}
    - {{name: dns-tcp, port: 53, protocol: TCP}}
"""


def coredns_manifest() -> str:
    return COREDNS_MANIFEST.format(image=COREDNS_IMAGE, dns_ip=network.DNS_IP)


# -- teardown ----------------------------------------------------------------------------------------------------
def kill_containers(state_dir: Path) -> None:
    """Every container of the node's containerd, killed (containers outlive containerd otherwise)."""
    if not containerd_socket(state_dir).exists():
        return
    tasks = ctr(state_dir, "tasks", "ls", "-q").stdout.decode().split()
    for task in tasks:
        ctr(state_dir, "tasks", "kill", "--signal", "SIGKILL", task)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and ctr(state_dir, "tasks", "ls", "-q").stdout.strip():
        for task in ctr(state_dir, "tasks", "ls", "-q").stdout.decode().split():
            ctr(state_dir, "tasks", "rm", "--force", task)
        time.sleep(0.3)


def kill_shims(state_dir: Path) -> None:
    """containerd-shim processes that served our containerd (they do not exit with it)."""
    address = str(containerd_socket(state_dir))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address.encode() in b" ".join(argv):
            procs.stop(int(entry.name), argv[0].decode(), timeout=5)


def unmount_under(folder: Path) -> None:
    """Unmount whatever is mounted under ``folder`` (kubelet volumes, overlay snapshots), deepest first."""
    for _ in range(3):
        ours = [p for p in images.mounts_under(folder) if p != str(folder)]
        if not ours:
            return
        for point in sorted(ours, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def netns_names() -> set[str]:
    return {p.name for p in NETNS_DIR.iterdir()} if NETNS_DIR.exists() else set()


def remove_netns(names: set[str]) -> None:
    for name in names:
        subprocess.run(["umount", str(NETNS_DIR / name)], capture_output=True, check=False)
        (NETNS_DIR / name).unlink(missing_ok=True)


def remove_cgroups() -> None:
    """The kubepods cgroup trees the kubelet made (cgroupfs driver), deepest first; busy ones are left."""
    root = Path("/sys/fs/cgroup")
    for controller in root.iterdir() if root.exists() else ():
        tree = controller / "kubepods"
        if not tree.is_dir():
            continue
        for path in sorted(
            (p for p in tree.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            tree.rmdir()


def wait_node_ready(kubectl: Callable[..., subprocess.CompletedProcess[str]], log: Path) -> None:
    def ready() -> bool:
        out = kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        conditions = {c["type"]: c["status"] for c in json.loads(out.stdout)["status"].get("conditions", [])}
        return conditions.get("Ready") == "True"

    procs.wait_until(f"node {NODE_NAME} Ready", ready, 120, log)
