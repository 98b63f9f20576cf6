"""Every data source describes itself without decoding: classes, counts, colour, median size."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.config import DataConfig
from cnnkit.data import load_data
from cnnkit.data.describe import PHOTO_MIN_SIDE, DataDescription, describe
from cnnkit.data.named import NAMED
from cnnkit.data.sources import SINGLE_SET, SOURCES
from cnnkit.data.types import DataSplits, ImageSet, Source
from cnnkit.errors import DataError
from test_data_named import jpeg_zip, write_cifar_tarball


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file: magic 0 0 8 ndim, big-endian dims, the bytes."""
    head = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(head + array.astype(np.uint8).tobytes())


def write_idx_dataset(folder: Path, n: int = 20) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(idx_bytes(rng.integers(0, 255, (n, 28, 28))))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(idx_bytes(np.arange(n) % 10))


# name -> writes that source's files, in its real format, under a data folder (tiny: a few images)
TINY = {
    "mnist": lambda d: write_idx_dataset(d / "mnist"),
    "fashion-mnist": lambda d: write_idx_dataset(d / "fashion-mnist"),
    "cifar10": lambda d: write_cifar_tarball(d / "cifar10" / "cifar-10-python.tar.gz", n=10),
    "cats-vs-dogs": lambda d: jpeg_zip(d / "cats_and_dogs_filtered.zip", "cats_and_dogs_filtered",
                                       {"train": {"cats": 2, "dogs": 2}, "validation": {"cats": 1, "dogs": 1}}),
    "horses-vs-humans": lambda d: (jpeg_zip(d / "horse-or-human.zip", "", {"": {"horses": 2, "humans": 2}}),
                                   jpeg_zip(d / "validation-horse-or-human.zip", "", {"": {"horses": 1, "humans": 1}})),
}


@pytest.mark.parametrize("name", SOURCES)
def test_every_source_declares_a_description_that_matches_its_loader(name, tmp_path):
    entry = SINGLE_SET.get(name) or NAMED[name]
    assert isinstance(entry, Source) and isinstance(entry.description, DataDescription)
    d = describe(DataConfig(source=name))
    assert d is entry.description and d.where == ("package" if name in SINGLE_SET else "dataset")
    assert d.train > 0 and min(d.size) > 0 and d.text()
    if name in SINGLE_SET:  # offline: the real data, counted
        s = load_data(DataConfig(source=name, val_split=0.0))
        assert (s.classes, len(s.train), len(s.test)) == (d.classes, d.train, d.test)
        assert (s.train.image_size, s.train.channels == 1) == (d.size, d.grey)
        return
    assert name in TINY, f"write tiny files of {name!r} in its real format in TINY"
    data = tmp_path / "data"
    data.mkdir()
    TINY[name](data)
    s = load_data(DataConfig(source=name, data_dir=str(data), cache_dir=str(tmp_path / "cache"), val_split=0.0))
    assert s.classes == d.classes
    assert s.train.channels == (1 if d.grey else 3)
    assert (s.val is not None) == (d.val > 0) and (s.test is not None) == (d.test > 0)


def test_a_source_cannot_be_registered_without_a_description():
    with pytest.raises(TypeError):
        Source(lambda cfg: None)  # the missing description is the point


def save(path: Path, size: tuple[int, int], grey: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    Image.fromarray(np.full((h, w) if grey else (h, w, 3), 128, np.uint8)).save(path)


def test_a_folder_is_described_from_its_listing_and_image_headers(tmp_path):
    root = tmp_path / "pets"
    for i in range(3):
        save(root / "train" / "cat" / f"{i}.png", (100, 120))
        save(root / "train" / "dog" / f"{i}.png", (80, 90 + i))
    save(root / "validation" / "cat" / "v.png", (100, 120))
    save(root / "test" / "dog" / "t.png", (100, 120))
    d = describe(DataConfig(source=str(root)))
    assert (d.classes, d.train, d.val, d.test, d.grey, d.where) == (("cat", "dog"), 6, 1, 1, False, "folder")
    assert d.size == (100, 120) and d.sizes_vary and d.photos
    assert d.text() == "colour photos (2 classes, 6 train images, median 100x120 px)"


def test_an_archive_is_described_as_its_folder_and_small_grey_images_are_not_photos(tmp_path):
    root = tmp_path / "digits"
    for c in "01":
        for i in range(2):
            save(root / c / f"{i}.png", (PHOTO_MIN_SIDE, PHOTO_MIN_SIDE), grey=True)
    archive = tmp_path / "digits.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(root.rglob("*.png")):
            zf.write(p, p.relative_to(tmp_path))
    d = describe(DataConfig(source=str(archive), cache_dir=str(tmp_path / "cache")))
    assert (d.classes, d.train, d.val, d.test, d.grey, d.sizes_vary) == (("0", "1"), 4, 0, 0, True, False)
    assert d.digits and not d.photos
    assert d.text() == f"grey images (2 classes, 4 train images, {PHOTO_MIN_SIDE}x{PHOTO_MIN_SIDE} px)"


def test_arrays_given_in_python_describe_themselves(shapes_splits):
    d = describe(DataConfig(source="arrays"), shapes_splits)
    assert d.where == "arrays" and d.classes == shapes_splits.classes and d.train == len(shapes_splits.train)
    assert d.size == shapes_splits.train.image_size and d.grey == (shapes_splits.train.channels == 1)
    grey = DataSplits(ImageSet(np.zeros((4, 8, 8, 1), np.uint8), np.array([0, 1, 0, 1]), ("a", "b")))
    assert describe(DataConfig(), grey) == DataDescription(("a", "b"), 4, 0, 0, True, (8, 8), False, "arrays")


def test_an_unknown_source_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such folder or archive, and not a known dataset name"):
        describe(DataConfig(source=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError):
        DataDescription((), 0, 0, 0, False, (1, 1), False, "cloud")


def test_the_description_wording():
    cats = NAMED["cats-vs-dogs"].description
    assert cats.text() == "colour photos (2 classes, 2,000 train images, median 374x500 px)"
    assert NAMED["cifar10"].description.text() == "colour images (10 classes, 50,000 train images, 32x32 px)"
