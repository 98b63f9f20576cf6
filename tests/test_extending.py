"""Extending cnnkit: a new augmentation is one Transform, a new setting is one field.

Neither touches cnnkit's modules: the transform joins a transform list through
``augment_config``, the setting joins a config class through a subclass, and both then have a
flag, validation, ``make_config`` names and a place in the saved run config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from cnnkit.augment import TRANSFORMS, BatchAugment, Transform, augment_config
from cnnkit.cli import main
from cnnkit.config import RunConfig, TrainConfig, load_run_config, make_config
from cnnkit.errors import ConfigError
from cnnkit.settings import section, setting


class Invert(Transform):
    """Invert each image (x -> 1 - x) with probability ``invert``."""

    settings = {"invert": setting(0.0, "invert images with this probability", metavar="P", range="[0, 1]")}
    columns = ("invert",)  # a 17th column of the batch's one draw
    params = {"invert": 0.0}

    def sample(self, cfg, u, n, size):
        return {"invert": (u["invert"] < cfg.invert) * 1.0}

    def apply(self, x, p, cfg):
        m = p.invert.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)  # (N,1,1,1): 1 = invert
        return m * (1.0 - x) + (1.0 - m) * x


InvertAugment = augment_config((*TRANSFORMS, Invert()))


@dataclass(frozen=True)
class EmaTrain(TrainConfig):
    ema_decay: float = setting(0.0, "decay of an exponential moving average of the weights", range="[0, 1)")


@dataclass(frozen=True)
class MyRun(RunConfig):
    train: EmaTrain = section(EmaTrain, "training")
    augment: InvertAugment = section(InvertAugment, "augmentation")


def test_the_transform_changes_the_batch_and_keeps_the_others_draws():
    x, y = torch.rand(6, 3, 8, 8), torch.arange(6) % 2
    out, _ = BatchAugment(InvertAugment(invert=1.0), 2)(x, y, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, 1.0 - x)
    assert not BatchAugment(InvertAugment(), 2).active
    # it composes with the built-in ones: each image flipped or not, then inverted
    both, _ = BatchAugment(InvertAugment(invert=1.0, horizontal_flip=True), 2)(x, y, torch.Generator().manual_seed(0))
    flipped = [torch.equal(both[i], 1.0 - x[i].flip(-1)) for i in range(6)]
    assert all(f or torch.equal(both[i], 1.0 - x[i]) for i, f in enumerate(flipped)) and any(flipped)
    with pytest.raises(ConfigError, match="augment.invert=2"):
        BatchAugment(InvertAugment(invert=2.0), 2)


def test_from_python_make_config_reaches_both(tmp_path, shapes_splits):
    from cnnkit.train import train

    cfg = make_config(base=MyRun(), model="lenet5", epochs=1, batch_size=16, out=str(tmp_path / "run"),
                      progress=False, report=False, invert=1.0, ema_decay=0.5)
    assert isinstance(cfg, MyRun) and cfg.augment.invert == 1.0 and cfg.train.ema_decay == 0.5
    with pytest.raises(ConfigError, match=r"train.ema_decay=1.5: must be in \[0, 1\)"):
        make_config(base=MyRun(), ema_decay=1.5)
    result = train(cfg, splits=shapes_splits, explicit_out=True)
    saved = load_run_config(result.run_dir / "config.json", MyRun)  # the run's record, read back by its class
    assert saved.train.ema_decay == 0.5 and saved.augment.invert == 1.0


def test_from_the_command_line(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["train", str(image_folder), "--model", "lenet5", "--epochs", "1", "--batch-size", "8", "--quiet",
              "--no-report", "--cache-dir", str(tmp_path / "cache")]
    assert main([*common, "--out", str(out), "--invert", "0.5", "--ema-decay", "0.25"], config=MyRun) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["augment"]["invert"] == 0.5 and saved["train"]["ema_decay"] == 0.25
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "bad"), "--invert", "nan"], config=MyRun) == 2
    assert capsys.readouterr().err.startswith("cnnkit: error: --invert nan (setting augment.invert): must be in [0, 1]")
    assert main(["augment-preview", str(image_folder), "--invert", "1", "--n-aug", "1", "--n-images", "2",
                 "--out", str(tmp_path / "p.png")], config=MyRun) == 0
    with pytest.raises(SystemExit):  # the plain CLI has no such flag
        main([*common, "--invert", "1"])
