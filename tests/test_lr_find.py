"""The learning-rate range test: the sweep, the suggestion, `cnnkit lr-find` and `--lr auto`."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from cnnkit.cli import main
from cnnkit.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig, make_config
from cnnkit.data import DataSplits
from cnnkit.data.loader import BatchLoader
from cnnkit.errors import ConfigError
from cnnkit.inference import ImageInputs
from cnnkit.models import build_model
from cnnkit.train.features import IdentityInputs
from cnnkit.train.loop import Training
from cnnkit.train.lr_find import DIVERGE, LRFind, lr_range_test, lr_schedule, suggest_lr, sweep_steps, valley_index
from cnnkit.train.optim import build_optimizer
from cnnkit.train.run import find_lr
from conftest import make_shapes


def synthetic_curve(seed: int, n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """A range test's typical curve on 1e-7..10: flat at 2.3 up to 1e-4, falling to 0.5 at 1e-2,
    rising steeply after 1e-1, with minibatch noise."""
    lrs = np.geomspace(1e-7, 10, n)
    x = np.log10(lrs)
    clean = np.where(x < -4, 2.3, np.where(x < -2, 2.3 - 0.9 * (x + 4), 0.5))
    clean = clean + np.where(x > -1, 3.0 * (x + 1) ** 2, 0.0)
    return lrs, clean + np.random.default_rng(seed).normal(0, 0.08, n)


def shapes_loader(n: int = 8, batch: int = 8, seed: int = 0) -> BatchLoader:
    return BatchLoader(make_shapes(n, size=16, seed=seed), batch, torch.device("cpu"), shuffle=True, seed=seed)


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(name="lenet5", num_classes=3, in_channels=3, image_size=(16, 16)))


def _range_test(model, loader, optim: OptimConfig, **kw) -> LRFind:
    return lr_range_test(Training(model, loader, ImageInputs((0.5,) * 3, (0.25,) * 3, torch.device("cpu"))),
                         model.param_groups(1.0), optim, **kw)


# ----------------------------------------------------------------------------- the curve


def test_sweep_steps_are_fewer_on_small_data():
    assert sweep_steps(500) == 100 and sweep_steps(20) == 60 and sweep_steps(2) == 30 and sweep_steps(9, 12) == 12
    lrs = lr_schedule(1e-7, 10, 100)
    assert lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(10)
    assert np.allclose(lrs[1:] / lrs[:-1], (1e8) ** (1 / 99))  # exponential: one ratio between steps
    with pytest.raises(ConfigError):
        lr_schedule(1.0, 0.1, 10)


@pytest.mark.parametrize("seed", range(5))
def test_suggestion_lies_inside_the_descent_of_a_noisy_curve(seed):
    lrs, losses = synthetic_curve(seed)
    lr, how, smoothed = suggest_lr(lrs, losses)
    assert 1e-4 < lr < 1e-2, lr  # the curve falls from 1e-4 to 1e-2
    assert "valley" in how and smoothed.shape == losses.shape
    assert 3e-4 < lr < 3e-3  # near the middle of the descent (1e-3), not at one of its ends
    first, last = valley_index(smoothed)
    assert lrs[first] < lr < lrs[last]


def test_suggestion_is_steadier_than_the_steepest_point():
    valley = [suggest_lr(*synthetic_curve(s))[0] for s in range(8)]
    steepest = [suggest_lr(*synthetic_curve(s), rule="steepest")[0] for s in range(8)]
    assert max(valley) / min(valley) < 2.5  # the noise moves the steepest point 10x (measured: 11x)
    assert max(valley) / min(valley) < 0.5 * max(steepest) / min(steepest)


def test_curve_without_a_descent_falls_back_below_the_minimum():
    lrs = np.geomspace(1e-7, 10, 50)
    losses = 2.0 + 0.1 * np.log10(lrs / 1e-7)  # rises all the way
    lr, how, _ = suggest_lr(lrs, losses)
    assert "below" in how and lr == pytest.approx(1e-8)
    losses[10:] = np.inf  # the test stopped on an infinite loss: the suggestion uses the finite part
    lr, _, smoothed = suggest_lr(lrs, losses)
    assert len(smoothed) == 10 and np.isfinite(smoothed).all()
    with pytest.raises(ConfigError, match="diverged"):
        suggest_lr(lrs[:3], [np.nan, 1.0, 1.0])


# ----------------------------------------------------------------------------- the sweep


def test_sweep_is_exponential_and_stops_on_divergence():
    rng = np.random.default_rng(0)  # a linear head on (N, 16) "features", as in features mode
    features, labels = rng.normal(0, 3, (64, 16)).astype(np.float32), np.arange(64) % 3
    loader = BatchLoader((features, labels), 8, torch.device("cpu"), shuffle=True)
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 3)
    found = lr_range_test(Training(head, loader, IdentityInputs()), [{"params": list(head.parameters()), "lr": 1.0}],
                          OptimConfig(name="sgd"), start=1e-4, end=1e6, steps=80)
    sweep = found.sweeps[0]
    assert len(sweep.losses) < 80  # stopped early ...
    assert f"{DIVERGE:g}x its lowest" in sweep.stopped or "the loss was" in sweep.stopped
    assert np.allclose(np.diff(np.log(sweep.lrs)), np.log(1e10) / 79)  # ... on the exponential schedule
    assert 1e-4 <= found.suggestion <= sweep.lrs[-1]


def test_sweep_leaves_the_model_optimizer_and_random_state_untouched():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="cifar-cnn-bn", num_classes=3, in_channels=3, image_size=(16, 16)))
    optimizer = build_optimizer(model.param_groups(3e-3), OptimConfig(name="adam", lr=3e-3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_before = repr(optimizer.state_dict())
    rng = torch.get_rng_state()
    found = _range_test(model, shapes_loader(), OptimConfig(name="adam"), steps=30)
    assert 2 <= len(found.losses) <= 30
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights and BN statistics
    assert repr(optimizer.state_dict()) == opt_before
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_sweeps_take_their_own_batch_orders_and_the_geometric_median():
    found = _range_test(tiny_model(), shapes_loader(), OptimConfig(name="adam"), steps=30, sweeps=3)
    assert len(found.sweeps) == 3 and found.sweeps[0].losses != found.sweeps[1].losses
    middle = sorted(s.suggestion for s in found.sweeps)[1]
    assert found.suggestion == pytest.approx(middle, rel=0.05) and "median of 3 sweeps" in found.method
    assert LRFind.from_dict(json.loads(json.dumps(found.to_dict()))) == found


def test_find_lr_on_cached_features_trains_a_copy_of_the_head(tmp_path):
    splits_cfg = RunConfig(data=DataConfig(source="shapes", image_size=(32, 32), cache_dir=str(tmp_path / "cache")),
                           model=ModelConfig(name="mobilenet_v3_small", transfer="features", pretrained=False),
                           optim=OptimConfig(lr="auto"), train=TrainConfig(batch_size=8, progress=False))
    splits = DataSplits(train=make_shapes(8, size=32), val=make_shapes(2, size=32, seed=1))
    found, cfg = find_lr(splits_cfg, splits)
    assert cfg.optim.lr == found.suggestion and 1e-7 <= found.suggestion <= 10
    assert len(found.lrs) == 30  # 3 batches: the shortest sweep
    assert list((tmp_path / "cache" / "features").glob("*.npy"))  # the head trained on cached features


# ----------------------------------------------------------------------------- the command line and --lr auto


def test_cli_lr_find_writes_the_picture_and_the_curve(image_folder, tmp_path, capsys):
    out = tmp_path / "find"
    assert main(["lr-find", str(image_folder), "--model", "lenet5", "--batch-size", "8", "--out", str(out),
                 "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    m = re.fullmatch(r"cnnkit: lr-find: suggested lr (\S+) \((.+)\); use --lr (\S+) or --lr auto", line)
    assert m and m.group(1) == m.group(3), line
    record = json.loads((out / "lr_find.json").read_text())
    assert record["suggestion"] == float(m.group(1)) and record["config"]["model"]["name"] == "lenet5"
    assert len(record["lrs"]) == len(record["losses"]) >= 2
    assert (out / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "config.json").exists() and not list(out.glob("*.safetensors"))  # no checkpoints


def test_lr_auto_trains_at_the_suggestion_and_config_reproduces_it(image_folder, tmp_path, capsys):
    run = tmp_path / "auto"
    flags = ["--model", "lenet5", "--epochs", "2", "--batch-size", "8", "--no-report", "--quiet"]
    assert main(["train", str(image_folder), *flags, "--lr", "auto", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    lr = json.loads((run / "config.json").read_text())["optim"]["lr"]
    assert isinstance(lr, float) and 1e-7 <= lr <= 10
    assert f"cnnkit: --lr auto: {lr:.1e}" in err.splitlines()[0]  # the run's first line says it
    assert json.loads((run / "lr_find.json").read_text())["suggestion"] == lr and (run / "lr_find.png").is_file()

    again = tmp_path / "again"
    assert main(["train", "--config", str(run / "config.json"), "--out", str(again), "--quiet"]) == 0
    assert "--lr auto" not in capsys.readouterr().err  # the number, no range test
    assert json.loads((again / "config.json").read_text())["optim"]["lr"] == lr
    history = [json.loads((r / "history.json").read_text()) for r in (run, again)]
    assert [row["loss"] for row in history[0]] == [row["loss"] for row in history[1]]  # bit for bit

    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert "--lr auto" not in capsys.readouterr().err  # resuming never tests again
    assert json.loads((run / "config.json").read_text())["optim"]["lr"] == lr


@pytest.mark.parametrize("value", ["fast", "-1", "11"])
def test_a_bad_lr_is_one_clear_error_line(image_folder, capsys, value):
    assert main(["train", str(image_folder), "--model", "lenet5", "--lr", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnkit: error: --lr") and "or auto" in err[0], err


def test_only_lr_takes_auto():
    assert make_config(lr="auto").optim.lr == "auto"
    with pytest.raises(ConfigError, match="epochs"):
        make_config(epochs="auto")
    with pytest.raises(ConfigError, match="momentum"):
        make_config(momentum="auto")
