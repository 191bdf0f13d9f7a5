"""`imgcls predict --engine ray` on a real local Ray cluster, run as the user runs it (a subprocess).

Each run starts its own local cluster (~20-40 s on a busy 2-core box), hence the slow marker.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from imgcls.catalog import resolve_model
from imgcls.distributed import parts_dir, read_results, write_results

pytestmark = [pytest.mark.ray, pytest.mark.slow]

MODEL = "efficientnet_lite0"
SENTINEL = [0.123456, 0.0, 0.0, 0.0, 0.0]  # scores no model produces: marks rows that must not be redone


def predict_cmd(*args: str) -> list[str]:
    """fp32, the reference's precision, unless ``args`` name another (the last --precision wins)."""
    return [sys.executable, "-m", "imgcls", "predict", "--precision", "fp32", *args, "--engine", "ray", "--model", MODEL]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(predict_cmd(*args), capture_output=True, text=True, timeout=900, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "The Ray job failed" not in proc.stderr and "Wrote" in proc.stderr, proc.stderr
    return proc


def counts(stderr: str) -> tuple[int, int]:
    match = re.search(r"(\d+) already classified, (\d+) to classify", " ".join(stderr.split()))
    assert match, stderr
    return int(match[1]), int(match[2])


def reference_row(prediction) -> dict:
    ok = prediction.ok
    return {"path": prediction.source, "model": prediction.model, "precision": "fp32",
            "top_indices": [t["class_index"] for t in prediction.top], "top_labels": [t["label"] for t in prediction.top],
            "top_scores": [t["score"] for t in prediction.top], "error": None if ok else prediction.error.message}


def test_ray_results_equal_single_process(corpus, match_reference, tmp_path):
    """Dev photos + generated images (some corrupt) through 2 actors == the local engine, file by file."""
    output = tmp_path / "results.parquet"
    proc = run(str(corpus["list_file"]), "--actors", "2", "--batch-size", "8", "--output", str(output))
    assert proc.returncode == 1, proc.stderr  # some files are corrupt: partial success
    assert counts(proc.stderr) == (0, len(corpus["paths"]))
    table = pq.read_table(output)
    assert table.column_names == ["path", "model", "precision", "top_indices", "top_labels", "top_scores", "error"]
    assert [str(t) for t in table.schema.types] == ["string", "string", "string", "list<element: int64>",
                                                    "list<element: string>", "list<element: double>", "string"]
    rows = read_results(output)
    match_reference(rows, corpus["paths"])
    assert sorted(r["path"] for r in rows if r["error"]) == sorted(corpus["corrupt"])
    assert not parts_dir(output).exists()


def test_killed_run_resumes_with_only_the_rest(corpus, match_reference, tmp_path):
    """Kill -9 the job once some part files exist; the re-run classifies only what is missing."""
    output = tmp_path / "results.jsonl"
    parts = parts_dir(output)
    job = subprocess.Popen(predict_cmd(str(corpus["list_file"]), "--actors", "1", "--part-rows", "16",
                                       "--output", str(output)),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while len(list(parts.glob("part-*.parquet"))) < 3:
            assert job.poll() is None, f"the job ended before it could be killed: {job.stderr.read()}"
            assert time.monotonic() < deadline, "no part files appeared"
            time.sleep(0.2)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the driver and the local cluster it started
        job.wait(timeout=60)
        job.stderr.close()
    assert not output.exists()  # killed before the merge: only parts

    # Mark every finished row so the final output shows whether it was classified again.
    finished = 0
    for part in sorted(parts.glob("part-*.parquet")):
        rows = pq.read_table(part).to_pylist()
        for row in rows:
            if not row["error"]:
                row["top_scores"] = SENTINEL
                finished += 1
        write_results(rows, part)
    total = len(corpus["paths"])
    assert 0 < finished < total

    proc = run(str(corpus["list_file"]), "--actors", "1", "--part-rows", "16", "--output", str(output))
    assert proc.returncode == 1, proc.stderr
    assert counts(proc.stderr) == (finished, total - finished)
    rows = read_results(output)
    assert len(rows) == total and not parts.exists()
    kept = [r for r in rows if r["top_scores"] == SENTINEL]
    assert len(kept) == finished  # none of the finished rows was redone
    redone = [r for r in rows if r["top_scores"] != SENTINEL]
    match_reference(redone, [r["path"] for r in redone])


def test_resume_from_an_existing_csv_retries_errors(corpus, reference, match_reference, tmp_path):
    """A folder tree, an existing CSV missing 10 results, holding error rows and 3 rows of another
    precision: only those are redone. Rows that do not say their precision (an older imgcls) are kept."""
    tree_paths = [p for p in corpus["paths"] if p.startswith(str(corpus["tree"]))]
    rows = [reference_row(reference[p]) for p in tree_paths]
    successes = [r for r in rows if not r["error"]]
    dropped = {r["path"] for r in successes[::5][:10]}
    existing = [r for r in rows if r["path"] not in dropped]
    zh, en = resolve_model(MODEL).labels("zh"), resolve_model(MODEL).labels("en")
    for r in existing:
        if not r["error"]:
            r["top_scores"] = SENTINEL
            r["top_labels"] = [zh[i] for i in r["top_indices"]]  # as a run with --lang zh wrote them
    answered = [r for r in existing if not r["error"]]
    for r in answered[1::2]:
        r["precision"] = None  # written before rows said their precision
    other_precision = {r["path"] for r in answered[:6:2]}
    for r in answered[:6:2]:
        r["precision"] = "int8"
    output = tmp_path / "results.csv"
    write_results(existing, output)

    # RAY_ADDRESS (or a `ray start` cluster on this machine) must not hijack the local cluster.
    proc = run(str(corpus["tree"]), "--actors", "1", "--output", str(output),
               env={**os.environ, "RAY_ADDRESS": f"127.0.0.1:{_free_port()}"})
    assert proc.returncode == 1, proc.stderr
    errors = len(corpus["corrupt"])
    assert counts(proc.stderr) == (len(answered) - 3, len(dropped) + errors + 3)
    note = "3 of them were classified before in int8; they are classified again in fp32"
    assert note in " ".join(proc.stderr.split())
    final = read_results(output)
    assert sorted(r["path"] for r in final) == sorted(tree_paths)
    kept = [r for r in final if r["top_scores"] == SENTINEL]
    assert len(kept) == len(answered) - 3
    assert sum(r["precision"] is None for r in kept) == len(answered[1::2])  # kept as they were: not guessed
    assert all(r["top_labels"] == [en[i] for i in r["top_indices"]] for r in kept)  # relabelled, not redone
    redone = [r for r in final if r["top_scores"] != SENTINEL]
    assert {r["path"] for r in redone} == dropped | set(corpus["corrupt"]) | other_precision
    match_reference(redone, [r["path"] for r in redone])


def test_throughput_one_vs_two_actors(dev_dir, reference, corpus, artifacts_dir, tmp_path):
    """images/s on the 300 dev photos with 1 and 2 actors; figures go to test-artifacts/ray_throughput.json."""
    figures = {"images": 300, "model": MODEL, "batch_size": 8, "cpu_count": os.cpu_count(), "runs": []}
    results = {}
    for actors in (1, 2):
        output = tmp_path / f"dev-{actors}.parquet"
        started = time.perf_counter()
        proc = run(str(dev_dir), "--actors", str(actors), "--output", str(output))
        wall = time.perf_counter() - started
        assert proc.returncode == 0, proc.stderr
        rate = re.search(r"in ([\d.]+) s \(([\d.]+) images/s", " ".join(proc.stderr.split()))
        assert rate, proc.stderr
        figures["runs"].append({"actors": actors, "pipeline_s": float(rate[1]), "images_per_s": float(rate[2]),
                                "command_wall_s": round(wall, 1), "load_average_1m": round(os.getloadavg()[0], 1)})
        results[actors] = {r["path"]: r["top_indices"] for r in read_results(output)}
    assert results[1] == results[2]
    assert results[1] == {p: [t["class_index"] for t in reference[p].top] for p in results[1]}
    (artifacts_dir / "ray_throughput.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed")
def test_openvino_runtime_on_ray_answers_like_the_local_openvino_engine(corpus, lite0_int8, dev_dir, tmp_path):
    """--runtime openvino reaches the actors: their answers are the local OpenVINO engine's, and
    an artifact without a verification record is refused before Ray starts."""
    from imgcls.artifacts import artifact_dir
    from imgcls.catalog import resolve_model
    from imgcls.engine import Classifier
    from imgcls.errors import ImgclsError
    from imgcls.runtimes.openvino import require_verification, verify_openvino

    spec = resolve_model(MODEL)
    try:
        require_verification(spec, "int8", lite0_int8)
    except ImgclsError:
        verify_openvino(spec, "int8", sorted(dev_dir.glob("*.JPEG"))[1::2])
    output = tmp_path / "openvino.parquet"
    proc = run(str(corpus["list_file"]), "--precision", "int8", "--runtime", "openvino", "--output", str(output))
    assert "OpenVINO" in proc.stderr and proc.returncode == 1, proc.stderr  # corrupt files: partial success
    rows = {r["path"]: r for r in read_results(output)}
    local = Classifier(MODEL, "int8", threads=1, runtime="openvino").predict(corpus["paths"], top_k=5)
    assert len(rows) == len(local) == len(corpus["paths"])
    assert {p.source for p in local if not p.ok} == {path for path, r in rows.items() if r["error"]}
    same = [rows[p.source]["top_indices"][0] == p.top[0]["class_index"] for p in local if p.ok]
    assert sum(same) >= 0.95 * len(same), f"{sum(same)} of {len(same)}"
    # ... and the scores are OpenVINO's, not ONNX Runtime's (which differ in the third decimal or so).
    onnx = {p.source: p for p in Classifier(MODEL, "int8", threads=1).predict(corpus["paths"], top_k=5) if p.ok}
    ov_gap = [abs(rows[p.source]["top_scores"][0] - p.top[0]["score"]) for p in local if p.ok]
    ort_gap = [abs(rows[p.source]["top_scores"][0] - onnx[p.source].top[0]["score"]) for p in local if p.ok]
    print(f"median top-1 score gap to local OpenVINO {np.median(ov_gap):.2e}, to ONNX Runtime {np.median(ort_gap):.2e}")
    assert np.median(ov_gap) < np.median(ort_gap) / 10

    # A store holding the same verified fp32 artifact, but no OpenVINO record for it.
    home = tmp_path / "home"
    folder = home / "artifacts" / artifact_dir(spec).name
    folder.mkdir(parents=True)
    for name in ("fp32.onnx", "fp32.json"):
        shutil.copyfile(artifact_dir(spec) / name, folder / name)
    unverified = subprocess.run(predict_cmd(str(corpus["list_file"]), "--runtime", "openvino", "--output",
                                            str(tmp_path / "fp32.parquet")),
                                capture_output=True, text=True, timeout=300, env={**os.environ, "IMGCLS_HOME": str(home)})
    assert unverified.returncode == 3, unverified.stderr[-2000:]
    assert "has not been verified on OpenVINO" in unverified.stderr and "Traceback" not in unverified.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def ray_head(tmp_path):
    """A separate Ray cluster (`ray start --head --block`), as on a real cluster's head node."""
    port = _free_port()
    ray_cli = str(Path(sys.executable).with_name("ray"))
    # Ray >= 2.50 protects `ray start` clusters with a token; this throwaway one runs without, so
    # the test never touches the token file Ray keeps in the home folder.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=3",
                             "--object-store-memory=500000000", "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while subprocess.run([ray_cli, "status", f"--address={address}"], capture_output=True, env=env,
                             timeout=120).returncode != 0:
            assert head.poll() is None, "ray start --head exited"
            assert time.monotonic() < deadline, "the Ray head did not come up"
            time.sleep(2)
        yield address, env
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # --block: ray start stops what it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)


def test_join_an_existing_cluster(ray_head, corpus, match_reference, tmp_path, monkeypatch):
    """--address joins a running cluster; the artifact is shipped through its object store."""
    import hashlib

    import ray

    from imgcls.distributed import _local_artifact
    from imgcls.errors import ImgclsError

    address, env = ray_head
    output = tmp_path / "joined.parquet"
    proc = run(str(corpus["tree"]), "--address", address, "--actors", "2", "--output", str(output), env=env)
    assert proc.returncode == 1, proc.stderr
    tree_paths = [p for p in corpus["paths"] if p.startswith(str(corpus["tree"]))]
    match_reference(read_results(output), tree_paths)

    # A node without the driver's model store fetches the artifact from the object store.
    data = b"not really onnx, but bytes with a checksum" * 1000
    digest = hashlib.sha256(data).hexdigest()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(address=address, log_to_driver=False)
    try:
        ref = ray.put(data)
        cached = _local_artifact(tmp_path / "absent" / "fp32.onnx", digest, ref)
        assert cached.read_bytes() == data and cached.name == f"{digest}.onnx"
        assert _local_artifact(tmp_path / "absent" / "fp32.onnx", digest, None) == cached  # cache hit
        cached.unlink()
        with pytest.raises(ImgclsError, match="corrupt"):
            _local_artifact(tmp_path / "absent" / "fp32.onnx", "0" * 64, ref)
    finally:
        ray.shutdown()


def test_unreachable_cluster_is_a_clear_error(corpus, tmp_path):
    port = _free_port()  # nothing listens there
    proc = subprocess.run(predict_cmd(str(corpus["tree"]), "--address", f"127.0.0.1:{port}",
                                      "--output", str(tmp_path / "x.csv")),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "Could not join the Ray cluster" in " ".join(proc.stderr.split()) and "Traceback" not in proc.stderr


def test_auto_builds_the_int8_on_first_use(lite0_fp32, dev_dir, tmp_path, monkeypatch):
    """`auto`, the default, means on Ray what it means locally: the driver builds what the store
    lacks, here the INT8 from the embedded model's calibration table (in a child process, so the
    driver never imports torch), and the job answers with it: the local engine's classes."""
    from imgcls.artifacts import artifact_dir, find_artifact
    from imgcls.engine import Classifier

    spec = resolve_model(MODEL)
    home = tmp_path / "home"
    folder = home / "artifacts" / artifact_dir(spec).name
    folder.mkdir(parents=True)
    for name in ("fp32.onnx", "fp32.json"):  # a store holding the verified fp32 artifact only
        shutil.copyfile(artifact_dir(spec) / name, folder / name)
    photos = sorted(dev_dir.glob("*.JPEG"))[:12]
    output = tmp_path / "int8.jsonl"
    proc = run(*map(str, photos), "--precision", "auto", "--output", str(output),
               env={**os.environ, "IMGCLS_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Building the INT8 artifact from the model's calibration table" in proc.stderr
    assert f"with {MODEL} (int8" in " ".join(proc.stderr.split())

    monkeypatch.setenv("IMGCLS_HOME", str(home))
    artifact = find_artifact(spec, "int8")  # built, verified and installed in the user's store
    assert artifact[0].parent == folder
    local = Classifier(MODEL, "int8", threads=1, artifact=artifact).predict(photos, top_k=5)
    rows = {row["path"]: row for row in read_results(output)}
    assert {p.source: [t["class_index"] for t in p.top] for p in local} == \
        {path: row["top_indices"] for path, row in rows.items()}
    assert {row["precision"] for row in rows.values()} == {"int8"}
