"""Image folders -> :class:`DataSplits`, through the decode-once cache.

Layouts (see :mod:`cnnkit.data.folders`):

* ``root/<class>/*`` - one tree; validation/test are split off by ``DataConfig.val_split`` /
  ``test_split``, stratified by class and reproducible with ``seed``;
* ``root/{train,validation|val,test}/<class>/*`` - the folders are the splits; a split that is
  missing (e.g. no ``validation/``) is split off ``train`` the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cnnkit.config import DataConfig
from cnnkit.data.arrays import split_set
from cnnkit.data.cache import Decoded, decoded
from cnnkit.data.folders import FileListing, list_images
from cnnkit.data.label_map import apply_folder_map
from cnnkit.data.types import DataSplits, ImageSet
from cnnkit.errors import ConfigError, DataError

log = logging.getLogger("cnnkit.data")


def check_fractions(cfg: DataConfig) -> None:
    """Split fractions, size and channels a loader can honour; ConfigError naming the setting otherwise."""
    if cfg.channels not in (None, 1, 3):
        raise ConfigError(f"data.channels={cfg.channels}: use 1 (grey) or 3 (RGB)")
    if cfg.image_size is not None and (len(cfg.image_size) != 2 or min(cfg.image_size) < 1):
        raise ConfigError(f"data.image_size={cfg.image_size}: give (height, width), both at least 1")
    for name in ("val_split", "test_split"):
        f = getattr(cfg, name)
        if not 0.0 <= f < 1.0:
            raise ConfigError(f"data.{name}={f}: must be at least 0 and below 1")
    if cfg.val_split + cfg.test_split >= 1.0:
        raise ConfigError(f"data.val_split + data.test_split = {cfg.val_split + cfg.test_split}: "
                          f"nothing would be left to train on")


def fill_splits(train: ImageSet, val: ImageSet | None, test: ImageSet | None, cfg: DataConfig,
                skipped: list[tuple[str, str]] | None = None) -> DataSplits:
    """Split the missing ``val`` / ``test`` off ``train`` (stratified, seeded); keep given ones."""
    check_fractions(cfg)
    val_frac = cfg.val_split if val is None else 0.0
    test_frac = cfg.test_split if test is None else 0.0
    if val_frac or test_frac:
        parts = split_set(train, val_frac, test_frac, cfg.seed)
        train = parts.train
        val = val if val is not None else parts.val
        test = test if test is not None else parts.test
    if len(train) == 0:
        raise DataError("no training images left after splitting; lower val_split/test_split")
    return DataSplits(train, val, test, list(skipped or []))


def warn_skipped(skipped: list[tuple[str, str]]) -> None:
    if skipped:
        path, reason = skipped[0]
        log.warning("skipped %d file(s) or folder(s) that cannot be used (first: %s: %s); a training run "
                    "lists them all in its skipped.txt (DataSplits.skipped in Python)", len(skipped), path, reason)


def check_listing(listing: FileListing, strict: bool) -> None:
    """Folder-level problems (empty class, unreadable folder) and the two-class minimum."""
    if strict and listing.problems:
        path, reason = listing.problems[0]
        raise DataError(f"{path}: {reason} (strict mode)")
    if len(listing.classes) < 2:
        found = f"only the class {listing.classes[0]!r}" if listing.classes else "no class folders with images"
        raise DataError(f"{listing.root}: {found}; a classifier needs at least two class folders "
                        f"(root/<class>/*.jpg or root/train/<class>/*.jpg)")


def _split_set(dec: Decoded, split: str) -> ImageSet | None:
    rng = dec.split_range(split)
    if rng is None:
        return None
    a, b = rng
    files = dec.files[a:b]
    labels = np.fromiter((f.label for f in files), dtype=np.int64, count=len(files))
    return ImageSet(dec.images[a:b], labels, dec.classes, tuple(f.path for f in files))


def load_listing(listing: FileListing, cfg: DataConfig) -> DataSplits:
    """Decode (or map from the cache) a listing and arrange it into train/val/test."""
    check_fractions(cfg)
    check_listing(listing, cfg.strict)
    dec = decoded(listing, cfg.image_size, cfg.channels, cfg.cache_dir, cfg.strict)
    train = _split_set(dec, "train")
    if train is None:
        raise DataError(f"{listing.root}: no readable training images")
    splits = fill_splits(train, _split_set(dec, "val"), _split_set(dec, "test"), cfg, dec.skipped)
    warn_skipped(splits.skipped)
    return splits


def load_folder(root: str | Path, cfg: DataConfig) -> DataSplits:
    """A folder's splits with its label map (``label_map.csv`` or ``cfg.label_map``) applied after the split."""
    return apply_folder_map(load_listing(list_images(root), cfg), root, cfg.label_map)
