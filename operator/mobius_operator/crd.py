"""The CacheConfig CRD as package data: ``crds/cacheconfig.yaml`` is the one file the chart links to."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, cast

import yaml

__all__ = ["crd_path", "load_crd", "spec_schema"]


def crd_path() -> Path:
    """The CRD file inside the installed package (a real file: the package is never zipped)."""
    return Path(str(resources.files("mobius_operator") / "crds" / "cacheconfig.yaml"))


def load_crd() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(crd_path().read_text(encoding="utf-8")))


def spec_schema(version: str = "v1alpha1") -> dict[str, Any]:
    """The ``openAPIV3Schema`` of one served version."""
    for entry in load_crd()["spec"]["versions"]:
        if entry["name"] == version:
            return cast(dict[str, Any], entry["schema"]["openAPIV3Schema"])
    raise KeyError(f"the CRD has no version {version!r}")
