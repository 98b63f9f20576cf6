"""Confusion-matrix picture."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from cnnkit.visualize.figures import new_figure


def plot_confusion_matrix(cm: np.ndarray, classes: Sequence[str], normalize: bool = False, title: str = "") -> Figure:
    """Rows = true class, columns = predicted; counts written in the cells (row shares if ``normalize``)."""
    cm = np.asarray(cm)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    k = len(classes)
    size = max(4.0, 0.55 * k + 2)
    fig = new_figure(size + 1, size)
    ax = fig.add_subplot()
    im = ax.imshow(shown, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xticks(range(k), labels=classes, rotation=45, ha="right")
    ax.set_yticks(range(k), labels=classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    if k <= 30:
        threshold = shown.max() / 2 if shown.size else 0
        for i in range(k):
            for j in range(k):
                text = f"{shown[i, j]:.2f}" if normalize else str(int(cm[i, j]))
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if shown[i, j] > threshold else "black")
    return fig
