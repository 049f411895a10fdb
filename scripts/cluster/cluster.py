#!/usr/bin/env python3
"""The project's real Kubernetes, on this machine: every component built from source at one pinned release.

    scripts/cluster/cluster.py up        start (or reuse) etcd + kube-apiserver + kube-controller-manager
    scripts/cluster/cluster.py up --node ... and one node: containerd, kubelet, kube-scheduler, kube-proxy, CoreDNS
    scripts/cluster/cluster.py status    print the state as JSON (exit 1 when not running)
    scripts/cluster/cluster.py down      stop every process `up` started (by PID) and remove the state
    scripts/cluster/cluster.py build     only build the pinned binaries into .tools/bin
    scripts/cluster/cluster.py monitoring-crds   apply the pinned prometheus-operator CRDs (ServiceMonitor, ...)
    scripts/cluster/cluster.py load-images REF...  copy images from the Docker Engine into the node's containerd

The control plane listens on 127.0.0.1 (free ports, chosen at the first `up`); the state lives in .run/cluster/
(or $MOBIUS_CLUSTER_DIR) and the admin kubeconfig is .run/cluster/kubeconfig. The node (root only) puts pods
on a bridge inside this machine, fenced by firewall rules (network.py); the kubelet listens on the bridge.
`up` is idempotent: a running, healthy cluster is reused; a broken one is taken down and started afresh. Each step is a named phase that logs what it does; a failure names the
phase and the log file to read. `make cluster` / `make cluster-down` call this script, and so does the tests'
session fixture (tests/kube/conftest.py): nothing else knows how Kubernetes is built or started.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build
import network
import node
import pki
import procs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import images  # scripts/images.py: the Docker Engine

ROOT = build.ROOT
BIN = build.BIN
STATE_DIR = Path(os.environ.get("MOBIUS_CLUSTER_DIR", ROOT / ".run" / "cluster"))
STATE = STATE_DIR / "state.json"
LOCK = STATE_DIR.parent / (STATE_DIR.name + ".lock")
PKI = STATE_DIR / "pki"
LOGS = STATE_DIR / "logs"
KUBECONFIG = STATE_DIR / "kubeconfig"

SERVICE_CIDR = network.SERVICE_CIDR
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager")
NODE = ("apiserver-forwarder", "kube-scheduler", "containerd", "kubelet", "kube-proxy")


def say(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """A named step: logged when it starts and ends; an error says which step failed."""
    started = time.monotonic()
    say(f"{name} ...")
    try:
        yield
    except Exception as exc:
        raise SystemExit(f"[cluster] phase '{name}' failed: {exc}") from exc
    say(f"{name}: done ({time.monotonic() - started:.1f} s)")


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One `up`/`down` at a time (two pytest workers may ask for the cluster at once)."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def load_state() -> dict[str, object]:
    return procs.read_json(STATE)


def save_state(state: dict[str, object]) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps(state, indent=2))


def _pids(state: dict[str, object]) -> dict[str, list[object]]:
    return dict(state.get("pids", {}))  # type: ignore[arg-type]


def _ports(state: dict[str, object]) -> dict[str, int]:
    return dict(state.get("ports", {}))  # type: ignore[arg-type]


def _alive(state: dict[str, object], name: str) -> bool:
    """The process ``name`` that `up` started (state: pid and binary) still runs."""
    entry = _pids(state).get(name)
    return bool(entry) and procs.is_ours(int(entry[0]), str(entry[1]))  # type: ignore[call-overload, index]


def _stop(state: dict[str, object], name: str) -> bool:
    """Stop the process ``name`` that `up` started; True if it was running."""
    entry = _pids(state).get(name)
    return bool(entry) and procs.stop(int(entry[0]), str(entry[1]))  # type: ignore[call-overload, index]


def _spawn(state: dict[str, object], name: str, argv: list[str]) -> Path:
    """Start ``argv`` as the process ``name``, its pid recorded at once (so `down` can stop it); its log."""
    log = LOGS / f"{name}.log"
    state.setdefault("pids", {})[name] = [procs.spawn(argv, log), argv[0]]  # type: ignore[index]
    save_state(state)
    return log


def apiserver_ready(state: dict[str, object]) -> bool:
    port = _ports(state).get("apiserver")
    if not port:
        return False
    try:
        code = procs.https_get(
            f"https://127.0.0.1:{port}/readyz", PKI / "ca.crt", PKI / "admin.crt", PKI / "admin.key"
        )
    except OSError:
        return False
    return code == 200


def running(state: dict[str, object]) -> bool:
    """Every control-plane process we started is alive and the API server answers /readyz."""
    pids = _pids(state)
    wanted = CONTROL_PLANE + (NODE if state.get("node") else ())
    if not all(name in pids and procs.is_ours(int(pids[name][0]), str(pids[name][1])) for name in wanted):  # type: ignore[call-overload]
        return False
    return apiserver_ready(state)


# -- phases of the control plane -----------------------------------------------------------------------------


def make_pki(ports: dict[str, int], with_node: bool) -> None:
    pki.ensure_ca(PKI)
    pki.ensure_service_account_keys(PKI)
    pki.issue(
        PKI,
        "apiserver",
        "kube-apiserver",
        server=True,
        sans=(
            "IP:127.0.0.1",
            "IP:10.96.0.1",
            f"IP:{network.NODE_IP}",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ),
    )
    pki.issue(PKI, "admin", "kubernetes-admin", orgs=("system:masters",), client=True)
    pki.issue(PKI, "controller-manager", "system:kube-controller-manager", client=True)
    pki.issue(
        PKI,
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        orgs=("system:masters",),
        client=True,
    )
    server = f"https://127.0.0.1:{ports['apiserver']}"
    if with_node:
        node_identities = {
            "kubelet": (f"system:node:{node.NODE_NAME}", ("system:nodes",)),
            "kube-scheduler": ("system:kube-scheduler", ()),
            "kube-proxy": ("system:kube-proxy", ()),
        }
        for name, (cn, orgs) in node_identities.items():
            crt, key = pki.issue(PKI, name, cn, orgs=orgs, client=True)
            pki.write_kubeconfig(
                STATE_DIR / f"{name}.kubeconfig", server=server, ca=PKI / "ca.crt", user=cn, cert=crt, key=key
            )
        pki.issue(
            PKI,
            "kubelet-serving",
            node.NODE_NAME,
            server=True,
            sans=(f"IP:{network.NODE_IP}", f"DNS:{node.NODE_NAME}"),
        )
    pki.write_kubeconfig(
        KUBECONFIG,
        server=server,
        ca=PKI / "ca.crt",
        user="admin",
        cert=PKI / "admin.crt",
        key=PKI / "admin.key",
    )
    pki.write_kubeconfig(
        STATE_DIR / "controller-manager.kubeconfig",
        server=server,
        ca=PKI / "ca.crt",
        user="system:kube-controller-manager",
        cert=PKI / "controller-manager.crt",
        key=PKI / "controller-manager.key",
    )


def start_etcd(state: dict[str, object]) -> None:
    ports = _ports(state)
    exe = str(BIN / "etcd")
    client, peer = f"http://127.0.0.1:{ports['etcd']}", f"http://127.0.0.1:{ports['etcd_peer']}"
    argv = [
        exe,
        "--name=mobius-test",
        f"--data-dir={STATE_DIR / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=mobius-test={peer}",
        "--listen-metrics-urls=",
        "--unsafe-no-fsync=true",  # a throwaway test store: durability buys nothing, fsync costs seconds
        "--quota-backend-bytes=2147483648",
        "--log-level=warn",
    ]
    log = _spawn(state, "etcd", argv)
    procs.wait_until("etcd", lambda: procs.http_get(f"{client}/health") == 200, 30, log)


def start_apiserver(state: dict[str, object]) -> None:
    ports = _ports(state)
    exe = str(BIN / "kube-apiserver")
    argv = [
        exe,
        f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
        "--bind-address=127.0.0.1",
        # With a node, pods reach the API server at 10.96.0.1 -> this address (a forwarder on the bridge).
        f"--advertise-address={network.NODE_IP if state.get('node') else '127.0.0.1'}",
        f"--secure-port={ports['apiserver']}",
        f"--cert-dir={PKI}",
        f"--tls-cert-file={PKI / 'apiserver.crt'}",
        f"--tls-private-key-file={PKI / 'apiserver.key'}",
        f"--client-ca-file={PKI / 'ca.crt'}",
        "--authorization-mode=Node,RBAC",
        # The plugins a kubeadm cluster runs: the defaults (NamespaceLifecycle, LimitRanger, ServiceAccount,
        # PodSecurity, ResourceQuota, the admission webhooks, ...) plus NodeRestriction.
        "--enable-admission-plugins=NodeRestriction",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={PKI / 'sa.pub'}",
        f"--service-account-signing-key-file={PKI / 'sa.key'}",
        f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        f"--kubelet-client-certificate={PKI / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={PKI / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={PKI / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--profiling=false",
        "--v=1",
    ]
    log = _spawn(state, "kube-apiserver", argv)
    procs.wait_until("kube-apiserver /readyz", lambda: apiserver_ready(state), 90, log)


def start_controller_manager(state: dict[str, object]) -> None:
    ports = _ports(state)
    exe = str(BIN / "kube-controller-manager")
    kubeconfig = STATE_DIR / "controller-manager.kubeconfig"
    argv = [
        exe,
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['controller_manager']}",
        f"--service-account-private-key-file={PKI / 'sa.key'}",
        f"--root-ca-file={PKI / 'ca.crt'}",
        f"--cluster-signing-cert-file={PKI / 'ca.crt'}",
        f"--cluster-signing-key-file={PKI / 'ca.key'}",
        "--use-service-account-credentials=true",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--controllers=*",
        "--allocate-node-cidrs=false",  # the CNI config holds the node's pod subnet
        "--leader-elect=false",
        "--v=1",
    ]
    log = _spawn(state, "kube-controller-manager", argv)
    url = f"https://127.0.0.1:{ports['controller_manager']}/healthz"
    procs.wait_until(
        "kube-controller-manager /healthz", lambda: procs.https_get_insecure(url) == 200, 60, log
    )


def kubectl(
    *args: str, check: bool = True, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("kubectl", path=f"{BIN}:{os.environ.get('PATH', '')}") or "kubectl"
    return subprocess.run(
        [exe, f"--kubeconfig={KUBECONFIG}", *args],
        input=input,
        check=check,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_service_accounts() -> None:
    """The controller-manager has made the `default` ServiceAccount: pods and TokenRequests can use it."""
    procs.wait_until(
        "the default ServiceAccount",
        lambda: kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
        60,
        LOGS / "kube-controller-manager.log",
    )


def up(with_node: bool = False) -> dict[str, object]:
    with locked():
        state = load_state()
        if state and with_node and not state.get("node") and running(state):
            say("the running cluster has no node: taking it down to start one with a node")
            _down(state)
            state = {}
        if state and running(state):
            if state.get("node"):  # the guard rules are machine-wide: make sure nobody removed them
                network.firewall_up()
                network.bridge_up()
            say(f"reusing the running cluster (kubeconfig {KUBECONFIG})")
            return {**state, "reused": True}
        if state:
            say("a previous cluster is broken or half-stopped: taking it down first")
            _down(state)
        if with_node and os.geteuid() != 0:
            raise SystemExit("[cluster] a node needs root (network namespaces, mounts, iptables, cgroups)")
        if with_node:
            claim_the_node()
        with phase("build the pinned binaries"):
            build.build(build.CONTROL_PLANE + (build.NODE if with_node else []), log=say)
        state = {
            "ports": {
                "etcd": procs.free_port(),
                "etcd_peer": procs.free_port(),
                "apiserver": procs.free_port(),
                "controller_manager": procs.free_port(),
            },
            "pids": {},
            "kubeconfig": str(KUBECONFIG),
            "version": build.KUBE_VERSION,
            "node": with_node,
        }
        save_state(state)
        with phase("certificates and kubeconfigs"):
            make_pki(_ports(state), with_node)
        if with_node:
            with phase("node network: bridge, firewall, sysctls"):
                network.firewall_up()  # before forwarding is switched on
                network.bridge_up()
                state["sysctls"] = network.sysctls_set()
                state["netns_before"] = sorted(node.netns_names())
                save_state(state)
        with phase("etcd"):
            start_etcd(state)
        with phase("kube-apiserver"):
            start_apiserver(state)
        with phase("kube-controller-manager"):
            start_controller_manager(state)
        with phase("ServiceAccounts"):
            wait_service_accounts()
        if with_node:
            start_node(state)
        state["server"] = f"https://127.0.0.1:{_ports(state)['apiserver']}"
        save_state(state)
        say(f"ready: export KUBECONFIG={KUBECONFIG}")
        return {**state, "reused": False}


def _down(state: dict[str, object]) -> None:
    if state.get("node"):
        stop_node(state)
    # Stop in reverse start order, so nothing writes to an etcd that is gone.
    for name in reversed(list(_pids(state))):
        if _stop(state, name):
            say(f"stopped {name}")
    shutil.rmtree(STATE_DIR, ignore_errors=True)


def down() -> None:
    with locked():
        state = load_state()
        if not state and not STATE_DIR.exists():
            say("no cluster state: nothing to stop")
            return
        _down(state)
        say("down: every process stopped, state removed")


# -- the node -------------------------------------------------------------------------------------------------


def start_node(state: dict[str, object]) -> None:
    ports = _ports(state)
    for name in ("kubelet", "kubelet_healthz", "scheduler", "proxy_healthz", "proxy_metrics"):
        ports[name] = procs.free_port()
    state["ports"] = ports
    with phase("API server forwarder on the bridge (pods -> 10.96.0.1 -> the API server)"):
        socat = shutil.which("socat") or "socat"
        argv = [
            socat,
            f"TCP-LISTEN:{ports['apiserver']},bind={network.NODE_IP},fork,reuseaddr",
            f"TCP:127.0.0.1:{ports['apiserver']}",
        ]
        _spawn(state, "apiserver-forwarder", argv)
    with phase("kube-scheduler"):
        kubeconfig = STATE_DIR / "kube-scheduler.kubeconfig"
        log = _spawn(state, "kube-scheduler", [
            str(BIN / "kube-scheduler"), f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
            f"--secure-port={ports['scheduler']}", "--leader-elect=false", "--v=1",
        ])  # fmt: skip
        url = f"https://127.0.0.1:{ports['scheduler']}/healthz"
        procs.wait_until("kube-scheduler /healthz", lambda: procs.https_get_insecure(url) == 200, 60, log)
    with phase("containerd (Debian's, a separate instance) with runc and the CNI plugins"):
        network.cni_config(STATE_DIR / "cni" / "net.d")
        log = LOGS / "containerd.log"
        state.setdefault("pids", {})["containerd"] = [
            node.start_containerd(STATE_DIR, log),
            shutil.which("containerd"),
        ]  # type: ignore[index]
        save_state(state)
    with phase("node images (pause from source, CoreDNS, Redis, exporter, the project's) into containerd"):
        load_node_images()
    with phase("kubelet"):
        config = node.kubelet_config(STATE_DIR, PKI, ports["kubelet"], ports["kubelet_healthz"])
        log = _spawn(state, "kubelet", [
            str(BIN / "kubelet"), f"--config={config}", f"--kubeconfig={STATE_DIR / 'kubelet.kubeconfig'}",
            f"--root-dir={STATE_DIR / 'kubelet'}", f"--cert-dir={STATE_DIR / 'kubelet-certs'}",
            f"--hostname-override={node.NODE_NAME}", f"--node-ip={network.NODE_IP}", "--v=1",
        ])  # fmt: skip
        node.wait_node_ready(kubectl, log)
    with phase("kube-proxy (iptables mode)"):
        config = node.kube_proxy_config(
            STATE_DIR, STATE_DIR / "kube-proxy.kubeconfig", ports["proxy_healthz"], ports["proxy_metrics"]
        )
        log = _spawn(state, "kube-proxy", [str(BIN / "kube-proxy"), f"--config={config}", "--v=1"])
        url = f"http://127.0.0.1:{ports['proxy_healthz']}/healthz"
        procs.wait_until("kube-proxy /healthz", lambda: procs.http_get(url) == 200, 60, log)
    with phase("CoreDNS (cluster names only, no upstream)"):
        kubectl("apply", "-f", "-", input=node.coredns_manifest())
        kubectl("rollout", "status", "-n", "kube-system", "deployment/coredns", "--timeout=120s", timeout=150)
    save_state(state)


def load_node_images() -> None:
    """Everything the node runs, from the local Docker Engine only (scripts/images.py starts one if needed)."""
    host = images.engine()
    base = images.base_image(host)
    refs = [
        node.pause_image(host, build.kube_source()),
        node.coredns_image(host, BIN / "coredns"),
        *node.chart_images(host, base),
    ]
    tag = images.version()
    for name in images.IMAGES:
        if images.has_image(f"{name}:{tag}", host):
            refs.append(f"{name}:{tag}")
    node.load_images(STATE_DIR, host, refs)


# The node's bridge, addresses and firewall chains are machine-wide: one node per machine, whatever checkout or
# state directory asks for it. The claim names the state directory that holds it.
NODE_CLAIM = Path("/run/mobius-cache-node")


def claim_the_node() -> None:
    holder = NODE_CLAIM.read_text().strip() if NODE_CLAIM.exists() else ""
    theirs = procs.read_json(Path(holder) / "state.json") if holder else {}
    if holder and holder != str(STATE_DIR) and theirs.get("node") and _alive(theirs, "kubelet"):
        raise SystemExit(
            f"[cluster] this machine's node belongs to the cluster in {holder} (one node per machine: its "
            f"bridge, addresses and firewall rules are machine-wide); take that one down first "
            f"(MOBIUS_CLUSTER_DIR={holder} scripts/cluster/cluster.py down)"
        )
    NODE_CLAIM.write_text(str(STATE_DIR))


def holds_the_node() -> bool:
    """No claim, or ours: then the machine-wide network state is this cluster's to remove."""
    return not NODE_CLAIM.exists() or NODE_CLAIM.read_text().strip() == str(STATE_DIR)


def release_the_node() -> None:
    if NODE_CLAIM.exists() and NODE_CLAIM.read_text().strip() == str(STATE_DIR):
        NODE_CLAIM.unlink()


def stop_node(state: dict[str, object]) -> None:
    """Everything the node made: containers, processes, mounts, network namespaces, rules, bridge, sysctls."""
    for name in ("kube-proxy", "kubelet", "kube-scheduler"):
        if _stop(state, name):
            say(f"stopped {name}")
    node.kill_containers(STATE_DIR)  # before containerd, which they would outlive
    if _stop(state, "containerd"):
        say("stopped containerd")
    node.kill_shims(STATE_DIR)
    _stop(state, "apiserver-forwarder")
    state["pids"] = {k: v for k, v in _pids(state).items() if k not in NODE}
    if not holds_the_node():
        say(
            "this cluster does not hold the machine's node: its network (bridge, rules, sysctls) is left alone"
        )
        node.unmount_under(STATE_DIR)
        return
    proxy = BIN / "kube-proxy"
    if proxy.exists():  # kube-proxy's own cleanup of its KUBE-* chains
        subprocess.run([str(proxy), "--cleanup"], capture_output=True, check=False)
    node.unmount_under(STATE_DIR)
    node.remove_netns(node.netns_names() - set(state.get("netns_before", [])))  # type: ignore[arg-type]
    network.bridge_down()
    network.sysctls_restore(dict(state.get("sysctls", {})))  # type: ignore[arg-type]
    network.firewall_down()
    node.remove_cgroups()
    release_the_node()
    say("node down: containers, mounts, network namespaces, bridge, rules and sysctls removed")


MONITORING_CRDS = ("servicemonitors", "podmonitors", "prometheusrules")


def monitoring_crds() -> None:
    """The real CRDs of the monitoring objects the chart renders, from the release pinned in monitoring/go.mod."""
    source = build.module_source("monitoring", "github.com/prometheus-operator/prometheus-operator")
    folder = source / "example" / "prometheus-operator-crd"
    for name in MONITORING_CRDS:
        kubectl("apply", "--server-side", "-f", str(folder / f"monitoring.coreos.com_{name}.yaml"))
    for name in MONITORING_CRDS:
        kubectl("wait", "--for=condition=Established", f"crd/{name}.monitoring.coreos.com", "--timeout=30s")
    say(f"applied the monitoring.coreos.com CRDs: {', '.join(MONITORING_CRDS)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cluster.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command", choices=["up", "down", "status", "build", "monitoring-crds", "load-images"]
    )
    parser.add_argument(
        "images", nargs="*", help="with `load-images`: image references (from the Docker Engine)"
    )
    parser.add_argument("--node", action="store_true", help="with `up`: also run one node (root only)")
    args = parser.parse_args(argv)
    if args.command == "monitoring-crds":
        monitoring_crds()
        return 0
    if args.command == "load-images":
        if not load_state().get("node"):
            raise SystemExit("[cluster] load-images needs a running cluster with a node (up --node)")
        node.load_images(STATE_DIR, images.engine(), args.images)
        return 0
    if args.command == "build":
        build.build(build.CONTROL_PLANE + build.NODE, log=say)
        return 0
    if args.command == "down":
        down()
        return 0
    if args.command == "up":
        state = up(with_node=args.node)
        print(json.dumps(state, indent=2))
        return 0
    state = load_state()
    ok = bool(state) and running(state)
    print(json.dumps({"running": ok, **state}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
