"""Server processes with their own settings: readiness, SIGTERM, overload, API key, several
models, refusing to start on a bad artifact, and no torch in the serving process."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest

from server_helpers import ROOT, free_port, make_bundle

pytestmark = pytest.mark.timeout(600)


def one_photo(photos) -> list:
    return [("file", (photos[0].name, photos[0].read_bytes()))]


def test_not_ready_before_warm_up_then_graceful_sigterm(start_server, photos):
    # IMGCLS_TEST_WARMUP_DELAY_S holds readiness back (testing hook, documented in `imgcls serve`).
    server = start_server(["--model", "efficientnet_lite0", "--drain-seconds", "2", "--max-batch", "1"],
                          env={"IMGCLS_TEST_WARMUP_DELAY_S": "2.5"}, wait="listening")
    with server.client() as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
        assert client.get("/healthz").status_code == 200
        early = client.post("/api/v1/classify", files=one_photo(photos))
        assert early.status_code == 503 and early.json()["error"]["code"] == "not_ready"
        assert int(early.headers["retry-after"]) >= 1
    server.wait_ready()
    assert f"imgcls is ready: http://127.0.0.1:{server.port}/" in server.stdout()

    # SIGTERM while a big request is in flight: it finishes; readiness and new calls say 503; exit 0.
    many = [("file", (p.name, p.read_bytes())) for p in photos] * 4
    outcome = {}

    def big_request():
        with server.client() as client:
            response = client.post("/api/v1/classify", files=many)
            outcome["status"], outcome["n"], outcome["done"] = response.status_code, len(response.json()["results"]), time.monotonic()

    thread = threading.Thread(target=big_request)
    thread.start()
    with server.client() as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "imgcls_http_requests_in_flight 1.0" not in client.get("/metrics").text:
            time.sleep(0.02)
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.3)
        assert client.get("/readyz").status_code == 503
        late = client.post("/api/v1/classify", files=one_photo(photos))
        assert late.status_code == 503 and late.json()["error"]["code"] == "shutting_down"
        assert "retry-after" in late.headers
    thread.join(60)
    assert outcome.get("status") == 200 and outcome["n"] == len(many)
    assert outcome["done"] > signalled, "the big request finished before SIGTERM: nothing was in flight"
    assert server.proc.wait(30) == 0
    assert time.monotonic() - signalled < 20


def _burst(server, photos, n: int) -> list[httpx.Response]:
    payloads = [(p.name, p.read_bytes()) for p in photos]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/api/v1/classify", files=[("file", payloads[i % len(payloads)])])
                                          for i in range(n)))

    return asyncio.run(burst())


def test_more_clients_than_the_queue_wait_in_line_and_are_all_answered(start_server, photos):
    server = start_server(["--model", "efficientnet_lite0", "--max-queue", "1", "--max-batch", "1", "--max-wait-ms", "0"])
    responses = _burst(server, photos, 24)
    assert [r.status_code for r in responses] == [200] * 24
    answers: dict[str, set[int]] = {}
    for r in responses:
        result = r.json()["results"][0]
        answers.setdefault(result["filename"], set()).add(result["top"][0]["class_index"])
    assert len(answers) == len(photos) and all(len(tops) == 1 for tops in answers.values()), answers  # none mixed up
    with server.client() as client:
        metrics = client.get("/metrics").text
    assert re.search(r'^imgcls_requests_waiting\{model="efficientnet_lite0",precision="fp32"\} 0\.0$', metrics, re.M)
    assert not re.search(r'^imgcls_errors_total\{code="overloaded"\}', metrics, re.M)


def test_a_slow_upload_holds_no_queue_room(start_server, photos):
    """A client on a slow link is still sending its body: the one-image queue must stay free for
    the others (room is taken once a body is read, not while it arrives)."""
    server = start_server(["--model", "efficientnet_lite0", "--max-queue", "1", "--max-batch", "1"])
    jpeg = photos[0].read_bytes()
    boundary = "slowupload"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.jpg\"\r\n\r\n").encode() \
        + jpeg + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /api/v1/classify HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as slow:
        slow.sendall(head + body[:1000])  # ... and the rest only later
        time.sleep(0.3)
        started = time.monotonic()
        responses = _burst(server, photos, 6)
        fast_seconds = time.monotonic() - started
        slow.sendall(body[1000:])
        answer = slow.recv(65536)
    assert [r.status_code for r in responses] == [200] * 6
    assert fast_seconds < 5, fast_seconds  # not queued behind the upload
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_queue_overflow_answers_503_with_retry_after_when_waiting_is_off(start_server, photos):
    server = start_server(["--model", "efficientnet_lite0", "--max-queue", "1", "--max-batch", "1", "--max-wait-ms", "0",
                           "--queue-timeout", "0"])
    responses = _burst(server, photos, 24)
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses and 503 in statuses, statuses
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.json()["error"]["code"] == "overloaded" and int(busy.headers["retry-after"]) >= 1
    with server.client() as client:
        metrics = client.get("/metrics").text
    assert re.search(r'^imgcls_errors_total\{code="overloaded"\} [1-9]', metrics, re.M)


def test_api_key_two_models_and_allowed_host(start_server, tmp_path_factory, lite0_fp32, photos):
    bundle = make_bundle(tmp_path_factory.mktemp("bundle"), lite0_fp32)
    server = start_server(["--model", "efficientnet_lite0", "--model", str(bundle), "--api-key", "s3cret-key",
                           "--allowed-host", "imgcls.internal"])
    key = {"X-API-Key": "s3cret-key"}
    with server.client() as client:
        assert client.get("/api/v1/models").status_code == 401
        assert client.get("/api/v1/models", headers={"X-API-Key": "wrong"}).json()["error"]["code"] == "unauthorized"
        assert client.post("/api/v1/classify", files=one_photo(photos)).status_code == 401
        assert client.get("/metrics").status_code == 401
        for open_path in ("/healthz", "/readyz", "/", "/static/app.js", "/docs"):
            assert client.get(open_path).status_code == 200, open_path
        models = client.get("/api/v1/models", headers={"Authorization": "Bearer s3cret-key"}).json()
        assert [m["name"] for m in models["models"]] == ["efficientnet_lite0", "lite0-bundle"]
        assert models["default"] == "efficientnet_lite0"
        assert client.get("/metrics", headers=key).status_code == 200

        default = client.post("/api/v1/classify", files=one_photo(photos), headers=key).json()
        other = client.post("/api/v1/classify", files=one_photo(photos), headers=key,
                            params={"model": "lite0-bundle", "lang": "zh"}).json()
        assert default["model"] == "efficientnet_lite0" and other["model"] == "lite0-bundle"
        assert other["lang"] == "en"  # the bundle has no Chinese names: the answer says so
        top = default["results"][0]["top"][0]["class_index"]
        assert other["results"][0]["top"][0] == {**other["results"][0]["top"][0], "class_index": top,
                                                 "label": f"bundle class {top}"}
        labels = client.get("/api/v1/labels", params={"model": "lite0-bundle"}, headers=key).json()
        assert labels["labels"][:2] == ["bundle class 0", "bundle class 1"]

        named = client.get("/api/v1/models", headers={**key, "Host": "imgcls.internal"})
        assert named.status_code == 200
        assert client.get("/api/v1/models", headers={**key, "Host": "imgcls.example"}).status_code == 421


def _serve_all(*arg_lists: list[str], timeout: float = 120) -> list[tuple[int, str]]:
    """Start several servers that are expected to refuse to start, concurrently; (exit code, stderr) each."""
    procs = [subprocess.Popen([sys.executable, "-m", "imgcls", "serve", "--port", str(free_port()), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for args in arg_lists]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results.append((proc.returncode, err + out))
    return results


def test_refuses_to_start_on_a_corrupt_artifact_or_unknown_model(tmp_path_factory, lite0_fp32):
    bundle = make_bundle(tmp_path_factory.mktemp("corrupt"), lite0_fp32, name="broken-bundle", corrupt=True)
    corrupt, unknown, bad_setting = _serve_all(["--model", str(bundle)], ["--model", "no_such_model"],
                                               ["--model", "efficientnet_lite0", "--max-batch", "0"])
    assert corrupt[0] == 3, corrupt[1]
    assert "corrupt" in corrupt[1] and "Traceback" not in corrupt[1]
    assert len([line for line in corrupt[1].splitlines() if line.startswith("Error:")]) == 1
    assert unknown[0] == 3 and "no_such_model" in unknown[1] and "Traceback" not in unknown[1]
    assert bad_setting[0] == 2 and "Traceback" not in bad_setting[1]


def test_serving_never_imports_torch(lite0_fp32, photos):
    script = textwrap.dedent(f"""
        import asyncio, json, sys
        import httpx
        from imgcls.server import ServerConfig, create_app

        async def main():
            app = create_app(ServerConfig(models=["efficientnet_lite0"]))
            state = app.state.imgcls
            await state.start()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                response = await client.post("/api/v1/classify", files={{"file": open({str(photos[0])!r}, "rb")}})
            await state.stop()
            return response

        response = asyncio.run(main())
        print(json.dumps({{"status": response.status_code, "torch": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"status": 200, "torch": []}
