"""Labels from a table: a flat folder of images plus train.csv, from load_data through training, the
report, label_issues.csv, predict on an unlabelled test folder and inspect; and every bad table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from cnnkit.config import DataConfig, make_config
from cnnkit.data import load_data
from cnnkit.data.sources import folder_listing
from cnnkit.data.table import read_table, table_counts
from cnnkit.errors import ConfigError, DataError
from conftest import make_shapes


def write_kaggle(root: Path, n: int = 10) -> tuple[Path, Path, list[tuple[str, str]]]:
    """root/images/ (flat, a few in a sub-folder), root/test/ (no labels) and root/train.csv (id,label).

    Ids are written three ways: a bare stem, a name with its extension, a sub-folder path without one.
    """
    data = make_shapes(n, size=16, seed=5)
    images, test = root / "images", root / "test"
    (images / "more").mkdir(parents=True)
    test.mkdir()
    rows = []
    for i, (img, label) in enumerate(zip(data.images, data.labels)):
        if i % 5 == 4:  # a fifth of the images are held back as the unlabelled test set
            Image.fromarray(img).save(test / f"t{i:03d}.png")
            continue
        sub = "more/" if i % 3 == 0 else ""
        Image.fromarray(img).save(images / f"{sub}img{i:03d}.png")
        ident = f"{sub}img{i:03d}" if sub else (f"img{i:03d}.png" if i % 2 else f"img{i:03d}")
        rows.append((ident, data.classes[label]))
    table = root / "train.csv"
    write_rows(table, ("id", "label"), rows)
    return images, table, rows


def write_rows(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_a_table_labels_a_flat_folder_with_ids_with_and_without_extensions(tmp_path):
    images, table, rows = write_kaggle(tmp_path)
    splits = load_data(DataConfig(source=str(images), labels=str(table), val_split=0.25,
                                  cache_dir=str(tmp_path / "cache")))
    assert splits.classes == ("bright", "dark", "stripes")
    assert len(splits.train) + len(splits.val) == len(rows) and splits.test is None
    by_name = {Path(p).stem: splits.train.classes[y] for p, y in zip(splits.train.paths, splits.train.labels)}
    expected = {Path(ident).stem: label for ident, label in rows}
    assert all(expected[k] == v for k, v in by_name.items())
    assert any("/more/" in p for p in splits.train.paths + splits.val.paths)  # files in sub-folders
    classes, counts = table_counts(DataConfig(source=str(images), labels=str(table)), images)
    assert classes == splits.classes and sum(counts["train"].values()) == len(rows)  # before val is split off
    # decoded once: a second load maps the same cache entry, and a label map (applied after it) keeps it
    (entry,) = (tmp_path / "cache" / "decoded").glob("*.npy")
    stamp = entry.stat().st_mtime_ns
    (images / "label_map.csv").write_text(f"file,label\n{Path(splits.train.paths[0]).relative_to(images)},exclude\n")
    again = load_data(DataConfig(source=str(images), labels=str(table), val_split=0.25,
                                 cache_dir=str(tmp_path / "cache")))
    assert len(again.train) == len(splits.train) - 1 and entry.stat().st_mtime_ns == stamp
    assert len(list((tmp_path / "cache" / "decoded").glob("*.npy"))) == 1


def test_a_split_column_and_named_columns(tmp_path):
    images, _, rows = write_kaggle(tmp_path)
    table = write_rows(tmp_path / "meta.csv", ("class", "where", "file"),
                       [(label, "validation" if i % 4 == 0 else "train", ident)
                        for i, (ident, label) in enumerate(rows)])
    cfg = DataConfig(source=str(images), labels=str(table), file_column="file", label_column="class",
                     cache_dir=str(tmp_path / "cache"), split_column="where")
    splits = load_data(cfg)
    assert len(splits.val) == len(range(0, len(rows), 4)) and len(splits.train) == len(rows) - len(splits.val)
    # a column named "split" is the split column unless another is named
    write_rows(table, ("file", "class", "split"), [(ident, label, "test" if i < 3 else "") for i, (ident, label)
                                                   in enumerate(rows)])
    splits = load_data(DataConfig(source=str(images), labels=str(table), cache_dir=str(tmp_path / "cache"),
                                  val_split=0.0))
    assert len(splits.test) == 3 and splits.val is None


def test_a_label_map_in_the_folder_applies_to_a_table(tmp_path):
    images, table, rows = write_kaggle(tmp_path)
    first = sorted(p for p in images.glob("*.png"))[0]
    (images / "label_map.csv").write_text(f"file,label\n{first.name},exclude\n")
    splits = load_data(DataConfig(source=str(images), labels=str(table), val_split=0.0,
                                  cache_dir=str(tmp_path / "cache")))
    assert len(splits.train) == len(rows) - 1 and str(first) not in splits.train.paths
    assert splits.label_map.excluded == 1


def test_a_dataframe_is_a_table_saved_under_the_cache(tmp_path):
    pd = pytest.importorskip("pandas")
    images, table, rows = write_kaggle(tmp_path)
    frame = pd.DataFrame(rows, columns=["id", "label"]).set_index("id")
    cfg = make_config(data=str(images), labels=frame, cache_dir=str(tmp_path / "cache"), val_split=0.0)
    assert Path(cfg.data.labels).is_file() and Path(cfg.data.labels).is_relative_to(tmp_path / "cache")
    assert len(load_data(cfg.data).train) == len(rows)


@pytest.mark.parametrize("header, rows, message", [
    (("id", "label"), [("img001", "dark"), ("nothere", "dark")], r"train\.csv: row 3: 'nothere': no such image file"),
    (("id", "label"), [("img001", "dark"), ("img002", "")], r"train\.csv: row 3: img002: empty label"),
    (("id", "label"), [("img001", "dark"), ("img001.png", "bright")], r"row 3: 'img001\.png' is 'bright' .* in row 2"),
    (("id", "label", "split"), [("img001", "dark", "holdout")], r"row 2: split 'holdout' is not one of"),
    (("id",), [("img001",)], r"row 1: the table needs a file column and a label column"),
    (("img000", "dark"), [("img001", "dark")], r"row 1 names an image \(img000\), not the columns; add a header"),
])
def test_a_bad_table_is_one_error_naming_the_row(tmp_path, header, rows, message, capsys):
    from cnnkit.cli import main

    images, table, _ = write_kaggle(tmp_path)
    write_rows(table, header, rows)
    with pytest.raises(DataError, match=message):
        load_data(DataConfig(source=str(images), labels=str(table), cache_dir=str(tmp_path / "cache")))
    rc = main(["train", str(images), "--labels", str(table), "--model", "mlp", "--epochs", "1",
               "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("cnnkit: error: ") and "train.csv: row" in err[0]


def test_unknown_columns_and_misplaced_settings_are_named(tmp_path, capsys):
    from cnnkit.cli import main

    images, table, _ = write_kaggle(tmp_path)
    with pytest.raises(DataError, match=r"row 1: no column 'name' .*--file-column.*the columns are id, label"):
        read_table(table, images, file_column="name")
    with pytest.raises(ConfigError, match="data.label_column='label': goes with a labels table"):
        make_config(data=str(images), label_column="label")
    with pytest.raises(ConfigError, match="labels table labels an image folder, not the dataset 'digits'"):
        load_data(DataConfig(source="digits", labels=str(table)))
    assert main(["train", str(images), "--file-column", "id", "--model", "mlp"]) == 2
    assert "--file-column 'id' (setting data.file_column): goes with a labels table" in capsys.readouterr().err


def test_train_report_label_issues_predict_and_inspect_on_a_table(tmp_path, capsys):
    from cnnkit.cli import main

    images, table, rows = write_kaggle(tmp_path, n=12)
    cache, run = str(tmp_path / "cache"), tmp_path / "run"
    assert main(["train", str(images), "--labels", str(table), "--model", "simple-cnn", "--epochs", "2",
                 "--batch-size", "8", "--val-split", "0.25", "--out", str(run), "--cache-dir", cache,
                 "--quiet", "--no-tensorboard"]) == 0
    saved = json.loads((run / "config.json").read_text())["data"]
    assert saved["labels"] == str(table)
    assert (run / "report.html").is_file() and "confusion" in (run / "report.html").read_text().lower()
    with open(run / "label_issues.csv", newline="") as fh:
        issues = list(csv.DictReader(fh))
    names = {str(p.relative_to(images)) for p in images.rglob("*.png")}
    assert all(r["file"] in names for r in issues)  # relative to the image folder, as label_map.csv reads them

    out = tmp_path / "submission.csv"
    assert main(["predict", str(run), str(tmp_path / "test"), "--format", "csv", "--output", str(out)]) == 0
    with open(out, newline="") as fh:
        predicted = list(csv.DictReader(fh))
    assert len(predicted) == len(list((tmp_path / "test").iterdir()))

    assert main(["evaluate", str(run)]) == 0  # the run's own data: its table and split
    from cnnkit.studio.engine import evaluate as studio_evaluate

    metrics, _, evaluated = studio_evaluate(run)  # the studio's review of the run reads the same split
    assert metrics["n"] == len(evaluated) == json.loads((run / "metrics.json").read_text())["n"]
    first = sorted(p for p in images.glob("*.png"))[0]
    given = next(label for ident, label in rows if Path(ident).stem == first.stem)
    other = next(c for c in ("bright", "dark", "stripes") if c != given)
    assert main(["relabel", str(images), first.name, "--to", other, "--labels", str(table)]) == 0
    assert (images / "label_map.csv").read_text() == f"file,label\n{first.name},{other}\n"
    splits = load_data(DataConfig(source=str(images), labels=str(table), val_split=0.0, cache_dir=cache))
    assert splits.train.classes[splits.train.labels[splits.train.paths.index(str(first))]] == other
    assert main(["relabel", str(images), first.name, "--to", given, "--labels", str(table)]) == 0  # back: no row
    assert (images / "label_map.csv").read_text() == "file,label\n"

    capsys.readouterr()
    report = tmp_path / "inspect.json"
    assert main(["inspect", str(images), "--labels", str(table), "--json", str(report)]) == 0
    counts = json.loads(report.read_text())["counts"]
    assert sum(counts["train"].values()) == len(rows) and set(counts["train"]) == {"bright", "dark", "stripes"}


def test_a_table_source_is_listed_without_opening_an_image(tmp_path):
    images, table, rows = write_kaggle(tmp_path)
    broken = sorted(images.glob("*.png"))[0]
    broken.write_bytes(b"not a picture")  # listing never decodes: it is only found unreadable on load
    listing = folder_listing(DataConfig(source=str(images), labels=str(table)))
    assert listing.classes == ("bright", "dark", "stripes") and len(listing.files) == len(rows)
    assert {f.split for f in listing.files} == {"train"} and str(broken) in {f.path for f in listing.files}
    assert folder_listing(DataConfig(source="digits")) is None


def test_a_table_source_describes_itself_from_the_table(tmp_path):
    from cnnkit.data.describe import describe

    images, table, rows = write_kaggle(tmp_path)
    d = describe(DataConfig(source=str(images), labels=str(table)))
    assert d.classes == ("bright", "dark", "stripes") and (d.train, d.val, d.test) == (len(rows), 0, 0)
