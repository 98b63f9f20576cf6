"""Training curves: every logged metric per epoch, training vs validation, one panel per curve.

The panels come from the declaration of the logged metrics (:func:`cnnkit.evaluate.logged.curves`):
accuracy and loss, then the validation-only ones (balanced accuracy, macro F1); a metric declared
there is drawn here without an edit.
"""

from __future__ import annotations

import math
from typing import Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnkit.evaluate.logged import LOGGED, Curve, Logged, curves
from cnnkit.visualize.figures import new_figure

STYLES = {"train": ("o-", "C0"), "validation": ("s-", "C1")}  # one colour per side on every panel


def drawn_curves(history: Sequence[dict[str, float]], logged: Sequence[Logged] = LOGGED) -> list[Curve]:
    """The declared curves that ``history`` has values for (all of them for an empty history)."""
    every = list(curves(logged))
    shown = [c for c in every if any(row.get(k) is not None for row in history for k in c.keys)]
    return shown or every


def plot_curves(history: Sequence[dict[str, float]], title: str = "", logged: Sequence[Logged] = LOGGED) -> Figure:
    """``history``: rows as written to history.json (epoch, acc, loss, val_acc, val_loss, ...); one panel
    for each curve of ``logged`` (the declaration) with values, two panels a row."""
    shown = drawn_curves(history, logged)
    cols = min(2, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig = new_figure(10, 4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    epochs = [row["epoch"] for row in history]
    for ax, curve in zip(axes, shown):
        for key in curve.keys:
            values = [row.get(key) for row in history]
            if any(v is not None for v in values):
                label = curve.label(key)
                style, colour = STYLES[label]
                ax.plot(epochs, values, style, color=colour, label=label, markersize=3)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.25
        ax.set_ylabel(curve.title)
        ax.set_title(curve.title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig
