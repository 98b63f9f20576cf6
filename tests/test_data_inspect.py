"""``cnnkit inspect``: counts, sizes, unreadable files, leakage, imbalance, and the sample grid."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from rich.console import Console

from cnnkit.commands.inspect import inspect_command
from cnnkit.data.inspection import inspect_data, inspect_splits, render_inspection
from cnnkit.data.types import DataSplits, ImageSet
from cnnkit.visualize.samples import plot_samples, sample_indices


def img(path: Path, value: int, size=(10, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


def make_dataset(root: Path) -> Path:
    for i in range(6):
        img(root / "train" / "cats" / f"c{i}.png", 10 + i, size=(10, 12) if i < 5 else (30, 20))
    for i in range(2):
        img(root / "train" / "dogs" / f"d{i}.png", 100 + i)
    img(root / "validation" / "cats" / "v0.png", 200)
    img(root / "validation" / "dogs" / "v1.png", 210)
    shutil.copy(root / "train" / "cats" / "c0.png", root / "validation" / "cats" / "leak.png")
    (root / "train" / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root.parent / "noise.png")
    (root / "train" / "dogs" / "cut.png").write_bytes((root.parent / "noise.png").read_bytes()[:-2000])
    return root


def test_folder_report(tmp_path):
    report = inspect_data(str(make_dataset(tmp_path / "d")))
    assert report["classes"] == ["cats", "dogs"]
    assert report["counts"] == {"train": {"cats": 6, "dogs": 2}, "val": {"cats": 2, "dogs": 1}}
    assert report["totals"] == {"train": 8, "val": 3}
    assert report["sizes"]["distinct"] == 2
    assert report["sizes"]["min_hw"] == [10, 12] and report["sizes"]["max_hw"] == [30, 20]
    bad = {Path(p).name: r for p, r in report["unreadable"]}
    assert set(bad) == {"broken.png", "cut.png"}
    assert "truncated" in bad["cut.png"]
    (group,) = report["duplicates"]["across_splits"]
    assert sorted(Path(p).name for p in group) == ["c0.png", "leak.png"]
    assert report["imbalance"] == {"train": 3.0, "val": 2.0}
    text = " ".join(report["warnings"])
    assert "leakage" in text and "imbalanced" in text and "different sizes" in text


def test_render_prints_tables(tmp_path):
    report = inspect_data(str(make_dataset(tmp_path / "d")))
    console = Console(record=True, width=200)
    render_inspection(report, console)
    out = console.export_text()
    assert "cats" in out and "dogs" in out and "total" in out
    assert "leak.png" in out and "broken.png" in out
    assert "warning:" in out


def test_array_report_finds_pixel_duplicates_across_splits():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (12, 4, 4, 1), dtype=np.uint8)
    y = np.array([0] * 9 + [1] * 3)
    train = ImageSet(x[:10], y[:10], ("a", "b"))
    test = ImageSet(np.concatenate([x[10:], x[:1]]), np.array([1, 1, 0]), ("a", "b"))
    report = inspect_splits(DataSplits(train, None, test), "arrays")
    assert report["counts"]["train"] == {"a": 9, "b": 1}
    assert len(report["duplicates"]["across_splits"]) == 1
    assert report["imbalance"]["train"] == 9.0
    assert report["sizes"]["most_common"] == [[4, 4, 13]]


def test_named_dataset_report():
    report = inspect_data("digits")
    assert report["kind"] == "arrays" and report["totals"]["train"] + report["totals"].get("test", 0) == 1797


def test_plot_samples_grid_with_labels():
    x = np.zeros((20, 8, 8, 3), np.uint8)
    data = ImageSet(x, np.array([0] * 17 + [1] * 3), ("cat", "dog"))
    fig = plot_samples(data, n=6)
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    titles = [ax.get_title() for ax in fig.axes]
    assert titles.count("dog") == 3  # round-robin over classes: the rare class is shown
    grey = ImageSet(np.zeros((3, 5, 5, 1), np.uint8), np.array([0, 1, 1]), ("a", "b"))
    fig = plot_samples(grey, n=10, titles=["x", "y", "z"])
    assert [ax.get_title() for ax in fig.axes] == ["x", "y", "z"]
    labels = np.array([0, 0, 1])
    assert sample_indices(labels, 2, seed=1).tolist() == sample_indices(labels, 2, seed=1).tolist()


def test_inspect_command_writes_sample_grid(tmp_path):
    root = tmp_path / "d"
    for c, v in (("a", 20), ("b", 220)):
        for i in range(3):
            img(root / c / f"{i}.png", v)
    out = tmp_path / "samples.png"
    report = inspect_command(str(root), samples=str(out), n=4, cache_dir=str(tmp_path / "c"),
                             console=Console(file=open(tmp_path / "log.txt", "w")))
    assert report["totals"] == {"train": 6}
    assert out.stat().st_size > 1000 and Image.open(out).format == "PNG"


def test_cli_inspect(tmp_path, capsys):
    import json

    from cnnkit.cli import main

    root = make_dataset(tmp_path / "d")
    assert main(["inspect", str(root), "--json", str(tmp_path / "r.json"), "--samples", str(tmp_path / "s.png"),
                 "-n", "4", "--cache-dir", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "cats" in out and "leak.png" in out
    assert json.loads((tmp_path / "r.json").read_text())["totals"] == {"train": 8, "val": 3}
    assert (tmp_path / "s.png").stat().st_size > 1000
    assert main(["inspect", str(tmp_path / "missing")]) == 2
    assert "error" in capsys.readouterr().err
