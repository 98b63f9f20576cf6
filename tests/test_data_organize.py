"""``cnnkit organize``: flat labelled file names -> train/validation/test class folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.config import DataConfig
from cnnkit.data import load_data
from cnnkit.data.organize import label_from_name, organize
from cnnkit.errors import ConfigError, DataError


def flat(src: Path, counts: dict[str, int], sep: str = ".") -> Path:
    src.mkdir(parents=True, exist_ok=True)
    for cls, n in counts.items():
        for i in range(n):
            Image.new("RGB", (6, 6), (i, 0, 0)).save(src / f"{cls}{sep}{i}.jpg")
    return src


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.parametrize("name,label", [
    ("cat.123.jpg", "cat"), ("dog.7.jpg", "dog"), ("golden_retriever_12.png", "golden_retriever"),
    ("Abyssinian-3.JPG", "Abyssinian"), ("cat.jpg", "cat"), ("123.jpg", None),
])
def test_name_prefix_rule(name, label):
    assert label_from_name(name) == label


def test_regex_rule():
    assert label_from_name("img_cat_001.jpg", r"img_([a-z]+)_") == "cat"
    assert label_from_name("001-dog.png", r"(?P<label>[a-z]+)\.png$") == "dog"
    assert label_from_name("x.png", r"nomatch") is None
    with pytest.raises(ConfigError):
        label_from_name("x.png", "(")


def test_organize_copies_stratified_and_leaves_src_untouched(tmp_path):
    src = flat(tmp_path / "src", {"cat": 10, "dog": 20})
    (src / "README.txt").write_text("about")
    before = snapshot(src)
    report = organize(src, tmp_path / "dst", val=0.2, test=0.1, seed=0)
    assert snapshot(src) == before
    assert report["classes"] == ["cat", "dog"]
    assert report["counts"] == {"train": {"cat": 7, "dog": 14}, "validation": {"cat": 2, "dog": 4},
                                "test": {"cat": 1, "dog": 2}}
    assert any("README.txt" in p for p, _ in report["skipped"])
    dst = tmp_path / "dst"
    assert sorted(p.name for p in dst.iterdir()) == ["test", "train", "validation"]
    assert len(list((dst / "validation" / "dog").iterdir())) == 4
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # temp folder renamed away
    # the result is a dataset the loaders understand, with the same split
    s = load_data(DataConfig(source=str(dst), cache_dir=str(tmp_path / "cache")))
    assert (len(s.train), len(s.val), len(s.test)) == (21, 6, 3)


def test_organize_is_reproducible_with_seed(tmp_path):
    src = flat(tmp_path / "src", {"cat": 10, "dog": 10})

    def val_files(dst: Path) -> list[str]:
        return sorted(p.name for p in (dst / "validation").rglob("*.jpg"))

    organize(src, tmp_path / "a", seed=1)
    organize(src, tmp_path / "b", seed=1)
    organize(src, tmp_path / "c", seed=2)
    assert val_files(tmp_path / "a") == val_files(tmp_path / "b")
    assert val_files(tmp_path / "a") != val_files(tmp_path / "c")
    assert not (tmp_path / "a" / "test").exists()  # no --test: no test folder


def test_hardlink_and_symlink_modes(tmp_path):
    src = flat(tmp_path / "src", {"cat": 3, "dog": 3})
    organize(src, tmp_path / "h", mode="hardlink")
    f = next((tmp_path / "h" / "train" / "cat").iterdir())
    assert os.stat(f).st_nlink == 2 and os.path.samefile(f, src / f.name)
    organize(src, tmp_path / "s", mode="symlink")
    f = next((tmp_path / "s" / "train" / "dog").iterdir())
    assert f.is_symlink() and f.resolve() == (src / f.name).resolve()


def test_regex_labels_and_unlabelled_files_reported(tmp_path):
    src = tmp_path / "src"
    flat(src, {"a_cat": 3, "b_dog": 3}, sep="_")
    Image.new("RGB", (4, 4)).save(src / "mystery.png")
    report = organize(src, tmp_path / "dst", val=0.0, label_from=r"^[ab]_([a-z]+)_")
    assert report["classes"] == ["cat", "dog"]
    assert any("mystery.png" in p and "no class label" in r for p, r in report["skipped"])


def test_errors(tmp_path):
    src = flat(tmp_path / "src", {"cat": 3, "dog": 3})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        organize(src, tmp_path / "full")
    with pytest.raises(DataError, match="inside the source"):
        organize(src, src / "out")
    with pytest.raises(ConfigError):
        organize(src, tmp_path / "d1", val=0.7, test=0.5)
    with pytest.raises(ConfigError):
        organize(src, tmp_path / "d2", mode="move")
    one = flat(tmp_path / "one", {"cat": 3})
    with pytest.raises(DataError, match="need at least two"):
        organize(one, tmp_path / "d3")
    with pytest.raises(DataError, match="not a folder"):
        organize(tmp_path / "nope", tmp_path / "d4")
    assert not (tmp_path / "d1").exists() and not (tmp_path / "d3").exists()
    (tmp_path / "empty").mkdir()
    report = organize(src, tmp_path / "empty", val=0.34)  # an existing empty folder is fine
    assert np.sum([sum(v.values()) for v in report["counts"].values()]) == 6


def test_cli_organize(tmp_path, capsys):
    from cnnkit.cli import main

    src = flat(tmp_path / "src", {"cat": 5, "dog": 5})
    assert main(["organize", str(src), str(tmp_path / "dst"), "--val", "0.2", "--test", "0.2", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "validation" in out and "cat 1" in out and "wrote" in out
    assert len(list((tmp_path / "dst" / "test" / "dog").iterdir())) == 1
    assert main(["organize", str(src), str(tmp_path / "dst")]) == 2  # DST not empty: one clear line
    assert "already exists" in capsys.readouterr().err
