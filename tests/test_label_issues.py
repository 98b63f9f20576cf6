"""Label errors: out-of-fold scores, label_issues.csv of real runs, the report section, the label map and
`cnnkit relabel`, on tiny generated images."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.cli import main
from cnnkit.commands.train import train
from cnnkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from cnnkit.data import DataSplits, load_data
from cnnkit.data.issues_table import COLUMNS, read_issues
from cnnkit.errors import DataError
from cnnkit.evaluate.label_issues import (
    file_names,
    find_issues,
    fit_linear_head,
    issue_scores,
    out_of_fold_probs,
    stratified_folds,
)
from cnnkit.visualize.report import render_report
from conftest import make_shapes


def clusters(n_per_class: int = 20, dim: int = 200, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable features (N, dim) float32: one Gaussian blob per class, fewer images than dimensions."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (classes, dim))
    y = np.repeat(np.arange(classes), n_per_class)
    return (centers[y] + rng.normal(0, 1, (len(y), dim))).astype(np.float32), y


# ----------------------------------------------------------------------------- the scores


def test_a_planted_flip_ranks_first_out_of_fold_though_in_sample_it_looks_clean():
    x, y = clusters()
    given = y.copy()
    given[5] = 1  # an image of class 0 labelled 1
    probs = out_of_fold_probs(x, given, 3, folds=5, seed=0)
    rows = find_issues(probs, given, ("a", "b", "c"), file_names(None, "train", len(y)), "train")
    assert rows[0].file == "train[5]" and (rows[0].given, rows[0].suggested) == ("b", "a")
    assert rows[0].score > 0.9 and len(rows) == 1
    # a barely regularised head that saw the image (more dimensions than images: it can fit any label)
    # calls it clean
    in_sample = issue_scores(fit_linear_head(x, given, 3, weight_decay=1e-4).probs(x), given)
    assert in_sample[5] < 0.5


def test_folds_are_stratified_and_seeded():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 3)
    folds = stratified_folds(labels, 5, seed=1)
    assert np.array_equal(folds, stratified_folds(labels, 5, seed=1))
    assert not np.array_equal(folds, stratified_folds(labels, 5, seed=2))
    for c in (0, 1):
        assert np.bincount(folds[labels == c], minlength=5).tolist() == [len(labels[labels == c]) // 5] * 5
    assert set(np.bincount(folds, minlength=5)) <= {3, 4}  # the small class does not pile into one fold


def test_file_names_are_relative_to_the_data_folder(tmp_path):
    inside, outside = str(tmp_path / "d" / "cats" / "a.jpg"), str(tmp_path / "other.jpg")
    assert file_names([inside, outside], "val", 2, tmp_path / "d") == ["cats/a.jpg", outside]
    assert file_names(None, "test", 2) == ["test[0]", "test[1]"]


# ----------------------------------------------------------------------------- real runs


def colour_folder(root: Path, n: int = 16, size: int = 32, seed: int = 0) -> Path:
    """root/{blue,red}/*.png noisy colour images, with one red image planted in blue/ (a wrong label)."""
    rng = np.random.default_rng(seed)
    for i in range(2 * n):
        cls = ("blue", "red")[i % 2]
        base = np.array([200, 40, 40] if cls == "red" else [40, 40, 200], np.float32)
        img = np.clip(base + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
        folder = root / ("blue" if i == 1 else cls)  # image 1 is red
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return root


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def assert_ranked(rows: list[dict]) -> None:
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(0.5 < s <= 1.0 for s in scores) and all(r["given"] != r["suggested"] for r in rows)


@pytest.fixture(scope="module")
def features_run(tmp_path_factory):
    """A features-mode run (random-weight resnet18 cut at layer1) on a colour folder with one wrong label."""
    root = tmp_path_factory.mktemp("labels")
    data = colour_folder(root / "colours")
    torch.manual_seed(0)
    cfg = RunConfig(data=DataConfig(source=str(data), val_split=0.25, cache_dir=str(root / "cache")),
                    model=ModelConfig(name="resnet18", transfer="features", pretrained=False, cut="layer1"),
                    train=TrainConfig(epochs=3, batch_size=8, out=str(root / "run"), progress=False, device="cpu"))
    return train(cfg, explicit_out=True), data


def test_features_run_scores_train_and_val_out_of_fold(features_run):
    result, data = features_run
    rows = read_csv(result.run_dir / "label_issues.csv")
    assert_ranked(rows)
    assert rows[0]["file"] == "blue/001.png" and (rows[0]["given"], rows[0]["suggested"]) == ("blue", "red")
    assert rows[0]["split"] in ("train", "val") and {r["split"] for r in rows} <= {"train", "val"}
    assert [r.file for r in result.label_issues] == [r["file"] for r in rows]
    page = (result.run_dir / "report.html").read_text()
    assert "<h2>Possible label errors</h2>" in page and 'alt="suspected label errors"' in page
    assert "cross-validated linear head" in page


def test_scratch_run_scores_only_what_the_model_never_fitted(shapes_splits, tmp_path):
    test = shapes_splits.test
    test.labels[0] = 1  # a bright square labelled dark
    cfg = RunConfig(data=DataConfig(source="shapes", cache_dir=str(tmp_path / "cache")),
                    model=ModelConfig(name="simple-cnn"),
                    train=TrainConfig(epochs=4, batch_size=8, out=str(tmp_path / "run"), progress=False, device="cpu",
                                      report=False))
    result = train(cfg, shapes_splits, explicit_out=True)
    rows = read_csv(result.run_dir / "label_issues.csv")
    assert_ranked(rows)
    assert {r["split"] for r in rows} <= {"val", "test"} and all(r["file"].startswith(r["split"] + "[") for r in rows)
    assert result.metrics["accuracy"] >= 0.9  # seeded: the planted flip is confidently bright, the top test row
    assert next(r for r in rows if r["split"] == "test")["file"] == "test[0]"
    page = render_report(result.run_dir, evaluation=result.evaluation)
    assert "<h2>Possible label errors</h2>" in page


def test_label_issues_off_writes_nothing(shapes_splits, tmp_path):
    cfg = RunConfig(data=DataConfig(source="shapes"), model=ModelConfig(name="mlp"),
                    train=TrainConfig(epochs=1, batch_size=16, out=str(tmp_path / "run"), progress=False, device="cpu",
                                      report=False, label_issues="off"))
    result = train(cfg, shapes_splits, explicit_out=True)
    assert result.label_issues is None and not (result.run_dir / "label_issues.csv").exists()
    page = render_report(result.run_dir, evaluation=result.evaluation)
    assert "No label_issues.csv in this run folder" in page


# ----------------------------------------------------------------------------- the label map


@pytest.fixture
def shapes_folder(tmp_path) -> Path:
    data = make_shapes(8, size=12, seed=4)
    root = tmp_path / "shapes"
    for i, (img, label) in enumerate(zip(data.images, data.labels)):
        (root / data.classes[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / data.classes[label] / f"{i:02d}.png")
    return root


def where(splits: DataSplits, name: str) -> tuple[str, str] | None:
    """(split, class) of the image file ending in ``name``, None when it is in no split."""
    for split in ("train", "val", "test"):
        data = getattr(splits, split)
        for p, label in zip(data.paths if data is not None else (), data.labels if data is not None else ()):
            if p.endswith(name):
                return split, data.classes[label]
    return None


def test_label_map_relabels_and_excludes_after_the_split_and_never_reuses_stale_labels(shapes_folder, tmp_path):
    cfg = DataConfig(source=str(shapes_folder), val_split=0.25, test_split=0.25, cache_dir=str(tmp_path / "cache"))
    plain = load_data(cfg)
    assert plain.label_map is None
    files = sorted(p.name for p in (shapes_folder / "bright").iterdir())
    a, b = files[0], files[1]
    absolute = shapes_folder / "bright" / b
    (shapes_folder / "label_map.csv").write_text(f"file,label\nbright/{a},dark\n{absolute},exclude\n")
    mapped = load_data(cfg)
    assert where(mapped, a) == (where(plain, a)[0], "dark")  # same split, new label
    assert where(mapped, b) is None
    assert (mapped.label_map.relabelled, mapped.label_map.excluded) == (1, 1)
    assert mapped.label_map.line() == f"label map: 1 relabelled, 1 excluded ({shapes_folder / 'label_map.csv'})"
    assert sum(len(getattr(mapped, s)) for s in ("train", "val", "test")) == 23
    cache = sorted((tmp_path / "cache" / "decoded").glob("*.npy"))
    stamps = [p.stat().st_mtime_ns for p in cache]

    (shapes_folder / "label_map.csv").write_text(f"file,label\nbright/{a},stripes\n")  # changed: the cache has no say
    again = load_data(cfg)
    assert where(again, a)[1] == "stripes" and where(again, b) == where(plain, b)
    assert [p.stat().st_mtime_ns for p in cache] == stamps  # the decoded images were reused, the labels were not

    other = tmp_path / "elsewhere.csv"
    other.write_text(f"file,label\nbright/{b},dark\n")
    assert where(load_data(dataclasses.replace(cfg, label_map=str(other))), b)[1] == "dark"
    assert where(load_data(dataclasses.replace(cfg, label_map="none")), a)[1] == "bright"


@pytest.mark.parametrize("rows, message", [
    ("bright/{a},dgo\n", r"label_map.csv: row 2: 'dgo' is not a class of the data \(bright, dark, stripes\)"),
    ("bright/{a},dark\nbright/missing.png,dark\n", r"label_map.csv: row 3: bright/missing.png is not an image of"),
    ("bright/{a}\n", r"label_map.csv: row 2: expected file,label"),
])
def test_a_bad_label_map_row_is_one_error_naming_the_file_and_row(shapes_folder, tmp_path, rows, message, capsys):
    a = sorted(p.name for p in (shapes_folder / "bright").iterdir())[0]
    (shapes_folder / "label_map.csv").write_text("file,label\n" + rows.format(a=a))
    with pytest.raises(DataError, match=message):
        load_data(DataConfig(source=str(shapes_folder), cache_dir=str(tmp_path / "cache")))
    rc = main(["train", str(shapes_folder), "--model", "mlp", "--epochs", "1", "--out", str(tmp_path / "run"),
               "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("cnnkit: error: ") and "label_map.csv: row" in err[0]


def test_a_training_run_says_what_the_map_did(shapes_folder, tmp_path, capsys):
    a = sorted(p.name for p in (shapes_folder / "bright").iterdir())[0]
    (shapes_folder / "label_map.csv").write_text(f"file,label\nbright/{a},exclude\n")
    assert main(["train", str(shapes_folder), "--model", "mlp", "--epochs", "1", "--out", str(tmp_path / "run"),
                 "--cache-dir", str(tmp_path / "cache"), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert f"cnnkit: label map: 0 relabelled, 1 excluded ({shapes_folder / 'label_map.csv'})" in err
    assert (tmp_path / "run" / "label_issues.csv").is_file()


# ----------------------------------------------------------------------------- cnnkit relabel


def listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*.png"))}


def test_relabel_writes_the_map_atomically_and_keeps_rows(shapes_folder, tmp_path, capsys):
    before = listing(shapes_folder)
    bright = sorted((shapes_folder / "bright").iterdir())
    assert main(["relabel", str(shapes_folder), str(bright[0]), "--to", "dark"]) == 0
    assert "1 rows added or updated" in capsys.readouterr().out
    assert main(["relabel", str(shapes_folder), f"bright/{bright[1].name}", "--exclude"]) == 0
    assert main(["relabel", str(shapes_folder), str(bright[0]), "--to", "stripes"]) == 0  # updated in place
    text = (shapes_folder / "label_map.csv").read_text()
    assert text == f"file,label\nbright/{bright[0].name},stripes\nbright/{bright[1].name},exclude\n"
    assert listing(shapes_folder) == before  # no image moved or deleted
    assert sorted(p.name for p in shapes_folder.iterdir()) == ["bright", "dark", "label_map.csv", "stripes"]  # no temp
    splits = load_data(DataConfig(source=str(shapes_folder), cache_dir=str(tmp_path / "cache")))
    assert (splits.label_map.relabelled, splits.label_map.excluded) == (1, 1)

    assert main(["relabel", str(shapes_folder), str(bright[0]), "--to", "bright"]) == 0  # its own class back: row gone
    assert (shapes_folder / "label_map.csv").read_text() == f"file,label\nbright/{bright[1].name},exclude\n"
    # errors name the problem and write nothing
    assert main(["relabel", str(shapes_folder), str(bright[2]), "--to", "dgo"]) == 2
    assert main(["relabel", str(shapes_folder), str(tmp_path / "nope.png"), "--to", "dark"]) == 2
    err = capsys.readouterr().err
    assert "'dgo' is not a class" in err and "nope.png: not an image of" in err
    assert (shapes_folder / "label_map.csv").read_text() == f"file,label\nbright/{bright[1].name},exclude\n"


def test_relabel_from_label_issues_accepts_the_top_k(features_run, tmp_path):
    result, data = features_run
    issues = read_issues((result.run_dir / "label_issues.csv").read_text())
    map_path = tmp_path / "map.csv"
    assert main(["relabel", str(data), "--from", str(result.run_dir / "label_issues.csv"), "--top", "1",
                 "--label-map", str(map_path)]) == 0
    assert map_path.read_text() == f"file,label\n{issues[0].file},{issues[0].suggested}\n"
    splits = load_data(DataConfig(source=str(data), val_split=0.25, cache_dir=str(tmp_path / "cache"),
                                  label_map=str(map_path)))
    assert where(splits, "blue/001.png")[1] == "red"
    assert not (data / "label_map.csv").exists()
    assert main(["relabel", str(data), "--from", str(result.run_dir / "label_issues.csv"), "--top", "0"]) == 2
