"""``mobius-sidecar``: the cache layer over HTTP on localhost (FastAPI + uvicorn). See docs/sidecar.md.

Importing this package starts nothing and loads nothing heavy (the CLI answers ``--help`` and configuration
errors without importing FastAPI); :func:`create_app` builds the ASGI app, and ``python -m
mobius_cache.server`` (or the ``mobius-sidecar`` command) runs it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SidecarSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "SidecarSettings":
        from .settings import SidecarSettings

        return SidecarSettings
    raise AttributeError(name)
