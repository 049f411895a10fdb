"""A real ``mobius-sidecar`` process (``python -m mobius_cache.server``) on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from mobius_cache.server.client import SidecarClient
from tests.servers import HOST, free_port


@dataclass
class SidecarProcess:
    redis_url: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    token: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkstemp(prefix="sidecar-", suffix=".log")[1])
    )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 20.0) -> SidecarProcess:
        self.port = self.port or free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOBIUS_")}
        env.update(self.env)
        cmd = [
            sys.executable,
            "-m",
            "mobius_cache.server",
            "--redis-url",
            self.redis_url,
            "--port",
            str(self.port),
        ]
        if self.token:
            env["MOBIUS_SIDECAR_TOKEN"] = self.token
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([*cmd, *self.args], env=env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"sidecar not up after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, token: str | None = None) -> SidecarClient:
        return SidecarClient(self.url, token=token if token is not None else self.token)

    def http(self, token: str | None = None) -> httpx.Client:
        token = token if token is not None else self.token
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=5.0)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(OSError):
            self.log_path.unlink()
