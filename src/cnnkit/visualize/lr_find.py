"""The learning-rate range test's curve: training loss against the rate on a log axis, the suggestion marked."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cnnkit.visualize.figures import new_figure


def plot_lr_find(result: Any, title: str = "") -> Figure:
    """``result``: a :class:`cnnkit.train.lr_find.LRFind` (or anything with its ``sweeps`` - each with
    ``lrs``, ``losses``, ``smoothed``, ``suggestion`` - and ``suggestion``, ``method``).

    Each sweep's raw losses are faint dots, its smoothed curve a line; the suggestion a vertical line.
    """
    fig = new_figure(7, 4.2)
    ax = fig.subplots()
    curves = []
    for i, sweep in enumerate(result.sweeps):
        lrs = np.asarray(sweep.lrs, dtype=np.float64)
        smoothed = np.asarray(sweep.smoothed, dtype=np.float64)  # as long as the finite losses
        color = f"C{i % 10}"
        ax.plot(lrs, np.asarray(sweep.losses, dtype=np.float64), ".", color=color, alpha=0.3, markersize=3)
        ax.plot(lrs[:len(smoothed)], smoothed, "-", color=color,
                label="smoothed loss" if len(result.sweeps) == 1 else f"sweep {i + 1}")
        curves.append(smoothed[np.isfinite(smoothed)])
    ax.axvline(result.suggestion, color="k", linestyle="--", linewidth=1,
               label=f"suggested lr {result.suggestion:.1e}")
    ax.set_xscale("log")
    values = np.concatenate(curves) if curves else np.zeros(0)
    if len(values):  # scaled to the smoothed curves: a diverging tail's raw losses would flatten them
        low, top = float(values.min()), float(values.max())
        pad = 0.1 * max(top - low, 1e-6)
        ax.set_ylim(low - pad, top + 3 * pad)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(title or "learning-rate range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    # inside the axes, bottom left: the loss starts high there, so the corner is empty (and the
    # note never collides with the x label, as it does below the axes)
    ax.text(0.01, 0.02, result.method, transform=ax.transAxes, ha="left", va="bottom", fontsize=7, alpha=0.7)
    return fig
