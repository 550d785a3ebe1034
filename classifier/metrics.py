"""Test-set metrics of a scheme and the paper's figures: confusion matrix, precision-recall."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classifier.schemes import IGNORE, SchemeClasses


def scheme_metrics(sc: SchemeClasses, y_true: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, macro-F1 and per-class precision/recall/F1 on the products with a trained
    class (products of left-out classes have no right answer among the trained classes)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    keep = y_true != IGNORE
    y, pred = y_true[keep], probs[keep].argmax(axis=1)
    labels = list(range(len(sc.classes)))
    p, r, f, n = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    return {
        "test_products": int(keep.sum()),
        "accuracy": round(float(accuracy_score(y, pred)), 4),
        "macro_f1": round(
            float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)), 4
        ),
        "per_class": {
            c: {
                "precision": round(float(p[i]), 4),
                "recall": round(float(r[i]), 4),
                "f1": round(float(f[i]), 4),
                "support": int(n[i]),
            }
            for i, c in enumerate(sc.classes)
        },
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(sc: SchemeClasses, y_true: np.ndarray, probs: np.ndarray, path: Path) -> Path:
    """Row-normalised confusion matrix (each row: where a true class's products went)."""
    from sklearn.metrics import confusion_matrix

    plt = _pyplot()
    keep = y_true != IGNORE
    labels = list(range(len(sc.classes)))
    cm = confusion_matrix(y_true[keep], probs[keep].argmax(axis=1), labels=labels)
    cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.38 * len(sc.classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(labels, sc.classes, rotation=90, fontsize=7)
    ax.set_yticks(labels, sc.classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{sc.scheme}: normalised confusion matrix (test set)")
    if len(sc.classes) <= 30:
        for i in labels:
            for j in labels:
                if cm[i, j] >= 0.01:
                    color = "white" if cm[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", fontsize=5,
                            color=color)  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_precision_recall(
    sc: SchemeClasses, y_true: np.ndarray, probs: np.ndarray, path: Path
) -> Path:
    """One-vs-rest precision-recall curve per class, with its average precision."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _pyplot()
    keep = y_true != IGNORE
    y, p = y_true[keep], probs[keep]
    fig, ax = plt.subplots(figsize=(9, 6))
    cmap = plt.get_cmap("tab20")
    for i, cls in enumerate(sc.classes):
        hit = y == i
        if not hit.any():
            continue
        precision, recall, _ = precision_recall_curve(hit, p[:, i])
        ap = average_precision_score(hit, p[:, i])
        ax.plot(recall, precision, lw=1, color=cmap(i % 20), label=f"{cls} (AP {ap:.2f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{sc.scheme}: precision-recall per class (test set)")
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
