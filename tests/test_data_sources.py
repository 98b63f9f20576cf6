"""One definition of how a source is told apart (name, folder, archive), and of class lookup."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image

from cnnkit.data.named import DIGITS
from cnnkit.data.sources import SOURCES, folder_of, mnist_mini
from cnnkit.data.types import class_index
from cnnkit.errors import ConfigError, DataError


def test_folder_of_tells_names_folders_and_archives_apart(tmp_path, monkeypatch):
    (tmp_path / "pets" / "cats").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "pets" / "cats" / "a.png")
    with zipfile.ZipFile(tmp_path / "pets.zip", "w") as zf:
        zf.write(tmp_path / "pets" / "cats" / "a.png", "pets/cats/a.png")
    assert folder_of(str(tmp_path / "pets")) == tmp_path / "pets"
    extracted = folder_of(str(tmp_path / "pets.zip"), str(tmp_path / "cache"))
    assert (extracted / "pets" / "cats" / "a.png").is_file()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist").mkdir()  # a folder named like a dataset: the name wins, as in training
    assert "mnist" in SOURCES and folder_of("mnist") is None
    with pytest.raises(DataError, match="'nope': no such folder or archive, and not a known dataset name"):
        folder_of("nope")


def test_digits_are_one_tuple():
    assert DIGITS == tuple("0123456789")
    import cnnkit.data.sources as sources

    assert sources.DIGITS is DIGITS and mnist_mini.__module__ == "cnnkit.data.sources"


def test_class_index_by_name_or_index_text():
    classes = ("cat", "dog")
    assert class_index(classes, "dog") == 1 and class_index(list(classes), "0") == 0
    assert class_index(classes, None) is None and class_index(classes, "") is None
    with pytest.raises(ConfigError, match=r"'zebra' is not one of the model's classes: \['cat', 'dog'\]"):
        class_index(classes, "zebra")
    with pytest.raises(ConfigError):
        class_index(classes, "2")
