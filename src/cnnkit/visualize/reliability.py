"""Reliability diagram: does a predicted probability of 0.8 come true 80% of the time?"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from cnnkit.evaluate.calibration import ECE_BINS, expected_calibration_error, reliability
from cnnkit.visualize.figures import new_figure


def plot_reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS, title: str = "") -> Figure:
    """Accuracy per confidence bin against the diagonal of perfect calibration, with the image
    count per bin below.  ``probs`` (N,K) class probabilities, ``labels`` (N,) true classes."""
    r = reliability(probs, labels, bins)
    ece = expected_calibration_error(probs, labels, bins)
    fig = new_figure(5, 5.5)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centres = (r["edges"][:-1] + r["edges"][1:]) / 2
    width = 1.0 / bins
    filled = r["count"] > 0
    top.bar(centres[filled], r["accuracy"][filled], width=width * 0.95, color="#4c72b0", label="accuracy")
    # the gap to the bin's mean confidence: above the bar = overconfident, below = underconfident
    top.bar(centres[filled], r["confidence"][filled] - r["accuracy"][filled], bottom=r["accuracy"][filled],
            width=width * 0.95, color="#dd8452", alpha=0.45, label="gap to confidence")
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(title or f"reliability: ECE {ece:.4f}")
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    bottom.bar(centres, r["count"], width=width * 0.95, color="#777777")
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("images")
    return fig
