"""A grid of sample images with their labels (and, optionally, predictions)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from cnnkit.data.types import ImageSet
from cnnkit.visualize.figures import new_figure


def sample_indices(labels: np.ndarray, n: int, seed: int = 0, per_class: bool = True) -> np.ndarray:
    """``n`` reproducible indices; with ``per_class`` they are spread round-robin over the classes
    so that a small grid of an imbalanced set still shows every class."""
    rng = np.random.default_rng(seed)
    n = min(n, len(labels))
    if not per_class:
        return np.sort(rng.choice(len(labels), size=n, replace=False))
    pools = [rng.permutation(np.flatnonzero(labels == c)).tolist() for c in np.unique(labels)]
    out: list[int] = []
    while len(out) < n:
        for pool in pools:
            if pool and len(out) < n:
                out.append(pool.pop())
    return np.asarray(out, dtype=np.int64)


# Width in inches of one character of a suptitle (12 pt): a grid of few narrow columns would
# otherwise cut a long title off at both edges (constrained layout never widens the figure).
TITLE_CHAR_WIDTH = 0.1


def plot_samples(data: ImageSet, n: int = 16, seed: int = 0, index: Sequence[int] | None = None,
                 titles: Sequence[str] | None = None, cols: int | None = None, title: str = "",
                 title_colors: Sequence[str] | None = None) -> Figure:
    """Grid of ``n`` images of ``data`` titled with their class names.

    ``index`` picks the images (default: :func:`sample_indices`); ``titles`` replaces the class
    names (e.g. "cat (pred dog 0.81)"), one per shown image, ``title_colors`` their colours
    (e.g. red for mistakes).  Images are uint8 NHWC as stored.
    """
    idx = np.asarray(index if index is not None else sample_indices(data.labels, n, seed), dtype=np.int64)
    k = len(idx)
    cols = cols or min(8, max(1, math.ceil(math.sqrt(k))))
    rows = max(1, math.ceil(k / cols))
    title_width = TITLE_CHAR_WIDTH * max((len(line) for line in title.splitlines()), default=0)
    fig = new_figure(max(1.6 * cols, title_width), 1.8 * rows + (0.3 * (1 + title.count("\n")) if title else 0))
    for j, i in enumerate(idx):
        ax = fig.add_subplot(rows, cols, j + 1)
        img = np.asarray(data.images[i])
        if img.shape[-1] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(img)
        label = titles[j] if titles is not None else data.classes[int(data.labels[i])]
        ax.set_title(label, fontsize=8, **({"color": title_colors[j]} if title_colors is not None else {}))
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig
