#!/usr/bin/env python3
"""The project's container images, built by a real Docker Engine on this machine (`make images`).

    scripts/images.py build          engine up (if none answers), base image, then both images (the default)
    scripts/images.py engine         only make sure a Docker Engine answers; JSON: its DOCKER_HOST, whether started
    scripts/images.py engine-down    stop the dockerd this script started (by PID)
    scripts/images.py env            print the DOCKER_HOST to use (empty when the default socket answers)

The engine: a Docker daemon that already answers is used as it is. Otherwise Debian's `dockerd` (package
docker.io, installed by scripts/ensure-system-deps.sh) is started with networking locked down
(`--bridge=none --iptables=false --ip-forward=false --ip-masq=false`: no docker0, no NAT, no forwarding), its
socket, state and images in ~/.cache/mobius-cache/docker/ (kept across runs and clones, like Go's build cache). Containers run
with `--network host` or `--network none` only; builds use `--network host` (pip reaches PyPI as the host does).

The base: the Dockerfiles take `ARG BASE_IMAGE` (default: the public slim Python image, pinned by digest). With no
registry to pull from, a minimal Debian 12 with python3 and python3-venv is made by debootstrap and imported as
`local/debian-python:bookworm` (once; about two minutes), and the images are built FROM it.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# One engine per machine user, shared by every checkout (a data root can serve one dockerd only): its images and
# build cache survive a fresh clone, as Go's build cache does.
RUN = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mobius-cache" / "docker"
DATA = RUN / "data"
SOCKET = RUN / "docker.sock"
PIDFILE = RUN / "dockerd.pid"
LOCAL_BASE = "local/debian-python:bookworm"
# The Dockerfiles' default; pulled only when a registry answers.
PUBLIC_BASE = (
    "python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5"
)
IMAGES = {"mobius/cache-sidecar": "sidecar/Dockerfile", "mobius/cache-operator": "operator/Dockerfile"}


def say(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def version() -> str:
    """The image tag: the project's version from pyproject.toml (the chart's appVersion matches it)."""
    match = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    if match is None:
        raise SystemExit("[images] no version in pyproject.toml")
    return match.group(1)


def docker_env(host: str | None) -> dict[str, str]:
    """This process's environment, pointed at ``host`` (None: the caller's own DOCKER_HOST or the default)."""
    env = dict(os.environ)
    if host:
        env["DOCKER_HOST"] = host
    return env


def docker(
    *args: str, host: str | None, check: bool = True, timeout: float | None = None, quiet: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args],
        env=docker_env(host),
        check=check,
        text=True,
        timeout=timeout,
        capture_output=quiet,
    )


def answers(host: str | None) -> bool:
    try:
        return (
            docker("info", "--format", "{{.ServerVersion}}", host=host, check=False, timeout=15).returncode
            == 0
        )
    except subprocess.TimeoutExpired:
        return False


def _our_dockerd_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text().strip())
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(argv0).name == "dockerd" else None


def engine() -> str | None:
    """A DOCKER_HOST that answers: the caller's (or the default socket), else our own locked-down dockerd."""
    ours = f"unix://{SOCKET}"
    if os.environ.get("DOCKER_HOST") != ours and answers(os.environ.get("DOCKER_HOST")):
        return os.environ.get("DOCKER_HOST")
    if _our_dockerd_pid() is not None and answers(ours):
        return ours
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise SystemExit(
            "[images] no Docker Engine: install Debian's docker.io (scripts/ensure-system-deps.sh does)"
        )
    RUN.mkdir(parents=True, exist_ok=True)
    DATA.mkdir(parents=True, exist_ok=True)
    SOCKET.unlink(missing_ok=True)
    log = RUN / "dockerd.log"
    say(f"starting dockerd (no bridge, no iptables, no forwarding); log {log}")
    with log.open("ab") as out:
        subprocess.Popen(
            [
                dockerd,
                "--bridge=none",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                f"--host={ours}",
                f"--data-root={DATA}",
                f"--exec-root={RUN / 'exec'}",
                f"--pidfile={PIDFILE}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if answers(ours):
            return ours
        time.sleep(0.3)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
    raise SystemExit(f"[images] dockerd did not answer within 60 s; last lines of {log}:\n{tail}")


def engine_down() -> None:
    pid = _our_dockerd_pid()
    if pid is None:
        say("no dockerd of ours is running")
        return
    os.kill(pid, 15)
    deadline = time.monotonic() + 30
    while _our_dockerd_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    # dockerd leaves its network-namespace (and data-root) mounts behind when it is stopped this way.
    for mount in reversed(mounts_under(RUN)):
        subprocess.run(["umount", mount], check=False, capture_output=True)
    say(f"stopped dockerd (pid {pid})")


def mounts_under(folder: Path) -> list[str]:
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    return [p for p in points if p == str(folder) or p.startswith(f"{folder}/")]


def has_image(ref: str, host: str | None) -> bool:
    return docker("image", "inspect", ref, host=host, check=False).returncode == 0


def base_image(host: str | None) -> str:
    """The public base when it is here or can be pulled; else the local Debian base (made once)."""
    if has_image(PUBLIC_BASE, host):
        return PUBLIC_BASE
    try:
        if docker("pull", PUBLIC_BASE, host=host, check=False, timeout=30).returncode == 0:
            return PUBLIC_BASE
    except subprocess.TimeoutExpired:
        pass
    if not has_image(LOCAL_BASE, host):
        make_local_base(host)
    return LOCAL_BASE


def make_local_base(host: str | None) -> None:
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise SystemExit(
            "[images] no registry answers and debootstrap is missing (apt-get install debootstrap)"
        )
    say(
        f"no registry answers: making {LOCAL_BASE} with debootstrap (minbase Debian 12 + python3; ~2 min, once)"
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mobius-base-", dir=RUN) as tmp:
        rootfs = Path(tmp) / "rootfs"
        result = subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                str(rootfs),
                "http://deb.debian.org/debian",
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise SystemExit(
                f"[images] debootstrap failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )
        # An image needs no package caches, docs or apt lists.
        for junk in (
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/locale",
        ):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "--change", 'CMD ["/bin/bash"]', "-", LOCAL_BASE],
            stdin=tar.stdout,
            env=docker_env(host),
            capture_output=True,
            text=True,
        )
        tar.wait()
        if imported.returncode != 0:
            raise SystemExit(f"[images] docker import failed: {imported.stderr}")
    say(f"{LOCAL_BASE} made in {time.monotonic() - started:.0f} s")


HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def build_image(host: str | None, base: str) -> str:
    """``base`` plus this machine's CA bundle, for the Dockerfiles' build stage only.

    Where HTTPS egress goes through a re-signing proxy, pip inside a build trusts only what the host trusts. The
    bundle lands in the build stage (tagged by its hash), never in the final images.
    """
    if not HOST_CA_BUNDLE.exists():
        return base
    bundle = HOST_CA_BUNDLE.read_bytes()
    ref = f"local/mobius-build-base:{hashlib.sha256(bundle + base.encode()).hexdigest()[:12]}"
    if has_image(ref, host):
        return ref
    with tempfile.TemporaryDirectory(prefix="mobius-build-base-") as tmp:
        (Path(tmp) / "ca-certificates.crt").write_bytes(bundle)
        (Path(tmp) / "Dockerfile").write_text(
            f"FROM {base}\n"
            "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n"
            "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n"
        )
        result = docker("build", "--network", "none", "-t", ref, tmp, host=host, check=False)
    if result.returncode != 0:
        raise SystemExit(f"[images] building {ref} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return ref


def build(host: str | None, tag: str) -> dict[str, str]:
    base = base_image(host)
    builder = build_image(host, base)
    built = {}
    for name, dockerfile in IMAGES.items():
        ref = f"{name}:{tag}"
        say(f"building {ref} from {dockerfile} on {base}")
        started = time.monotonic()
        result = docker(
            "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"BUILD_IMAGE={builder}",
            "-f", dockerfile, "-t", ref, ".",
            host=host, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise SystemExit(
                f"[images] building {ref} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        size = docker("image", "inspect", ref, "--format", "{{.Size}}", host=host).stdout.strip()
        say(f"{ref}: {int(size) / 1e6:.0f} MB, built in {time.monotonic() - started:.0f} s")
        built[name] = ref
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="images.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command", nargs="?", default="build", choices=["build", "engine", "engine-down", "env"]
    )
    parser.add_argument("--tag", default=None, help="image tag (default: the project version)")
    parser.add_argument("--json", action="store_true", help="print what was built as JSON on stdout")
    args = parser.parse_args(argv)
    RUN.mkdir(parents=True, exist_ok=True)
    with (RUN / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one engine start / build at a time (parallel test workers)
        if args.command == "engine-down":
            engine_down()
            return 0
        before = _our_dockerd_pid()
        host = engine()
        started = before is None and _our_dockerd_pid() is not None
        if args.command == "engine":
            print(json.dumps({"docker_host": host, "started": started}))
            return 0
        if args.command == "env":
            print(f"export DOCKER_HOST={host}" if host else "# the default Docker socket answers")
            return 0
        built = build(host, args.tag or version())
    if args.json:
        print(json.dumps({"docker_host": host, **built}))
    elif host:
        say(f"export DOCKER_HOST={host}   # to use these images with the docker CLI")
    return 0


if __name__ == "__main__":
    sys.exit(main())
