"""The bearer token on /v1/*, and the refusal to expose an unprotected cache."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from tests.servers import RedisServer
from tests.sidecar.procs import SidecarProcess


def test_token_protects_v1_only(
    shared_redis: RedisServer, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    proc = start_sidecar(shared_redis.url, token="s3cret-token")
    with proc.http(token="") as anonymous, proc.http(token="wrong") as wrong, proc.http() as good:
        for client in (anonymous, wrong):
            for method, path in (
                ("GET", "/v1/cache/a"),
                ("PUT", "/v1/cache/a"),
                ("GET", "/v1/stats"),
                ("POST", "/v1/batch/get"),
                ("HEAD", "/v1/cache/a"),
            ):
                resp = client.request(method, path)
                assert resp.status_code == 401, (method, path)
                assert resp.headers["www-authenticate"].startswith("Bearer")
                if method != "HEAD":
                    assert resp.json()["error"] == "unauthorized"
        assert good.put("/v1/cache/tok:a", content=b"1").status_code == 204
        assert good.get("/v1/cache/tok:a").status_code == 200
        # Probes, metrics and the API description stay open: kubelet and Prometheus carry no token.
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert anonymous.get(path).status_code == 200, path
        metrics = anonymous.get("/metrics").text
        assert 'route="/v1/*",status="401"' in metrics


def test_no_token_means_open_api(sidecar: SidecarProcess) -> None:
    with sidecar.http() as http:
        assert http.get("/v1/stats").status_code == 200


def test_cli_help_lists_every_option() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mobius_cache.server", "--help"], capture_output=True, text=True, timeout=30
    ).stdout
    for option in ("--redis-url", "--host", "--port", "--policy-file", "--token", "MOBIUS_SIDECAR_TOKEN"):
        assert option in out
