"""The generated OpenAPI document is true to the gateway: schemathesis finds no 5xx and no
response that breaks the document. Needs the ``gateway_stack`` fixture (tests/integration)."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

ROOT = Path(__file__).resolve().parents[2]
schema = schemathesis.openapi.from_path(ROOT / "apex" / "generated" / "openapi.json")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_gateway_conforms_to_the_generated_document(case, gateway_stack):
    case.call_and_validate(
        base_url=gateway_stack.url,
        headers={"X-API-Key": gateway_stack.api_key},
        verify=gateway_stack.ca_cert,
        timeout=60,
        checks=CHECKS,
    )
