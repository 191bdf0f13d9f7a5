"""One training run, start to finish: check data -> split -> train -> bundle -> ONNX -> serve check."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from imgcls.catalog import ModelSpec, Preprocessing, resolve_model
from imgcls.catalog.entries import CATALOG
from imgcls.catalog.store import store_home
from imgcls.errors import InputError
from imgcls.runtimes import default_threads
from imgcls.training import bundle as bundle_io
from imgcls.training.dataset import Dataset, load_zh_names, scan_dataset, stratified_split
from imgcls.training.events import EpochRecord, NullReporter, Reporter
from imgcls.training.full import BACKBONE_LR_SCALE, CROP_RATIO, CROP_SCALE, FULL_DEFAULTS
from imgcls.training.linear import LINEAR_DEFAULTS
from imgcls.training.report import classification_metrics, write_report

__all__ = ["TrainSettings", "TrainResult", "train", "MODES"]

MODES = ("linear", "full")


@dataclass
class TrainSettings:
    """Everything ``imgcls train`` takes. ``None`` means the mode's default (see the CLI help)."""

    data_dir: Path
    out: Path
    base: str = "efficientnet_lite0"
    mode: str = "linear"
    val_dir: Path | None = None
    val_split: float = 0.2
    epochs: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    batch_size: int = 32
    image_size: int | None = None  # centre crop; resize = round(crop * 256 / 224)
    seed: int = 0
    threads: int | None = None
    name: str | None = None
    zh_names: Path | None = None
    feature_cache: bool = True  # linear mode: reuse features across runs ($IMGCLS_HOME/cache/features)
    draft: bool = True  # decode large JPEGs at reduced scale, as `imgcls serve` does by default
    export_onnx: bool = True
    overwrite: bool = False

    def resolved(self) -> "TrainSettings":
        """Fill in the mode's defaults and check every value (InputError on a bad one)."""
        if self.mode not in MODES:
            raise InputError(f"--mode must be linear or full (got {self.mode!r}).")
        if self.base not in CATALOG:
            raise InputError(f"--base must be one of {', '.join(CATALOG)} (got {self.base!r}).")
        defaults = LINEAR_DEFAULTS if self.mode == "linear" else FULL_DEFAULTS
        settings = replace(
            self,
            data_dir=Path(self.data_dir).expanduser(),
            out=Path(self.out).expanduser(),
            epochs=self.epochs if self.epochs is not None else defaults["epochs"],
            lr=self.lr if self.lr is not None else defaults["lr"],
            weight_decay=self.weight_decay if self.weight_decay is not None else defaults["weight_decay"],
            threads=self.threads or default_threads(),
        )
        checks = [
            (settings.epochs >= 1, "--epochs must be at least 1"),
            (settings.lr > 0, "--lr must be positive"),
            (settings.weight_decay >= 0, "--weight-decay must be zero or positive"),
            (settings.batch_size >= 1, "--batch-size must be at least 1"),
            (settings.image_size is None or 32 <= settings.image_size <= 1024, "--image-size must be 32-1024"),
            (settings.val_dir is not None or 0 < settings.val_split < 1, "--val-split must be between 0 and 1"),
            (settings.threads >= 1, "--threads must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message + ".")
        return settings


@dataclass
class TrainResult:
    bundle: Path
    config: dict
    metrics: dict
    history: list[EpochRecord] = field(default_factory=list)
    interrupted: bool = False
    onnx: dict | None = None  # the fp32 artifact's manifest, when exported


def _preprocessing(base: ModelSpec, image_size: int | None) -> Preprocessing:
    pp = base.preprocessing
    if image_size is None or image_size == pp.crop:
        return pp
    return replace(pp, crop=image_size, resize=int(round(image_size * 256 / 224)))


def _load_data(
    settings: TrainSettings, pp: Preprocessing, reporter: Reporter
) -> tuple[Dataset, list[int], list[int], Dataset | None]:
    """Scan (and check) the data, then split: (train dataset, train idx, val idx, val dataset)."""

    def progress_for(stage: str):
        state = {"started": False}

        def on_progress(done: int, total: int) -> None:
            if not state["started"]:
                reporter.stage(stage, total=total)
                state["started"] = True
            reporter.advance()

        return on_progress

    draft_size = pp.resize if settings.draft else None
    data = scan_dataset(
        settings.data_dir, on_progress=progress_for("Checking training images"), draft_size=draft_size
    )
    _tell_skipped(data, reporter)
    if settings.val_dir is not None:
        val = scan_dataset(
            settings.val_dir,
            class_names=data.class_names,
            what="validation",
            min_per_class=0,
            on_progress=progress_for("Checking validation images"),
            draft_size=draft_size,
        )
        _tell_skipped(val, reporter)
        missing = [n for n, c in zip(val.class_names, val.counts()) if c == 0]
        if missing:
            reporter.message(f"The validation folder has no images of: {', '.join(missing)}.", "warning")
        return data, list(range(len(data.items))), [], val
    train_idx, val_idx = stratified_split(
        [i.label for i in data.items], len(data.class_names), settings.val_split, settings.seed
    )
    return data, train_idx, val_idx, None


def _tell_skipped(data: Dataset, reporter: Reporter) -> None:
    if data.unreadable:
        listed = "; ".join(f"{f}: {r}" for f, r in data.unreadable[:20])
        more = f" and {len(data.unreadable) - 20} more" if len(data.unreadable) > 20 else ""
        reporter.message(
            f"Skipped {len(data.unreadable)} unreadable image(s) in {data.root}: {listed}{more}", "warning"
        )
    if data.non_images:
        shown = ", ".join(data.non_images[:5]) + (" ..." if len(data.non_images) > 5 else "")
        reporter.message(f"Ignored {len(data.non_images)} non-image file(s) in {data.root} ({shown}).", "warning")


def train(settings: TrainSettings, reporter: Reporter | None = None) -> TrainResult:
    """Fine-tune ``settings.base`` on ``settings.data_dir`` and write a bundle to ``settings.out``.

    Raises:
        InputError: bad settings or output folder (before any work).
        DatasetError: data that cannot be trained on (before any training).
        WeightsNotFoundError: the base model's weights are not installed.
        KeyboardInterrupt: Ctrl-C before the first epoch finished (nothing to keep).
    """
    from imgcls import __version__
    from imgcls.training.network import build_with_new_head, deterministic_torch

    reporter = reporter or NullReporter()
    started = time.perf_counter()
    settings = settings.resolved()
    bundle_io.check_output(settings.out, settings.overwrite)
    if settings.out.resolve().is_relative_to(settings.data_dir.resolve()):
        raise InputError(
            f"--out {settings.out} is inside the training folder, where it would become a class; "
            "write the bundle somewhere else."
        )
    name = bundle_io.bundle_name(settings.name, settings.out)
    base = resolve_model(settings.base)
    base.weights_path()  # fail now, not after scanning, when the base weights are missing
    pp = _preprocessing(base, settings.image_size)

    data, train_idx, val_idx, val_data = _load_data(settings, pp, reporter)
    class_names = data.class_names
    zh = None
    if settings.zh_names is not None:
        zh, missing = load_zh_names(settings.zh_names, class_names)
        if missing:
            reporter.message(f"No Chinese name for {', '.join(missing)}; the folder name is used.", "warning")
    train_items = [data.items[i] for i in train_idx]
    val_items = val_data.items if val_data is not None else [data.items[i] for i in val_idx]
    train_y = np.array([i.label for i in train_items], np.int64)
    val_y = np.array([i.label for i in val_items], np.int64)
    reporter.message(
        f"{len(class_names)} classes, {len(train_items)} training and {len(val_items)} validation "
        f"images; base {base.name}, {settings.mode} mode, {pp.crop}px, seed {settings.seed}."
    )

    timings: dict[str, float] = {}
    with deterministic_torch(settings.seed, settings.threads):
        network = build_with_new_head(base, len(class_names))
        if settings.mode == "linear":
            fit = _train_linear(settings, base, pp, network, train_items, train_y, val_items, val_y, reporter, timings)
        else:
            fit = _train_full(settings, pp, network, train_items, train_y, val_items, val_y, reporter, timings)
    history, best_epoch, interrupted, state, val_logits = fit
    if best_epoch == 0:
        raise KeyboardInterrupt  # stopped before one epoch finished: nothing worth keeping
    if interrupted:
        reporter.message(
            f"Interrupted after epoch {history[-1].epoch}: writing the bundle from the best epoch "
            f"so far ({best_epoch}).",
            "warning",
        )

    metrics = classification_metrics(val_logits, val_y, class_names)
    training = {
        "mode": settings.mode,
        "data_dir": str(settings.data_dir.resolve()),
        "validation": {"folder": str(settings.val_dir.resolve())}
        if settings.val_dir
        else {"split": settings.val_split, "stratified": True, "seed": settings.seed},
        "epochs": settings.epochs,
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "interrupted": interrupted,
        "converged": bool(history and settings.mode == "linear" and len(history) < settings.epochs and not interrupted),
        "lr": settings.lr,
        "weight_decay": settings.weight_decay,
        "batch_size": settings.batch_size,
        "image_size": pp.crop,
        "seed": settings.seed,
        "draft_decoding": settings.draft,
        "threads": settings.threads,
        "recipe": _recipe(settings),
        "train_images": len(train_items),
        "val_images": len(val_items),
        "train_images_per_class": np.bincount(train_y, minlength=len(class_names)).tolist(),
        "val_images_per_class": np.bincount(val_y, minlength=len(class_names)).tolist(),
        "unreadable_skipped": len(data.unreadable),
        "non_image_files_ignored": len(data.non_images),
        "seconds": {**{k: round(v, 2) for k, v in timings.items()}},
    }
    config = {
        "name": name,
        "architecture": base.architecture,
        "base_model": base.name,
        "base_weights_sha256": base.weights_sha256,
        "class_names": class_names,
        **({"class_names_zh": zh} if zh else {}),
        "num_classes": len(class_names),
        "preprocessing": pp.to_dict(),
        "weights": None,
        "training": training,
        "validation": {k: v for k, v in metrics.items() if k != "confusion_matrix"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "imgcls_version": __version__,
    }
    return _write(settings, config, state, metrics, history, data, val_items, val_logits, reporter, started)


def _per_image(items, logits, class_names: list[str], root: Path) -> list[dict]:
    """Each validation image's true and predicted class (the report lists the mistakes)."""
    from imgcls.engine import softmax

    probabilities = softmax(np.asarray(logits, np.float32))
    rows = []
    for item, probs in zip(items, probabilities):
        try:
            name = str(item.path.relative_to(root))
        except ValueError:  # a separate --val folder
            name = str(item.path)
        best = int(probs.argmax())
        rows.append(
            {
                "file": name,
                "label": class_names[item.label],
                "predicted": class_names[best],
                "score": round(float(probs[best]), 6),
                "correct": best == item.label,
            }
        )
    return rows


def _recipe(settings: TrainSettings) -> str:
    if settings.mode == "linear":
        return (
            "frozen backbone; features cached once; softmax head fitted by full-batch L-BFGS (strong-Wolfe) "
            "on standardised features with L2 weight decay; best epoch by validation accuracy, then loss"
        )
    return (
        f"all layers; AdamW, head lr {settings.lr:g}, backbone lr x{BACKBONE_LR_SCALE:g}, cosine decay; "
        f"RandomResizedCrop area {CROP_SCALE}, aspect {tuple(round(r, 3) for r in CROP_RATIO)}, horizontal flip; "
        "BatchNorm statistics frozen; best epoch by validation accuracy, then loss"
    )


def _train_linear(settings, base, pp, network, train_items, train_y, val_items, val_y, reporter, timings):
    import torch

    from imgcls.training.linear import fit_linear_head
    from imgcls.training.network import FeatureCache, classifier_name, extract_features

    cache_root = store_home() / "cache" / "features"
    cache = FeatureCache(cache_root, base, pp, settings.draft) if settings.feature_cache else None
    items = train_items + val_items
    reporter.stage("Extracting features", total=len(items))
    t0 = time.perf_counter()
    features, from_cache = extract_features(
        network,
        [i.path for i in items],
        [i.sha256 for i in items],
        pp,
        batch_size=settings.batch_size,
        cache=cache,
        on_progress=reporter.advance,
        draft=settings.draft,
    )
    timings["features"] = time.perf_counter() - t0
    if from_cache:
        reporter.message(f"{from_cache} of {len(items)} images' features came from the cache.")
    train_x, val_x = features[: len(train_items)], features[len(train_items) :]
    t0 = time.perf_counter()
    # The head problem is tiny: one thread is fastest (and threads contending for busy cores
    # slow small matrix products by an order of magnitude).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit = fit_linear_head(
            train_x,
            train_y,
            val_x,
            val_y,
            network.classifier.out_features,
            epochs=settings.epochs,
            lr=settings.lr,
            weight_decay=settings.weight_decay,
            reporter=reporter,
        )
    finally:
        torch.set_num_threads(threads)
    timings["fit"] = time.perf_counter() - t0
    head = classifier_name(network)
    state = network.state_dict()
    state[f"{head}.weight"] = torch.from_numpy(fit.weight)
    state[f"{head}.bias"] = torch.from_numpy(fit.bias)
    network.load_state_dict(state, strict=True)
    val_logits = val_x @ fit.weight.T + fit.bias
    return fit.history, fit.best_epoch, fit.interrupted, network.state_dict(), val_logits


def _train_full(settings, pp, network, train_items, train_y, val_items, val_y, reporter, timings):
    from imgcls.training.full import fine_tune

    t0 = time.perf_counter()
    fit = fine_tune(
        network,
        [i.path for i in train_items],
        train_y,
        [i.path for i in val_items],
        val_y,
        pp,
        epochs=settings.epochs,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        batch_size=settings.batch_size,
        seed=settings.seed,
        reporter=reporter,
        draft=settings.draft,
    )
    timings["fit"] = time.perf_counter() - t0
    return fit.history, fit.best_epoch, fit.interrupted, fit.state, fit.val_logits


def _write(settings, config, state, metrics, history, data, val_items, val_logits, reporter, started) -> TrainResult:
    """Stage the bundle, export + verify ONNX into it, check serving agrees, move it into place."""
    staging = bundle_io.staging_dir(settings.out)
    try:
        reporter.stage("Writing the bundle")
        config["weights"] = bundle_io.save_weights(staging, state)
        config["training"]["seconds"]["training"] = round(time.perf_counter() - started, 2)
        write_report(
            staging / "report",
            config,
            metrics,
            history,
            data.summary(),
            _per_image(val_items, val_logits, config["class_names"], data.root),
        )
        manifest = None
        from imgcls.catalog.bundles import write_bundle_config

        write_bundle_config(staging, config)  # export reads the bundle through resolve_model
        if settings.export_onnx:
            manifest = _export(staging, config, val_items, val_logits, settings, reporter)
        final = bundle_io.finalize(staging, settings.out, config)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    interrupted = config["training"]["interrupted"]
    return TrainResult(
        bundle=final, config=config, metrics=metrics, history=history, interrupted=interrupted, onnx=manifest
    )


def _export(staging: Path, config: dict, val_items, val_logits, settings, reporter) -> dict | None:
    """fp32 ONNX into ``bundle/onnx`` verified on real validation images, then a serving check.

    A failed or interrupted export never costs the trained weights: the bundle is written
    without ``onnx/`` (it is then built on first use, or with ``imgcls models export BUNDLE``).
    """
    import importlib.util
    import shutil

    from imgcls.artifacts import export_fp32
    from imgcls.engine import Classifier
    from imgcls.errors import ImgclsError
    from imgcls.training.network import load_eval_array

    if importlib.util.find_spec("onnxscript") is None:
        reporter.message(
            "ONNX export skipped (needs onnxscript: pip install 'imgcls[export]'); the bundle is written without it.",
            "warning",
        )
        return None
    spec = resolve_model(staging)
    reporter.stage("Exporting and verifying the ONNX artifact")
    try:
        verify = np.stack([load_eval_array(i.path, spec.preprocessing, settings.draft) for i in val_items[:8]])
        t0 = time.perf_counter()
        manifest = export_fp32(spec, out_dir=staging / "onnx", verify_images=verify)
        config["training"]["seconds"]["onnx_export"] = round(time.perf_counter() - t0, 2)
        # The serving path (decode -> preprocess -> ONNX Runtime) must give the answers training
        # measured: same top-1 on the validation images.
        reporter.stage("Checking the bundle serves the same answers", total=len(val_items))
        classifier = Classifier(staging, "fp32", threads=settings.threads, batch_size=16)
        served = [p.top[0]["class_index"] for p in classifier.predict([i.path for i in val_items], top_k=1)]
        classifier.close()
        agreement = float(np.mean(np.asarray(served) == np.asarray(val_logits).argmax(1)))
        config["validation"]["serving_check"] = {
            "runtime": "onnxruntime fp32",
            "images": len(served),
            "top1_agreement_with_training": agreement,
        }
        if agreement < 1.0:
            reporter.message(
                f"The ONNX artifact agrees with training on {agreement:.1%} of validation images (near-ties can flip).",
                "warning",
            )
        return manifest
    except KeyboardInterrupt:
        problem = "ONNX export interrupted"
        config["training"]["interrupted"] = True
    except ImgclsError as exc:
        problem = f"ONNX export failed: {exc.message}"
    except Exception as exc:  # an exporter bug must not cost the trained weights
        problem = f"ONNX export failed ({exc.__class__.__name__}: {str(exc)[:300]})"
    reporter.message(
        f"{problem}. The bundle is written without it; it is built on first use or with `imgcls models export BUNDLE`.",
        "warning",
    )
    shutil.rmtree(staging / "onnx", ignore_errors=True)
    config["validation"].pop("serving_check", None)
    return None
