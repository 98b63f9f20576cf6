"""Two classes as two softmax logits, through the whole chain: loss, training, metrics, checkpoint,
predict, export, serve and Grad-CAM (the default, one sigmoid logit, is tested everywhere else)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cnnkit.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from cnnkit.train.losses import cross_entropy, predicted_class
from conftest import make_shapes


def test_two_softmax_logits_loss_is_keras_binary_crossentropy_over_one_hot():
    torch.manual_seed(0)
    logits, y = torch.randn(16, 2), torch.randint(0, 2, (16,))
    p, onehot = torch.softmax(logits, 1), F.one_hot(y, 2).float()
    keras = F.binary_cross_entropy(p, onehot)  # Keras' binary_crossentropy: mean over both outputs
    assert torch.allclose(cross_entropy(logits, y), keras, atol=1e-6)
    smooth = onehot * 0.9 + 0.05  # Keras label_smoothing=0.1 on the one-hot targets
    assert torch.allclose(cross_entropy(logits, y, label_smoothing=0.1), F.binary_cross_entropy(p, smooth), atol=1e-6)
    assert torch.equal(predicted_class(logits), logits.argmax(1))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One epoch of simple-cnn with two softmax logits on a tiny two-class folder: (run folder, data folder)."""
    root = tmp_path_factory.mktemp("two-logits")
    data = make_shapes(10, size=16, seed=4, classes=("bright", "dark"))
    folder = root / "images"
    for i, (img, label) in enumerate(zip(data.images, data.labels)):
        (folder / data.classes[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / data.classes[label] / f"{i:03d}.png")
    from cnnkit.train import train

    cfg = RunConfig(data=DataConfig(source=str(folder), val_split=0.25, cache_dir=str(root / "cache")),
                    model=ModelConfig(name="simple-cnn", binary_output="softmax"), optim=OptimConfig(lr=3e-3),
                    train=TrainConfig(epochs=1, batch_size=8, out=str(root / "run"), progress=False, report=False,
                                      device="cpu"))
    result = train(cfg, explicit_out=True)
    assert result.model.head[-1].out_features == 2
    return result, folder


def test_training_metrics_and_checkpoint_keep_two_logits(run):
    from cnnkit.inference.checkpoint import load_checkpoint

    result, _ = run
    assert np.isfinite(result.history[-1]["loss"]) and 0.0 <= result.metrics["accuracy"] <= 1.0
    ck = load_checkpoint(result.run_dir)
    assert ck.model_config.binary_output == "softmax" and ck.model.head[-1].out_features == 2
    with torch.no_grad():
        assert ck.model(torch.zeros(3, 3, 16, 16)).shape == (3, 2)


def test_predict_export_serve_and_gradcam_with_two_logits(run, tmp_path):
    import onnxruntime as ort
    from fastapi.testclient import TestClient

    from cnnkit.inference.checkpoint import load_checkpoint
    from cnnkit.serve.app import create_app
    from cnnkit.serve.export import export_model, sample_inputs
    from cnnkit.serve.predict import predict
    from cnnkit.visualize.gradcam import gradcam

    result, folder = run
    files = sorted(folder.rglob("*.png"))[:4]
    preds = predict(result.run_dir, files, top_k=2)
    for p in preds:
        assert [c for c, _ in p.top] in (["bright", "dark"], ["dark", "bright"])
        assert sum(prob for _, prob in p.top) == pytest.approx(1.0, abs=1e-5)

    exported = export_model(result.run_dir, "onnx", tmp_path / "m.onnx")
    assert exported.max_abs_diff <= 1e-4
    ck = load_checkpoint(result.run_dir)
    x = sample_inputs(ck.preprocess, n=3, seed=1)
    logits, probs = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"]).run(
        ["logits", "probs"], {"image": x.numpy()})
    assert logits.shape == (3, 2) and probs.shape == (3, 2)
    np.testing.assert_allclose(probs, torch.softmax(torch.from_numpy(logits), 1).numpy(), atol=1e-6)

    buf = io.BytesIO()
    Image.open(files[0]).save(buf, "PNG")
    body = TestClient(create_app(result.run_dir)).post("/predict", files={"file": ("a.png", buf.getvalue())}).json()
    assert {t["class"] for t in body["top"]} == {"bright", "dark"}

    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (ck.preprocess.mean, ck.preprocess.std))
    img = torch.from_numpy(np.array(Image.open(files[0]))).permute(2, 0, 1)[None].float() / 255
    maps = [gradcam(ck.model, (img - mean) / std, target) for target in (0, 1)]
    assert all(m.shape == (1, 16, 16) and np.isfinite(m).all() and m.max() <= 1 + 1e-6 for m in maps)
    assert not np.allclose(maps[0], maps[1])  # each logit has its own evidence
