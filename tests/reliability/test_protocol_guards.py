"""The bad-input catalogue, part 3: protocol — methods, readiness, DNS rebinding, cross-site
requests, API keys, and paths a client might try to turn into files or model loads."""

from __future__ import annotations

import httpx
import pytest

from rel_catalogue import record
from rel_server import CATALOGUE_ARGS, CLASSIFY, expect_error, head, raw_exchange

pytestmark = pytest.mark.timeout(300)
SECTION = "Protocol"


@pytest.fixture(scope="module")
def jpeg(dev_photos) -> bytes:
    return dev_photos[0].read_bytes()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_on_classify(rel_server, method):
    with httpx.Client(base_url=rel_server.url, timeout=30) as client:
        response = client.request(method, CLASSIFY)
    expect_error(rel_server, SECTION, f"{method} on the classify endpoint", response, {405}, "method_not_allowed")


def test_request_before_the_models_are_loaded(start_rel_server, jpeg):
    # IMGCLS_TEST_WARMUP_DELAY_S (a documented test hook of `imgcls serve`) holds readiness back.
    server = start_rel_server(CATALOGUE_ARGS, env={"IMGCLS_TEST_WARMUP_DELAY_S": "8"}, wait="listening")
    server.take_baseline()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        ready = client.get("/readyz")
        health = client.get("/healthz")
        early = client.post(CLASSIFY, files={"file": ("a.jpg", jpeg)})
    expect_error(server, SECTION, "/readyz before the models are loaded", ready, {503}, "not_ready")
    record(SECTION, "/healthz before the models are loaded", "200", str(health.status_code))
    assert health.status_code == 200
    expect_error(server, SECTION, "classify before the models are loaded", early, {503}, "not_ready",
                 note=f"Retry-After: {early.headers.get('retry-after')}")
    assert int(early.headers["retry-after"]) >= 1
    server.wait_ready()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.post(CLASSIFY, files={"file": ("a.jpg", jpeg)}).status_code == 200


HOSTS = {
    "Host: evil.example (DNS rebinding)": "evil.example",
    "Host: 127.0.0.1.evil.example": "127.0.0.1.evil.example",
    "Host: localhost@evil.example": "localhost@evil.example",
    "Host: evil.example with the server's port": None,  # filled with the port below
}


@pytest.mark.parametrize("case", list(HOSTS))
def test_foreign_host_header_is_refused(rel_server, case):
    host = HOSTS[case] or f"evil.example:{rel_server.port}"
    response = raw_exchange(rel_server.port, head("GET", rel_server.port, "/api/v1/models", host=host), b"")
    expect_error(rel_server, SECTION, case, response, {421}, "host_not_allowed")


def test_missing_host_header_is_refused(rel_server):
    request = b"GET /api/v1/models HTTP/1.0\r\n\r\n"
    response = raw_exchange(rel_server.port, request, b"")
    expect_error(rel_server, SECTION, "no Host header (HTTP/1.0)", response, {421}, "host_not_allowed")


def test_probes_answer_any_host(rel_server):
    response = raw_exchange(rel_server.port, head("GET", rel_server.port, "/healthz", host="evil.example"), b"")
    record(SECTION, "/healthz with a foreign Host", "200 (probes exempt)", str(response.status))
    assert response.status == 200


ORIGINS = {
    "Origin: http://evil.example": {"Origin": "http://evil.example"},
    "Origin: null (sandboxed frame, file://)": {"Origin": "null"},
    "Origin: same host, other port": None,  # filled below
    "Sec-Fetch-Site: cross-site": {"Sec-Fetch-Site": "cross-site"},
}


@pytest.mark.parametrize("case", list(ORIGINS))
def test_cross_site_requests_are_refused(rel_server, jpeg, case):
    headers = ORIGINS[case] or {"Origin": f"http://127.0.0.1:{rel_server.port + 1}"}
    with httpx.Client(base_url=rel_server.url, timeout=30) as client:
        response = client.post(CLASSIFY, files={"file": ("a.jpg", jpeg)}, headers=headers)
    expect_error(rel_server, SECTION, f"cross-site POST, {case}", response, {403}, "cross_origin")


def test_same_origin_post_is_accepted(rel_server, jpeg):
    with httpx.Client(base_url=rel_server.url, timeout=60) as client:
        response = client.post(CLASSIFY, files={"file": ("a.jpg", jpeg)}, headers={"Origin": rel_server.url})
    record(SECTION, "same-origin POST (the web UI)", "200", str(response.status_code))
    assert response.status_code == 200


@pytest.mark.parametrize("case, params", [
    ("model=/etc/passwd", {"model": "/etc/passwd"}),
    ("model=http://evil.example/model.onnx", {"model": "http://evil.example/model.onnx"}),
    ("model=../../.cache/test-home", {"model": "../../.cache/test-home"}),
])
def test_no_model_is_loaded_from_a_client_path_or_url(rel_server, jpeg, case, params):
    with httpx.Client(base_url=rel_server.url, timeout=30) as client:
        response = client.post(CLASSIFY, params=params, files={"file": ("a.jpg", jpeg)})
    expect_error(rel_server, SECTION, case, response, {404}, "unknown_model")


@pytest.mark.parametrize("path", ["/static/../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                                  "/static/..%2f..%2fserver%2fapp.py"])
def test_static_path_traversal(rel_server, path):
    response = raw_exchange(rel_server.port, head("GET", rel_server.port, path), b"")
    expect_error(rel_server, SECTION, f"GET {path}", response, {400, 404})
    assert b"root:" not in response.body and b"import" not in response.body


@pytest.fixture(scope="module")
def keyed_server(start_rel_server):
    server = start_rel_server([*CATALOGUE_ARGS, "--api-key", "k3y-for-reliability-tests"])
    server.take_baseline()
    return server


@pytest.mark.parametrize("case, headers", [
    ("API key missing", {}),
    ("API key wrong", {"X-API-Key": "not-the-key"}),
    ("API key with an extra character", {"X-API-Key": "k3y-for-reliability-testsX"}),
    ("API key empty", {"X-API-Key": ""}),
    ("Bearer token wrong", {"Authorization": "Bearer not-the-key"}),
    ("Basic auth instead of the key", {"Authorization": "Basic azN5OmZvcg=="}),
])
def test_wrong_or_missing_api_key(keyed_server, jpeg, case, headers):
    with httpx.Client(base_url=keyed_server.url, timeout=30) as client:
        response = client.post(CLASSIFY, files={"file": ("a.jpg", jpeg)}, headers=headers)
    expect_error(keyed_server, SECTION, case, response, {401}, "unauthorized")
    assert response.headers.get("www-authenticate", "").startswith("Bearer")


def test_right_api_key_and_open_probes(keyed_server, jpeg):
    with httpx.Client(base_url=keyed_server.url, timeout=60) as client:
        ok = client.post(CLASSIFY, files={"file": ("a.jpg", jpeg)}, headers={"X-API-Key": "k3y-for-reliability-tests"})
        health = client.get("/healthz")
    record(SECTION, "right API key; /healthz without one", "200; 200", f"{ok.status_code}; {health.status_code}")
    assert ok.status_code == 200 and health.status_code == 200
