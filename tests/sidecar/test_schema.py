"""Schemathesis against a live sidecar: no 5xx, and every reply (status, headers, body) as documented.

The schema is built at import from the app factory (``schemathesis.pytest.from_fixture`` does not work with
this pytest version); a test checks it is exactly what the running sidecar serves at /openapi.json.
"""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, settings

from mobius_cache.server.app import create_app
from mobius_cache.server.settings import SidecarSettings
from tests.sidecar.procs import SidecarProcess


def _document() -> dict[str, Any]:
    app = create_app(SidecarSettings())
    doc: dict[str, Any] = app.app.openapi()  # type: ignore[attr-defined]
    return doc


DOCUMENT = _document()
# 412 is the documented answer to a failed If-Match/If-None-Match; 400 to what a schema cannot express (a key
# whose UTF-8 form exceeds 512 bytes, If-Match together with If-None-Match).
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ["2XX", "304", "400", "404", "412"]}}}
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


def test_served_document_is_the_tested_one(sidecar: SidecarProcess) -> None:
    assert httpx.get(f"{sidecar.url}/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case: schemathesis.Case, sidecar: SidecarProcess) -> None:
    case.call_and_validate(base_url=sidecar.url, timeout=10)
