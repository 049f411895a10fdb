"""The images, built by a real Docker Engine (scripts/images.py) and run as Kubernetes will run them.

Containers run with `--network host` (they reach the test's redis-server on 127.0.0.1) or `--network none`,
as the non-root user of the image and with a read-only root filesystem, as the chart's security contexts ask.
"""

from __future__ import annotations

import json
import time

import httpx

from tests.kube.conftest import Images
from tests.servers import RedisServer, free_port


def test_the_sidecar_image_serves_the_cache_non_root_read_only(
    images: Images, redis_server: RedisServer
) -> None:
    port = free_port()
    name = f"sidecar-test-{port}"
    images.docker(
        "run", "-d", "--rm", "--name", name, "--network", "host", "--read-only",
        "-e", f"MOBIUS_REDIS_URL={redis_server.url}", "-e", f"MOBIUS_SIDECAR_PORT={port}",
        images.sidecar,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, images.docker("logs", name, check=False).stdout
            time.sleep(0.2)
        put = httpx.put(
            f"{base}/v1/cache/project:1:metadata?ttl=60",
            content=b'{"name": "Atlas"}',
            headers={"Content-Type": "application/json"},
        )
        assert put.status_code == 204, put.text
        got = httpx.get(f"{base}/v1/cache/project:1:metadata")
        assert (got.status_code, got.headers["x-cache"], got.json()) == (200, "hit", {"name": "Atlas"})
        with redis_server.client() as c:
            assert c.exists("mobius:project:1:metadata") == 1  # really in Redis, under the default prefix
        assert images.docker("exec", name, "id", "-u").stdout.strip() == "10001"
        # Nothing could be written anywhere on the root filesystem.
        touched = images.docker("exec", name, "touch", "/opt/mobius/x", check=False)
        assert touched.returncode != 0 and "Read-only file system" in touched.stderr
    finally:
        images.docker("rm", "-f", name, check=False)


def test_the_sidecar_image_refuses_a_non_loopback_bind_without_a_token(images: Images) -> None:
    proc = images.docker(
        "run", "--rm", "--network", "none", "--read-only", "-e", "MOBIUS_SIDECAR_HOST=0.0.0.0", images.sidecar,
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "token" in (proc.stdout + proc.stderr).lower()


def test_the_images_are_slim_non_root_and_separate(images: Images) -> None:
    for ref in (images.sidecar, images.operator):
        config = json.loads(images.docker("image", "inspect", ref).stdout)[0]["Config"]
        assert config["User"] == "10001:10001", ref
    # No operator code, no kopf, no pip and no compiler in the sidecar image; no HTTP server in the operator's.
    probe = "import importlib.util as u, shutil, sys; print([m for m in sys.argv[1:] if u.find_spec(m)], [t for t in ('pip', 'gcc', 'cc') if shutil.which(t)])"
    sidecar = images.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", images.sidecar, "-c", probe,
        "mobius_operator", "kopf", "pip", "mobius_cache", "fastapi",
    ).stdout.strip()  # fmt: skip
    assert sidecar == "['mobius_cache', 'fastapi'] []"
    operator = images.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", images.operator, "-c", probe,
        "mobius_operator", "kopf", "fastapi", "uvicorn", "pip",
    ).stdout.strip()  # fmt: skip
    assert operator == "['mobius_operator', 'kopf'] []"
