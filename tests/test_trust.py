"""Trusting a model's answers: calibration (temperature, ECE), "unknown" below a threshold, and a
class-weighted loss for imbalanced training data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from cnnkit.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from cnnkit.data import DataSplits, ImageSet
from cnnkit.errors import ConfigError
from cnnkit.evaluate.calibration import (
    expected_calibration_error,
    fit_temperature,
    log_probs,
    nll,
    scale_probs,
    suggest_min_confidence,
)
from cnnkit.evaluate.metrics import balanced_accuracy, classification_metrics, macro_f1
from cnnkit.inference import Predictor, load_checkpoint
from cnnkit.inference.calibrated import resolve_min_confidence, store_calibration, temperature_of
from cnnkit.inference.predictor import Prediction, with_answers
from cnnkit.train.callbacks import MONITORS, BestCheckpoint, monitor_key
from cnnkit.train.losses import class_weights, cross_entropy
from cnnkit.visualize.reliability import plot_reliability
from conftest import make_shapes

# ----------------------------------------------------------------------------- calibration maths


@pytest.mark.parametrize("k", [1, 4])
def test_fit_temperature_recovers_the_temperature_that_generated_the_labels(k):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (20000, k))  # an overconfident model: true probabilities are softmax(z / 2.5)
    p = np.exp(log_probs(logits / 2.5))
    labels = (rng.random(len(p))[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    t = fit_temperature(logits, labels)
    assert abs(t - 2.5) < 0.15
    grid = [0.5, 1.0, 2.0, 2.4, 2.6, 3.0, 5.0]
    assert nll(logits, labels, t) <= min(nll(logits, labels, g) for g in grid) + 1e-9


def test_scale_probs_matches_dividing_the_logits():
    z = torch.randn(6, 3) * 3
    probs = torch.softmax(z, 1).numpy()
    np.testing.assert_allclose(scale_probs(probs, 2.0), torch.softmax(z / 2.0, 1).numpy(), atol=1e-5)
    one = torch.randn(6, 1) * 3  # one sigmoid logit: the same T divides it
    p1 = torch.sigmoid(one)
    scaled = scale_probs(torch.cat([1 - p1, p1], 1).numpy(), 2.0)
    np.testing.assert_allclose(scaled[:, 1], torch.sigmoid(one / 2.0)[:, 0].numpy(), atol=1e-5)


def test_ece_of_known_cases():
    labels = np.zeros(10, np.int64)
    right_at_08 = np.tile([0.8, 0.2], (10, 1))
    right_at_08[8:] = [0.2, 0.8]  # 8 of 10 right, all at confidence 0.8: perfectly calibrated
    assert expected_calibration_error(right_at_08, labels) == pytest.approx(0.0, abs=1e-12)
    timid = np.tile([0.6, 0.4], (10, 1))  # all right at confidence 0.6: a gap of 0.4
    assert expected_calibration_error(timid, labels) == pytest.approx(0.4)


def test_suggested_threshold_keeps_the_accepted_answers_precise():
    probs = np.array([[0.99, 0.01], [0.95, 0.05], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    labels = np.array([0, 0, 0, 1, 0, 1])  # the 0.8 answer is wrong
    assert suggest_min_confidence(probs, labels, 0.99) == pytest.approx(0.9)
    assert suggest_min_confidence(probs, labels, 0.8) == pytest.approx(0.7)  # 4 of 5 right
    assert suggest_min_confidence(probs[3:4], labels[3:4], 0.99) is None  # nothing is ever right


def test_balanced_accuracy_and_macro_f1_see_the_small_class():
    labels = np.array([0] * 90 + [1] * 10)
    always_0 = np.tile([0.9, 0.1], (100, 1))
    m = classification_metrics(always_0, labels, ("common", "rare"))
    assert m["accuracy"] == pytest.approx(0.9)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx(macro_f1(np.array(m["confusion_matrix"])))
    assert m["macro_f1"] == pytest.approx((2 * 0.9 / 1.9) / 2)
    assert balanced_accuracy(np.array([[3, 1], [0, 0]])) == pytest.approx(0.75)  # an absent class is skipped


def test_plot_reliability_returns_a_figure():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1, 1, 1], 50)
    fig = plot_reliability(probs, rng.integers(0, 3, 50))
    assert isinstance(fig, Figure) and len(fig.axes) == 2


# ----------------------------------------------------------------------------- class weights


def test_class_weights_balanced_auto_none():
    w = class_weights([10, 90], "balanced")
    np.testing.assert_allclose(w.numpy(), [100 / 20, 100 / 180])
    assert torch.allclose(class_weights([10, 90], "auto"), w)
    assert class_weights([10, 14], "auto") is None  # ratio 1.4: balanced enough
    assert class_weights([10, 90], "none") is None


def test_weighted_loss_multiclass_and_one_logit():
    torch.manual_seed(0)
    w = torch.tensor([2.0, 0.5, 1.0])
    logits, target = torch.randn(8, 3), torch.randint(0, 3, (8,))
    expected = (F.cross_entropy(logits, target, reduction="none") * w[target]).sum() / w[target].sum()
    assert torch.allclose(cross_entropy(logits, target, class_weights=w), expected)
    one, y = torch.randn(8, 1), torch.randint(0, 2, (8,))
    w2 = torch.tensor([0.6, 3.0])  # the positive class weighs 5x the negative one
    per = F.binary_cross_entropy_with_logits(one[:, 0], y.float(), reduction="none")
    assert torch.allclose(cross_entropy(one, y, class_weights=w2), (per * torch.where(y == 1, 5.0, 1.0)).mean())


# ----------------------------------------------------------------------------- monitor table


def test_balanced_accuracy_and_macro_f1_are_monitorable():
    assert monitor_key("val_macro_f1", True) == "val_macro_f1"
    assert monitor_key("val_balanced_accuracy", True) == "val_balanced_accuracy"
    assert MONITORS["val_accuracy"].key == "val_acc" and monitor_key("val_loss", False) == "loss"
    with pytest.raises(ConfigError, match="validation"):
        monitor_key("val_macro_f1", False)
    best = BestCheckpoint("val_macro_f1")
    assert best.on_epoch_end(0, {"val_macro_f1": 0.4}).save_best
    assert best.on_epoch_end(1, {"val_macro_f1": 0.3}) is None


# ----------------------------------------------------------------------------- a trained run


def _imbalanced() -> DataSplits:
    full = make_shapes(24, seed=0)
    keep = np.flatnonzero((full.labels != 2) | (np.arange(len(full.labels)) % 24 < 6))  # 24, 24, 6 images
    train = ImageSet(full.images[keep], full.labels[keep], full.classes)
    return DataSplits(train=train, val=make_shapes(8, seed=1))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from cnnkit.commands.train import train

    out = tmp_path_factory.mktemp("trust") / "run"
    cfg = RunConfig(data=DataConfig(source="shapes"), model=ModelConfig(name="simple-cnn"),
                    optim=OptimConfig(name="adam", lr=3e-3),
                    train=TrainConfig(epochs=2, batch_size=16, out=str(out), progress=True, seed=1, report=False,
                                      monitor="val_macro_f1"))
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        result = train(cfg, splits=_imbalanced(), explicit_out=True)
    return result, err.getvalue()


def test_imbalanced_run_weights_its_loss_and_says_so(run):
    result, stderr = run
    assert "class-weighted loss (imbalanced training data, largest/smallest class 4.0x)" in stderr.splitlines()[0]
    weights = result.metrics["class_weights"]
    assert weights["stripes"] == pytest.approx(54 / (3 * 6)) and weights["bright"] == pytest.approx(54 / 72)
    history = json.loads((result.run_dir / "history.json").read_text())
    assert {"val_balanced_accuracy", "val_macro_f1"} <= set(history[0])
    best_epoch = int(np.argmax([r["val_macro_f1"] for r in history]))  # the best checkpoint follows the monitor
    assert load_checkpoint(result.run_dir).info["epoch"] == best_epoch + 1


def test_run_stores_its_calibration_and_metrics_report_ece(run):
    result, _ = run
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    for key in ("ece", "ece_uncalibrated", "temperature", "balanced_accuracy", "macro_f1"):
        assert key in metrics and (metrics[key] is not None), key
    info = load_checkpoint(result.run_dir).info
    t = temperature_of(info)
    assert t == pytest.approx(metrics["temperature"]) and t > 0 and t != 1.0
    predictor = Predictor(result.run_dir)
    assert predictor.temperature == pytest.approx(t)
    images = make_shapes(2, seed=5).images
    with torch.no_grad():
        logits = predictor.model(predictor.inputs(images, layout="NHWC"))
    np.testing.assert_allclose(predictor.probs(images), torch.softmax(logits / t, 1).numpy(), atol=1e-5)


def test_old_checkpoints_load_with_temperature_one(run, tmp_path):
    result, _ = run
    import shutil

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    old = tmp_path / "old.safetensors"
    src = result.run_dir / "best.safetensors"
    with safe_open(str(src), framework="pt") as fh:
        meta = dict(fh.metadata())
    info = json.loads(meta["info"])
    info.pop("calibration")
    meta["info"] = json.dumps(info)
    save_file(load_file(str(src)), str(old), metadata=meta)
    p = Predictor(old)
    assert p.temperature == 1.0 and p.suggested_min_confidence is None
    store_calibration(old, 3.0, 0.75)  # and a stored calibration is read back
    q = Predictor(old)
    assert q.temperature == 3.0 and q.suggested_min_confidence == 0.75
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_onnx_export_puts_the_temperature_in_the_graph(run, tmp_path):
    from cnnkit.inference.onnx_backend import OnnxPredictor
    from cnnkit.serve.export import export_model

    result, _ = run
    exported = export_model(result.run_dir, "onnx", tmp_path / "m.onnx")
    assert exported.max_abs_diff <= 1e-4
    onnx = OnnxPredictor(exported.path)
    images = make_shapes(3, seed=6).images
    np.testing.assert_allclose(onnx.probs(images), Predictor(result.run_dir).probs(images), atol=1e-4)
    assert onnx.temperature == pytest.approx(Predictor(result.run_dir).temperature)


# ----------------------------------------------------------------------------- "unknown"


def test_min_confidence_answers_unknown_below_the_threshold():
    preds = [Prediction("a.png", [("cat", 0.9), ("dog", 0.1)]), Prediction("b.png", [("dog", 0.55), ("cat", 0.45)]),
             Prediction("c.png", [], error="not an image")]
    with_answers(preds, 0.6)
    assert [p.answer for p in preds] == ["cat", "unknown", None]
    assert preds[1].as_dict()["class"] == "unknown" and "class" not in preds[2].as_dict()
    assert resolve_min_confidence("auto", 0.8) == 0.8 and resolve_min_confidence("auto", None) is None
    assert resolve_min_confidence("0.5", None) == 0.5 and resolve_min_confidence(None, 0.8) is None
    for bad in ("1.5", "high", "-0.1"):
        with pytest.raises(ConfigError, match="min-confidence"):
            resolve_min_confidence(bad, None)


def test_predict_cli_min_confidence_in_every_format(run, tmp_path, capsys):
    from PIL import Image

    from cnnkit.cli import main

    result, _ = run
    files = []
    for i, img in enumerate(make_shapes(1, seed=7).images):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(files[-1])
    args = ["predict", str(result.run_dir), *map(str, files)]
    assert main(args + ["--format", "json"]) == 0  # without a threshold: no answer column
    plain = json.loads(capsys.readouterr().out)
    assert "class" not in plain[0]
    tops = sorted(a["top"][0]["prob"] for a in plain)
    threshold = (tops[0] + tops[1]) / 2 if tops[0] < tops[1] else tops[0] + (1 - tops[0]) / 2
    expected = ["unknown" if a["top"][0]["prob"] < threshold else a["top"][0]["class"] for a in plain]
    assert "unknown" in expected or tops[0] == 1.0
    flag = ["--min-confidence", repr(threshold)]
    assert main(args + ["--format", "json", *flag]) == 0
    assert [a["class"] for a in json.loads(capsys.readouterr().out)] == expected
    assert main(args + ["--format", "json", "--min-confidence", "0"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert [a["class"] for a in answers] == [a["top"][0]["class"] for a in answers]
    assert main(args + ["--format", "csv", *flag]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert lines[0].startswith("file,class,class1,prob1")
    assert [line.split(",")[1] for line in lines[1:]] == expected
    assert main(args + flag) == 0
    assert [line.split(": ", 1)[1].split("  (")[0] for line in capsys.readouterr().out.splitlines()] == expected
    suggested = Predictor(result.run_dir).suggested_min_confidence
    assert main(args + ["--format", "json", "--min-confidence", "auto"]) == 0
    auto = json.loads(capsys.readouterr().out)
    assert ("class" in auto[0]) == (suggested is not None)


def test_serve_min_confidence_query_and_form_field(run):
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from cnnkit.serve.app import create_app

    result, _ = run
    client = TestClient(create_app(result.run_dir))
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(8).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
    upload = {"file": ("x.png", buf.getvalue(), "image/png")}
    top = client.post("/predict", files=upload).json()["top"][0]
    above = min(1.0, float(np.nextafter(top["probability"], 2.0)))  # just above the top probability
    body = client.post(f"/predict?min_confidence={above!r}", files=upload).json()
    assert body["class"] == ("unknown" if top["probability"] < 1.0 else top["class"])
    assert body["min_confidence"] == above
    body = client.post("/predict", files=upload, data={"min_confidence": "0"}).json()
    assert body["class"] == body["top"][0]["class"]
    assert "class" not in client.post("/predict", files=upload).json()
    bad = client.post("/predict?min_confidence=2", files=upload)
    assert bad.status_code == 422 and "min_confidence" in bad.json()["detail"]
    info = client.get("/info").json()
    assert info["temperature"] == pytest.approx(Predictor(result.run_dir).temperature)
    assert math.isfinite(info["temperature"])
