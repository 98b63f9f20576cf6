"""The suspected label errors as pictures: thumbnail, given -> suggested label, score.

The rows are a run's ``label_issues.csv`` (:mod:`cnnkit.evaluate.label_issues`), most suspicious
first.  Images of a folder dataset are read from their files; images of an array dataset
(named ``"<split>[index]"``) from the evaluated split, when that is their split.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from cnnkit.data.issues_table import ARRAY_NAME, LabelIssue
from cnnkit.data.types import ImageSet

THUMBNAIL = (96, 96)  # (H, W) when no evaluated images give the size


def issue_thumbnails(rows: Sequence[LabelIssue], root: str | os.PathLike | None = None, data: ImageSet | None = None,
                     split: str | None = None, size: tuple[int, int] = THUMBNAIL, channels: int = 3
                     ) -> tuple[np.ndarray, list[bool]]:
    """(n, H, W, C) uint8 pictures of ``rows`` and whether each was found (a missing one is grey).

    A file name is absolute or relative to ``root`` (the data folder); ``"<split>[i]"`` is row i of
    ``data`` when ``split`` (the evaluated split's name) is that split.
    """
    from cnnkit.data.decode import BadImage, decode

    out = np.full((len(rows), size[0], size[1], channels), 200, np.uint8)
    found = []
    for j, r in enumerate(rows):
        m = ARRAY_NAME.fullmatch(r.file)
        ok = False
        if m is not None:
            i = int(m.group(2))
            if data is not None and m.group(1) == split and i < len(data) and data.images.shape[1:] == out.shape[1:]:
                out[j] = data.images[i]
                ok = True
        else:
            path = Path(r.file) if os.path.isabs(r.file) or root is None else Path(root) / r.file
            try:
                out[j] = decode(str(path), tuple(size), channels)
                ok = True
            except (BadImage, OSError):
                pass
        found.append(ok)
    return out, found


def plot_label_issues(images: np.ndarray, rows: Sequence[LabelIssue], title: str = "",
                      found: Sequence[bool] | None = None) -> Figure:
    """Grid of ``images`` (n, H, W, C) uint8, one per row of ``rows``, titled ``given -> suggested`` and the score."""
    from cnnkit.visualize.samples import plot_samples

    shown = ImageSet(np.asarray(images, np.uint8), np.zeros(len(rows), np.int64), ("",))
    found = list(found) if found is not None else [True] * len(rows)
    titles = [f"{r.given} -> {r.suggested}\nscore {r.score:.2f}" + ("" if ok else " (no file)")
              for r, ok in zip(rows, found)]
    return plot_samples(shown, index=np.arange(len(rows)), titles=titles, title_colors=["tab:red"] * len(rows),
                        title=title or f"{len(rows)} most suspicious labels (given -> suggested; "
                                       "score = 1 - p(given))")
