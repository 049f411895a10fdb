#!/usr/bin/env python3
"""The project's real Kubernetes, on this machine: every component built from source at one pinned release.

    scripts/cluster/cluster.py up        start (or reuse) etcd + kube-apiserver + kube-controller-manager
    scripts/cluster/cluster.py status    print the state as JSON (exit 1 when not running)
    scripts/cluster/cluster.py down      stop every process `up` started (by PID) and remove the state
    scripts/cluster/cluster.py build     only build the pinned binaries into .tools/bin
    scripts/cluster/cluster.py monitoring-crds   apply the pinned prometheus-operator CRDs (ServiceMonitor, ...)

Everything listens on 127.0.0.1 (free ports, chosen at the first `up`); the state lives in .run/cluster/ and the
admin kubeconfig is .run/cluster/kubeconfig. `up` is idempotent: a running, healthy cluster is reused; a broken
one is taken down and started afresh. Each step is a named phase that logs what it does; a failure names the
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
import pki
import procs

ROOT = build.ROOT
BIN = build.BIN
STATE_DIR = Path(os.environ.get("MOBIUS_CLUSTER_DIR", ROOT / ".run" / "cluster"))
STATE = STATE_DIR / "state.json"
LOCK = STATE_DIR.parent / (STATE_DIR.name + ".lock")
PKI = STATE_DIR / "pki"
LOGS = STATE_DIR / "logs"
KUBECONFIG = STATE_DIR / "kubeconfig"

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager")


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
    if not all(
        name in pids and procs.is_ours(int(pids[name][0]), str(pids[name][1])) for name in CONTROL_PLANE
    ):  # type: ignore[call-overload]
        return False
    return apiserver_ready(state)


# -- phases of the control plane -----------------------------------------------------------------------------


def make_pki(ports: dict[str, int]) -> None:
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
    log = LOGS / "etcd.log"
    _pids(state)  # keep mypy quiet about the shape
    state.setdefault("pids", {})["etcd"] = [procs.spawn(argv, log), exe]  # type: ignore[index]
    save_state(state)
    procs.wait_until("etcd", lambda: procs.http_get(f"{client}/health") == 200, 30, log)


def start_apiserver(state: dict[str, object]) -> None:
    ports = _ports(state)
    exe = str(BIN / "kube-apiserver")
    argv = [
        exe,
        f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
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
    log = LOGS / "kube-apiserver.log"
    state.setdefault("pids", {})["kube-apiserver"] = [procs.spawn(argv, log), exe]  # type: ignore[index]
    save_state(state)
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
        "--leader-elect=false",
        "--v=1",
    ]
    log = LOGS / "kube-controller-manager.log"
    state.setdefault("pids", {})["kube-controller-manager"] = [procs.spawn(argv, log), exe]  # type: ignore[index]
    save_state(state)
    url = f"https://127.0.0.1:{ports['controller_manager']}/healthz"
    procs.wait_until(
        "kube-controller-manager /healthz", lambda: procs.https_get_insecure(url) == 200, 60, log
    )


def kubectl(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("kubectl", path=f"{BIN}:{os.environ.get('PATH', '')}") or "kubectl"
    return subprocess.run(
        [exe, f"--kubeconfig={KUBECONFIG}", *args],
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


def up() -> dict[str, object]:
    with locked():
        state = load_state()
        if state and running(state):
            say(f"reusing the running cluster (kubeconfig {KUBECONFIG})")
            return {**state, "reused": True}
        if state:
            say("a previous cluster is broken or half-stopped: taking it down first")
            _down(state)
        with phase("build the pinned binaries"):
            build.build(build.CONTROL_PLANE, log=say)
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
        }
        save_state(state)
        with phase("certificates and kubeconfigs"):
            make_pki(_ports(state))
        with phase("etcd"):
            start_etcd(state)
        with phase("kube-apiserver"):
            start_apiserver(state)
        with phase("kube-controller-manager"):
            start_controller_manager(state)
        with phase("ServiceAccounts"):
            wait_service_accounts()
        state["server"] = f"https://127.0.0.1:{_ports(state)['apiserver']}"
        save_state(state)
        say(f"ready: export KUBECONFIG={KUBECONFIG}")
        return {**state, "reused": False}


def _down(state: dict[str, object]) -> None:
    # Stop in reverse start order, so nothing writes to an etcd that is gone.
    pids = _pids(state)
    for name in reversed(list(pids)):
        pid, binary = pids[name]
        if procs.stop(int(pid), str(binary)):  # type: ignore[call-overload]
            say(f"stopped {name} (pid {pid})")
    shutil.rmtree(STATE_DIR, ignore_errors=True)


def down() -> None:
    with locked():
        state = load_state()
        if not state and not STATE_DIR.exists():
            say("no cluster state: nothing to stop")
            return
        _down(state)
        say("down: every process stopped, state removed")


MONITORING_CRDS = ("servicemonitors", "podmonitors", "prometheusrules")


def monitoring_crds() -> None:
    """The real CRDs of the monitoring objects the chart renders, from the release pinned in monitoring/go.mod."""
    out = subprocess.run(
        [build._go(), "mod", "download", "-json", "github.com/prometheus-operator/prometheus-operator"],
        cwd=Path(__file__).resolve().parent / "monitoring",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    folder = Path(json.loads(out)["Dir"]) / "example" / "prometheus-operator-crd"
    for name in MONITORING_CRDS:
        kubectl("apply", "--server-side", "-f", str(folder / f"monitoring.coreos.com_{name}.yaml"))
    for name in MONITORING_CRDS:
        kubectl("wait", "--for=condition=Established", f"crd/{name}.monitoring.coreos.com", "--timeout=30s")
    say(f"applied the monitoring.coreos.com CRDs: {', '.join(MONITORING_CRDS)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cluster.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "build", "monitoring-crds"])
    args = parser.parse_args(argv)
    if args.command == "monitoring-crds":
        monitoring_crds()
        return 0
    if args.command == "build":
        build.build(build.CONTROL_PLANE + build.NODE, log=say)
        return 0
    if args.command == "down":
        down()
        return 0
    if args.command == "up":
        state = up()
        print(json.dumps(state, indent=2))
        return 0
    state = load_state()
    ok = bool(state) and running(state)
    print(json.dumps({"running": ok, **state}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
