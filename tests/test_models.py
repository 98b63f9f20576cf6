import pytest
import torch

from cnnkit.config import ModelConfig
from cnnkit.errors import CheckpointError, ConfigError
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
    assert out.shape == (4, num_outputs(classes, model.binary_output))  # catdog-cnn: two softmax logits for two
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
    assert rows["features.0"].params == 320 and rows["features.0"].output_shape == (26, 26, 32)  # channels-last
    assert rows["features.2"].params == 18_496 and rows["features.2"].output_shape == (24, 24, 64)
    assert rows["head.0"].params == 1_179_776
    text = format_summary(s, "mnist-cnn")
    assert "Total params: 1,199,882" in text and "(None, 24, 24, 64)" in text


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


def hidden(in_channels, num_classes, image_size, dropout=None):  # a dense part of two Linear layers
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Dropout(0.1), nn.Linear(8 * (image_size[0] // 2) * (image_size[1] // 2), 16), nn.ReLU(),
                         nn.Linear(16, num_outputs(num_classes)))


class Opaque(nn.Module):  # its own forward: cnnkit cannot cut it
    def __init__(self, in_channels, outputs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.fc = nn.Linear(6, outputs)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean(dim=(2, 3)))


def opaque(in_channels, num_classes, image_size, dropout=None):
    return Opaque(in_channels, num_outputs(num_classes))


def two_logits(in_channels, num_classes, image_size, dropout=None):
    return Opaque(in_channels, 2 if num_classes == 2 else num_classes)


def all_conv(in_channels, num_classes, image_size, dropout=None):  # no Linear at all
    return nn.Sequential(nn.Conv2d(in_channels, num_outputs(num_classes), 3, padding=1), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())
'''


@pytest.fixture
def custom_nets(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(CUSTOM_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_nets"


def test_custom_net_by_import_path_trains_and_its_checkpoint_predicts(custom_nets, tmp_path, shapes_splits):
    from cnnkit.config import DataConfig, OptimConfig, RunConfig, TrainConfig
    from cnnkit.inference import load_predictor
    from cnnkit.train import train
    from cnnkit.visualize.gradcam import gradcam

    cfg = RunConfig(data=DataConfig(source="shapes"), model=ModelConfig(name=f"{custom_nets}:small"),
                    optim=OptimConfig(name="adam", lr=1e-2),
                    train=TrainConfig(epochs=3, batch_size=16, out=str(tmp_path / "run"), progress=False, report=False))
    result = train(cfg, splits=shapes_splits, explicit_out=True)
    assert result.metrics["accuracy"] > 0.5
    with pytest.raises(CheckpointError, match=r"model 'my_nets:small' is code.*--trust-code"):
        load_predictor(result.run_dir)  # loading imports nothing unless asked
    predictor = load_predictor(result.run_dir, trust_code=True)  # rebuilt from the import path saved in the checkpoint
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


# ----------------------------------------------------------------------------- the tutorial nets, exactly

# (model, channels, size, classes): the tutorial's input and Keras' "Total params"
TUTORIAL_TOTALS = [
    ("cifar-cnn", 3, 32, 10, 276_138),  # Keras CIFAR-10 tutorial, createModel()
    ("simple-cnn", 3, 150, 2, 4_894_913),  # cats vs dogs: Conv32-64-128 valid, Dense 128-512-1
    ("catdog-cnn", 3, 150, 2, 1_355_938),  # KDnuggets: Conv32-32-64 same, Dense 64-2
    ("chollet-cnn", 3, 150, 2, 1_212_513),  # Chollet, Keras blog 2016: Conv32-32-64 valid, Dense 64-1
    ("horses-cnn", 3, 300, 2, 1_704_097),  # TF course horses-or-humans: Conv16-32-64-64-64 valid, Dense 512-1
    ("lenet5", 1, 32, 10, 61_706),
    ("lenet5", 1, 28, 10, 61_706),  # MNIST's 28x28 padded to LeNet's 32x32
    ("mlp", 1, 28, 10, 669_706),  # Keras mnist_mlp
    ("mnist-cnn", 1, 28, 10, 1_199_882),  # Keras mnist_cnn
    ("fashion-functional", 1, 28, 10, 412_778),  # TF blog "Fashion-MNIST with tf.Keras"
]


@pytest.mark.parametrize("name,channels,size,classes,total", TUTORIAL_TOTALS)
def test_tutorial_nets_have_the_tutorials_parameter_totals(name, channels, size, classes, total):
    model = build_model(ModelConfig(name=name, num_classes=classes, in_channels=channels, image_size=(size, size)))
    assert sum(p.numel() for p in model.parameters()) == total
    s = summarize(model, (channels, size, size))
    assert s.total == s.trainable == total and s.non_trainable == 0
    assert f"Total params: {total:,}" in format_summary(s, name)


# Keras' model.summary() rows of each tutorial net: (type, output shape without the batch axis, params)
KERAS_ROWS = {
    ("cifar-cnn", 3, 32, 10): [
        ("Conv2D", (32, 32, 32), 896), ("Conv2D", (30, 30, 32), 9_248), ("MaxPooling2D", (15, 15, 32), 0),
        ("Dropout", (15, 15, 32), 0), ("Conv2D", (15, 15, 64), 18_496), ("Conv2D", (13, 13, 64), 36_928),
        ("MaxPooling2D", (6, 6, 64), 0), ("Dropout", (6, 6, 64), 0), ("Conv2D", (6, 6, 64), 36_928),
        ("Conv2D", (4, 4, 64), 36_928), ("MaxPooling2D", (2, 2, 64), 0), ("Dropout", (2, 2, 64), 0),
        ("Flatten", (256,), 0), ("Dense", (512,), 131_584), ("Dropout", (512,), 0), ("Dense", (10,), 5_130)],
    ("simple-cnn", 3, 150, 2): [
        ("Conv2D", (148, 148, 32), 896), ("MaxPooling2D", (74, 74, 32), 0), ("Conv2D", (72, 72, 64), 18_496),
        ("MaxPooling2D", (36, 36, 64), 0), ("Conv2D", (34, 34, 128), 73_856), ("MaxPooling2D", (17, 17, 128), 0),
        ("Flatten", (36_992,), 0), ("Dense", (128,), 4_735_104), ("Dense", (512,), 66_048), ("Dense", (1,), 513)],
    ("catdog-cnn", 3, 150, 2): [
        ("Conv2D", (150, 150, 32), 896), ("MaxPooling2D", (75, 75, 32), 0), ("Conv2D", (75, 75, 32), 9_248),
        ("MaxPooling2D", (37, 37, 32), 0), ("Conv2D", (37, 37, 64), 18_496), ("MaxPooling2D", (18, 18, 64), 0),
        ("Dropout", (18, 18, 64), 0), ("Flatten", (20_736,), 0), ("Dense", (64,), 1_327_168), ("Dropout", (64,), 0),
        ("Dense", (2,), 130)],
    ("chollet-cnn", 3, 150, 2): [
        ("Conv2D", (148, 148, 32), 896), ("MaxPooling2D", (74, 74, 32), 0), ("Conv2D", (72, 72, 32), 9_248),
        ("MaxPooling2D", (36, 36, 32), 0), ("Conv2D", (34, 34, 64), 18_496), ("MaxPooling2D", (17, 17, 64), 0),
        ("Flatten", (18_496,), 0), ("Dense", (64,), 1_183_808), ("Dropout", (64,), 0), ("Dense", (1,), 65)],
    ("horses-cnn", 3, 300, 2): [
        ("Conv2D", (298, 298, 16), 448), ("MaxPooling2D", (149, 149, 16), 0), ("Conv2D", (147, 147, 32), 4_640),
        ("MaxPooling2D", (73, 73, 32), 0), ("Conv2D", (71, 71, 64), 18_496), ("MaxPooling2D", (35, 35, 64), 0),
        ("Conv2D", (33, 33, 64), 36_928), ("MaxPooling2D", (16, 16, 64), 0), ("Conv2D", (14, 14, 64), 36_928),
        ("MaxPooling2D", (7, 7, 64), 0), ("Flatten", (3_136,), 0), ("Dense", (512,), 1_606_144),
        ("Dense", (1,), 513)],
    ("lenet5", 1, 32, 10): [
        ("Conv2D", (28, 28, 6), 156), ("MaxPooling2D", (14, 14, 6), 0), ("Conv2D", (10, 10, 16), 2_416),
        ("MaxPooling2D", (5, 5, 16), 0), ("Flatten", (400,), 0), ("Dense", (120,), 48_120), ("Dense", (84,), 10_164),
        ("Dense", (10,), 850)],
    ("mlp", 1, 28, 10): [
        ("Flatten", (784,), 0), ("Dense", (512,), 401_920), ("Dropout", (512,), 0), ("Dense", (512,), 262_656),
        ("Dropout", (512,), 0), ("Dense", (10,), 5_130)],
    ("mnist-cnn", 1, 28, 10): [
        ("Conv2D", (26, 26, 32), 320), ("Conv2D", (24, 24, 64), 18_496), ("MaxPooling2D", (12, 12, 64), 0),
        ("Dropout", (12, 12, 64), 0), ("Flatten", (9_216,), 0), ("Dense", (128,), 1_179_776), ("Dropout", (128,), 0),
        ("Dense", (10,), 1_290)],
    ("fashion-functional", 1, 28, 10): [
        ("Conv2D", (28, 28, 64), 320), ("MaxPooling2D", (14, 14, 64), 0), ("Dropout", (14, 14, 64), 0),
        ("Conv2D", (14, 14, 32), 8_224), ("MaxPooling2D", (7, 7, 32), 0), ("Dropout", (7, 7, 32), 0),
        ("Flatten", (1_568,), 0), ("Dense", (256,), 401_664), ("Dropout", (256,), 0), ("Dense", (10,), 2_570)],
}


@pytest.mark.parametrize("key", sorted(KERAS_ROWS), ids=lambda k: k[0])
def test_summary_rows_are_keras_rows(key):
    name, channels, size, classes = key
    model = build_model(ModelConfig(name=name, num_classes=classes, in_channels=channels, image_size=(size, size)))
    rows = summarize(model, (channels, size, size)).rows
    assert [(r.kind, r.output_shape, r.params) for r in rows] == KERAS_ROWS[key]  # no ReLU rows: folded


def test_summary_table_reads_like_keras():
    model = build_model(ModelConfig(name="cifar-cnn", num_classes=10, in_channels=3, image_size=(32, 32)))
    lines = format_summary(summarize(model, (3, 32, 32)), "cifar-cnn").splitlines()
    assert lines[0] == 'Model: "cifar-cnn"' and "(None, 32, 32, 3)" in lines[1]
    first = next(line for line in lines if line.startswith("features.0"))
    assert first.split() == ["features.0", "(Conv2D)", "(None,", "32,", "32,", "32)", "896"]
    assert [line.split(":")[0] for line in lines[-4:-1]] == ["Total params", "Trainable params", "Non-trainable params"]
    assert not any("ReLU" in line for line in lines)


def test_summary_counts_batchnorm_statistics_as_keras_does():
    # Keras' BatchNormalization(C) has 4C parameters: gamma, beta (trainable), moving mean and variance (not)
    model = build_model(ModelConfig(name="cifar-cnn-bn", num_classes=10, in_channels=3, image_size=(32, 32)))
    s = summarize(model, (3, 32, 32))
    bn = [r for r in s.rows if r.kind == "BatchNormalization"]
    assert [r.params for r in bn] == [4 * c for c in (32, 32, 64, 64, 64, 64)]
    assert s.non_trainable == 2 * (32 + 32 + 64 * 4)
    assert s.trainable == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", [(12, 12), (20, 24), (28, 28), (32, 32), (40, 36)])
def test_lenet5_builds_at_other_sizes(size):
    model = build_model(ModelConfig(name="lenet5", num_classes=10, in_channels=1, image_size=size))
    assert model(torch.zeros(2, 1, *size)).shape == (2, 10)


@pytest.mark.parametrize("name", ["simple-cnn", "cifar-cnn"])
def test_valid_padding_nets_still_fit_tiny_images(name):
    # at 16 px the tutorials' valid convolutions would shrink the map to nothing: those sides pad
    model = build_model(ModelConfig(name=name, num_classes=3, in_channels=3, image_size=(16, 24)))
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    valid = convs if name == "simple-cnn" else convs[1::2]  # cifar-cnn: the second conv of each block
    assert [c.padding for c in valid] == [(1, 0)] * 3  # the 16 px side pads, the 24 px side stays valid
    assert model(torch.zeros(2, 3, 16, 24)).shape == (2, 3)


# ----------------------------------------------------------------------------- one interface


@pytest.mark.parametrize("name", sorted(MODELS))
def test_features_are_the_heads_input(name):
    from cnnkit.models import ModelDefaults, default_config

    torch.manual_seed(0)
    cfg = ModelConfig(name=name, num_classes=5, in_channels=3, image_size=(24, 24))
    model = build_model(cfg).eval()
    x = torch.randn(3, 3, 24, 24)
    with torch.no_grad():
        f = model.features(x)
        assert f.shape == (3, model.num_features)
        assert torch.equal(model.head(f), model(x))
    assert model.default_config == default_config(cfg) == ModelDefaults()
    assert model.input_norm is None  # the run computes the data's own mean/std
    (group,) = model.param_groups(0.1)
    assert group["lr"] == 0.1 and len(group["params"]) == len(list(model.parameters()))


def test_mlp_trunk_is_its_flatten():
    model = build_model(ModelConfig(name="mlp", num_classes=10, in_channels=1, image_size=(28, 28)))
    assert model.num_features == 784 and not list(model.features.parameters())
    model.reset_head(3)
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 3) and model.head[0].out_features == 512  # hidden kept


def test_reset_head_keeps_the_hidden_dense_layers():
    model = build_model(ModelConfig(name="simple-cnn", num_classes=10, in_channels=3, image_size=(32, 32)))
    hidden = model.head[0].weight.clone()
    model.reset_head(2)
    assert torch.equal(model.head[0].weight, hidden) and model.head[-1].out_features == 1
    model.reset_head(2, binary="softmax")
    assert model.head[-1].out_features == 2


def test_two_classes_as_two_softmax_logits_by_config_or_by_definition():
    for name in ("simple-cnn", "mlp", "fast-cnn-small"):
        model = build_model(ModelConfig(name=name, num_classes=2, image_size=(16, 16), binary_output="softmax"))
        assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 2) and model.binary_output == "softmax"
    catdog = build_model(ModelConfig(name="catdog-cnn", num_classes=2, image_size=(16, 16)))  # default: sigmoid
    assert catdog(torch.zeros(1, 3, 16, 16)).shape == (1, 2) and catdog.binary_output == "softmax"
    catdog.reset_head(2)
    assert catdog.head[-1].out_features == 2  # its definition fixes softmax
    assert build_model(ModelConfig(name="catdog-cnn", num_classes=4, image_size=(16, 16)))(
        torch.zeros(1, 3, 16, 16)).shape == (1, 4)
    with pytest.raises(ConfigError, match="binary_output 'tanh'"):
        build_model(ModelConfig(name="simple-cnn", num_classes=2, binary_output="tanh"))


def test_default_config_answers_without_building(caplog):
    from cnnkit.errors import WeightsError
    from cnnkit.models import ModelDefaults, default_config
    from cnnkit.models.transfer import BACKBONES

    # a missing weight file: building would fail, the defaults need no weights
    cfg = ModelConfig(name="inception_v3", transfer="head", weights="/no/such/weights.pth")
    with pytest.raises(WeightsError):
        build_model(cfg)
    spec = BACKBONES["inception_v3"]
    assert default_config(cfg) == ModelDefaults(input_size=(299, 299), channels=3, mean=spec.mean, std=spec.std)
    assert default_config(ModelConfig(name="no_such_module:net")) == ModelDefaults()  # nothing imported
    with pytest.raises(ConfigError, match="needs a pretrained backbone"):
        default_config(ModelConfig(name="lenet5", transfer="head"))
    with pytest.raises(ConfigError, match="RGB"):
        default_config(ModelConfig(name="resnet18", in_channels=1))
    with pytest.raises(ConfigError, match="unknown model"):
        default_config(ModelConfig(name="nope"))
    caplog.set_level("WARNING", logger="cnnkit")
    default_config(ModelConfig(name="resnet18", transfer="features"))
    assert any("randomly initialised backbone" in r.getMessage() for r in caplog.records)


def test_custom_sequential_is_cut_where_its_dense_part_starts(custom_nets):
    model = build_model(ModelConfig(name=f"{custom_nets}:hidden", num_classes=3, image_size=(8, 8))).eval()
    assert [type(m).__name__ for m in model.head] == ["Dropout", "Linear", "ReLU", "Linear"]
    assert model.num_features == 8 * 4 * 4
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert model.features(x).shape == (2, 128) and torch.equal(model.head(model.features(x)), model(x))
    hidden_w = model.head[1].weight.clone()
    model.reset_head(5)
    assert model(x).shape == (2, 5) and torch.equal(model.head[1].weight, hidden_w)
    assert isinstance(model.gradcam_layer, torch.nn.Conv2d)


def test_custom_module_head_is_its_last_linear(custom_nets, tmp_path):
    from cnnkit.config import Preprocess
    from cnnkit.inference.checkpoint import load_weights_into, save_checkpoint

    cfg = ModelConfig(name=f"{custom_nets}:opaque", num_classes=4, image_size=(8, 8))
    model = build_model(cfg).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        f = model.features(x)  # the input of net.fc, read by a hook
        assert f.shape == (2, 6) == (2, model.num_features)
        assert torch.equal(model.head(f), model(x)) and model.head is model.net.fc
    assert not model.net.fc._forward_pre_hooks  # the hook lives only for the call
    model.reset_head(2)
    assert model(x).shape == (2, 1) and model.net.fc.out_features == 1
    # weights are registered once (no shared tensors), so the checkpoint round-trips
    path = tmp_path / "opaque.safetensors"
    save_checkpoint(path, model, Preprocess(("a", "b"), (8, 8), 3, (0.5,) * 3, (0.25,) * 3), cfg)
    again = build_model(ModelConfig(name=f"{custom_nets}:opaque", num_classes=2, image_size=(8, 8)))
    load_weights_into(again, path)
    assert torch.equal(again.net.fc.weight, model.net.fc.weight)


def test_custom_net_with_two_logits_is_softmax_and_all_conv_nets_have_no_head(custom_nets):
    two = build_model(ModelConfig(name=f"{custom_nets}:two_logits", num_classes=2, image_size=(8, 8)))
    assert two.binary_output == "softmax" and two(torch.zeros(1, 3, 8, 8)).shape == (1, 2)
    asked = build_model(ModelConfig(name=f"{custom_nets}:hidden", num_classes=2, image_size=(8, 8),
                                    binary_output="softmax"))
    assert asked(torch.zeros(1, 3, 8, 8)).shape == (1, 2)
    conv = build_model(ModelConfig(name=f"{custom_nets}:all_conv", num_classes=3, image_size=(8, 8)))
    assert conv.num_features == 3 and conv.features(torch.zeros(1, 3, 8, 8)).shape == (1, 3)
    with pytest.raises(ConfigError, match="no nn.Linear layer to replace"):
        conv.reset_head(4)

