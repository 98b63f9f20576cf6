"""Image folders through ``load_data``: both layouts, splits, classes, and bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.config import DataConfig
from cnnkit.data import load_data
from cnnkit.data.folders import layout, list_images, list_split_folders
from cnnkit.errors import ConfigError, DataError


def img(path: Path, value: int = 128, size: tuple[int, int] = (12, 16), grey: bool = False,
        fmt: str | None = None) -> Path:
    """A tiny solid image; ``value`` makes classes tellable apart after decoding."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[0], size[1]) if grey else (size[0], size[1], 3)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path, format=fmt)
    return path


def tree(root: Path, counts: dict[str, int], ext: str = ".png", **kw) -> Path:
    for k, (cls, n) in enumerate(sorted(counts.items())):
        for i in range(n):
            img(root / cls / f"{cls}.{i}{ext}", value=40 + 80 * k, **kw)
    return root


def cfg(root, tmp_path, **kw) -> DataConfig:
    return DataConfig(source=str(root), cache_dir=str(tmp_path / "cache"), **kw)


def test_single_tree_stratified_seeded_split(tmp_path):
    root = tree(tmp_path / "data", {"dog": 10, "cat": 10, "bird": 10})
    s = load_data(cfg(root, tmp_path, val_split=0.2, test_split=0.1, seed=3))
    assert s.classes == ("bird", "cat", "dog")  # sorted, saved with the data
    assert (len(s.train), len(s.val), len(s.test)) == (21, 6, 3)
    for part, n in ((s.val, 2), (s.test, 1)):
        assert np.bincount(part.labels).tolist() == [n, n, n]  # stratified
    # the label matches the picture (each class has its own grey level)
    for i in range(len(s.train)):
        assert int(s.train.images[i].mean()) == 40 + 80 * int(s.train.labels[i])
    again = load_data(cfg(root, tmp_path, val_split=0.2, test_split=0.1, seed=3))
    assert again.val.paths == s.val.paths
    other = load_data(cfg(root, tmp_path, val_split=0.2, test_split=0.1, seed=4))
    assert other.val.paths != s.val.paths
    assert set(s.train.paths).isdisjoint(s.val.paths)


def test_split_folders_used_as_splits(tmp_path):
    root = tmp_path / "data"
    tree(root / "train", {"a": 4, "b": 4})
    tree(root / "Validation", {"a": 2, "b": 2})  # case-insensitive split names
    tree(root / "test", {"a": 1, "b": 1})
    s = load_data(cfg(root, tmp_path, val_split=0.5))
    assert (len(s.train), len(s.val), len(s.test)) == (8, 4, 2)
    assert all("/Validation/" in p for p in s.val.paths)
    assert isinstance(s.train.images, np.memmap)  # straight from the cache, no copy


def test_val_folder_alias_and_missing_test_split_off_train(tmp_path):
    root = tmp_path / "data"
    tree(root / "train", {"a": 10, "b": 10})
    tree(root / "val", {"a": 2, "b": 2})
    s = load_data(cfg(root, tmp_path, val_split=0.3, test_split=0.2))
    assert len(s.val) == 4  # the folder, not 30% of train
    assert len(s.test) == 4 and len(s.train) == 16


def test_val_split_zero_gives_no_val(tmp_path):
    root = tree(tmp_path / "data", {"a": 5, "b": 5})
    s = load_data(cfg(root, tmp_path, val_split=0.0))
    assert s.val is None and s.test is None and len(s.train) == 10


def test_extensions_case_insensitive_hidden_and_other_files_ignored(tmp_path):
    root = tmp_path / "data"
    img(root / "a" / "x.JPG", fmt="JPEG")
    img(root / "a" / "y.Jpeg", fmt="JPEG")
    img(root / "a" / "z.TIFF", fmt="TIFF")
    img(root / "b" / "w.webp", fmt="WEBP")
    img(root / "b" / "v.BMP", fmt="BMP")
    img(root / "b" / "u.gif", fmt="GIF")
    img(root / "b" / ".hidden.png")
    img(root / ".secret" / "s.png")
    img(root / "__MACOSX" / "b" / "._m.png")
    (root / "b" / "notes.txt").write_text("not an image")
    listing = list_images(root)
    assert listing.classes == ("a", "b")
    names = sorted(Path(f.path).name for f in listing.files)
    assert names == ["u.gif", "v.BMP", "w.webp", "x.JPG", "y.Jpeg", "z.TIFF"]
    assert listing.ignored == 1
    s = load_data(cfg(root, tmp_path, val_split=0.0))
    assert len(s.train) == 6 and s.skipped == []


def test_wrapper_folder_is_stepped_into(tmp_path):
    tree(tmp_path / "unzipped" / "cats_and_dogs" / "train", {"cats": 2, "dogs": 2})
    tree(tmp_path / "unzipped" / "cats_and_dogs" / "validation", {"cats": 1, "dogs": 1})
    assert set(layout(tmp_path / "unzipped")) == {"train", "val"}


def test_nested_subfolders_inside_a_class_are_included(tmp_path):
    root = tree(tmp_path / "data", {"a": 2, "b": 2})
    img(root / "a" / "more" / "deep.png")
    assert len(list_images(root).files) == 5


def test_bad_files_are_skipped_and_reported(tmp_path, caplog):
    root = tree(tmp_path / "data", {"a": 4, "b": 4})
    (root / "a" / "empty.jpg").write_bytes(b"")
    (root / "b" / "fake.png").write_text("hello")
    good = img(tmp_path / "tmp.jpg", size=(64, 64))
    (root / "b" / "cut.jpg").write_bytes(good.read_bytes()[:300])
    with caplog.at_level(logging.WARNING, logger="cnnkit.data"):
        s = load_data(cfg(root, tmp_path, val_split=0.0, image_size=(8, 8)))
    assert len(s.train) == 8
    reasons = {Path(p).name: r for p, r in s.skipped}
    assert set(reasons) == {"empty.jpg", "fake.png", "cut.jpg"}
    assert "empty file" in reasons["empty.jpg"]
    assert "not an image" in reasons["fake.png"]
    assert "truncated" in reasons["cut.jpg"]
    assert any("skipped 3 file" in r.getMessage() for r in caplog.records)


def test_strict_stops_at_bad_file_naming_it(tmp_path):
    root = tree(tmp_path / "data", {"a": 3, "b": 3})
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="broken.png"):
        load_data(cfg(root, tmp_path, image_size=(8, 8), strict=True))
    with pytest.raises(DataError, match="broken.png"):  # also on the probe path (size unknown)
        load_data(cfg(root, tmp_path, strict=True))


def test_empty_class_skipped_or_strict_error(tmp_path):
    root = tree(tmp_path / "data", {"a": 3, "b": 3})
    (root / "c").mkdir()
    s = load_data(cfg(root, tmp_path, val_split=0.0))
    assert s.classes == ("a", "b")
    assert any(p.endswith("/c") and "empty class" in r for p, r in s.skipped)
    with pytest.raises(DataError, match="empty class"):
        load_data(cfg(root, tmp_path, strict=True))


def test_single_class_and_empty_folder_are_clear_errors(tmp_path):
    one = tree(tmp_path / "one", {"cats": 3})
    with pytest.raises(DataError, match="only the class 'cats'"):
        load_data(cfg(one, tmp_path))
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_data(cfg(tmp_path / "none", tmp_path))
    with pytest.raises(DataError, match="no such folder"):
        load_data(cfg(tmp_path / "missing", tmp_path))


def test_unreadable_folder_is_reported(tmp_path):
    # A "class folder" that cannot be listed; a file stands in for it, because permission bits
    # do not stop root (CI containers often run as root).
    tree(tmp_path / "train", {"a": 2})
    (tmp_path / "train" / "b").mkdir()
    img(tmp_path / "train" / "b" / "1.png")
    bogus = tmp_path / "not_a_dir"
    bogus.write_text("x")
    listing = list_split_folders({"train": tmp_path / "train", "val": bogus})
    assert listing.classes == ("a", "b")
    assert any(p == str(bogus) and "cannot read folder" in r for p, r in listing.problems)


def test_all_files_bad_is_an_error(tmp_path):
    root = tmp_path / "data"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        (root / c / "x.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="could"):
        load_data(cfg(root, tmp_path))


def test_bad_fractions_are_config_errors(tmp_path):
    root = tree(tmp_path / "data", {"a": 3, "b": 3})
    with pytest.raises(ConfigError):
        load_data(cfg(root, tmp_path, val_split=0.6, test_split=0.5))
    with pytest.raises(ConfigError):
        load_data(cfg(root, tmp_path, val_split=-0.1))
    with pytest.raises(ConfigError, match="channels"):
        load_data(cfg(root, tmp_path, channels=4))
    with pytest.raises(ConfigError, match="image_size"):
        load_data(cfg(root, tmp_path, image_size=(0, 10)))


def test_zip_archive_source_is_extracted_once(tmp_path):
    import zipfile

    root = tree(tmp_path / "src" / "pets", {"a": 2, "b": 2})
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in root.rglob("*.png"):
            zf.write(p, p.relative_to(tmp_path / "src"))
    s = load_data(cfg(archive, tmp_path, val_split=0.0))
    assert len(s.train) == 4 and s.classes == ("a", "b")
    extracted = list((tmp_path / "cache" / "extracted").iterdir())
    assert len(extracted) == 1 and not extracted[0].name.startswith(".")
    load_data(cfg(archive, tmp_path, val_split=0.0))
    assert list((tmp_path / "cache" / "extracted").iterdir()) == extracted


def test_flat_folder_of_labelled_files_points_to_organize(tmp_path):
    # a Kaggle-style download (cat.1.jpg, dog.1.jpg in one folder) is not "no images found"
    flat = tmp_path / "train"
    for name in ("cat.1.png", "cat.2.png", "dog.1.png"):
        img(flat / name)
    with pytest.raises(DataError, match=r"3 image files directly in .*train.*cnnkit organize"):
        load_data(cfg(flat, tmp_path))


def test_image_size_as_one_number_means_square(tmp_path):
    # make_config(image_size=64) is the natural Python spelling of --image-size 64; it raised a TypeError
    root = tree(tmp_path / "data", {"a": 2, "b": 2})
    assert load_data(cfg(root, tmp_path, val_split=0.0, image_size=10)).train.images.shape == (4, 10, 10, 3)
    with pytest.raises(ConfigError, match="image_size"):
        load_data(cfg(root, tmp_path, image_size="big"))
