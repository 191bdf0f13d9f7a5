"""Validation metrics and the bundle's ``report/``: JSON, a readable Markdown table, two PNGs.

The PNGs are drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no
global state), so training works on a headless server and inside tests.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from imgcls.training.events import EpochRecord

__all__ = ["classification_metrics", "write_report"]


def classification_metrics(logits: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, loss, per-class precision/recall/F1/support and the confusion matrix.

    ``confusion[i][j]`` counts images of class i predicted as class j. Precision of a class that
    was never predicted is 0 (and said so by ``predicted`` = 0), as is recall of a class with no
    validation images (``support`` = 0).
    """
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    n = len(class_names)
    predicted = logits.argmax(1) if len(logits) else np.zeros(0, np.int64)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    loss = float(-log_probs[np.arange(len(labels)), labels].mean()) if len(labels) else float("nan")
    per_class = {}
    for i, name in enumerate(class_names):
        tp = int(confusion[i, i])
        support, guessed = int(confusion[i].sum()), int(confusion[:, i].sum())
        precision = tp / guessed if guessed else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support, "predicted": guessed}
    with_support = [v for v in per_class.values() if v["support"]]
    return {
        "images": int(len(labels)),
        "accuracy": float((predicted == labels).mean()) if len(labels) else float("nan"),
        "loss": loss,
        "macro_precision": float(np.mean([v["precision"] for v in with_support])) if with_support else 0.0,
        "macro_recall": float(np.mean([v["recall"] for v in with_support])) if with_support else 0.0,
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def _confusion_png(path: Path, confusion: np.ndarray, class_names: list[str]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(class_names)
    side = min(4 + 0.45 * n, 24)
    figure = Figure(figsize=(side + 1.5, side), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    # Row-normalised colours (recall per true class), raw counts written in the cells.
    totals = confusion.sum(1, keepdims=True)
    shares = np.divide(confusion, totals, out=np.zeros(confusion.shape, float), where=totals > 0)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    labels = [name if len(name) <= 24 else name[:23] + "…" for name in class_names]
    ax.set_xticks(range(n), labels, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Validation confusion matrix")
    if n <= 40:
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(
                        j,
                        i,
                        str(confusion[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if shares[i, j] > 0.5 else "black",
                    )
    figure.tight_layout()
    figure.savefig(path)


def _curves_png(path: Path, history: list[EpochRecord], best_epoch: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    epochs = [r.epoch for r in history]
    for position, (key, title) in enumerate((("loss", "Loss (cross-entropy)"), ("acc", "Accuracy")), 1):
        ax = figure.add_subplot(1, 2, position)
        ax.plot(epochs, [getattr(r, f"train_{key}") for r in history], marker=".", label="train")
        ax.plot(epochs, [getattr(r, f"val_{key}") for r in history], marker=".", label="validation")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"kept (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if key == "acc":
            ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1%}"


def _markdown(config: dict, metrics: dict, history: list[EpochRecord], dataset_notes: dict) -> str:
    training = config["training"]
    lines = [
        f"# {config['name']}: fine-tuned {config['base_model']} ({training['mode']} mode)",
        "",
        f"Validation accuracy **{_fmt(metrics['accuracy'])}** on {metrics['images']} images "
        f"(loss {metrics['loss']:.4f}); kept epoch {training['best_epoch']} of {training['epochs_run']} run"
        f"{' (training was interrupted)' if training['interrupted'] else ''}.",
        f"Trained on {training['train_images']} images in {training['seconds']['training']:.1f} s; "
        f"created {config['created']} with imgcls {config['imgcls_version']}.",
        "",
        "| class | train images | val images | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, train_count in zip(config["class_names"], training["train_images_per_class"]):
        row = metrics["per_class"][name]
        lines.append(
            f"| {name} | {train_count} | {row['support']} | {_fmt(row['precision'])} | "
            f"{_fmt(row['recall'])} | {_fmt(row['f1'])} |"
        )
    lines += [
        "",
        f"Macro precision {_fmt(metrics['macro_precision'])}, macro recall {_fmt(metrics['macro_recall'])}.",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "![training curves](training_curves.png)",
        "",
        "## Epochs",
        "",
        "| epoch | train loss | train acc | val loss | val acc | seconds |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in history:
        mark = " (kept)" if r.epoch == training["best_epoch"] else ""
        lines.append(
            f"| {r.epoch}{mark} | {r.train_loss:.4f} | {_fmt(r.train_acc)} | {r.val_loss:.4f} | "
            f"{_fmt(r.val_acc)} | {r.seconds:.2f} |"
        )
    skipped = dataset_notes.get("unreadable_skipped") or []
    if skipped or dataset_notes.get("non_image_files_ignored"):
        lines += ["", "## Skipped files", ""]
        lines += [f"- {item['file']}: {item['reason']}" for item in skipped]
        if dataset_notes.get("non_image_files_ignored"):
            lines.append(f"- {dataset_notes['non_image_files_ignored']} non-image files ignored")
    return "\n".join(lines) + "\n"


def write_report(
    folder: Path,
    config: dict,
    metrics: dict,
    history: list[EpochRecord],
    dataset_notes: dict,
    per_image: list[dict] | None = None,
) -> None:
    """Write ``metrics.json``, ``report.md``, ``confusion_matrix.png`` and ``training_curves.png``.

    ``per_image`` ({file, label, predicted, score, correct} per validation image) goes into the
    JSON, and its mistakes into the Markdown, so the user can look at what went wrong.
    """
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "validation": metrics,
        "history": [r.to_dict() for r in history],
        "dataset": dataset_notes,
        "validation_images": per_image or [],
    }
    (folder / "metrics.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    text = _markdown(config, metrics, history, dataset_notes)
    mistakes = [row for row in per_image or [] if not row["correct"]]
    if mistakes:
        text += "\n## Misclassified validation images\n\n| file | class | predicted | score |\n|---|---|---|---:|\n"
        text += "".join(f"| {r['file']} | {r['label']} | {r['predicted']} | {r['score']:.1%} |\n" for r in mistakes)
    (folder / "report.md").write_text(text, encoding="utf-8")
    _confusion_png(folder / "confusion_matrix.png", np.asarray(metrics["confusion_matrix"]), config["class_names"])
    _curves_png(folder / "training_curves.png", history, config["training"]["best_epoch"])
