"""`make run` (scripts/run-local.sh): a local Redis under .run/, the sidecar in the foreground, all stopped on exit."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_run_local_starts_and_stops_everything() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOBIUS_")}
    env["MOBIUS_SIDECAR_PORT"] = str(port)
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "run-local.sh")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = b""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        base = f"http://127.0.0.1:{port}"
        assert httpx.put(f"{base}/v1/cache/runlocal:x", content=b"1").status_code == 204
        assert httpx.get(f"{base}/v1/cache/runlocal:x").content == b"1"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    text = output.decode(errors="replace")
    assert f"http://127.0.0.1:{port}" in text and "curl" in text
    match = re.search(r"local redis-server on 127\.0\.0\.1:(\d+)", text)
    assert match, text
    assert "local redis-server stopped" in text
    assert not _listening(int(match.group(1)))
    assert not _listening(port)
