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

__all__ = ["check_out", "check_settings", "check_splits", "monitor_key", "portable_paths", "validation_note"]


def check_settings(cfg: RunConfig) -> None:
    """Every setting usable (type, finite, range, choices: cnnkit.config.validate); a ConfigError
    naming the setting otherwise, before anything is loaded or written."""
    validate(cfg)


def check_out(cfg: RunConfig, resume_dir: str | os.PathLike | None = None) -> None:
    """The run folder can be written (``--out``, or the resumed run's folder), before any data is
    loaded: a file, ``/dev/null``, ``/proc/x`` or a read-only folder is one line, not a traceback
    after training."""
    from cnnkit.io import check_writable_folder

    if resume_dir is not None:
        check_writable_folder(resume_dir, " (the run folder to resume)")
    else:
        check_writable_folder(cfg.train.out, " (--out: the run folder)")


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


def validation_note(splits: DataSplits) -> str | None:
    """What a run must say before training when validation images are missing: none at all (its
    metrics are then training metrics) or none for some classes (too few images to spare one)."""
    from cnnkit.evaluate.evaluate import NO_VALIDATION

    classes = splits.train.classes
    val = splits.val if splits.val is not None and len(splits.val) else None
    if val is None:
        if splits.test is not None and len(splits.test):
            return ("no validation images: the best epoch is chosen on training metrics; the final metrics are "
                    "the test split's")
        return f"{NO_VALIDATION} (no validation images: no class has two images to spare one, or --val-split is 0)"
    counts = np.bincount(val.labels, minlength=len(classes))
    missing = [c for c, n in zip(classes, counts) if n == 0]
    if not missing:
        return None
    shown = ", ".join(map(repr, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return (f"{len(missing)} of {len(classes)} classes have no validation image ({shown}: too few images to spare "
            f"one); their validation metrics are missing")


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
