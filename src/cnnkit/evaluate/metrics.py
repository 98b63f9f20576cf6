"""Classification metrics from predicted probabilities: pure numpy, no plotting."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """(K,K) int64; rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, probs.shape[1])
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean()) if len(labels) else float("nan")


def per_class_report(cm: np.ndarray, classes: Sequence[str]) -> list[dict]:
    """Precision, recall, F1 and support for each class (0 where undefined, as scikit-learn)."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return [{"class": c, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes, precision, recall, f1, support)]


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes that have images: accuracy as if every class were equally common."""
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float((np.diag(cm)[present] / support[present]).mean())


def macro_f1(cm: np.ndarray, report: list[dict] | None = None) -> float:
    """Unweighted mean F1 over all classes (0 for a class never predicted nor present); ``report`` is
    :func:`per_class_report` of ``cm`` where the caller has it already."""
    report = per_class_report(cm, [""] * len(cm)) if report is None else report
    return float(np.mean([r["f1"] for r in report]))


def classification_metrics(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str], k: int = 5) -> dict:
    """Everything the evaluate command reports, as plain data (JSON-serialisable)."""
    preds = probs.argmax(axis=1)
    cm = confusion_matrix(labels, preds, len(classes))
    report = per_class_report(cm, classes)
    eps = 1e-12
    nll = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], eps, 1)).mean()) if len(labels) else float("nan")
    return {
        "n": int(len(labels)),
        "accuracy": float((preds == labels).mean()) if len(labels) else float("nan"),
        f"top{min(k, len(classes))}_accuracy": top_k_accuracy(probs, labels, k),
        "loss": nll,
        "balanced_accuracy": balanced_accuracy(cm),
        "macro_f1": macro_f1(cm, report),
        "per_class": report,
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
    }


def format_report(metrics: dict) -> str:
    """Plain-text per-class table like scikit-learn's classification_report."""
    width = max([len(r["class"]) for r in metrics["per_class"]] + [8])
    lines = [f"{'':>{width}}  precision  recall  f1-score  support"]
    for r in metrics["per_class"]:
        lines.append(f"{r['class']:>{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:8.3f}  "
                     f"{r['support']:7d}")
    # top-k with k >= the number of classes is 1.0 by definition: not worth a line
    topk = [k for k in metrics if k.startswith("top") and k.endswith("_accuracy")
            and int(k[3:-len("_accuracy")]) < len(metrics["classes"])]
    lines.append("")
    lines.append(f"{'accuracy':>{width}}  {metrics['accuracy']:.4f}   ({metrics['n']} images)")
    for key in topk:
        lines.append(f"{key:>{width}}  {metrics[key]:.4f}")
    if "balanced_accuracy" in metrics:  # metrics files written before it have none
        lines.append(f"{'balanced':>{width}}  {metrics['balanced_accuracy']:.4f}")
    lines.append(f"{'macro F1':>{width}}  {metrics['macro_f1']:.4f}")
    if "ece" in metrics:
        lines.append(f"{'ECE':>{width}}  {metrics['ece']:.4f}   (uncalibrated {metrics['ece_uncalibrated']:.4f})")
    return "\n".join(lines)
