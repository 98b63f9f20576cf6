"""--resume on data that changed since the run started: refused with one line naming what changed;
``--allow-data-change`` continues only with the same classes, and says how many files changed."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from cnnkit.cli import main
from cnnkit.train.commit import read_commit
from cnnkit.train.data_listing import DATA_LISTING
from conftest import make_shapes


def write_folder(root, classes=("cat", "dog", "fox"), per_class=6):
    data = make_shapes(per_class, size=12, seed=5, classes=classes)
    for i, (img, label) in enumerate(zip(data.images, data.labels)):
        folder = root / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return root


def train_args(data, out, cache, *extra):
    return ["train", str(data), "--model", "lenet5", "--epochs", "1", "--batch-size", "8", "--val-split", "0.25",
            "--out", str(out), "--cache-dir", str(cache), "--quiet", "--no-report", *extra]


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume_data")
    data = write_folder(base / "data")
    assert main(train_args(data, base / "run", base / "cache")) == 0
    return base


@pytest.fixture
def run(trained_once, tmp_path):
    """A fresh copy of the data folder and of the run trained on it for one epoch (the data path in
    its config points at the copy)."""
    data, out = tmp_path / "data", tmp_path / "run"
    shutil.copytree(trained_once / "data", data, copy_function=shutil.copy2)  # same sizes and mtimes
    shutil.copytree(trained_once / "run", out)
    cfg = json.loads((out / "config.json").read_text())
    cfg["data"]["source"], cfg["data"]["cache_dir"] = str(data), str(tmp_path / "cache")
    (out / "config.json").write_text(json.dumps(cfg))
    return data, out


def resume(out, *extra):
    return main(["train", "--resume", str(out), "--epochs", "2", "--quiet", *extra])


def test_the_commit_records_the_data_listing(run):
    _, out = run
    record = read_commit(out)
    assert DATA_LISTING in record.files
    listing = json.loads((out / DATA_LISTING).read_text())
    assert listing["classes"] == ["cat", "dog", "fox"]
    assert set(listing["splits"]) == {"train", "val"}
    assert sum(s["files"] for s in listing["splits"].values()) == 18


def test_resume_on_the_same_data_continues(run, capsys):
    _, out = run
    assert resume(out) == 0
    assert "match commit.json" in capsys.readouterr().err
    assert read_commit(out).epoch == 2


def test_a_renamed_class_is_refused_even_with_allow_data_change(run, capsys):
    data, out = run
    (data / "dog").rename(data / "wolf")
    for extra in ((), ("--allow-data-change",)):
        assert resume(out, *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("cnnkit: error:"), err
        assert "dog" in err[0] and "wolf" in err[0] and "classes" in err[0]
    assert read_commit(out).epoch == 1


def test_an_added_class_is_named_not_a_size_mismatch(run, capsys):
    data, out = run
    shutil.copytree(data / "fox", data / "hen")
    assert resume(out) == 2
    err = capsys.readouterr().err
    assert "hen" in err and "model ''" not in err and "size mismatch" not in err


def test_added_and_removed_files_are_refused_then_allowed(run, capsys):
    data, out = run
    shutil.copy(data / "cat" / "000.png", data / "cat" / "new.png")
    next((data / "fox").iterdir()).unlink()
    assert resume(out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--allow-data-change" in err[0] and "changed" in err[0], err
    assert read_commit(out).epoch == 1
    assert resume(out, "--allow-data-change") == 0
    err = capsys.readouterr().err
    assert "files changed" in err or "file changed" in err
    assert read_commit(out).epoch == 2
    # the listing committed now is the new data's: a third resume on it needs no flag
    assert main(["train", "--resume", str(out), "--epochs", "3", "--quiet"]) == 0


def test_a_touched_file_counts_as_changed(run, capsys):
    import os

    data, out = run
    f = data / "cat" / "000.png"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 5_000_000_000))
    assert resume(out) == 2
    assert "1 changed" in capsys.readouterr().err
