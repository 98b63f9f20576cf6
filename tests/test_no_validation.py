"""Small classes and the validation split: at least one validation image per class where a class has
two; otherwise the run says so before training, and every output calls its metrics training metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cnnkit.cli import main
from cnnkit.data.arrays import split_set
from cnnkit.data.types import ImageSet

NO_VAL = "no validation: metrics are training metrics"


def tiny_set(per_class: list[int]) -> ImageSet:
    labels = np.concatenate([np.full(n, k, np.int64) for k, n in enumerate(per_class)])
    images = np.zeros((len(labels), 4, 4, 1), np.uint8)
    return ImageSet(images, labels, tuple(f"c{k}" for k in range(len(per_class))))


@pytest.mark.parametrize("per_class", [[2] * 300, [4] * 9, [2, 3, 40]])
def test_every_class_with_two_images_keeps_one_for_validation(per_class):
    s = split_set(tiny_set(per_class), 0.1, 0.0, seed=0)
    assert s.val is not None
    assert np.bincount(s.val.labels, minlength=len(per_class)).min() >= 1
    assert np.bincount(s.train.labels, minlength=len(per_class)).min() >= 1  # and one to train on


def test_a_test_split_too_leaves_one_to_train_on():
    s = split_set(tiny_set([2, 2, 3]), 0.1, 0.1, seed=0)
    assert np.bincount(s.train.labels, minlength=3).min() >= 1
    assert np.bincount(s.val.labels, minlength=3).min() >= 1


def write_folder(root, per_class: int, classes=("a", "b", "c")):
    rng = np.random.default_rng(0)
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_one_image_per_class_trains_with_training_metrics_said_everywhere(tmp_path, capsys):
    data = write_folder(tmp_path / "data", per_class=1)
    out = tmp_path / "run"
    assert main(["train", str(data), "--model", "lenet5", "--epochs", "1", "--batch-size", "4", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert NO_VAL in captured.err  # said before training
    assert NO_VAL in captured.out.strip().splitlines()[-1]  # and in the last line
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "train" and metrics["note"] == NO_VAL
    assert NO_VAL in (out / "report.html").read_text()
    # evaluate never calls the training images held out
    assert main(["evaluate", str(out)]) == 0
    said = capsys.readouterr().out
    assert NO_VAL in said
    assert json.loads((out / "eval_train_metrics.json").read_text())["note"] == NO_VAL


def test_some_classes_without_validation_are_named_before_training(tmp_path, capsys):
    data = write_folder(tmp_path / "data", per_class=3)
    for f in list((data / "c").iterdir())[1:]:
        f.unlink()  # class c: one image, none to spare for validation
    assert main(["train", str(data), "--model", "lenet5", "--epochs", "1", "--batch-size", "4",
                 "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--quiet", "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "no validation image" in err and "'c'" in err
