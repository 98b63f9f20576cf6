"""The notebook-facing API outside a kernel: the progress view, the result's repr, HTML and pictures,
cnnkit.summary and what dir() lists.  (tests/test_notebooks.py runs the same in a real kernel.)"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

import cnnkit
from cnnkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from cnnkit.errors import ConfigError, DataError
from cnnkit.train.callbacks import Progress
from cnnkit.train.notebook import ProgressView, in_notebook


def test_the_progress_view_fills_a_table_epoch_by_epoch():
    view = ProgressView(epochs=3)
    view.steps, view.step, view.running, view.left = 10, 4, "loss 0.5000 acc 0.8000", "about 12 s left"
    page = view._repr_html_()
    assert "<progress value='4' max='10'" in page and "about 12 s left" in page and "<table" not in page
    view.rows.append({"loss": 0.5, "acc": 0.8, "val_loss": 0.6, "val_acc": 0.75, "lr": 1e-3, "time": 2.0})
    page = view._repr_html_()
    assert "<th>val_acc</th>" in page and "<td>0.7500</td>" in page and "<td>1.00e-03</td>" in page
    assert repr(view).splitlines()[0].split() == ["epoch", "loss", "acc", "val_loss", "val_acc", "lr", "time"]


def test_outside_a_kernel_progress_keeps_plain_lines():
    out = io.StringIO()
    progress = Progress(2, stream=out)
    assert not in_notebook() and progress.notebook is None
    progress.on_epoch_begin(0, 3)
    progress.on_epoch_end(0, {"loss": 0.5, "acc": 0.9, "lr": 0.01, "time": 1.0})
    assert out.getvalue().startswith("epoch 1/2  loss 0.5000  acc 0.9000")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    from cnnkit.data import DataSplits
    from conftest import make_shapes

    root = tmp_path_factory.mktemp("nbapi")
    splits = DataSplits(train=make_shapes(16, seed=0), val=make_shapes(6, seed=1), test=make_shapes(6, seed=2))
    cfg = RunConfig(data=DataConfig(source="shapes"), model=ModelConfig(name="simple-cnn"),
                    train=TrainConfig(epochs=2, batch_size=16, out=str(root / "run"), progress=False, device="cpu",
                                      tensorboard=False))
    return cnnkit.train_model(cfg, splits, explicit_out=True), root


def test_a_result_is_short_in_text_and_a_summary_in_html(result):
    res, _ = result
    text = repr(res)
    assert text.startswith("TrainResult(run_dir=") and "model='simple-cnn'" in text and "epochs=2" in text
    assert "\n" not in text and len(text) < 200  # not the history, not the model
    page = res._repr_html_()
    assert "simple-cnn on shapes" in page and "test accuracy" in page
    assert page.count("<img src='data:image/png;base64,") == 2  # curves and the confusion matrix
    assert "report.html</a>" in page
    (res.run_dir / "auto.json").write_text(json.dumps({"line": "cnnkit: auto: simple-cnn, because it is small"}))
    assert "chosen automatically: simple-cnn, because it is small" in res._repr_html_()
    (res.run_dir / "auto.json").unlink()


def test_each_picture_is_a_figure(result, tmp_path):
    res, _ = result
    figures = [res.plot_curves(), res.plot_confusion(), res.plot_confusion(normalize=True), res.plot_top_losses(4),
               res.plot_gradcam(0), res.plot_gradcam(np.zeros((16, 16, 3), np.uint8), class_name="dark")]
    image = tmp_path / "x.png"
    Image.fromarray(np.full((20, 20, 3), 220, np.uint8)).save(image)
    figures.append(res.plot_gradcam(image))
    assert all(isinstance(f, Figure) for f in figures)
    if res.label_issues:
        assert isinstance(res.plot_label_issues(3), Figure)
    with pytest.raises(ConfigError, match="k must be at least 1"):
        res.plot_top_losses(0)
    with pytest.raises(DataError, match="image 999"):
        res.plot_gradcam(999)


def test_summary_shows_the_keras_table():
    from cnnkit.models.summary import format_summary

    table = cnnkit.summary("lenet5", 28, 1)
    assert repr(table) == format_summary(table.summary, "lenet5") and "Total params: 61,706" in repr(table)
    page = table._repr_html_()
    assert page.count("<tr>") == len(table.summary.rows) + 1 and "Conv2D" in page and "61,706" in page
    assert cnnkit.summarize is not None  # the numbers stay reachable


def test_dir_lists_the_public_api_with_docstrings():
    names = dir(cnnkit)
    for name in ("train_model", "make_config", "summary", "summarize", "predict", "TrainResult", "visualize"):
        assert name in names
        assert (getattr(cnnkit, name).__doc__ or "").strip(), name
    pictures = dir(cnnkit.visualize)
    wanted = {"plot_curves", "plot_confusion_matrix", "plot_most_wrong", "plot_gradcam", "plot_label_issues"}
    assert wanted <= set(pictures)
    for name in pictures:
        picture = getattr(cnnkit.visualize, name)
        assert callable(picture) and (picture.__doc__ or "").strip(), name
