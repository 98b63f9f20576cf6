"""The in-memory form every data source is turned into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from cnnkit.errors import ConfigError


@dataclass
class ImageSet:
    """Decoded images of one split.

    images: uint8 array (N, H, W, C) - NHWC, so that ``torch.from_numpy(images).permute(0, 3, 1, 2)``
            is an NCHW view already in channels_last memory order.  May be a np.memmap.
    labels: int64 array (N,)
    classes: class names, index = label
    paths: source file of each image (None for array datasets)
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    paths: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    def subset(self, index: np.ndarray) -> "ImageSet":
        paths = tuple(self.paths[i] for i in index) if self.paths is not None else None
        return ImageSet(np.asarray(self.images[index]), self.labels[index], self.classes, paths)


@dataclass
class DataSplits:
    train: ImageSet
    val: ImageSet | None = None
    test: ImageSet | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    label_map: Any = None  # the label map applied (cnnkit.data.label_map.MapSummary), None when none was

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes


PHOTO_MIN_SIDE = 64  # a median shorter side above this is a photo (pretrained features pay off); else "images"
WHERE = ("folder", "dataset", "package", "arrays")  # where a description's data lives


@dataclass(frozen=True)
class DataDescription:
    """What is known of a data source before anything is decoded (:func:`cnnkit.data.describe.describe`).

    ``train``/``val``/``test``: images in the source's own splits (``val`` 0: a validation split is
    taken off the training images; ``test`` 0: none, or split off too); ``size``: the median (H, W).
    """

    classes: tuple[str, ...]
    train: int
    val: int
    test: int
    grey: bool
    size: tuple[int, int]  # median (H, W)
    sizes_vary: bool
    where: str  # one of WHERE

    def __post_init__(self) -> None:
        if self.where not in WHERE:
            raise ValueError(f"where={self.where!r}: one of {', '.join(WHERE)}")

    @property
    def photos(self) -> bool:
        return min(self.size) > PHOTO_MIN_SIDE

    @property
    def digits(self) -> bool:
        """Classes named 0-9: mirrored digits are other symbols (no flips)."""
        return all(c.strip().isdigit() for c in self.classes)

    def text(self) -> str:
        """``colour photos (2 classes, 2,000 train images, median 374x500 px)``."""
        kind = ("grey" if self.grey else "colour") + (" photos" if self.photos else " images")
        h, w = self.size
        size = f"median {h}x{w} px" if self.sizes_vary else f"{h}x{w} px"
        return f"{kind} ({len(self.classes)} classes, {self.train:,} train images, {size})"


@dataclass(frozen=True)
class Source:
    """A data source by name: its loader and its description, declared together (a registry entry)."""

    load: Callable[..., Any]  # named datasets: DataConfig -> DataSplits; packaged sets: cache_dir -> ImageSet
    description: DataDescription


def class_index(classes: tuple[str, ...] | list[str], name: str | None) -> int | None:
    """A class name (or its index as text) -> its index; None or "" stays None (= the predicted class).

    Raises :class:`ConfigError` naming the class and the model's classes when it is neither.
    """
    if name is None or name == "":
        return None
    if name in classes:
        return list(classes).index(name)
    if name.isdigit() and int(name) < len(classes):
        return int(name)
    raise ConfigError(f"class {name!r} is not one of the model's classes: {list(classes)}")
