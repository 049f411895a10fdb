"""``mobius-sidecar`` / ``python -m mobius_cache.server``: parse options, check them, run uvicorn.

Every option also comes from the environment (``MOBIUS_REDIS_URL``, ``MOBIUS_SIDECAR_HOST``, ...); an option
given on the command line wins. Configuration mistakes end the process at once with one clear line and exit
status 2, before the server starts (a port already in use too). SIGTERM is graceful: uvicorn stops accepting, finishes in-flight requests
(up to ``MOBIUS_SHUTDOWN_TIMEOUT``), then the lifespan closes the Redis pool.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from mobius_cache._config import CacheConfig

from .settings import SidecarSettings, UnsafeBindError

__all__ = ["main", "parse_args"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mobius-sidecar",
        description="Serve the mobius-cache layer over HTTP (default http://127.0.0.1:8787). "
        "Each option can also be set in the environment, shown in brackets.",
    )
    add = parser.add_argument
    add("--redis-url", help="Redis to use [MOBIUS_REDIS_URL, default redis://127.0.0.1:6379/0]")
    add("--host", help="address to bind [MOBIUS_SIDECAR_HOST, default 127.0.0.1]")
    add("--port", type=int, help="port to bind [MOBIUS_SIDECAR_PORT, default 8787]")
    add(
        "--metrics-port",
        type=int,
        help="also serve only /metrics and /healthz on this port, for Prometheus "
        "[MOBIUS_SIDECAR_METRICS_PORT, default off]",
    )
    add("--metrics-host", help="address of the metrics port [MOBIUS_SIDECAR_METRICS_HOST, default 0.0.0.0]")
    add(
        "--uds",
        help="also serve the API on this Unix domain socket, for apps in the same pod [MOBIUS_SIDECAR_UDS]",
    )
    add("--policy-file", help="policy written by the operator, hot-reloaded [MOBIUS_POLICY_FILE]")
    add(
        "--token",
        help="require 'Authorization: Bearer TOKEN' on /v1/* [MOBIUS_SIDECAR_TOKEN; prefer the env]",
    )
    add("--max-body-bytes", type=int, help="largest request body [MOBIUS_MAX_BODY_BYTES, default 1048576]")
    add("--tracing", action="store_true", default=None, help="OpenTelemetry spans [MOBIUS_TRACING]")
    add("--access-log", action="store_true", default=None, help="log every request [MOBIUS_ACCESS_LOG]")
    add("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="default info")
    return parser.parse_args(argv)


def _settings_from(args: argparse.Namespace) -> tuple[SidecarSettings, CacheConfig]:
    overrides: dict[str, Any] = {
        "sidecar_host": args.host,
        "sidecar_port": args.port,
        "sidecar_metrics_port": args.metrics_port,
        "sidecar_metrics_host": args.metrics_host,
        "sidecar_uds": args.uds,
        "policy_file": args.policy_file,
        "sidecar_token": args.token,
        "max_body_bytes": args.max_body_bytes,
        "tracing": args.tracing,
        "access_log": args.access_log,
    }
    settings = SidecarSettings(**{k: v for k, v in overrides.items() if v is not None})
    config = CacheConfig(redis_url=args.redis_url) if args.redis_url else CacheConfig()
    return settings, config


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors())


def _fail(message: str) -> NoReturn:
    print(f"mobius-sidecar: {message}", file=sys.stderr)
    sys.exit(2)


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket, so that a port in use is a clear one-line error before anything starts."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _bind_unix(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``: a stale socket file (a crashed sidecar's) is replaced, a live one
    or any other file is a clear error. Mode 0666: the socket is as reachable as the loopback port (by every
    container that mounts the directory), no more; the token, when set, applies on it as on TCP."""
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            _fail(f"cannot listen on {path}: it exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # nobody listens: left over from a previous run
            else:
                _fail(f"cannot listen on {path}: another process is serving on it")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o666)
    except OSError as exc:
        sock.close()
        _fail(f"cannot listen on {path}: {exc.strerror or exc}")
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        settings, config = _settings_from(args)
        settings.check_bind()
    except ValidationError as exc:
        _fail(f"invalid configuration: {_describe(exc)}")
    except UnsafeBindError as exc:
        _fail(str(exc))

    import uvicorn

    from .app import create_app
    from .front import ASGIApp

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    front = create_app(settings, config=config)
    app: ASGIApp = front
    sockets = [_bind(settings.sidecar_host, settings.sidecar_port)]
    if settings.sidecar_uds is not None:
        sockets.append(_bind_unix(settings.sidecar_uds))
        logging.getLogger("mobius_cache.server").info("also serving on unix:%s", settings.sidecar_uds)
    if settings.sidecar_metrics_port is not None:
        from .metrics_port import SplitByPort, metrics_only_app

        metrics_socket = _bind(settings.sidecar_metrics_host, settings.sidecar_metrics_port)
        sockets.append(metrics_socket)
        metrics_port = metrics_socket.getsockname()[1]
        app = SplitByPort(app, metrics_port=metrics_port, metrics_app=metrics_only_app(front.state.registry))
        logging.getLogger("mobius_cache.server").info(
            "metrics port %s:%s serves only /metrics and /healthz",
            settings.sidecar_metrics_host,
            metrics_port,
        )
    config_ = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=settings.access_log,
        log_level=args.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
        server_header=False,
        date_header=False,
        proxy_headers=False,  # loopback only: there is no proxy whose X-Forwarded-* headers to trust
    )
    uds = settings.sidecar_uds

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            try:
                await super().shutdown(sockets)
            finally:
                # Here, not after run(): uvicorn ends by re-raising the SIGTERM it caught.
                if uds is not None:
                    with contextlib.suppress(OSError):
                        uds.unlink()

    Server(config_).run(sockets=sockets)


if __name__ == "__main__":
    main()
