"""Property tests of the HTTP API against its own OpenAPI schema (schemathesis), on a real server.

Schemathesis reads /openapi.json from the running process and generates requests for every
operation, both schema-valid ones (positive) and deliberately invalid ones (negative: wrong
types, out-of-range values, missing required parts), multipart bodies of random bytes included.
Every answer must be documented by the schema (status code, content type, body shape) and none
may be a 5xx (503 is documented and fine: busy or not ready). Afterwards the server must be
healthy with its fds and temp files back to baseline.

(schemathesis.pytest.from_fixture reads a private pytest attribute that pytest 9 removed, so the
Hypothesis test is built per operation here instead.)

IMGCLS_SCHEMA_EXAMPLES sets the examples per operation (default 60).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(900)]
EXAMPLES = int(os.environ.get("IMGCLS_SCHEMA_EXAMPLES", "60"))
# "Schema-valid data must be accepted" cannot hold for uploads: the schema can say "binary", not
# "a decodable JPEG", so random bytes are rightly refused (400/413/415). Every other check runs.
EXCLUDED = [positive_data_acceptance]
OPERATIONS = [("POST", "/api/v1/classify"), ("GET", "/api/v1/models"), ("GET", "/api/v1/labels"),
              ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")]


@pytest.fixture(scope="module")
def api_schema(schema_server):
    return schemathesis.openapi.from_url(schema_server.url + "/openapi.json")


def test_schema_lists_the_operations_tested_here(api_schema):
    listed = {(method.upper(), path) for path, methods in api_schema.raw_schema["paths"].items() for method in methods}
    assert listed == set(OPERATIONS)


# Operations without parameters or body have no invalid form to generate: positive only.
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if p in ("/api/v1/classify", "/api/v1/labels")]


@pytest.mark.parametrize("method, path, mode", CASES, ids=[f"{m}-{p}-{g.value}" for m, p, g in CASES])
def test_operation_conforms_to_the_schema(api_schema, schema_server, method, path, mode):
    operation = api_schema[path][method]
    seen: dict[int, int] = {}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        response = case.call_and_validate(base_url=schema_server.url, timeout=60, excluded_checks=EXCLUDED)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500 or response.status_code == 503, response.text[:300]

    check()
    print(mode.value, method, path, dict(sorted(seen.items())))


def test_server_is_clean_after_the_property_tests(schema_server):
    schema_server.assert_clean()
