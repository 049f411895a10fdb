"""``mobius-sidecar``: the cache layer over HTTP on localhost (FastAPI + uvicorn). See docs/sidecar.md.

Importing this package starts nothing; :func:`create_app` builds the ASGI app and ``python -m
mobius_cache.server`` (or the ``mobius-sidecar`` command) runs it.
"""

from __future__ import annotations

from .app import create_app
from .settings import SidecarSettings

__all__ = ["SidecarSettings", "create_app"]
