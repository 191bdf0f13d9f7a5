"""The OpenVINO runtime: refused until verified, verified on real photos, then serving the same
answers as ONNX Runtime through the real server; a changed artifact or record is refused again.

Each test works on its own bundle (a copy of the embedded model's fp32 artifact), so records
written here never reach the shared test store.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from server_helpers import ROOT, make_bundle  # tests/integration is on sys.path

from imgcls.runtimes.openvino import BF16_MIN_SPEEDUP, openvino_available

pytestmark = pytest.mark.skipif(not openvino_available(),
                                reason="OpenVINO is not installed (pip install 'imgcls[openvino]')")


def imgcls(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgcls", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def verify_photos(dev_dir, tmp_path_factory) -> Path:
    """40 odd-numbered dev photos (never used to calibrate INT8) in a folder of their own."""
    folder = tmp_path_factory.mktemp("verify-photos")
    for photo in sorted(dev_dir.glob("*.JPEG"))[1::2][:40]:
        (folder / photo.name).symlink_to(photo)
    return folder


def _top1(response) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["top"][0]["class_index"] for item in response.json()["results"]]


def test_openvino_serves_only_after_verification(tmp_path, start_server, lite0_fp32, verify_photos):
    from imgcls.engine import Classifier

    bundle = make_bundle(tmp_path, lite0_fp32, "ov-bundle")
    record = bundle / "onnx" / "fp32.openvino.json"

    refused = imgcls("serve", "--model", str(bundle), "--runtime", "openvino", "--port", "0", timeout=120)
    assert refused.returncode == 3, refused.stderr[-2000:]
    assert "has not been verified on OpenVINO" in refused.stderr and "imgcls models verify-openvino" in refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout

    verified = imgcls("models", "verify-openvino", str(bundle), "--images", str(verify_photos))
    assert verified.returncode == 0, verified.stderr[-2000:]
    assert "Verified ov-bundle fp32 on OpenVINO" in verified.stderr
    facts = json.loads(record.read_text())
    manifest = json.loads((bundle / "onnx" / "fp32.json").read_text())
    assert facts["passed"] and facts["images"] == 40 and facts["top1_agreement"] >= 0.95
    assert facts["artifact_sha256"] == manifest["sha256"] and facts["inference_precision"] in ("bf16", "f32")
    # bf16 only where this CPU measured it clearly faster than f32 (timed only where bf16 runs at all).
    timing = facts["precision_timing_ms"]
    if timing:
        assert (facts["inference_precision"] == "bf16") == (timing["f32_ms"] >= BF16_MIN_SPEEDUP * timing["bf16_ms"])
    else:
        assert facts["inference_precision"] == "f32"

    listed = next(r for r in json.loads(imgcls("models", "list", "--json").stdout) if r["name"] == "efficientnet_lite0")
    assert "fp32" in listed["artifacts"] and set(listed["openvino"]) <= set(listed["artifacts"])

    server = start_server(["--model", str(bundle), "--runtime", "openvino"])
    with server.client() as client:
        (model,) = client.get("/api/v1/models").json()["models"]
        assert model["runtime"] == "openvino" and model["precisions"] == ["fp32"]
        photos = sorted(verify_photos.iterdir())[:24]
        files = [("file", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
        served = _top1(client.post("/api/v1/classify", files=files[:12])) + \
            _top1(client.post("/api/v1/classify", files=files[12:]))
    reference = [p.top[0]["class_index"] for p in Classifier(str(bundle), "fp32").predict(photos, top_k=1)]
    agreement = np.mean(np.asarray(served) == np.asarray(reference))
    assert agreement >= 0.95, (served, reference)

    # A record that no longer matches the artifact, or a CPU that would run another precision.
    for change, message in (({"artifact_sha256": "0" * 64}, "changed since it was verified"),
                            ({"inference_precision": "f16"}, "which this CPU does not run")):
        record.write_text(json.dumps({**facts, **change}))
        refused = imgcls("serve", "--model", str(bundle), "--runtime", "openvino", "--port", "0", timeout=120)
        assert refused.returncode == 3 and message in refused.stderr, refused.stderr[-2000:]
    # f32 runs on every CPU: a record that chose it serves even where bf16 instructions exist.
    record.write_text(json.dumps({**facts, "inference_precision": "f32"}))
    served_f32 = imgcls("predict", str(photos[0]), "--model", str(bundle), "--runtime", "openvino", "--format", "json")
    assert served_f32.returncode == 0, served_f32.stderr[-2000:]
    assert json.loads(served_f32.stdout)[0]["top"][0]["class_index"] == reference[0]
    record.write_text("{not json")
    refused = imgcls("predict", str(photos[0]), "--model", str(bundle), "--runtime", "openvino")
    assert refused.returncode == 3 and "record" in refused.stderr and "unreadable" in refused.stderr


def test_a_failed_verification_records_nothing(tmp_path, lite0_fp32, verify_photos, monkeypatch):
    from imgcls.catalog import resolve_model
    from imgcls.errors import ArtifactVerificationError
    from imgcls.runtimes import openvino

    bundle = make_bundle(tmp_path, lite0_fp32, "ov-unverified")
    monkeypatch.setattr(openvino, "OPENVINO_MIN_AGREEMENT", 1.01)  # a bar no run can reach
    with pytest.raises(ArtifactVerificationError, match=r"agrees with the verified fp32 artifact .* on \d+\.\d% of 40"):
        openvino.verify_openvino(resolve_model(str(bundle)), "fp32", sorted(verify_photos.iterdir()))
    assert not (bundle / "onnx" / "fp32.openvino.json").exists()


def test_runtime_is_safe_from_several_threads_and_has_a_solo_session(lite0_int8, dev_dir):
    """The server calls one runtime from its model workers at once; each thread has its own request."""
    from imgcls.artifacts import load_images_as_batch
    from imgcls.catalog import resolve_model
    from imgcls.runtimes.openvino import OpenVinoRuntime

    batch = load_images_as_batch(resolve_model("efficientnet_lite0"), sorted(dev_dir.glob("*.JPEG"))[:16])
    runtime = OpenVinoRuntime(lite0_int8[0], threads=1, solo_threads=2, streams=2)
    assert runtime.streams == 2  # two calls run at once, not one after the other
    expected = [runtime.run(batch[i:i + 4]) for i in range(0, 16, 4)]
    results: dict[int, list[np.ndarray]] = {}

    def work(index: int) -> None:
        results[index] = [runtime.run(batch[i:i + 4]) for i in range(0, 16, 4) for _ in range(5)][::5]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for outputs in results.values():
        for got, want in zip(outputs, expected):
            np.testing.assert_allclose(got, want, atol=1e-4)
    solo = runtime.run(batch[:1], solo=True)
    assert runtime.solo_threads == 2 and solo.shape == (1, 1000)
    assert solo.argmax() == expected[0][0].argmax()
    runtime.close()
