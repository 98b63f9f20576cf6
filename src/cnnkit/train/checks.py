"""Settings and data a training run can work with: a ConfigError or DataError naming the problem,
before any time is spent."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from cnnkit.config import RunConfig, validate
from cnnkit.data import DataSplits
from cnnkit.errors import ConfigError, DataError


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


# --monitor names -> history keys; Keras 2 spells accuracy out
MONITORS = {"val_loss": "val_loss", "val_acc": "val_acc", "val_accuracy": "val_acc",
            "loss": "loss", "acc": "acc", "accuracy": "acc"}


def monitor_key(name: str, has_val: bool) -> str:
    """The history key(s) that ``--monitor name`` watches; without validation data, their training twins.

    ``a,b`` watches ``a`` and breaks its ties with ``b`` (the default: ``val_acc,val_loss``).
    """
    keys = []
    for part in name.split(","):
        key = MONITORS.get(part.strip())
        if key is None:
            raise ConfigError(f"--monitor {name!r}: not a logged metric; choose one of {', '.join(MONITORS)}, "
                              f"or two separated by a comma (the second breaks ties)")
        keys.append(key if has_val else key.replace("val_", ""))
    return ",".join(keys)


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
    data = dataclasses.replace(cfg.data, source=source, data_dir=absolute(cfg.data.data_dir),
                               cache_dir=absolute(cfg.data.cache_dir))
    return dataclasses.replace(cfg, data=data, train=dataclasses.replace(cfg.train, out=str(cfg.train.out)))
