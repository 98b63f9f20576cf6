"""Settings and data a training run can work with: a ConfigError or DataError naming the problem,
before any time is spent."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from cnnkit.config import RunConfig, validate
from cnnkit.data import DataSplits
from cnnkit.errors import DataError
from cnnkit.train.callbacks import monitor_key

__all__ = ["check_settings", "check_splits", "monitor_key", "portable_paths"]


def check_settings(cfg: RunConfig) -> None:
    """Every setting usable (type, finite, range, choices: cnnkit.config.validate); a ConfigError
    naming the setting otherwise, before anything is loaded or written."""
    validate(cfg)


def check_splits(splits: DataSplits) -> None:
    if len(splits.train) == 0:
        raise DataError("the training set is empty")
    if len(splits.train.classes) < 2:
        raise DataError(f"need at least 2 classes to train a classifier, found {list(splits.train.classes)}")
    counts = np.bincount(splits.train.labels, minlength=len(splits.train.classes))
    untrained = [c for c, n in zip(splits.train.classes, counts) if n == 0]
    if untrained:  # e.g. validation/cats beside train/cat: an output the model could never learn
        raise DataError(f"class(es) {', '.join(map(repr, untrained))} have no training images, only validation "
                        f"or test ones; give every class training images (check the class folder names)")


def portable_paths(cfg: RunConfig) -> RunConfig:
    """Folder/archive sources and data/cache folders as absolute path strings.

    The config is saved with the run and read back by evaluate/report/--resume, possibly from
    another working directory; a relative ``data/pets`` would then name nothing (or another folder).
    """
    from cnnkit.data.sources import SOURCES

    def absolute(p):
        return None if p is None else os.path.abspath(os.path.expanduser(p))

    source = str(cfg.data.source)
    if source not in SOURCES and os.path.exists(os.path.expanduser(source)):
        source = absolute(source)
    label_map = cfg.data.label_map
    if label_map is not None and label_map.lower() != "none":
        label_map = absolute(label_map)
    data = dataclasses.replace(cfg.data, source=source, data_dir=absolute(cfg.data.data_dir),
                               cache_dir=absolute(cfg.data.cache_dir), label_map=label_map)
    return dataclasses.replace(cfg, data=data, train=dataclasses.replace(cfg.train, out=str(cfg.train.out)))
