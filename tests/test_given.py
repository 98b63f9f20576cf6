"""The settings a person named travel with the config as ``given``, whatever their values."""

from __future__ import annotations

import json

import pytest

from cnnkit import config as C
from cnnkit import settings
from cnnkit.cli import build_parser, run_config_from_args
from cnnkit.errors import ConfigError


def parse(*argv: str) -> C.RunConfig:
    return run_config_from_args(build_parser().parse_args(list(argv)))


def test_flags_are_given_even_at_their_default_value():
    default = C.TrainConfig().epochs
    cfg = parse("train", "cifar10", "--epochs", str(default), "--optimizer", C.OptimConfig().name)
    assert {"train.epochs", "optim.name", "data.source"} <= set(cfg.given)
    assert cfg.train.epochs == default and cfg.optim.name == C.OptimConfig().name
    assert "optim.lr" not in cfg.given and "train.batch_size" not in cfg.given
    seeded = parse("train", "--seed", "0", "--lr", "auto")  # a shared flag names both of its settings
    assert {"data.seed", "train.seed", "optim.lr"} == set(seeded.given)
    assert list(seeded.given) == sorted(seeded.given)
    assert parse("train").given == ()  # nothing named: the data too is the default


def test_lr_find_and_augment_preview_record_the_flags_given():
    assert {"train.batch_size", "data.source"} <= set(parse("lr-find", "digits", "--batch-size", "64").given)
    from cnnkit.cli import _build

    a = build_parser().parse_args(["augment-preview", "digits", "--rotation", "0"])
    cfg = _build(a.run_config(), settings.given(a, a.run_config), {"data.source": a.data})
    assert {"augment.rotation_range", "data.source"} <= set(cfg.given)


def test_make_config_keywords_are_given_as_their_dotted_keys():
    cfg = C.make_config(data="digits", epochs=C.TrainConfig().epochs, seed=0, optimizer="adam")
    assert set(cfg.given) == {"data.source", "train.epochs", "data.seed", "train.seed", "optim.name"}
    more = C.make_config(base=cfg, lr=0.01)  # a base keeps what it was given
    assert set(more.given) == set(cfg.given) | {"optim.lr"}
    assert C.make_config().given == ()


def test_a_config_files_keys_are_given_and_flags_join_them(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"train": {"epochs": 3}, "optim": {"momentum": 0.9}, "given": ["model.name"]}))
    from_file = C.load_run_config(path)
    assert set(from_file.given) == {"train.epochs", "optim.momentum", "model.name"}
    assert C.load_run_config(path, named=False).given == ("model.name",)  # a run's record read back as saved
    cfg = parse("train", "digits", "--config", str(path), "--batch-size", "32")
    assert set(cfg.given) == {"train.epochs", "optim.momentum", "model.name", "train.batch_size", "data.source"}


def test_given_is_saved_read_back_and_overridable_but_never_a_flag(tmp_path):
    cfg = C.make_config(data="digits", epochs=2)
    C.save_json(cfg, tmp_path / "config.json")
    assert json.loads((tmp_path / "config.json").read_text())["given"] == ["data.source", "train.epochs"]
    assert C.load_run_config(tmp_path / "config.json", named=False) == cfg
    assert settings.load(C.RunConfig, {"given": ["b", "a", "a"]}).given == ("a", "b")
    assert C.override(C.RunConfig(), {"given": ["train.epochs"]}).given == ("train.epochs",)
    assert C.with_given(cfg, ["optim.lr"]).given == ("data.source", "optim.lr", "train.epochs")
    with pytest.raises(ConfigError, match="given"):
        C.validate(C.override(C.RunConfig(), {"given": "train.epochs"}))  # a text, not a list of keys
    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    assert not [a for a in train._actions if "given" in a.dest or any("given" in o for o in a.option_strings)]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--given", "x"])


def test_a_transfer_mode_means_pretrained_weights_unless_named_otherwise(tmp_path):
    assert C.make_config(model="resnet18", transfer="head").model.pretrained
    assert not C.make_config(model="resnet18", transfer="head", pretrained=False).model.pretrained
    assert not C.make_config(model="resnet18", transfer="head", weights=str(tmp_path / "w.pth")).model.pretrained
    assert not C.make_config(model="resnet18").model.pretrained
    assert parse("train", "--model", "resnet18", "--transfer", "features").model.pretrained
    assert not parse("train", "--model", "resnet18", "--transfer", "features", "--no-pretrained").model.pretrained


def test_recipe_overrides_are_given():
    from cnnkit.recipes import get_recipe, recipe_config

    name = next(iter(__import__("cnnkit.recipes", fromlist=["RECIPES"]).RECIPES))
    cfg = recipe_config(get_recipe(name), overrides={"train": {"epochs": 1}, "data.seed": 0})
    assert {"train.epochs", "data.seed"} <= set(cfg.given)
