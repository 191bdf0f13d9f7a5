"""Only the default precision is loaded at start-up; another one loads on its first request.

Why: a second ONNX session costs ~110 MB of resident memory (docs/benchmarks.md), which a
server whose clients never ask for ``precision=`` should not pay.
"""

from __future__ import annotations

import concurrent.futures

import psutil


def _rss_mb(server) -> float:
    return psutil.Process(server.proc.pid).memory_info().rss / 2**20


def _classify(server, photo, precision: str):
    with server.client() as client:
        return client.post("/api/v1/classify", params={"precision": precision},
                           files=[("file", (photo.name, photo.read_bytes(), "image/jpeg"))])


def test_other_precision_loads_on_first_request(start_server, photos):
    from imgcls.engine import Classifier

    server = start_server(["--model", "efficientnet_lite0", "--precision", "int8"])
    with server.client() as client:
        (model,) = client.get("/api/v1/models").json()["models"]
    assert model["precisions"] == ["fp32", "int8"] and model["default_precision"] == "int8"

    assert _classify(server, photos[0], "int8").status_code == 200
    ready_rss = _rss_mb(server)
    assert "on first request" not in server.stderr()

    # Several first requests at once: one load, every request answered.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda p: _classify(server, p, "fp32"), photos[:4]))
    assert [r.status_code for r in responses] == [200] * 4
    expected = Classifier("efficientnet_lite0", "fp32").predict(photos[:4], top_k=1)
    for response, prediction in zip(responses, expected):
        body = response.json()
        assert body["precision"] == "fp32"
        assert body["results"][0]["top"][0]["class_index"] == prediction.top[0]["class_index"]
    assert server.stderr().count("loaded efficientnet_lite0 fp32 on first request") == 1
    # The fp32 session (weights + activation arena) was not resident before it was needed.
    assert _rss_mb(server) - ready_rss > 30
