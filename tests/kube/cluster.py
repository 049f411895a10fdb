"""The tests' handle on the real Kubernetes that scripts/cluster/cluster.py runs: kubectl, helm and the REST API.

Nothing here knows how Kubernetes is built or started; ``Cluster.up()`` asks the script, which reuses a running
cluster. Every call goes to 127.0.0.1 with the admin credentials unless a kubeconfig is given.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster" / "cluster.py"
BIN = ROOT / ".tools" / "bin"
CHART = ROOT / "charts" / "mobius-cache"

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (and the last value seen)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@dataclass(frozen=True)
class Cluster:
    """A running cluster: its admin kubeconfig, API server address and the admin's client certificate."""

    kubeconfig: Path
    server: str
    pki: Path

    @classmethod
    def up(cls, *, node: bool = False, state_dir: Path | None = None) -> Cluster:
        """The cluster of ``state_dir`` (default .run/cluster), with a node when asked (the script reuses it)."""
        env = dict(os.environ)
        if state_dir is not None:
            env["MOBIUS_CLUSTER_DIR"] = str(state_dir)
        argv = [sys.executable, str(SCRIPT), "up", *(["--node"] if node else [])]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/cluster/cluster.py up failed:\n{proc.stderr[-3000:]}")
        state = json.loads(proc.stdout)
        kubeconfig = Path(state["kubeconfig"])
        return cls(kubeconfig=kubeconfig, server=state["server"], pki=kubeconfig.parent / "pki")

    # -- commands ------------------------------------------------------------------------------------------------
    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(kubeconfig or self.kubeconfig)
        env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
        for kind in ("CACHE", "CONFIG", "DATA"):
            env[f"HELM_{kind}_HOME"] = str(ROOT / ".tools" / "helm" / kind.lower())
        return env

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(BIN / "kubectl"), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(kubeconfig),
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(BIN / "helm"), *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def apply(self, *objects: Mapping[str, Any], namespace: str | None = None) -> None:
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, input=yaml.safe_dump_all([dict(o) for o in objects]))

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
        proc = self.kubectl(*args, check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise AssertionError(f"kubectl get {kind} {name}: {proc.stderr.strip()}")
        return dict(json.loads(proc.stdout))

    def items(
        self, kind: str, namespace: str | None = None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        args = ["get", kind, "-o", "json"]
        args += ["-n", namespace] if namespace else ["-A"]
        if selector:
            args += ["-l", selector]
        return list(json.loads(self.kubectl(*args).stdout)["items"])

    # -- the REST API, for what kubectl hides (exact status codes and messages) --------------------------------
    def api(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return httpx.Client(base_url=self.server, verify=context, timeout=30)

    def token(self, service_account: str, namespace: str, seconds: int = 3600) -> str:
        """A ServiceAccount token from the TokenRequest API (what a pod's projected volume holds)."""
        proc = self.kubectl("create", "token", service_account, "-n", namespace, f"--duration={seconds}s")
        return proc.stdout.strip()

    def kubeconfig_for(self, service_account: str, namespace: str, path: Path) -> Path:
        """A kubeconfig that authenticates as ``service_account`` with a TokenRequest token."""
        token = self.token(service_account, namespace)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "c",
                    "cluster": {"server": self.server, "certificate-authority": str(self.pki / "ca.crt")},
                }
            ],
            "users": [{"name": service_account, "user": {"token": token}}],
            "contexts": [
                {"name": "sa", "context": {"cluster": "c", "user": service_account, "namespace": namespace}}
            ],
            "current-context": "sa",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return [e for e in self.items("events", namespace) if e.get("involvedObject", {}).get("name") == name]
