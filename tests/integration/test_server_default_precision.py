"""`imgcls serve` without --precision (auto): INT8 where the model has it or ships its calibration
table (the embedded model: built on first start, out of process), else fp32."""

from __future__ import annotations

import pytest

from imgcls.errors import ModelError
from imgcls.server.config import ServerConfig, resolve_models


def test_first_start_builds_the_int8_from_the_table_and_serves_it_by_default(start_server, fp32_only_home, photos):
    server = start_server(["--model", "efficientnet_lite0"], env={"IMGCLS_HOME": str(fp32_only_home)})
    assert "Building the INT8 artifact from the model's calibration table" in server.stderr()
    with server.client() as client:
        listing = client.get("/api/v1/models").json()
        tench = client.post("/api/v1/classify", files=[("file", (photos[0].name, photos[0].read_bytes(), "image/jpeg"))])
        asked = client.post("/api/v1/classify", params={"precision": "fp32"},
                            files=[("file", (photos[0].name, photos[0].read_bytes(), "image/jpeg"))])
    (model,) = listing["models"]
    assert listing["default_precision"] == model["default_precision"] == "int8"
    assert model["precisions"] == ["fp32", "int8"]
    assert tench.json()["precision"] == "int8" and tench.json()["results"][0]["top"][0]["class_index"] == 0
    assert asked.json()["precision"] == "fp32"  # the other precision still answers when asked for
    assert list(fp32_only_home.glob("artifacts/*/int8.onnx"))

    explicit = start_server(["--model", "efficientnet_lite0", "--precision", "fp32"],
                            env={"IMGCLS_HOME": str(fp32_only_home)})
    with explicit.client() as client:
        assert client.get("/api/v1/models").json()["models"][0]["default_precision"] == "fp32"


def test_auto_serves_fp32_when_the_int8_cannot_be_built(fp32_only_home, monkeypatch, caplog):
    monkeypatch.setenv("IMGCLS_HOME", str(fp32_only_home))
    asked = []

    def failing_build(spec, reference, precision):
        asked.append(precision)
        raise ModelError("Building failed (test).")

    (slot,) = resolve_models(ServerConfig(models=["efficientnet_lite0"]), build_missing=failing_build)
    assert asked == ["int8"] and slot.default_precision == "fp32" and list(slot.artifacts) == ["fp32"]
    assert "Building failed (test). efficientnet_lite0 runs in fp32." in caplog.text
    # No build hook (create_app in-process): nothing is built, fp32 serves.
    (slot,) = resolve_models(ServerConfig(models=["efficientnet_lite0"]))
    assert slot.default_precision == "fp32"


def test_auto_does_not_try_int8_for_a_model_without_a_table(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "empty"))
    asked = []

    def failing_build(spec, reference, precision):
        asked.append(precision)
        raise ModelError("Building failed (test).")

    with pytest.raises(ModelError, match="Building failed"):
        resolve_models(ServerConfig(models=["resnet18"]), build_missing=failing_build)
    assert asked == ["fp32"]


def test_a_bundle_with_a_calibration_table_gets_its_int8_built_at_start(lite0_fp32, tmp_path):
    """A bundle folder with calibration.json beside config.json: the server's build step makes its
    INT8 (in the subprocess, as on a real start) into the bundle's onnx/ folder and serves it."""
    import json

    from server_helpers import make_bundle

    from imgcls.catalog import resolve_model
    from imgcls.artifacts import build_in_subprocess

    bundle = make_bundle(tmp_path, lite0_fp32, name="calibrated-bundle")
    table = json.loads(resolve_model("efficientnet_lite0").calibration_table.read_text())
    weights_sha = json.loads((bundle / "config.json").read_text())["weights"]["sha256"]
    (bundle / "calibration.json").write_text(json.dumps({**table, "model": "calibrated-bundle",
                                                         "weights_sha256": weights_sha}))
    (slot,) = resolve_models(ServerConfig(models=[str(bundle)]), build_missing=build_in_subprocess)
    assert slot.default_precision == "int8" and set(slot.artifacts) == {"fp32", "int8"}
    assert slot.artifacts["int8"][0] == bundle / "onnx" / "int8.onnx"
    assert slot.artifacts["int8"][1]["calibration"]["table"]["file"] == "calibration.json"
