"""Smaller defects found by an audit: each once gave a silently wrong or misleading result."""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from cnnkit.config import DataConfig
from cnnkit.data import load_data
from cnnkit.data.decode import BadImage, decode
from cnnkit.data.folders import list_images
from cnnkit.data.inspection import inspect_data


def save(path, value=100, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


def test_a_float_tiff_full_of_nan_is_a_bad_image_not_black(tmp_path):
    path = tmp_path / "nan.tif"
    Image.fromarray(np.full((8, 8), np.nan, np.float32), "F").save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning on the way either
        with pytest.raises(BadImage, match="NaN"):
            decode(str(path), (8, 8), 1)
    partly = tmp_path / "partly.tif"
    arr = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    arr[0, 0] = np.inf
    Image.fromarray(arr, "F").save(partly)
    with pytest.raises(BadImage, match="NaN or infinite"):
        decode(str(partly), (8, 8), 1)
    fine = tmp_path / "fine.tif"
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), "F").save(fine)
    assert decode(str(fine), (8, 8), 1).max() == 255


def test_val_beside_validation_says_which_one_is_used(tmp_path, caplog):
    root = tmp_path / "d"
    for split in ("train", "validation", "val"):
        for c in ("a", "b"):
            save(root / split / c / "0.png", 50 if c == "a" else 200)
    listing = list_images(root)
    why = dict(listing.problems)
    assert "validation" in why[str(root / "val")] and "not used" in why[str(root / "val")]
    with caplog.at_level(logging.WARNING, logger="cnnkit.data"):
        splits = load_data(DataConfig(source=str(root), cache_dir=str(tmp_path / "cache")))
    assert len(splits.val) == 2
    assert any("val" in r.getMessage() and "validation" in r.getMessage() for r in caplog.records)


def test_a_class_named_train_in_a_flat_tree_is_a_class(tmp_path):
    root = tmp_path / "d"
    for c in ("cat", "dog", "train"):  # train: pictures of trains
        for i in range(3):
            save(root / c / f"{i}.png", 40 * i + 10)
    listing = list_images(root)
    assert listing.classes == ("cat", "dog", "train") and len(listing.files) == 9


def test_inspect_reports_the_largest_image_not_each_sides_maximum(tmp_path):
    root = tmp_path / "d"
    save(root / "a" / "tall.png", size=(200, 1))
    save(root / "b" / "wide.png", size=(1, 200))
    save(root / "b" / "small.png", size=(20, 20))
    sizes = inspect_data(str(root))["sizes"]
    assert sizes["max_hw"] == [20, 20]  # 400 pixels: the largest image (not 200x200, which none is)
    assert sizes["min_hw"] in ([200, 1], [1, 200])


def test_a_killed_export_leaves_no_temp_file_behind(tmp_path):
    import subprocess
    import sys

    from cnnkit.io import _owner
    from cnnkit.serve.export import export_model
    from test_export import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "best.safetensors", name="lenet5")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    # what a write of best.onnx cut short by a kill leaves (cnnkit.io.atomic_path's name for it)
    orphan = tmp_path / f".best.onnx.{_owner(pid)}.abcd1234.tmp"
    orphan.write_bytes(b"\0" * 1000)
    live = tmp_path / f".best.onnx.{_owner()}.efgh5678.tmp"  # this process: a write in progress
    live.write_bytes(b"\0")
    export_model(ckpt, "onnx", tmp_path / "best.onnx")
    assert not orphan.exists() and live.exists()


@pytest.mark.parametrize("name", ["tab\tcat", "猫", "dog"])
def test_class_names_draw_without_missing_glyph_warnings(tmp_path, name):
    from cnnkit.visualize.confusion import plot_confusion_matrix
    from cnnkit.visualize.figures import save_figure

    fig = plot_confusion_matrix(np.array([[3, 1], [0, 4]]), [name, "other"], title=f"{name} accuracy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_figure(fig, tmp_path / "cm.png")
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    assert any(("\\t" in t or "\\u732b" in t or "dog" in t) for t in texts)
    assert os.path.getsize(tmp_path / "cm.png") > 0
