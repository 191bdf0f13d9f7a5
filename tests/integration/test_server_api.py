"""The HTTP API against a real `imgcls serve` process (see conftest.py): answers, errors, limits.

The shared server serves efficientnet_lite0 (fp32 default, int8 too) with a 5 MB upload cap
and a 3 s body deadline, so the limit tests stay cheap.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest

from loadgen import run_load  # tests/integration is on sys.path (rootdir-relative imports)

pytestmark = pytest.mark.timeout(600)


def post_files(client: httpx.Client, files: list[tuple[str, bytes]], **params) -> httpx.Response:
    return client.post("/api/v1/classify", params=params, files=[("file", item) for item in files])


def expected_top(paths, precision: str, lang: str = "en", k: int = 5):
    from imgcls.engine import Classifier

    classifier = Classifier("efficientnet_lite0", precision)
    try:
        return [p.top for p in classifier.predict(list(paths), top_k=k, lang=lang)]
    finally:
        classifier.close()


def assert_json_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert message and "Traceback" not in message and "/work/" not in message and ".py" not in message
    return body


# -- answers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_single_file_matches_the_classifier(server, photos, precision):
    expected = expected_top(photos[:3], precision)
    with server.client() as client:
        for photo, top in zip(photos[:3], expected):
            response = post_files(client, [(photo.name, photo.read_bytes())], precision=precision)
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["model"], body["precision"], body["lang"]) == ("efficientnet_lite0", precision, "en")
            (result,) = body["results"]
            assert result["filename"] == photo.name
            assert [t["class_index"] for t in result["top"]] == [t["class_index"] for t in top]
            assert result["top"][0]["label"] == top[0]["label"]
            assert result["top"][0]["score"] == pytest.approx(top[0]["score"], abs=1e-4)
            assert result["input"]["format"] == "JPEG" and result["input"]["width"] > 0
            assert set(result["timing_ms"]) == {"decode", "queue", "model", "total"}


def test_phone_sized_jpeg_is_decoded_at_reduced_scale_with_the_exact_answer(server, photos, tmp_path):
    """The server decodes big JPEGs in draft mode (as the CLI does by default) and says so."""
    from PIL import Image

    photo = Image.open(photos[0]).convert("RGB")
    scale = 3024 / min(photo.size)  # a 12-megapixel phone photo
    path = tmp_path / "phone.jpg"
    photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC).save(path, quality=90)
    (exact,) = expected_top([photos[0]], "fp32")
    with server.client() as client:
        response = post_files(client, [(path.name, path.read_bytes())])
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert "decoded at 1/4 scale (JPEG draft mode)" in result["input"]["conversions"]
    assert min(result["input"]["width"], result["input"]["height"]) == 3024  # the size as uploaded
    assert result["top"][0]["class_index"] == exact[0]["class_index"]


def test_multi_file_request_keeps_upload_order_and_matches_cli(server, photos):
    chosen = photos[:5]
    cli = subprocess.run([sys.executable, "-m", "imgcls", "predict", *map(str, chosen), "-m", "efficientnet_lite0",
                          "--precision", "fp32", "--format", "json", "--top-k", "3", "--lang", "zh"], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    cli_top = {json_row["file"]: json_row["top"] for json_row in json.loads(cli.stdout)}
    with server.client() as client:
        response = post_files(client, [(p.name, p.read_bytes()) for p in chosen], top_k=3, lang="zh")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["lang"] == "zh"
    assert [r["filename"] for r in body["results"]] == [p.name for p in chosen]
    for photo, result in zip(chosen, body["results"]):
        assert len(result["top"]) == 3
        assert result["top"][0]["class_index"] == cli_top[str(photo)][0]["class_index"]
        assert result["top"][0]["label"] == cli_top[str(photo)][0]["label"]  # the Chinese name


def test_one_bad_file_does_not_sink_the_others(server, photos):
    good = photos[0].read_bytes()
    files = [("a.jpg", good), ("notes.jpg", b"just some text, not a picture\n"), ("b.jpg", photos[1].read_bytes()),
             ("empty.jpg", b""), ("cut.jpg", good[: len(good) // 2])]
    with server.client() as client:
        response = post_files(client, files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["filename"] for r in results] == [name for name, _ in files]
    assert "top" in results[0] and "top" in results[2]
    assert (results[1]["status"], results[1]["error"]["code"]) == (415, "unsupported_media_type")
    assert (results[3]["status"], results[3]["error"]["code"]) == (400, "empty_file")
    assert (results[4]["status"], results[4]["error"]["code"]) == (400, "corrupt_image")
    assert all("top" not in results[i] for i in (1, 3, 4))


def test_a_single_bad_file_is_the_request_status(server, photos):
    good = photos[0].read_bytes()
    with server.client() as client:
        assert_json_error(post_files(client, [("x.jpg", b"%PDF-1.7 not an image")]), 415, "unsupported_media_type")
        assert_json_error(post_files(client, [("x.jpg", good[:3000])]), 400, "corrupt_image")


def test_filenames_are_cleaned_and_never_paths(server, photos):
    names = ["../../etc/passwd", "a\x00b\x1b[31m.jpg", "é" * 300]
    with server.client() as client:
        response = post_files(client, [(n, photos[0].read_bytes()) for n in names])
    assert response.status_code == 200, response.text
    echoed = [r["filename"] for r in response.json()["results"]]
    assert echoed[0] == "../../etc/passwd"  # data, echoed as text; never opened
    assert "\x00" not in echoed[1] and "\x1b" not in echoed[1] and echoed[1].endswith("[31m.jpg")
    assert len(echoed[2]) == 255


# -- request-level errors -------------------------------------------------------------------------
def test_parameter_and_routing_errors_are_json(server, photos):
    one = [(photos[0].name, photos[0].read_bytes())]
    with server.client() as client:
        for params in ({"top_k": 0}, {"top_k": 51}, {"lang": "fr"}, {"precision": "fp16"}):
            assert_json_error(post_files(client, one, **params), 422, "invalid_parameter")
        assert_json_error(post_files(client, one, model="no-such-model"), 404, "unknown_model")
        assert_json_error(client.get("/api/v1/classify"), 405, "method_not_allowed")
        assert_json_error(client.get("/api/v1/nothing-here"), 404, "not_found")
        assert_json_error(client.get("/api/v1/labels", params={"model": "../../etc"}), 404, "unknown_model")


def test_a_raw_image_body_is_one_file(server, photos):
    """curl --data-binary / load generators: the whole body is one image, whatever image/* type
    it claims (the content decides), octet-stream or none; the limits are the multipart ones."""
    (expected,) = expected_top(photos[:1], "fp32")
    png = _as_png(photos[0])
    with server.client() as client:
        for body, content_type in ((photos[0].read_bytes(), "image/jpeg"), (png, "image/jpeg"),
                                   (png, "application/octet-stream"), (photos[0].read_bytes(), None)):
            headers = {"content-type": content_type} if content_type else {}
            response = client.post("/api/v1/classify", content=body, headers=headers)
            assert response.status_code == 200, response.text
            (result,) = response.json()["results"]
            assert result["filename"] == "file-1"
            assert [t["class_index"] for t in result["top"]] == [t["class_index"] for t in expected]
        assert response.json()["results"][0]["input"]["format"] == "JPEG"
        assert_json_error(client.post("/api/v1/classify", content=b"", headers={"content-type": "image/png"}),
                          400, "empty_file")
        assert_json_error(client.post("/api/v1/classify", content=b"hello, not a picture\n" * 20,
                                      headers={"content-type": "image/jpeg"}), 415, "unsupported_media_type")
        big = b"\xff\xd8\xff" + b"\0" * (6 * 1024 * 1024)
        assert_json_error(client.post("/api/v1/classify", content=big, headers={"content-type": "image/jpeg"}),
                          413, "payload_too_large")
        chunked = client.post("/api/v1/classify", content=iter([big[:3 << 20], big[3 << 20:]]),
                              headers={"content-type": "image/jpeg"})
        assert_json_error(chunked, 413, "payload_too_large")
        assert client.get("/healthz").status_code == 200


def _as_png(path) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.open(path).save(out, "PNG")
    return out.getvalue()


def test_wrong_content_types(server, photos):
    jpeg = photos[0].read_bytes()
    with server.client() as client:
        form = client.post("/api/v1/classify", data={"file": "abc"})
        body = assert_json_error(form, 415, "unsupported_media_type")
        assert "--data-binary" in body["error"]["message"]  # says how to send it instead
        json_body = client.post("/api/v1/classify", json={"image": "aGVsbG8="})
        assert_json_error(json_body, 415, "unsupported_media_type")
        other_field = client.post("/api/v1/classify", files=[("image", ("a.jpg", jpeg))])
        assert_json_error(other_field, 422, "missing_file")
        no_boundary = client.post("/api/v1/classify", content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
        assert_json_error(no_boundary, 400, "malformed_multipart")
        garbage = client.post("/api/v1/classify", content=b"this is not multipart at all" * 10,
                              headers={"content-type": "multipart/form-data; boundary=abc"})
        assert_json_error(garbage, 400, "malformed_multipart")


def _raw_request(port: int, head: str, body_parts=(), pause: float = 0.0, read_timeout: float = 15.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(head.encode("latin-1"))
        try:
            for part in body_parts:
                sock.sendall(part)
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before we finished: read its answer
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _content_length(data):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return data


def _content_length(data: bytes) -> int:
    match = re.search(rb"content-length: (\d+)", data, re.I)
    return int(match.group(1)) if match else 0


def test_content_length_over_the_cap_is_refused_before_the_body(server):
    head = (f"POST /api/v1/classify HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Content-Type: multipart/form-data; boundary=abc\r\nContent-Length: 52428800\r\n\r\n")
    started = time.monotonic()
    answer = _raw_request(server.port, head)  # no body byte is ever sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"payload_too_large"' in answer
    assert time.monotonic() - started < 10


def test_upload_over_the_cap_is_refused_with_content_length_and_chunked(server):
    big = b"\xff\xd8\xff" + b"\0" * (6 * 1024 * 1024)
    with server.client() as client:
        assert_json_error(post_files(client, [("big.jpg", big)]), 413, "payload_too_large")
        boundary = "imgclsboundary"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jpg\"\r\n"
                "Content-Type: image/jpeg\r\n\r\n").encode()

        def chunked():
            yield head
            for start in range(0, len(big), 256 * 1024):
                yield big[start:start + 256 * 1024]
            yield f"\r\n--{boundary}--\r\n".encode()

        response = client.post("/api/v1/classify", content=chunked(),
                               headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert_json_error(response, 413, "payload_too_large")
        assert client.get("/healthz").status_code == 200


def test_slow_client_is_cut_off_without_hurting_others(server, photos):
    boundary = "slowboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.jpg\"\r\n\r\n").encode()
    head = (f"POST /api/v1/classify HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 100000\r\n\r\n")
    result = {}

    def slow():
        result["answer"] = _raw_request(server.port, head, [body[i:i + 1] for i in range(len(body))], pause=0.1)

    import threading

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.5)
    with server.client() as client:  # a normal client meanwhile
        started = time.monotonic()
        assert post_files(client, [(photos[0].name, photos[0].read_bytes())]).status_code == 200
        assert time.monotonic() - started < 10
    thread.join(30)
    assert result["answer"].startswith(b"HTTP/1.1 408"), result["answer"][:200]


def test_client_disconnect_mid_upload_leaves_the_server_healthy(server, photos):
    head = (f"POST /api/v1/classify HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Content-Type: multipart/form-data; boundary=abc\r\nContent-Length: 400000\r\n\r\n"
            "--abc\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpg\"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head.encode() + photos[0].read_bytes()[:50000])
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(r["status"] == 499 for r in server.access_log()):
        time.sleep(0.2)
    assert any(r["status"] == 499 and r["path"] == "/api/v1/classify" for r in server.access_log())
    with server.client() as client:
        assert post_files(client, [(photos[0].name, photos[0].read_bytes())]).status_code == 200


# -- batching -------------------------------------------------------------------------------------
def _histogram(metrics_text: str, name: str, precision: str) -> tuple[float, float]:
    labels = f'model="efficientnet_lite0",precision="{precision}"'
    count = re.search(rf"^{name}_count\{{{labels}\}} (\S+)$", metrics_text, re.M)
    total = re.search(rf"^{name}_sum\{{{labels}\}} (\S+)$", metrics_text, re.M)
    return (float(count.group(1)) if count else 0.0), (float(total.group(1)) if total else 0.0)


def _solo_calls(metrics_text: str) -> float:
    found = re.search(r'^imgcls_solo_model_calls_total\{model="efficientnet_lite0",precision="fp32"\} (\S+)$',
                      metrics_text, re.M)
    return float(found.group(1)) if found else 0.0


def test_preview_is_the_upright_decoded_image_as_a_small_jpeg(server, photos):
    """?preview=N returns what the model saw (EXIF rotation applied) as a JPEG data URL, longer
    side N; without it no preview is sent; out-of-range sizes are a 422."""
    import base64
    import io

    from PIL import Image

    picture = Image.open(photos[0]).convert("RGB")  # landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees, so upright it is portrait
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    with server.client() as client:
        plain = post_files(client, [("side.jpg", buffer.getvalue())])
        previewed = post_files(client, [("side.jpg", buffer.getvalue()), (photos[1].name, photos[1].read_bytes())],
                               preview=200)
        too_big = post_files(client, [("side.jpg", buffer.getvalue())], preview=513)
    assert plain.status_code == 200 and "preview" not in plain.json()["results"][0]
    assert previewed.status_code == 200, previewed.text
    first, second = previewed.json()["results"]
    assert first["top"] == plain.json()["results"][0]["top"]  # asking for a preview changes no answer
    prefix = "data:image/jpeg;base64,"
    assert first["preview"].startswith(prefix) and second["preview"].startswith(prefix)
    thumb = Image.open(io.BytesIO(base64.b64decode(first["preview"][len(prefix):])))
    assert thumb.format == "JPEG" and thumb.size == (round(200 * picture.height / picture.width), 200)
    assert too_big.status_code == 422 and too_big.json()["error"]["code"] == "invalid_parameter"


def test_a_lone_request_is_a_solo_call(server, photos):
    """Nothing else in the server: the model call may use every core (--solo-threads)."""
    with server.client() as client:
        before = _solo_calls(client.get("/metrics").text)
        for photo in photos[:3]:
            assert post_files(client, [(photo.name, photo.read_bytes())]).status_code == 200
        after = _solo_calls(client.get("/metrics").text)
    assert after - before == 3


def test_concurrent_requests_are_batched(server, photos):
    with server.client() as client:
        text = client.get("/metrics").text
        before, solo_before = _histogram(text, "imgcls_batch_size", "fp32"), _solo_calls(text)
        loaded = [(p.name, p.read_bytes()) for p in photos]
        result = asyncio.run(run_load(server.url, loaded, concurrency=8, seconds=3, warmup_s=0))
        after_text = client.get("/metrics").text
    after = _histogram(after_text, "imgcls_batch_size", "fp32")
    calls, images = after[0] - before[0], after[1] - before[1]
    assert result["ok"] > 0 and result["errors"] == 0, result
    assert images >= result["ok"]
    assert images > calls, f"no model call had more than one image: {calls} calls for {images} images"
    # under load calls overlap other work, so they keep to --threads instead of taking every core
    assert _solo_calls(after_text) - solo_before <= calls / 4
    assert re.search(r'^imgcls_queue_depth\{model="efficientnet_lite0",precision="fp32"\} 0\.0$', after_text, re.M)
    assert 'imgcls_http_requests_total{method="POST",route="/api/v1/classify",status="200"}' in after_text


def test_the_server_measures_each_stages_cpu_under_load(server, photos):
    """The per-stage CPU counters the benchmark's breakdown reads: every classified image is
    counted once per stage, the model's CPU is counted for the calls made on one thread (not the
    solo calls, whose second pool thread the calling thread's clock cannot see), and all of it
    fits inside the CPU the server process actually used in that window."""
    import psutil

    from imgcls.bench.http_bench import scrape_server_metrics, stage_costs

    process = psutil.Process(server.proc.pid)
    loaded = [(p.name, p.read_bytes()) for p in photos]
    before = scrape_server_metrics(server.port, "fp32")
    cpu_before = sum(process.cpu_times()[:2])
    result = asyncio.run(run_load(server.url, loaded, concurrency=8, seconds=3, warmup_s=0))
    cpu_used = sum(process.cpu_times()[:2]) - cpu_before
    after = scrape_server_metrics(server.port, "fp32")
    assert result["ok"] > 0 and result["errors"] == 0, result

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    images = delta("imgcls_batch_size_sum")
    for stage in ("decode", "preprocess", "top_k"):
        assert delta(f"images:{stage}") == images, stage
    assert images / 2 <= delta("images:model") <= images  # most calls under load are not solo
    stages_cpu = sum(delta(f"cpu_seconds:{stage}") for stage in ("decode", "preprocess", "model", "top_k"))
    assert 0 < stages_cpu <= cpu_used
    costs = stage_costs(before, after)
    assert set(costs) == {"decode", "preprocess", "model", "top_k"}
    assert costs["model"] > costs["top_k"] and costs["decode"] > 0 and costs["preprocess"] > 0
    # a lone request is a solo call on every core: its decode is counted, its model call is not
    # (on a one-core machine there is no solo session, and the call is counted like any other)
    with server.client() as client:
        quiet = scrape_server_metrics(server.port, "fp32")
        assert post_files(client, [loaded[0]]).status_code == 200
    lone = scrape_server_metrics(server.port, "fp32")
    assert lone["images:decode"] - quiet["images:decode"] == 1
    solo_session = len(os.sched_getaffinity(server.proc.pid)) > 1
    assert lone["images:model"] - quiet["images:model"] == (0 if solo_session else 1)


# -- the rest of the surface ----------------------------------------------------------------------
def test_models_labels_and_health(server):
    from imgcls.catalog import resolve_model

    with server.client() as client:
        models = client.get("/api/v1/models").json()
        zh = client.get("/api/v1/labels", params={"lang": "zh"}).json()
        health = client.get("/healthz")
    assert models["default"] == "efficientnet_lite0"
    (model,) = models["models"]
    assert model["precisions"] == ["fp32", "int8"] and model["default_precision"] == "fp32"
    assert model["num_classes"] == 1000 and model["languages"] == ["en", "zh"]
    assert "224" in model["preprocessing"] and "centre-crop" in model["preprocessing"]
    assert models["limits"]["max_upload_mb"] == 5 and models["limits"]["max_files"] >= 1
    assert models["limits"]["max_pixels"] > 0
    assert zh["lang"] == "zh" and zh["labels"] == list(resolve_model("efficientnet_lite0").labels("zh"))
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_ui_static_files_and_security_headers(server):
    with server.client() as client:
        home = client.get("/")
        script = client.get("/static/app.js")
        style = client.get("/static/style.css")
        escape = client.get("/static/../server/app.py")
        own_id = client.get("/healthz", headers={"X-Request-ID": "trace-123"})
        bad_id = client.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    csp = home.headers["content-security-policy"]
    assert csp.startswith("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'")
    assert home.headers["x-content-type-options"] == "nosniff"
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert style.headers["content-type"].startswith("text/css")
    assert escape.status_code == 404
    assert own_id.headers["x-request-id"] == "trace-123"
    assert re.fullmatch(r"[0-9a-f]{32}", bad_id.headers["x-request-id"])


def test_offline_docs_and_openapi(server):
    with server.client() as client:
        docs = client.get("/docs")
        css = client.get("/docs.css")
        schema = client.get("/openapi.json").json()
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert css.status_code == 200
    for url in re.findall(r"https?://[^\s\"'<>]+", docs.text):
        assert url.startswith(server.url), f"docs page links to another host: {url}"
    assert "<script" not in docs.text and "cdn" not in docs.text.lower()
    assert "/api/v1/classify" in docs.text and "multipart/form-data" in docs.text
    assert {"/api/v1/classify", "/api/v1/models", "/api/v1/labels", "/healthz", "/readyz"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/api/v1/classify"]["post"]["requestBody"]["content"]


def test_dns_rebinding_and_cross_site_requests_are_refused(server, photos):
    one = [("file", (photos[0].name, photos[0].read_bytes()))]
    with server.client() as client:
        assert_json_error(client.get("/api/v1/models", headers={"Host": f"evil.example:{server.port}"}), 421,
                          "host_not_allowed")
        assert_json_error(client.get("/", headers={"Host": "evil.example"}), 421, "host_not_allowed")
        assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 200
        assert client.get("/api/v1/models", headers={"Host": f"localhost:{server.port}"}).status_code == 200
        cross = client.post("/api/v1/classify", files=one, headers={"Origin": "http://evil.example"})
        assert_json_error(cross, 403, "cross_origin")
        assert_json_error(client.post("/api/v1/classify", files=one, headers={"Origin": "null"}), 403, "cross_origin")
        same = client.post("/api/v1/classify", files=one, headers={"Origin": server.url})
        assert same.status_code == 200, same.text


def test_access_log_is_json_lines_with_request_ids(server, photos):
    with server.client() as client:
        response = client.post("/api/v1/classify", files=[("file", (photos[0].name, photos[0].read_bytes()))],
                               headers={"X-Request-ID": "log-check-1"})
    assert response.status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        records = [r for r in server.access_log() if r["request_id"] == "log-check-1"]
        if records:
            break
        time.sleep(0.1)
    (record,) = records
    assert record["method"] == "POST" and record["path"] == "/api/v1/classify" and record["status"] == 200
    assert record["model"] == "efficientnet_lite0" and record["n_files"] == 1 and record["ms"] > 0


def test_log_stays_json_lines_when_uploads_make_libraries_warn(server):
    """A JPEG with corrupt EXIF makes Pillow warn; that is about the client's file, so it must
    not land in the server's log as raw text lines (once per upload) between the JSON records."""
    import io
    import warnings as warnings_module

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (120, 30, 200)).save(
        buffer, format="JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12")
    with warnings_module.catch_warnings(record=True) as caught:  # the file does make Pillow warn
        warnings_module.simplefilter("always")
        Image.open(io.BytesIO(buffer.getvalue())).getexif()
    assert any("Corrupt EXIF" in str(w.message) for w in caught)
    with server.client() as client:
        for i in range(3):
            response = client.post("/api/v1/classify", files=[("file", ("exif.jpg", buffer.getvalue()))],
                                   headers={"X-Request-ID": f"warn-check-{i}"})
            assert response.status_code == 200, response.text
    deadline = time.monotonic() + 5
    while len([r for r in server.access_log() if r["request_id"].startswith("warn-check-")]) < 3:
        assert time.monotonic() < deadline, "the access records did not appear"
        time.sleep(0.1)
    raw, records = [], []
    for line in server.stderr().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            raw.append(line)
    assert [line for line in raw if not line.startswith("imgcls: ")] == []  # only the start-up banner is text
    assert not [r for r in records if "EXIF" in str(r.get("msg"))]  # nor a warning record per upload
