import pytest
import torch

from cnnkit.config import ModelConfig
from cnnkit.errors import ConfigError
from cnnkit.models import MODELS, build_model, logits_to_probs, num_outputs
from cnnkit.models.summary import format_summary, summarize

CASES = [(1, 28, 10), (3, 32, 2), (3, 40, 5)]


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("channels,size,classes", CASES)
def test_shape_backward_finite(name, channels, size, classes):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, num_classes=classes, in_channels=channels, image_size=(size, size)))
    x = torch.randn(4, channels, size, size)
    out = model(x)
    assert out.shape == (4, num_outputs(classes))
    out.float().pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_interface_and_reset_head(name):
    model = build_model(ModelConfig(name=name, num_classes=10, in_channels=3, image_size=(32, 32)))
    feats = model.features(torch.zeros(2, 3, 32, 32))
    assert model.head(feats).shape == (2, 10)
    model.reset_head(4)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 4)
    if name != "mlp":
        assert isinstance(model.gradcam_layer, torch.nn.Module)
        assert any(m is model.gradcam_layer for m in model.features.modules())


def test_mlp_has_no_gradcam_layer():
    model = build_model(ModelConfig(name="mlp", num_classes=3, in_channels=1, image_size=(8, 8)))
    with pytest.raises(AttributeError):
        model.gradcam_layer


def test_unknown_model_and_too_small_input():
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        build_model(ModelConfig(name="nope"))
    with pytest.raises(ConfigError, match="at least"):
        build_model(ModelConfig(name="lenet5", image_size=(6, 6)))


def test_binary_probs():
    p = logits_to_probs(torch.tensor([[0.0], [100.0]]))
    assert torch.allclose(p, torch.tensor([[0.5, 0.5], [0.0, 1.0]]), atol=1e-6)


def test_summary_matches_keras_counts():
    # Keras mnist_cnn on 28x28x1: 1,199,882 parameters; conv1 320, conv2 18,496, dense 1,179,776
    model = build_model(ModelConfig(name="mnist-cnn", num_classes=10, in_channels=1, image_size=(28, 28)))
    s = summarize(model, (1, 28, 28))
    assert s.total == 1_199_882 == s.trainable
    rows = {r.name: r for r in s.rows}
    assert rows["features.0"].params == 320 and rows["features.0"].output_shape == (32, 26, 26)
    assert rows["features.2"].params == 18_496 and rows["features.2"].output_shape == (64, 24, 24)
    assert rows["head.0"].params == 1_179_776
    text = format_summary(s, "mnist-cnn")
    assert "Total params: 1,199,882" in text and "(None, 64, 24, 24)" in text


def test_summary_counts_frozen_params():
    model = build_model(ModelConfig(name="lenet5", num_classes=10, in_channels=1, image_size=(28, 28)))
    for p in model.features.parameters():
        p.requires_grad_(False)
    s = summarize(model, (1, 28, 28))
    assert s.non_trainable == 156 + 2416 and s.total == 61_706


# ----------------------------------------------------------------------------- custom nets by import path

CUSTOM_NETS = '''
from torch import nn

from cnnkit.models import num_outputs


def small(in_channels, num_classes, image_size, dropout=None):
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, num_outputs(num_classes)))


def ten_always(in_channels, num_classes, image_size, dropout=None):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(10))


def broken(in_channels, num_classes, image_size, dropout=None):
    raise RuntimeError("no such layer")
'''


@pytest.fixture
def custom_nets(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(CUSTOM_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_nets"


def test_custom_net_by_import_path_trains_and_its_checkpoint_predicts(custom_nets, tmp_path, shapes_splits):
    from cnnkit.config import OptimConfig, RunConfig, TrainConfig, DataConfig
    from cnnkit.inference import load_predictor
    from cnnkit.train import train
    from cnnkit.visualize.gradcam import gradcam

    cfg = RunConfig(data=DataConfig(source="shapes"), model=ModelConfig(name=f"{custom_nets}:small"),
                    optim=OptimConfig(name="adam", lr=1e-2),
                    train=TrainConfig(epochs=3, batch_size=16, out=str(tmp_path / "run"), progress=False, report=False))
    result = train(cfg, splits=shapes_splits, explicit_out=True)
    assert result.metrics["accuracy"] > 0.5
    predictor = load_predictor(result.run_dir)  # rebuilt from the import path saved in the checkpoint
    probs = predictor.probs(shapes_splits.test.images)
    assert probs.shape == (len(shapes_splits.test), 3)
    assert isinstance(predictor.model.gradcam_layer, torch.nn.Conv2d)  # the wrapped net's last convolution
    x = torch.zeros(1, 3, 16, 16)
    assert gradcam(predictor.model, x).shape[-2:] == (16, 16)


def test_custom_net_errors_are_clear(custom_nets):
    cfg = ModelConfig(name=f"{custom_nets}:ten_always", num_classes=2, image_size=(8, 8))
    with pytest.raises(ConfigError, match=r"outputs of shape \(10,\).*2 classes need \(1,\)"):
        build_model(cfg)
    with pytest.raises(ConfigError, match="the builder failed: RuntimeError: no such layer"):
        build_model(ModelConfig(name=f"{custom_nets}:broken"))
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        build_model(ModelConfig(name=f"{custom_nets}:nope"))
    with pytest.raises(ConfigError, match="cannot import module 'no_such_nets'"):
        build_model(ModelConfig(name="no_such_nets:small"))
