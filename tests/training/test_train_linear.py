"""Linear mode on real photos: accuracy, the bundle's contents, and the bundle as a model everywhere
(CLI predict, HTTP server, export, quantize + INT8 predict, eval, import)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from imgcls.catalog import resolve_model
from imgcls.catalog.entries import CATALOG
from imgcls.catalog.store import sha256_file
from training_helpers import cli_env, imgcls_cmd, link_dataset

ROOT = Path(__file__).resolve().parents[2]  # the checkout

pytestmark = pytest.mark.slow

CLASSES = ["birds", "bugs", "dogs", "food", "vehicles"]  # sorted folder names


def val_images(result) -> list[tuple[Path, str]]:
    """(path, true class) of the validation images, from the bundle's report."""
    report = json.loads((result.bundle / "report" / "metrics.json").read_text(encoding="utf-8"))
    root = Path(result.config["training"]["data_dir"])
    return [(root / row["file"], row["label"]) for row in report["validation_images"]]


def cli_predict(model: str, files: list[Path], *extra: str, env: dict | None = None) -> list[dict]:
    proc = subprocess.run(
        imgcls_cmd("predict", "--model", model, "--format", "json", *extra, *map(str, files)),
        capture_output=True,
        text=True,
        env=env or cli_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_linear_bundle_reaches_90_percent(linear_bundle):
    result, reporter = linear_bundle
    print(
        f"\nlinear: val accuracy {result.metrics['accuracy']:.3f} on {result.metrics['images']} images, "
        f"seconds {result.config['training']['seconds']}"
    )
    assert result.metrics["images"] == 19  # round(20%) of 35/18/12/13/13 per class
    assert result.metrics["accuracy"] >= 0.90
    assert not result.interrupted
    # Progress reached the caller once per epoch, with the kept epoch marked.
    assert [r.epoch for r in reporter.epochs] == list(range(1, len(reporter.epochs) + 1))
    assert any(r.best and r.epoch == result.config["training"]["best_epoch"] for r in reporter.epochs)


def test_bundle_is_self_describing(linear_bundle):
    result, _ = linear_bundle
    bundle = result.bundle
    config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    base = CATALOG["efficientnet_lite0"]
    assert config["format"] == "imgcls-bundle/1"
    assert config["name"] == "categories" and config["architecture"] == "efficientnet_lite0"
    assert config["class_names"] == CLASSES
    assert config["class_names_zh"] == ["鸟", "昆虫和蜘蛛", "狗", "食物", "车辆"]
    assert config["base_model"] == "efficientnet_lite0" and config["base_weights_sha256"] == base.weights.sha256
    assert config["preprocessing"] == base.preprocessing.to_dict()
    assert config["weights"]["sha256"] == sha256_file(bundle / "weights.pth")
    training = config["training"]
    assert training["mode"] == "linear" and training["seed"] == 0
    assert training["draft_decoding"] is True  # decoded as the default server decodes
    assert training["validation"] == {"split": 0.2, "stratified": True, "seed": 0}
    assert training["train_images"] + training["val_images"] == 91
    assert config["validation"]["accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert config["validation"]["serving_check"]["top1_agreement_with_training"] == 1.0
    assert config["imgcls_version"] and config["created"].endswith("Z")
    # The fp32 ONNX artifact is inside the bundle, verified on real validation images.
    manifest = json.loads((bundle / "onnx" / "fp32.json").read_text())
    assert manifest["verification"]["passed"] and manifest["verification"]["max_abs_logit_diff"] <= 1e-3
    assert manifest["weights_sha256"] == config["weights"]["sha256"]
    # Report: JSON, Markdown table, two real PNGs.
    report = bundle / "report"
    metrics = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["validation"]["per_class"]) == set(CLASSES)
    assert len(metrics["validation_images"]) == result.metrics["images"]
    text = (report / "report.md").read_text(encoding="utf-8")
    assert "| class | train images | val images | precision | recall | F1 |" in text
    assert all(f"| {name} |" in text for name in CLASSES)
    for png in ("confusion_matrix.png", "training_curves.png"):
        data = (report / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    spec = resolve_model(bundle)
    assert spec.labels("en") == tuple(CLASSES) and spec.labels("zh")[2] == "狗"


def test_cli_predict_matches_reported_accuracy_and_torch(linear_bundle):
    """The serving path (CLI, ONNX Runtime) reproduces the validation accuracy training reported,
    and the saved weights load into PyTorch with the same answers."""
    import torch

    from imgcls.runtimes.torch_ref import load_torch_model
    from imgcls.training.network import load_eval_array

    result, _ = linear_bundle
    images = val_images(result)
    answers = cli_predict(str(result.bundle), [p for p, _ in images], "--top-k", "1")
    served = [a["top"][0]["label"] for a in answers]
    accuracy = np.mean([label == truth for label, (_, truth) in zip(served, images)])
    assert accuracy == pytest.approx(result.metrics["accuracy"])
    assert all(a["model"] == "categories" for a in answers)

    spec = resolve_model(result.bundle)
    network = load_torch_model(spec)
    batch = np.stack([load_eval_array(p, spec.preprocessing) for p, _ in images])
    with torch.inference_mode():
        predicted = network(torch.from_numpy(batch)).argmax(1).tolist()
    assert [CLASSES[i] for i in predicted] == served


def _serve_registered() -> bool:
    proc = subprocess.run(imgcls_cmd("serve", "--help"), capture_output=True, text=True, env=cli_env(), timeout=120)
    return proc.returncode == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_http_server_gives_the_same_answers_as_the_cli(linear_bundle, tmp_path):
    if not _serve_registered():
        pytest.skip("`imgcls serve` is not registered yet (the server is built separately)")
    result, _ = linear_bundle
    files = [p for p, _ in val_images(result)]
    port = _free_port()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        imgcls_cmd("serve", "--model", str(result.bundle), "--port", str(port), "--threads", "1"),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=cli_env(),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server not ready after 180 s"
            time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=120) as client:
            labels = client.get("/api/v1/labels", params={"model": "categories"}).json()
            assert labels["labels"] == CLASSES
            zh = client.get("/api/v1/labels", params={"model": "categories", "lang": "zh"}).json()
            assert zh["labels"][2] == "狗"
            parts = [("file", (p.name, p.read_bytes(), "image/jpeg")) for p in files]
            response = client.post("/api/v1/classify", params={"top_k": 3}, files=parts)
        assert response.status_code == 200, response.text
        over_http = response.json()["results"]
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    from_cli = cli_predict(str(result.bundle), files, "--top-k", "3")
    assert len(over_http) == len(from_cli) == len(files)
    for web, cli in zip(over_http, from_cli):
        assert [t["label"] for t in web["top"]] == [t["label"] for t in cli["top"]]
        assert [t["class_index"] for t in web["top"]] == [t["class_index"] for t in cli["top"]]
        assert [t["score"] for t in web["top"]] == pytest.approx([t["score"] for t in cli["top"]], abs=1e-4)


def test_round_trip_export_quantize_predict_eval_import(linear_bundle, categories, tmp_path):
    result, _ = linear_bundle
    bundle = shutil.copytree(result.bundle, tmp_path / "categories")  # quantize writes into the bundle
    env = cli_env()

    def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            imgcls_cmd(*args), capture_output=True, text=True, env=kwargs.get("env", env), timeout=900
        )
        assert proc.returncode == 0, f"{args}: {proc.stderr}"
        return proc

    # export: a fresh fp32 artifact from the bundle's weights, verified against PyTorch
    run("models", "export", str(bundle), "--out", str(tmp_path / "exported"))
    exported = json.loads((tmp_path / "exported" / "fp32.json").read_text())
    assert exported["verification"]["passed"] and exported["model"] == "categories"

    # quantize: static INT8 calibrated on 8 photos per class, verified >= 95% agreement, into the bundle
    calibration = link_dataset(tmp_path / "calibration", categories, per_class=8)
    run("models", "quantize", str(bundle), "--calibration", str(calibration))
    int8 = json.loads((bundle / "onnx" / "int8.json").read_text())
    assert int8["verification"]["passed"] and int8["verification"]["top1_agreement"] >= 0.95
    # What users share holds no paths of the machine that built it (the torch exporter records
    # each node's stack trace, with the checkout's and the venv's absolute paths).
    for artifact in (tmp_path / "exported" / "fp32.onnx", bundle / "onnx" / "fp32.onnx", bundle / "onnx" / "int8.onnx"):
        data = artifact.read_bytes()
        assert b"stack_trace" not in data, artifact
        assert str(ROOT).encode() not in data and sys.prefix.encode() not in data, artifact

    images = val_images(result)
    files = [p for p, _ in images]
    fp32 = cli_predict(str(bundle), files, "--top-k", "1", "--precision", "fp32")
    int8_answers = cli_predict(str(bundle), files, "--top-k", "1", "--precision", "int8")
    agreement = np.mean([a["top"][0]["label"] == b["top"][0]["label"] for a, b in zip(fp32, int8_answers)])
    assert agreement >= 0.95
    # ... and once quantised, the bundle answers in INT8 by default (`auto`), as the server does.
    assert cli_predict(str(bundle), files[:4], "--top-k", "1") == int8_answers[:4]

    # eval: top-1 over a labelled folder equals what predict says
    labels_csv = tmp_path / "labels.csv"
    root = Path(result.config["training"]["data_dir"])
    labels_csv.write_text(
        "file,class_index\n" + "".join(f"{p.relative_to(root)},{CLASSES.index(truth)}\n" for p, truth in images)
    )
    figures = json.loads(run("eval", str(root), "--labels", str(labels_csv), "--model", str(bundle), "--json",
                             "--precision", "fp32").stdout)
    assert figures["model"] == "categories" and figures["images"] == len(images)
    assert figures["top1"] == pytest.approx(result.metrics["accuracy"])

    # import: copied into a model store under its name, then usable by name
    store_env = cli_env(IMGCLS_HOME=str(tmp_path / "store"))
    run("models", "import", str(bundle), env=store_env)
    listed = json.loads(run("models", "list", "--json", env=store_env).stdout)
    assert any(row["name"] == "categories" and row["available"] for row in listed)
    by_name = cli_predict("categories", files[:3], "--top-k", "1", "--lang", "zh", env=store_env)
    assert all(answer["top"][0]["label"] in {"鸟", "昆虫和蜘蛛", "狗", "食物", "车辆"} for answer in by_name)
