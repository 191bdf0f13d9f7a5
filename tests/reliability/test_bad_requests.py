"""The bad-input catalogue, part 1: broken bodies, broken multipart, lying and slow clients.

Every request goes over a raw socket to the real server process (rel_server fixture, 20 MB cap,
4 s body/header deadline). Every case must get a JSON error with the right status and a plain
message, within a bounded time; afterwards /healthz answers and the server's open fds and
temp files are back to baseline (RelServer.assert_clean).
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from rel_catalogue import record
from rel_server import BODY_TIMEOUT_S, CATALOGUE_ARGS, CLASSIFY, expect_error, head, multipart, raw_exchange

pytestmark = pytest.mark.timeout(300)
SECTION = "Body and multipart"
CONNECTION = "Connection"
MB = 1024 * 1024


def post_raw(server, body: bytes, content_type: str | None, extra: dict | None = None, **kwargs):
    headers = {"Content-Type": content_type} if content_type is not None else {}
    headers["Content-Length"] = str(len(body))
    headers.update(extra or {})
    return raw_exchange(server.port, head("POST", server.port, headers=headers), body, **kwargs)


@pytest.fixture(scope="module")
def jpeg(dev_photos) -> bytes:
    return dev_photos[0].read_bytes()


# -- simple cases: one request, one expected answer ----------------------------------------------
def _cases(jpeg: bytes):
    empty_file = multipart([("file", b"empty.jpg", b"")])
    text_only = multipart([("comment", None, b"hello")])
    wrong_field = multipart([("image", b"photo.jpg", jpeg)])
    too_many_files = multipart([("file", f"f{i}.jpg".encode(), b"x") for i in range(33)])
    no_end = multipart([("file", b"a.jpg", jpeg)])[0][:-30], multipart([])[1]
    return [
        ("zero-byte file", {400}, "empty_file", *empty_file),
        ("no 'file' field (text field only)", {422}, "missing_file", *text_only),
        ("wrong field name ('image')", {422}, "missing_file", *wrong_field),
        ("raw text body, Content-Type image/jpeg", {415}, "unsupported_media_type", b"not a picture\n" * 50,
         "image/jpeg"),
        ("raw zero-byte body, no Content-Type", {400}, "empty_file", b"", None),
        ("JSON body", {415}, "unsupported_media_type", b'{"image": "aGVsbG8="}', "application/json"),
        ("urlencoded form", {415}, "unsupported_media_type", b"file=abc", "application/x-www-form-urlencoded"),
        ("multipart without boundary", {400}, "malformed_multipart", b"--x\r\n\r\n", "multipart/form-data"),
        ("multipart, garbage body", {400}, "malformed_multipart", b"no boundary here " * 50,
         "multipart/form-data; boundary=abc"),
        ("multipart, no closing boundary", {400}, "malformed_multipart", *no_end),
        ("33 files (limit 32)", {400}, "too_many_files", *too_many_files),
    ]


CASE_NAMES = [c[0] for c in _cases(b"")]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_simple_bad_bodies(rel_server, jpeg, name):
    _, expected, code, body, content_type = next(c for c in _cases(jpeg) if c[0] == name)
    response = post_raw(rel_server, body, content_type)
    expect_error(rel_server, SECTION, name, response, expected, code, max_seconds=10)


# -- pathological headers and bodies -------------------------------------------------------------
PATHOLOGICAL_CONTENT_TYPES = {
    "12,000 parameters (60 KB)": "multipart/form-data; " + "a=b; " * 12000,
    "backslash-quote storm": 'multipart/form-data; boundary="' + '\\"' * 240 + '"',
    "300-char boundary": "multipart/form-data; boundary=" + "x" * 300,
    "400 semicolons": "multipart/form-data" + ";" * 400,
    "unterminated quotes": 'multipart/form-data; boundary="' + "a" * 200 + '; x="' * 30,
    "non-ASCII bytes": "multipart/form-data; boundary=\xff\xfe\xfd" + "\xe9" * 100,
}


@pytest.mark.parametrize("label", list(PATHOLOGICAL_CONTENT_TYPES))
def test_pathological_content_type_is_answered_fast(rel_server, jpeg, label):
    body, _ = multipart([("file", b"a.jpg", jpeg[:2000])])
    value = PATHOLOGICAL_CONTENT_TYPES[label]
    # Best of three: the CI box is shared, one scheduling hiccup must not fail a 100 ms bound.
    attempts = [post_raw(rel_server, body, value) for _ in range(3)]
    fastest = min(attempts, key=lambda r: r.elapsed)
    expect_error(rel_server, SECTION, f"pathological Content-Type: {label}", fastest, {400, 415, 431},
                 note=f"best of 3: {fastest.elapsed * 1000:.1f} ms", max_seconds=0.1)


def test_megabytes_of_preamble_are_bounded(rel_server, jpeg):
    real, content_type = multipart([("file", b"a.jpg", jpeg)])
    body = b"preamble junk line\r\n" * (3 * MB // 20) + real
    response = post_raw(rel_server, body, content_type)
    expect_error(rel_server, SECTION, "3 MB of preamble before the first part", response, {400, 413},
                 "malformed_multipart", max_seconds=10)


def test_ten_thousand_empty_parts(rel_server):
    body, content_type = multipart([("x", None, b"")] * 10_000)
    response = post_raw(rel_server, body, content_type)
    expect_error(rel_server, SECTION, "10,000 empty parts", response, {400}, "too_many_parts", max_seconds=10)


def test_ten_thousand_empty_file_parts(rel_server):
    body, content_type = multipart([("file", b"e.jpg", b"")] * 10_000)
    response = post_raw(rel_server, body, content_type)
    expect_error(rel_server, SECTION, "10,000 empty 'file' parts", response, {400}, max_seconds=10)


def test_part_with_thousands_of_headers(rel_server, jpeg):
    extra = [f"X-Header-{i}: {'v' * 20}".encode() for i in range(5000)]
    body, content_type = multipart([("file", b"a.jpg", jpeg, extra)])
    response = post_raw(rel_server, body, content_type)
    expect_error(rel_server, SECTION, "one part with 5,000 headers", response, {400}, "malformed_multipart",
                 max_seconds=10)


def test_part_header_of_one_megabyte(rel_server, jpeg):
    body, content_type = multipart([("file", b"a.jpg", jpeg, [b"X-Long: " + b"v" * MB])])
    response = post_raw(rel_server, body, content_type)
    expect_error(rel_server, SECTION, "one part header of 1 MB", response, {400}, "malformed_multipart",
                 max_seconds=10)


# -- size caps -----------------------------------------------------------------------------------
def test_50mb_content_length_is_refused_before_the_body(rel_server):
    request = head("POST", rel_server.port, headers={
        "Content-Type": "multipart/form-data; boundary=abc", "Content-Length": str(50 * MB)})
    # Only the headers go out; the answer must come back without a single body byte sent.
    response = raw_exchange(rel_server.port, request, b"", timeout=10)
    assert response.sent == 0
    expect_error(rel_server, SECTION, "50 MB upload with Content-Length (headers only sent)", response, {413},
                 "payload_too_large", max_seconds=5, note=f"answered after 0 body bytes, {response.elapsed * 1000:.0f} ms")


def test_50mb_chunked_upload_is_cut_off_at_the_cap(rel_server, jpeg):
    boundary = "chunkboundary"
    part_head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jpg\"\r\n"
                 "Content-Type: image/jpeg\r\n\r\n").encode()
    request = head("POST", rel_server.port, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "Transfer-Encoding": "chunked"})
    block = jpeg[:4] + b"\0" * (MB - 4)

    def chunks():
        yield _chunk(part_head)
        for _ in range(50):
            yield _chunk(block)
        yield _chunk(f"\r\n--{boundary}--\r\n".encode()) + b"0\r\n\r\n"

    before = rel_server.snapshot()
    response = raw_exchange(rel_server.port, request, chunks(), timeout=60)
    after = rel_server.snapshot()
    note = f"answered after {response.sent / MB:.0f} MB sent; RSS {before.rss_kb // 1024} -> {after.rss_kb // 1024} MB"
    expect_error(rel_server, SECTION, "50 MB chunked upload, no Content-Length", response, {413}, "payload_too_large",
                 max_seconds=30, note=note)
    assert response.sent < 50 * MB, "the whole 50 MB went out before the server answered"
    # The refused body is not kept: memory returns to where it was (allocator slack allowed).
    deadline = time.monotonic() + 10
    while rel_server.snapshot().rss_kb > before.rss_kb + 30 * 1024 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rel_server.snapshot().rss_kb <= before.rss_kb + 30 * 1024


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


# -- lying and malformed framing -----------------------------------------------------------------
def test_content_length_too_short(rel_server, jpeg):
    body, content_type = multipart([("file", b"a.jpg", jpeg)])
    response = post_raw(rel_server, body, content_type, {"Content-Length": "2000"})
    expect_error(rel_server, SECTION, "Content-Length shorter than the body", response, {400}, max_seconds=10)


def test_content_length_too_long(rel_server, jpeg):
    body, content_type = multipart([("file", b"a.jpg", jpeg)])
    response = post_raw(rel_server, body, content_type, {"Content-Length": str(len(body) + 100_000)}, timeout=30)
    expect_error(rel_server, SECTION, "Content-Length longer than the body (client then waits)", response, {408},
                 "request_timeout", max_seconds=BODY_TIMEOUT_S + 5)


@pytest.mark.parametrize("label, extra", [
    ("negative Content-Length", {"Content-Length": "-1"}),
    ("non-numeric Content-Length", {"Content-Length": "12abc"}),
    ("two different Content-Lengths", {"Content-Length": "10\r\nContent-Length: 20"}),
    ("Content-Length and chunked together", {"Transfer-Encoding": "chunked"}),
])
def test_malformed_framing(rel_server, label, extra):
    headers = {"Content-Type": "multipart/form-data; boundary=abc", "Content-Length": "10", **extra}
    response = raw_exchange(rel_server.port, head("POST", rel_server.port, headers=headers), b"--abc--\r\n", timeout=15)
    expect_error(rel_server, SECTION, label, response, {400}, max_seconds=10)


# -- clients that misbehave in time --------------------------------------------------------------
def test_client_disconnecting_mid_upload(rel_server, jpeg):
    body, content_type = multipart([("file", b"a.jpg", jpeg)])
    request = head("POST", rel_server.port, headers={"Content-Type": content_type, "Content-Length": str(len(body)),
                                                     "X-Request-ID": "rel-disconnect-1"})
    with socket.create_connection(("127.0.0.1", rel_server.port)) as sock:
        sock.sendall(request + body[: len(body) // 2])
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline and status is None:
        status = next((r["status"] for r in rel_server.access_log() if r["request_id"] == "rel-disconnect-1"), None)
        time.sleep(0.1)
    in_flight = rel_server.metric("imgcls_http_requests_in_flight")
    depth = rel_server.metric("imgcls_queue_depth", 'model="efficientnet_lite0",precision="fp32"')
    record(CONNECTION, "client disconnects mid-upload", "no answer; logged 499; nothing left running",
           f"logged {status}, in flight {in_flight:g}, queue {depth:g}")
    assert status == 499 and in_flight == 0 and depth == 0
    rel_server.assert_clean()


def test_slow_body_one_byte_per_second_is_cut_off_while_others_are_served(rel_server, jpeg):
    body, content_type = multipart([("file", b"slow.jpg", jpeg)])
    request = head("POST", rel_server.port, headers={"Content-Type": content_type, "Content-Length": str(len(body))})
    result = {}

    def slow():
        result["response"] = raw_exchange(rel_server.port, request, (body[i:i + 1] for i in range(len(body))),
                                          pause=1.0, timeout=BODY_TIMEOUT_S + 20)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(1.5)
    served = []
    with httpx.Client(base_url=rel_server.url, timeout=30) as client:
        while thread.is_alive() and len(served) < 20:
            started = time.monotonic()
            answer = client.post(CLASSIFY, files={"file": ("ok.jpg", jpeg)})
            served.append((answer.status_code, time.monotonic() - started))
    thread.join(BODY_TIMEOUT_S + 30)
    response = result["response"]
    slowest = max(seconds for _, seconds in served)
    expect_error(rel_server, CONNECTION, "slow client, body at 1 byte/s", response, {408}, "request_timeout",
                 max_seconds=BODY_TIMEOUT_S + 3,
                 note=f"cut off after {response.elapsed:.1f} s ({response.sent} bytes); meanwhile {len(served)} "
                      f"normal requests, all 200, slowest {slowest * 1000:.0f} ms")
    assert served and all(status == 200 for status, _ in served), served
    assert slowest < 5.0, served


def test_slow_headers_one_byte_per_second_are_cut_off(rel_server):
    request = head("POST", rel_server.port, headers={"Content-Type": "multipart/form-data; boundary=abc",
                                                     "Content-Length": "100", "X-Padding": "p" * 40})
    response = raw_exchange(rel_server.port, b"", (request[i:i + 1] for i in range(len(request))), pause=1.0,
                            timeout=BODY_TIMEOUT_S + 20)
    expect_error(rel_server, CONNECTION, "slow client, headers at 1 byte/s (slowloris)", response, {408},
                 "request_timeout", max_seconds=BODY_TIMEOUT_S + 3,
                 note=f"cut off after {response.elapsed:.1f} s ({response.sent} header bytes)")


def test_idle_connection_is_closed(rel_server):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", rel_server.port)) as sock:
        sock.settimeout(BODY_TIMEOUT_S + 20)
        data = sock.recv(100)
    elapsed = time.monotonic() - started
    record(CONNECTION, "connection that never sends a byte", f"closed within ~{BODY_TIMEOUT_S:g} s",
           f"closed after {elapsed:.1f} s" + (f", sent {data[:20]!r}" if data else ""))
    assert data == b"" and elapsed < BODY_TIMEOUT_S + 3
    rel_server.assert_clean()


# 70 KB arrives in one read, so a cap counted only on the bytes still arriving after the first
# read let it through (every time, as did 100 KB, and 200 KB 3 times in 10); 2 MB is refused
# while the client is still sending, and must still get the answer, not a reset.
@pytest.mark.parametrize("label, headers", [
    ("70 KB header", {"X-Big": "b" * (70 * 1024)}),
    ("200 KB header", {"X-Big": "b" * (200 * 1024)}),
    ("2 MB header", {"X-Big": "b" * (2 * 1024 * 1024)}),
    ("700 headers of 100 bytes", {f"X-H{i}": "v" * 100 for i in range(700)}),
])
def test_oversized_request_headers(rel_server, label, headers):
    request = head("GET", rel_server.port, "/api/v1/models", headers=headers)
    for attempt in range(3):  # whether it arrives in one read or several is up to the kernel: try a few times
        response = raw_exchange(rel_server.port, request, b"", timeout=15)
        expect_error(rel_server, CONNECTION, f"request headers over the 64 KB cap: {label}", response,
                     {431}, "headers_too_large", max_seconds=5)


def test_headers_just_under_the_cap_are_served(rel_server):
    request = head("GET", rel_server.port, "/api/v1/models", headers={"X-Big": "b" * (60 * 1024)})
    response = raw_exchange(rel_server.port, request, b"", timeout=15)
    assert response.status == 200, response


def test_one_connection_over_the_limit_gets_a_json_503_and_the_rest_are_served(start_rel_server, jpeg):
    """uvicorn's own answer at its connection limit is a plain-text 503; ours keeps the JSON contract."""
    server = start_rel_server([*CATALOGUE_ARGS, "--max-connections", "4"])
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
    try:
        time.sleep(0.3)  # let the server register all four
        response = raw_exchange(server.port, head("GET", server.port, "/api/v1/models"), b"", timeout=10)
        expect_error(server, CONNECTION, "one connection over --max-connections (4 held open)", response, {503},
                     "too_many_connections", max_seconds=5, clean=False)
        assert response.headers.get("retry-after") == "1" and response.headers.get("connection") == "close"
        # An upload over the limit is refused the same way (its body is read and dropped, not left hanging).
        body, content_type = multipart([("file", b"photo.jpg", jpeg)])
        upload = raw_exchange(server.port, head("POST", server.port, headers={
            "Content-Type": content_type, "Content-Length": str(len(body))}), body, timeout=10)
        assert upload.status == 503 and upload.json()["error"]["code"] == "too_many_connections"
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    with httpx.Client(base_url=server.url, timeout=30) as client:  # room again: served normally
        assert client.post("/api/v1/classify", files={"file": ("photo.jpg", jpeg)}).status_code == 200
    assert b"connection limit (4) is reached" in server.log_bytes()
