"""Training curves: accuracy and loss, train vs validation, per epoch."""

from __future__ import annotations

from typing import Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnkit.visualize.figures import new_figure


def plot_curves(history: Sequence[dict[str, float]], title: str = "") -> Figure:
    """``history``: rows as written to history.json (epoch, acc, loss, val_acc, val_loss, ...)."""
    fig = new_figure(10, 4)
    axes = fig.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for ax, metric, label in ((axes[0], "acc", "accuracy"), (axes[1], "loss", "loss")):
        for prefix, name, style in (("", "train", "o-"), ("val_", "validation", "s-")):
            values = [row.get(prefix + metric) for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, label=name, markersize=3)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.25
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig
