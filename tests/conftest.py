"""Shared fixtures: tiny generated datasets that a small net learns in a few steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnkit.data import DataSplits, ImageSet

torch.set_num_threads(min(2, torch.get_num_threads()))


def make_shapes(n_per_class: int = 24, size: int = 16, channels: int = 3, seed: int = 0,
                classes: tuple[str, ...] = ("bright", "dark", "stripes")) -> ImageSet:
    """Easy, distinct classes: bright squares, dark images, vertical stripes (uint8 NHWC)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, _ in enumerate(classes):
        for _ in range(n_per_class):
            img = rng.integers(0, 40, (size, size, channels)).astype(np.int16)
            if label == 0:
                o = rng.integers(0, size // 2)
                img[o:o + size // 2, o:o + size // 2] += 200
            elif label == 2:
                img[:, ::4] += 200
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(label)
    return ImageSet(np.stack(images), np.array(labels, np.int64), tuple(classes[: len(set(labels))]))


@pytest.fixture
def shapes_splits() -> DataSplits:
    return DataSplits(train=make_shapes(24, seed=0), val=make_shapes(8, seed=1), test=make_shapes(8, seed=2))


@pytest.fixture
def image_folder(tmp_path):
    """root/<class>/*.png with 3 classes of 12 tiny images, plus a folder of loose files to predict."""
    from PIL import Image

    data = make_shapes(12, size=20, seed=3)
    root = tmp_path / "images"
    for i, (img, label) in enumerate(zip(data.images, data.labels)):
        folder = root / data.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return root
