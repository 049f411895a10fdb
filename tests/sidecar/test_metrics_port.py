"""The optional metrics listener: /metrics and /healthz for Prometheus, never the API, and no token needed.

The metrics socket is bound to 127.0.0.2 here (the house rule: tests bind loopback only; the default 0.0.0.0 is
checked on the settings). A second loopback address also shows that the API stays on 127.0.0.1 alone.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from mobius_cache.server.settings import SidecarSettings, UnsafeBindError
from tests.servers import RedisServer, free_port
from tests.sidecar.procs import SidecarProcess

METRICS_HOST = "127.0.0.2"


def _refused(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) != 0


def test_metrics_port_serves_metrics_only(
    shared_redis: RedisServer, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    metrics_port = free_port()
    proc = start_sidecar(
        shared_redis.url,
        token="api-token",
        args=["--metrics-port", str(metrics_port)],
        env={"MOBIUS_SIDECAR_METRICS_HOST": METRICS_HOST},
    )
    with proc.http() as api:
        assert api.put("/v1/cache/mport:a", content=b"1").status_code == 204
        assert api.get("/v1/cache/mport:a").status_code == 200

    with httpx.Client(base_url=f"http://{METRICS_HOST}:{metrics_port}", timeout=5.0) as scraper:
        # No token: Prometheus carries none. Same registry as the API's own /metrics.
        metrics = scraper.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'mobius_sidecar_http_requests_total{method="PUT",route="/v1/cache/{key}",status="204"}' in (
            metrics.text
        )
        assert "mobius_cache_requests_total" in metrics.text
        assert scraper.get("/healthz").json() == {"status": "ok"}
        assert scraper.head("/metrics").status_code == 200

        # Nothing of the API is reachable there, with or without the token.
        bearer = {"authorization": "Bearer api-token"}
        for method, path in (
            ("GET", "/v1/cache/mport:a"),
            ("HEAD", "/v1/cache/mport:a"),
            ("PUT", "/v1/cache/mport:b"),
            ("DELETE", "/v1/cache/mport:a"),
            ("POST", "/v1/invalidate"),
            ("GET", "/v1/stats"),
            ("GET", "/readyz"),
            ("GET", "/docs"),
            ("GET", "/openapi.json"),
        ):
            resp = scraper.request(method, path, headers=bearer, content=b"x" if method == "PUT" else None)
            assert resp.status_code == 404, (method, path)
            if method != "HEAD":
                assert resp.json()["error"] == "not_found"
        resp = scraper.post("/metrics")
        assert resp.status_code == 405 and resp.headers["allow"] == "GET, HEAD"

    with proc.http() as api:
        assert api.get("/v1/cache/mport:a").status_code == 200, "the DELETE on the metrics port did nothing"
        assert api.get("/v1/cache/mport:b").status_code == 404, "the PUT on the metrics port stored nothing"
        assert api.get("/metrics").status_code == 200, "the API keeps its own /metrics"
    # The API listens on 127.0.0.1 only; the metrics port on its own address only.
    assert _refused(METRICS_HOST, proc.port)
    assert _refused("127.0.0.1", metrics_port)
    assert f"metrics port {METRICS_HOST}:{metrics_port}" in proc.log()


def test_metrics_port_is_off_by_default(sidecar: SidecarProcess) -> None:
    assert SidecarSettings().sidecar_metrics_port is None
    assert "metrics port" not in sidecar.log()


def test_metrics_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBIUS_SIDECAR_METRICS_PORT", "9787")
    settings = SidecarSettings()
    assert (settings.sidecar_metrics_port, settings.sidecar_metrics_host) == (9787, "0.0.0.0")
    settings.check_bind()  # 0.0.0.0 for metrics needs no token: the API stays on loopback
    monkeypatch.setenv("MOBIUS_SIDECAR_METRICS_PORT", "")
    assert SidecarSettings().sidecar_metrics_port is None
    with pytest.raises(UnsafeBindError, match="also the API port"):
        SidecarSettings(sidecar_port=9000, sidecar_metrics_port=9000).check_bind()
    with pytest.raises(UnsafeBindError, match="no token"):
        SidecarSettings(sidecar_host="0.0.0.0", sidecar_metrics_port=9000).check_bind()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics-port", "8787", "--port", "8787"], "also the API port"),
        (["--metrics-port", "70000"], "less than or equal to 65535"),
    ],
)
def test_bad_metrics_options_fail_fast(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mobius_cache.server", *args], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_metrics_port_in_use_is_a_clear_error(shared_redis: RedisServer) -> None:
    with socket.socket() as taken:
        taken.bind((METRICS_HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "mobius_cache.server",
                "--redis-url",
                shared_redis.url,
                "--port",
                str(free_port()),
                "--metrics-host",
                METRICS_HOST,
                "--metrics-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 2
    assert f"cannot listen on {METRICS_HOST}:{port}: Address already in use" in proc.stderr
