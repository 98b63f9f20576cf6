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
