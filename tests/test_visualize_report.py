"""report.html and the `cnnkit explain` / `cnnkit report` commands on a real (tiny) trained run."""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.cli import main
from cnnkit.commands.train import train, write_report_safely
from cnnkit.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from cnnkit.evaluate.evaluate import evaluate
from cnnkit.visualize.report import write_report
from conftest import make_shapes

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-epoch simple-cnn trained on a folder of generated images: (run folder, data folder)."""
    root = tmp_path_factory.mktemp("explain")
    data = make_shapes(12, size=16, seed=3)
    folder = root / "images"
    for i, (img, label) in enumerate(zip(data.images, data.labels)):
        (folder / data.classes[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / data.classes[label] / f"{i:03d}.png")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    try:
        cfg = RunConfig(data=DataConfig(source=str(folder), val_split=0.25, cache_dir=str(root / "cache")),
                        model=ModelConfig(name="simple-cnn"), optim=OptimConfig(lr=3e-3),
                        train=TrainConfig(epochs=2, batch_size=9, out=str(root / "run"), progress=False, device="cpu"))
        result = train(cfg, explicit_out=True)
    finally:
        torch.set_num_threads(before)
    return result.run_dir, folder


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_training_writes_an_offline_report_with_the_accuracy(run):
    run_dir, _ = run
    page = (run_dir / "report.html").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert f"accuracy {metrics['accuracy']:.4f}" in page
    assert f"{metrics['split']} accuracy" in page
    pngs = embedded_pngs(page)
    # curves, confusion matrix, reliability diagram, samples, most-wrong, Grad-CAM, filters
    assert len(pngs) == 7 and all(p.startswith(PNG) and len(p) > 1000 for p in pngs)
    assert "Grad-CAM" in page and "Most-wrong" in page and "unavailable" not in page
    for external in ("<script", "<link", 'src="http', "url("):  # viewable offline, nothing fetched
        assert external not in page


def test_evaluation_confusion_matrix_sums_to_sample_count(run):
    run_dir, folder = run
    metrics, probs, data = evaluate(run_dir, str(folder), device="cpu")
    cm = np.asarray(metrics["confusion_matrix"])
    assert cm.sum() == metrics["n"] == len(data) == len(probs) == 9  # 25% of 36 images
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(data.labels, minlength=3))


def test_report_command_re_evaluates_the_run(run, capsys):
    run_dir, folder = run
    (run_dir / "report.html").unlink()
    assert main(["report", str(run_dir), str(folder)]) == 0
    assert "report.html" in capsys.readouterr().out
    metrics, _, _ = evaluate(run_dir, str(folder), device="cpu")
    page = (run_dir / "report.html").read_text()
    assert f"accuracy {metrics['accuracy']:.4f} on {metrics['n']} images" in page
    assert len(embedded_pngs(page)) == 7


def test_report_without_data_falls_back_to_metrics_json(run, tmp_path, caplog):
    run_dir, _ = run
    moved = shutil.copytree(run_dir, tmp_path / "moved", ignore=shutil.ignore_patterns("report.html"))
    cfg = json.loads((moved / "config.json").read_text())
    cfg["data"]["source"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(cfg))
    with caplog.at_level(logging.WARNING, logger="cnnkit"):
        page = write_report(moved).read_text()
    metrics = json.loads((moved / "metrics.json").read_text())
    assert f"accuracy {metrics['accuracy']:.4f}" in page and "could not re-evaluate" in page
    assert len(embedded_pngs(page)) == 3  # curves, confusion matrix, filters: no images to show
    assert "cannot re-evaluate" in caplog.text


def test_report_failure_is_a_warning_not_an_error(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="cnnkit"):
        write_report_safely(tmp_path, ({}, np.zeros((0, 2)), None))  # not a run folder
    assert "could not write" in caplog.text and "not a run folder" in caplog.text
    assert not (tmp_path / "report.html").exists()


def test_explain_commands_write_pictures(run, tmp_path, capsys):
    run_dir, folder = run
    image = next((folder / "bright").glob("*.png"))
    outs = {
        "sobel": ["explain", "sobel", str(image)],
        "filters": ["explain", "filters", str(run_dir)],
        "features": ["explain", "features", str(run_dir), str(image), "--layer", "features.3"],
        "gradcam": ["explain", "gradcam", str(run_dir), str(image), "--class", "dark"],
        "wrong": ["explain", "most-wrong", str(run_dir), "--n", "4"],
    }
    for name, argv in outs.items():
        out = tmp_path / f"{name}.png"
        assert main([*argv, "--out", str(out)]) == 0, name
        assert out.read_bytes().startswith(PNG), name
    assert "wrote" in capsys.readouterr().out


def test_explain_errors_are_one_clear_line(run, tmp_path, capsys):
    run_dir, folder = run
    image = str(next((folder / "dark").glob("*.png")))
    assert main(["explain", "features", str(run_dir), image, "--layer", "nope", "--out", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert "layer 'nope' is not in the model" in err and "features.0 (Conv2d)" in err
    assert main(["explain", "gradcam", str(run_dir), image, "--class", "cat", "--out", str(tmp_path / "g.png")]) == 2
    assert "not one of the model's classes: ['bright', 'dark', 'stripes']" in capsys.readouterr().err
    assert main(["explain", "sobel", str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err


def test_explain_bad_picture_name_and_count_are_one_clear_line(run, tmp_path, capsys):
    run_dir, folder = run
    image = str(next((folder / "dark").glob("*.png")))
    out = tmp_path / "cam.foo"  # was matplotlib's ValueError traceback
    assert main(["explain", "gradcam", str(run_dir), image, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnkit: error:") and "cam.foo" in err and ".png" in err and "Traceback" not in err
    assert not out.exists()
    for n in ("0", "-2"):  # was an empty picture
        assert main(["explain", "most-wrong", str(run_dir), "--n", n, "--out", str(tmp_path / "w.png")]) == 2
        assert "--n must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "w.png").exists()


def test_explain_filters_of_a_dense_model_names_the_checkpoint(tmp_path, capsys):
    from cnnkit.config import Preprocess
    from cnnkit.inference.checkpoint import save_checkpoint
    from cnnkit.models import build_model

    cfg = ModelConfig(name="mlp", num_classes=3, in_channels=1, image_size=(8, 8))
    ckpt = tmp_path / "dense.safetensors"
    save_checkpoint(ckpt, build_model(cfg), Preprocess(("a", "b", "c"), (8, 8), 1, (0.5,), (0.5,), "mlp"), cfg)
    assert main(["explain", "filters", str(ckpt), "--out", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert "dense.safetensors" in err and "no convolution" in err


def test_curves_have_whole_epoch_ticks():
    from cnnkit.visualize.curves import plot_curves

    history = [{"epoch": e, "acc": 0.5 + e / 10, "loss": 1 / e, "val_acc": 0.5, "val_loss": 1.0} for e in (1, 2, 3)]
    fig = plot_curves(history)
    fig.draw_without_rendering()
    for ax in fig.axes:  # 1, 1.25, 1.5 ... epochs do not exist
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert [line.get_label() for line in ax.lines] == ["train", "validation"]


def test_report_drops_top_k_rows_that_cover_every_class():
    from cnnkit.visualize.report import _metric_rows

    metrics = {"split": "val", "n": 10, "accuracy": 0.7, "top2_accuracy": 1.0, "top5_accuracy": 1.0,
               "loss": 0.5, "macro_f1": 0.6, "classes": ["cat", "dog"]}
    names = [k for k, _ in _metric_rows(metrics)]
    assert "top2 accuracy" not in names and "top5 accuracy" not in names and "accuracy" in names
    names = [k for k, _ in _metric_rows({**metrics, "classes": ["a", "b", "c"]})]
    assert "top2 accuracy" in names and "top5 accuracy" not in names


def test_gradcam_examples_takeconfident_right_answers_of_every_class():
    from cnnkit.visualize.report import confident_right

    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.99, 0.01], [0.8, 0.2]])
    labels = np.array([0, 0, 1, 1, 0, 1])  # image 5 is wrong
    assert confident_right(probs, labels, 3) == [4, 2, 0]
    assert confident_right(probs, labels, 10) == [4, 2, 0, 3, 1]
