"""Hostile file trees: link loops, links to files already listed, names that are not UTF-8."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from PIL import Image

from cnnkit.config import DataConfig
from cnnkit.data import load_data
from cnnkit.data.folders import list_images
from cnnkit.data.inspection import inspect_data
from cnnkit.data.skipped import SKIPPED_HEADER, display_path, skipped_text

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX links and byte file names")


def make_tree(root, n=3, size=8):
    """root/{cats,dogs}/<i>.png, distinct pixels per file."""
    for c, cls in enumerate(("cats", "dogs")):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((size, size, 3), 30 * i + 100 * c, np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_link_loops_are_cut_and_reported(tmp_path):
    root = make_tree(tmp_path / "d")
    os.symlink("self.png", root / "cats" / "self.png")  # a file linked to itself: ELOOP on stat
    os.symlink("..", root / "dogs" / "up")  # back to the root: would recurse ~40 levels
    os.symlink("../cats", root / "dogs" / "cats-again")  # a second way into a listed folder
    listing = list_images(root)
    assert len(listing.files) == 6  # each real file once
    assert len({f.path for f in listing.files}) == 6
    why = dict(listing.problems)
    assert "Too many levels of symbolic links" in why[str(root / "cats" / "self.png")]
    assert "already listed" in why[str(root / "dogs" / "up")]
    assert "class folder 'cats'" in why[str(root / "dogs" / "cats-again")]  # another class: never relabelled
    report = inspect_data(str(root))  # the file-by-file report walks the same way
    assert sum(report["totals"].values()) == 6
    assert {p for p, _ in report["unreadable"]} >= {str(root / "dogs" / "up"), str(root / "cats" / "self.png")}


def test_a_link_to_a_listed_file_is_listed_once_even_across_splits(tmp_path):
    root = tmp_path / "d"
    make_tree(root / "train")
    make_tree(root / "validation", n=1)
    os.symlink(root / "train" / "cats" / "0.png", root / "validation" / "cats" / "leak.png")
    os.link(root / "train" / "dogs" / "1.png", root / "train" / "dogs" / "hard.png")
    listing = list_images(root)
    paths = [f.path for f in listing.files]
    assert len(paths) == 8 and str(root / "validation" / "cats" / "leak.png") not in paths
    assert str(root / "train" / "dogs" / "hard.png") not in paths  # sorted after 1.png, so 1.png is kept
    why = dict(listing.problems)
    assert why[str(root / "validation" / "cats" / "leak.png")].startswith(f"same file as {root}/train/cats/0.png")


def test_a_linked_class_folder_and_linked_files_are_followed(tmp_path):
    real = make_tree(tmp_path / "real")
    root = tmp_path / "d"
    (root / "cats").mkdir(parents=True)
    for i in range(3):
        os.symlink(real / "cats" / f"{i}.png", root / "cats" / f"l{i}.png")
    os.symlink(real / "dogs", root / "dogs")
    listing = list_images(root)
    assert listing.classes == ("cats", "dogs") and len(listing.files) == 6 and not listing.problems


def test_names_that_are_not_utf8_are_skipped_and_named(tmp_path):
    root = make_tree(tmp_path / "d")
    bad = os.path.join(os.fsencode(root / "cats"), b"caf\xe9.png")
    Image.new("RGB", (8, 8)).save(open(bad, "wb"), format="PNG")
    os.mkdir(os.path.join(os.fsencode(root), b"d\xffgs"))  # an undecodable class folder
    listing = list_images(root)
    assert len(listing.files) == 6 and listing.classes == ("cats", "dogs")
    why = dict(listing.problems)
    assert "not valid UTF-8" in why[os.fsdecode(bad)] and os.fsdecode(bad) in why
    splits = load_data(DataConfig(source=str(root), cache_dir=str(tmp_path / "cache"), val_split=0.0))
    assert len(splits.train) == 6
    text = skipped_text(splits.skipped)  # what a run writes as skipped.txt
    assert f"{root}/cats/caf\\xe9.png\tname is not valid UTF-8" in text and f"{root}/d\\xffgs\t" in text
    report = inspect_data(str(root))
    assert f"{root}/cats/caf\\xe9.png" in [p for p, _ in report["unreadable"]]  # the JSON report is escaped too


def test_display_path_escapes_tabs_newlines_and_backslashes():
    assert display_path("a\tb\nc\\d.png") == "a\\tb\\nc\\\\d.png"


def test_a_dataset_folder_whose_own_name_is_not_utf8_loads(tmp_path):
    root = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"d\xe9ta"))
    make_tree(tmp_path / root)
    cfg = DataConfig(source=root, cache_dir=str(tmp_path / "cache"), val_split=0.0)
    assert len(load_data(cfg).train) == 6
    assert len(load_data(cfg).train) == 6  # and from the cache


def test_skipped_txt_escapes_names_one_line_each_and_says_how(tmp_path):
    rows = [("a\tb.png", "not an image"), ("c\nd\\e.png", "truncated\nor corrupt"), (os.fsdecode(b"f\xe9.png"), "x")]
    text = skipped_text(rows)
    lines = text.splitlines()
    assert lines[0] == SKIPPED_HEADER.rstrip("\n") and "\\t" in lines[0] and "\\xNN" in lines[0]
    assert lines[1:] == ["a\\tb.png\tnot an image", "c\\nd\\\\e.png\ttruncated\\nor corrupt", "f\\xe9.png\tx"]
    assert all(line.count("\t") == 1 for line in lines[1:])


def test_a_training_run_writes_an_escaped_skipped_txt(tmp_path):
    from cnnkit import make_config, train_model

    root = make_tree(tmp_path / "d", n=4)
    (root / "cats" / "bad\tname.png").write_bytes(b"not a png")
    cfg = make_config(data=str(root), model="mlp", epochs=1, batch_size=4, val_split=0.0, out=str(tmp_path / "runs"),
                      cache_dir=str(tmp_path / "cache"), report=False)
    result = train_model(cfg)
    lines = (result.run_dir / "skipped.txt").read_text().splitlines()
    assert lines[0].startswith("# file<TAB>reason") and len(lines) == 2
    assert lines[1].startswith(f"{root}/cats/bad\\tname.png\tnot an image")


def test_a_link_to_a_sibling_class_never_relabels_its_images(tmp_path):
    # a/more_b -> ../b once dropped class b: its images were listed (and trained) as a
    root = tmp_path / "d"
    for c, cls in enumerate(("a", "b", "c")):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 30 * i + 70 * c, np.uint8)).save(root / cls / f"{i}.png")
    os.symlink("../b", root / "a" / "more_b")
    os.symlink("../c/0.png", root / "a" / "from_c.png")  # a linked file of another class: the same rule
    listing = list_images(root)
    assert listing.classes == ("a", "b", "c")
    labels = {f.path: listing.classes[f.label] for f in listing.files}
    assert len(labels) == 9
    assert all(os.path.basename(os.path.dirname(p)) == cls for p, cls in labels.items()), labels
    why = dict(listing.problems)
    assert "class folder 'b'" in why[str(root / "a" / "more_b")]
    assert "class folder 'c'" in why[str(root / "a" / "from_c.png")]
    splits = load_data(DataConfig(source=str(root), val_split=0.0, cache_dir=str(tmp_path / "cache")))
    assert splits.classes == ("a", "b", "c") and np.bincount(splits.train.labels).tolist() == [3, 3, 3]
