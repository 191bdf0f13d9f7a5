"""Full fine-tuning: learns, writes a loadable bundle at a custom image size, keeps the best epoch
on Ctrl-C; and both modes are deterministic for a seed."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

from imgcls.catalog import resolve_model
from imgcls.training import NullReporter, TrainSettings, train
from training_helpers import cli_env, imgcls_cmd, link_dataset

pytestmark = pytest.mark.slow

FULL_SMALL = dict(mode="full", epochs=3, image_size=96, batch_size=8, threads=1, export_onnx=False)


def test_full_mode_learns_and_writes_a_loadable_bundle(small_dataset, tmp_path):
    import torch

    from imgcls.runtimes.torch_ref import load_torch_model
    from imgcls.training.network import load_eval_array

    reporter = NullReporter()
    started = time.perf_counter()
    result = train(TrainSettings(data_dir=small_dataset, out=tmp_path / "full", **FULL_SMALL), reporter)
    history = result.history
    print(
        f"\nfull: {[(r.epoch, round(r.train_loss, 3), round(r.val_loss, 3), r.val_acc) for r in history]}, "
        f"{time.perf_counter() - started:.1f} s"
    )
    assert [r.epoch for r in history] == [1, 2, 3] and len(reporter.epochs) == 3
    # It improves on its first epoch: training loss falls, and validation loss ends lower.
    assert history[-1].train_loss < history[0].train_loss
    assert min(r.val_loss for r in history[1:]) < history[0].val_loss
    assert result.metrics["images"] == 6  # 2 of 8 per class

    config = result.config
    assert config["preprocessing"]["crop"] == 96 and config["preprocessing"]["resize"] == 110  # round(96*256/224)
    assert config["training"]["mode"] == "full" and "RandomResizedCrop" in config["training"]["recipe"]
    # The saved weights are the kept epoch's: PyTorch reproduces the reported validation figures.
    spec = resolve_model(result.bundle)
    network = load_torch_model(spec)
    report = json.loads((result.bundle / "report" / "metrics.json").read_text(encoding="utf-8"))
    rows = report["validation_images"]
    batch = np.stack([load_eval_array(small_dataset / row["file"], spec.preprocessing) for row in rows])
    with torch.inference_mode():
        predicted = network(torch.from_numpy(batch)).argmax(1).tolist()
    assert [spec.labels()[i] for i in predicted] == [row["predicted"] for row in rows]


def test_ctrl_c_keeps_the_best_epoch(small_dataset, tmp_path):
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        imgcls_cmd(
            "train",
            str(small_dataset),
            "--out",
            str(out),
            "--mode",
            "full",
            "--epochs",
            "40",
            "--image-size",
            "64",
            "--batch-size",
            "8",
            "--threads",
            "1",
            "--no-export",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        # A suite started from a background shell inherits SIGINT as ignored, and Python keeps it
        # ignored; a user's Ctrl-C arrives with the default disposition, so give the child that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while not any(line.startswith("epoch   2/40") for line in lines):
        assert proc.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, "no second epoch after 300 s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=300)  # stderr belongs to the reader thread; stdout is small and read after exit
    stdout = proc.stdout.read()
    reader.join(10)
    assert proc.returncode == 130, "".join(lines) + stdout
    assert "Interrupted after epoch" in "".join(lines)
    assert "the bundle holds the best epoch so far" in stdout
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    training = config["training"]
    assert training["interrupted"] is True and 2 <= training["epochs_run"] < 40
    assert 1 <= training["best_epoch"] <= training["epochs_run"]
    resolve_model(out).weights_path()  # weights present and matching their checksum
    assert not list(tmp_path.glob(".interrupted.partial-*"))


def test_separate_validation_folder(small_dataset, categories, tmp_path):
    """--val DIR: every training image trains; the other folder (a class may be missing) validates."""
    val = link_dataset(tmp_path / "val", {"dogs": categories["dogs"][8:12], "birds": categories["birds"][8:10]})
    result = train(TrainSettings(data_dir=small_dataset, out=tmp_path / "b", val_dir=val, threads=1, export_onnx=False))
    training = result.config["training"]
    assert training["train_images"] == 24 and training["val_images"] == 6
    assert training["val_images_per_class"] == [2, 4, 0]  # birds, dogs, vehicles
    assert training["validation"] == {"folder": str(val.resolve())}
    assert result.metrics["per_class"]["vehicles"]["support"] == 0


def _weights_digest(bundle) -> str:
    return hashlib.sha256((bundle / "weights.pth").read_bytes()).hexdigest()


@pytest.mark.parametrize("mode", ["linear", "full"])
def test_same_seed_same_result(small_dataset, tiny_dataset, tmp_path, mode):
    """Two runs with one seed give identical metrics (and weights); another seed differs."""
    extra = (
        dict(feature_cache=False, threads=1, export_onnx=False)
        if mode == "linear"
        else dict(FULL_SMALL, epochs=2, image_size=64)
    )
    data = tiny_dataset if mode == "linear" else small_dataset  # linear re-extracts features each run
    runs = [
        train(TrainSettings(data_dir=data, out=tmp_path / f"run{i}", seed=seed, **extra))
        for i, seed in enumerate((5, 5))
    ]
    if mode == "linear":
        extra["feature_cache"] = True  # the seed changes the split, not the features
    runs.append(train(TrainSettings(data_dir=data, out=tmp_path / "run2", seed=6, **extra)))
    first, second, other = runs
    for a, b in zip(first.history, second.history):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert getattr(a, key) == pytest.approx(getattr(b, key), abs=1e-6, rel=0)
    assert first.metrics["loss"] == pytest.approx(second.metrics["loss"], abs=1e-6, rel=0)
    assert first.metrics["confusion_matrix"] == second.metrics["confusion_matrix"]
    assert _weights_digest(first.bundle) == _weights_digest(second.bundle)
    assert first.history[0].train_loss != pytest.approx(other.history[0].train_loss, abs=1e-6, rel=0)
