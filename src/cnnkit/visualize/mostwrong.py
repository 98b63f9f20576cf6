"""The most-wrong images: the highest-loss examples of an evaluated set.

Sorting by the per-image cross-entropy -log p(true class) puts confident mistakes first - the
images worth looking at (mislabelled data, confusable classes, a preprocessing bug).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from cnnkit.data.types import ImageSet

EPS = 1e-12


def sample_losses(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) cross-entropy of each image: -log p[i, labels[i]] (probs (N,K), K=2 for binary models)."""
    p_true = np.asarray(probs, np.float64)[np.arange(len(labels)), np.asarray(labels)]
    return -np.log(np.clip(p_true, EPS, 1.0))


def most_wrong(probs: np.ndarray, labels: np.ndarray, n: int = 16) -> dict[str, np.ndarray]:
    """The ``n`` highest-loss images, highest first (ties: lower index first).

    Returns arrays of length min(n, N): ``index`` into the evaluated set, ``loss``, ``true`` and
    ``pred`` class indices, ``prob_pred`` (probability of the predicted class) and ``prob_true``.
    """
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    losses = sample_losses(probs, labels)
    order = np.argsort(-losses, kind="stable")[: max(0, n)]
    preds = probs.argmax(axis=1)
    return {
        "index": order,
        "loss": losses[order],
        "true": labels[order],
        "pred": preds[order],
        "prob_pred": probs[order, preds[order]],
        "prob_true": probs[order, labels[order]],
    }


def titles(result: dict[str, np.ndarray], classes: tuple[str, ...] | list[str]) -> list[str]:
    """'true 3 / pred 5 0.97' per image (probability of the predicted class)."""
    return [f"true {classes[t]}\npred {classes[p]} {q:.2f}"
            for t, p, q in zip(result["true"], result["pred"], result["prob_pred"])]


MISTAKE_COLOR = "tab:red"


def n_mistakes(result: dict[str, np.ndarray]) -> int:
    return int(np.sum(result["true"] != result["pred"]))


def plot_most_wrong(data: ImageSet, result: dict[str, np.ndarray], title: str = "") -> Figure:
    """Grid of the images in ``result`` (from :func:`most_wrong` on ``data``), titled true/pred/prob.

    When there are fewer mistakes than tiles the highest-loss right answers fill the grid, so
    the mistakes' titles are red.
    """
    from cnnkit.visualize.samples import plot_samples

    n = len(result["index"])
    colors = [MISTAKE_COLOR if t != p else "black" for t, p in zip(result["true"], result["pred"])]
    return plot_samples(data, index=result["index"], titles=titles(result, data.classes), title_colors=colors,
                        title=title or f"{n} most-wrong images, {n_mistakes(result)} misclassified (red)\n"
                                       "(highest loss first; p of the predicted class)")
