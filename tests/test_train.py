import json

import numpy as np
import pytest
import torch

from cnnkit.commands.train import train
from cnnkit.config import AugmentConfig, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from cnnkit.data import DataSplits, ImageSet
from cnnkit.data.loader import BatchLoader
from cnnkit.errors import CheckpointError, ConfigError
from cnnkit.evaluate.predict import predict_probs
from cnnkit.inference import ImageInputs
from cnnkit.inference.checkpoint import load_checkpoint, load_train_state
from cnnkit.models import build_model
from cnnkit.train.callbacks import Callback
from cnnkit.train.loop import evaluate_loss
from cnnkit.train.losses import cross_entropy
from cnnkit.train.optim import build_optimizer, lr_factor
from conftest import make_shapes


def run_cfg(tmp_path, **train_kw) -> RunConfig:
    tk = dict(epochs=3, batch_size=16, out=str(tmp_path / "run"), progress=False, seed=1, report=False)
    tk.update(train_kw)
    return RunConfig(data=DataConfig(source="shapes"), model=ModelConfig(name="cifar-cnn-bn"),
                     optim=OptimConfig(name="adam", lr=3e-3), train=TrainConfig(**tk))


def test_overfits_one_batch():
    torch.manual_seed(0)
    data = make_shapes(4, size=16)  # 12 images
    model = build_model(ModelConfig(name="simple-cnn", num_classes=3, in_channels=3, image_size=(16, 16), dropout=0.0))
    opt = build_optimizer(model.parameters(), OptimConfig(name="adam", lr=3e-3))
    x = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(data.labels)
    first = None
    for _ in range(60):
        loss = cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.02 < first
    assert (model(x).argmax(1) == y).all()


def test_train_learns_and_writes_run_folder(tmp_path, shapes_splits):
    result = train(run_cfg(tmp_path, epochs=4), splits=shapes_splits, explicit_out=True)
    run = result.run_dir
    assert result.metrics["split"] == "test" and result.metrics["accuracy"] >= 0.9
    for name in ("config.json", "preprocess.json", "classes.txt", "history.csv", "history.json",
                 "best.safetensors", "last.safetensors", "train_state.pt", "curves.png", "metrics.json",
                 "confusion_matrix.csv", "confusion_matrix.png"):
        assert (run / name).is_file(), name
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert {"loss", "acc", "val_loss", "val_acc", "lr"} <= set(history[0])
    assert (run / "classes.txt").read_text().split() == ["bright", "dark", "stripes"]
    cm = np.array(json.loads((run / "metrics.json").read_text())["confusion_matrix"])
    assert cm.sum() == len(shapes_splits.test)


def test_checkpoint_alone_predicts_same(tmp_path, shapes_splits):
    result = train(run_cfg(tmp_path, epochs=2), splits=shapes_splits)
    ck = load_checkpoint(result.run_dir)  # folder -> best.safetensors
    assert ck.preprocess.classes == ("bright", "dark", "stripes")
    assert ck.preprocess.image_size == (16, 16) and ck.preprocess.channels == 3
    x = torch.rand(5, 3, 16, 16)
    result.model.eval()
    with torch.no_grad():
        assert torch.allclose(ck.model(x), result.model.float()(x), atol=1e-5)


def test_resume_matches_uninterrupted(tmp_path, shapes_splits):
    class Crash(Callback):  # the process dies as epoch 3 begins
        def on_epoch_begin(self, epoch, steps):
            if epoch == 2:
                raise KeyboardInterrupt

    full = train(run_cfg(tmp_path / "a", epochs=4, fast=False), splits=shapes_splits)
    with pytest.raises(KeyboardInterrupt):
        train(run_cfg(tmp_path / "b", epochs=4, fast=False), splits=shapes_splits, callbacks=[Crash()])
    run_b = tmp_path / "b" / "shapes-cifar-cnn-bn"
    assert load_train_state(run_b / "train_state.pt")["epoch"] == 2
    resumed = train(run_cfg(tmp_path / "b", epochs=4, fast=False), splits=shapes_splits, resume=run_b)
    assert len(resumed.history) == 4
    for a, b in zip(full.history, resumed.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-7)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5, abs=1e-7)
    wa = load_checkpoint(full.run_dir / "last.safetensors").model.state_dict()
    wb = load_checkpoint(resumed.run_dir / "last.safetensors").model.state_dict()
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5), k


def test_early_stopping_stops(tmp_path, shapes_splits):
    # lr 0 -> nothing improves after epoch 1 -> stop after 1 + patience epochs
    cfg = run_cfg(tmp_path, epochs=20, patience=2)
    cfg = RunConfig(data=cfg.data, model=cfg.model, optim=OptimConfig(name="sgd", lr=0.0, schedule="none"),
                    train=cfg.train)
    result = train(cfg, splits=shapes_splits)
    assert len(result.history) == 3
    state = load_train_state(result.run_dir / "train_state.pt")
    assert "early stopping" in state["stop_reason"]


def test_explicit_out_refuses_to_overwrite(tmp_path, shapes_splits):
    train(run_cfg(tmp_path, epochs=1), splits=shapes_splits, explicit_out=True)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(run_cfg(tmp_path, epochs=1), splits=shapes_splits, explicit_out=True)
    first = train(run_cfg(tmp_path, epochs=1), splits=shapes_splits)  # default naming: <data>-<model>
    again = train(run_cfg(tmp_path, epochs=1), splits=shapes_splits)  # ... numbered when taken
    assert (first.run_dir.name, again.run_dir.name) == ("shapes-cifar-cnn-bn", "shapes-cifar-cnn-bn-2")


def test_binary_uses_one_logit(tmp_path):
    data = make_shapes(16, classes=("bright", "dark"))
    splits = DataSplits(train=data, val=make_shapes(6, seed=5, classes=("bright", "dark")))
    result = train(run_cfg(tmp_path, epochs=3), splits=splits)
    assert result.model.head[-1].out_features == 1
    assert result.metrics["accuracy"] >= 0.9


@pytest.mark.parametrize("opt", ["sgd", "rmsprop", "adam", "adamw"])
def test_optimizers_reduce_loss(opt):
    torch.manual_seed(0)
    data = make_shapes(4, size=16)
    model = build_model(ModelConfig(name="lenet5", num_classes=3, in_channels=3, image_size=(16, 16)))
    lr = {"sgd": 0.05, "rmsprop": 1e-3, "adam": 3e-3, "adamw": 3e-3}[opt]
    o = build_optimizer(model.parameters(), OptimConfig(name=opt, lr=lr, nesterov=True))
    x = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(data.labels)
    losses = []
    for _ in range(30):
        loss = cross_entropy(model(x), y)
        losses.append(loss.item())
        o.zero_grad()
        loss.backward()
        o.step()
    assert losses[-1] < 0.7 * losses[0]


def test_lr_schedules():
    keras = OptimConfig(schedule="none", decay=0.01)
    assert lr_factor(100, keras, 10, 10) == pytest.approx(1 / (1 + 0.01 * 100))
    cos = OptimConfig(schedule="cosine")
    assert lr_factor(0, cos, 10, 10) == pytest.approx(1.0)
    assert lr_factor(50, cos, 10, 10) == pytest.approx(0.5)
    one = OptimConfig(schedule="onecycle")
    peak = max(range(100), key=lambda s: lr_factor(s, one, 10, 10))
    assert peak == 24 and lr_factor(99, one, 10, 10) < 0.02
    step = OptimConfig(schedule="step", step_size=2, gamma=0.5)
    assert lr_factor(45, step, 10, 10) == pytest.approx(0.25)
    with pytest.raises(ConfigError):
        lr_factor(0, OptimConfig(schedule="bogus"), 1, 1)


def test_loader_shards_cover_everything():
    # labels = sample ids, so the batches show exactly which images each rank read
    data = ImageSet(np.zeros((15, 4, 4, 1), np.uint8), np.arange(15), tuple(str(i) for i in range(15)))
    cpu = torch.device("cpu")
    shards = []
    for rank in range(2):
        loader = BatchLoader(data, 4, cpu, shuffle=True, seed=3, rank=rank, world=2)
        assert len(loader) == 2
        shards.append(torch.cat([y for _, y in loader.batches(1)]).tolist())
    assert len(shards[0]) == len(shards[1]) == 8  # 15 padded to 16
    assert set(shards[0]) | set(shards[1]) == set(range(15))
    assert len(set(shards[0]) & set(shards[1])) == 1  # only the padding repeats
    full = BatchLoader(data, 4, cpu, shuffle=True, seed=3)
    epoch1 = torch.cat([y for _, y in full.batches(1)]).tolist()
    assert sorted(epoch1) == list(range(15))
    assert epoch1 != torch.cat([y for _, y in full.batches(2)]).tolist()  # reshuffled every epoch
    assert epoch1 == torch.cat([y for _, y in full.batches(1)]).tolist()  # and reproducibly


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_evaluation_never_augments_and_tta_is_used(tmp_path, shapes_splits):
    base = run_cfg(tmp_path, epochs=1)
    cfg = RunConfig(data=base.data, model=base.model, optim=base.optim, train=base.train,
                    augment=AugmentConfig(preset="strong", tta="flip"))
    result = train(cfg, splits=shapes_splits)
    assert result.metrics["tta"] == "flip"
    ck = result.run_dir / "best.safetensors"
    loaded = load_checkpoint(ck)
    model, pre = loaded.model, loaded.preprocess
    inputs = ImageInputs(pre.mean, pre.std, torch.device("cpu"), channels_last=False)
    loader = BatchLoader(shapes_splits.test, 16, torch.device("cpu"))
    # strong augmentation is random: if evaluation applied it, two passes would differ
    assert np.array_equal(predict_probs(model, loader, inputs), predict_probs(model, loader, inputs))
    assert evaluate_loss(model, loader, inputs, None) == evaluate_loss(model, loader, inputs, None)
    # flip TTA averages the image with its mirror: equal to the mean of both single-view passes
    test = shapes_splits.test
    flipped = BatchLoader(ImageSet(test.images[:, :, ::-1].copy(), test.labels, test.classes), 16, torch.device("cpu"))
    both = (predict_probs(model, loader, inputs) + predict_probs(model, flipped, inputs)) / 2
    assert np.allclose(predict_probs(model, loader, inputs, tta="flip"), both, atol=1e-5)


def test_running_means_are_exact_and_lazy():
    from cnnkit.train.loop import RunningMeans

    means = RunningMeans(torch.device("cpu"))
    assert all(np.isnan(v) for v in means.as_dict().values())  # nothing seen yet: NaN, not 0
    means.add(torch.tensor(2.0), torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))  # 3 images, 2 right
    means.add(torch.tensor(1.0), torch.tensor([2]), torch.tensor([2]))              # 1 image, right
    assert means["loss"] == pytest.approx((2.0 * 3 + 1.0) / 4)
    assert dict(means) == {"loss": pytest.approx(1.75), "acc": pytest.approx(0.75)}


def test_batch_callbacks_see_the_epochs_running_means(tmp_path, shapes_splits):
    class LastBatch(Callback):
        def on_batch_end(self, step, logs):
            self.last = dict(logs)

        def on_epoch_end(self, epoch, logs):
            self.seen = (self.last, {k: logs[k] for k in ("loss", "acc")})

    spy = LastBatch()
    train(run_cfg(tmp_path, epochs=1), splits=shapes_splits, explicit_out=True, callbacks=[spy])
    last_batch, epoch_logs = spy.seen
    assert last_batch == pytest.approx(epoch_logs) and 0 < epoch_logs["loss"] < 5


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_mixed_precision_training_learns(tmp_path, shapes_splits, amp):
    # fp16 runs through the loss scaler (as on CUDA GPUs without bf16); bf16 needs none
    result = train(run_cfg(tmp_path, epochs=4, amp=amp), splits=shapes_splits, explicit_out=True)
    assert all(np.isfinite(r["loss"]) for r in result.history)
    assert result.metrics["accuracy"] >= 0.9


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where there is no GPU")
def test_asking_for_a_missing_gpu_is_a_clear_error(tmp_path, shapes_splits):
    from cnnkit.runtime import select_device

    assert select_device("cpu").type == "cpu" and select_device("auto").type in ("cpu", "mps")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        train(run_cfg(tmp_path, device="cuda"), splits=shapes_splits, explicit_out=True)
    with pytest.raises(ConfigError, match="not a device"):
        select_device("gpu")


def test_monitor_accepts_keras_names_and_rejects_unknown_ones(tmp_path, shapes_splits):
    # Keras 2 calls it val_accuracy: it used to match no history key, so no best checkpoint was ever
    # written and early stopping silently never fired
    result = train(run_cfg(tmp_path / "a", epochs=1, monitor="val_accuracy"), splits=shapes_splits)
    assert (result.run_dir / "best.safetensors").is_file()
    with pytest.raises(ConfigError, match="--monitor 'val_acuracy'"):
        train(run_cfg(tmp_path / "b", epochs=1, monitor="val_acuracy"), splits=shapes_splits)


def test_class_without_training_images_is_a_clear_error(tmp_path):
    # validation/cats next to train/cat: a third output the model could never learn
    from cnnkit.errors import DataError

    classes = ("bright", "dark", "stripes")
    train_set = make_shapes(8, classes=classes)
    keep = train_set.labels != 2
    splits = DataSplits(train=ImageSet(train_set.images[keep], train_set.labels[keep], classes),
                        val=make_shapes(4, seed=1, classes=classes))
    with pytest.raises(DataError, match="'stripes'.*no training images"):
        train(run_cfg(tmp_path, epochs=1), splits=splits)


def test_saved_config_finds_its_data_from_any_folder(tmp_path, monkeypatch):
    # a run trained on a relative folder path must evaluate its own held-out split from elsewhere,
    # and another spelling of the same folder must not evaluate on the training images too
    from PIL import Image

    from cnnkit.evaluate.evaluate import evaluate

    work = tmp_path / "work"
    data = make_shapes(8, size=12, seed=4)
    for i, (im, label) in enumerate(zip(data.images, data.labels)):
        (work / "pets" / data.classes[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(work / "pets" / data.classes[label] / f"{i}.png")
    monkeypatch.chdir(work)
    cfg = RunConfig(data=DataConfig(source="pets", val_split=0.25, test_split=0.25, cache_dir="cache"),
                    model=ModelConfig(name="lenet5"), train=TrainConfig(epochs=1, batch_size=8, out="runs/r",
                                                                        progress=False, report=False))
    result = train(cfg, explicit_out=True)
    run = (work / result.run_dir).resolve()
    assert json.loads((run / "config.json").read_text())["data"]["source"] == str(work / "pets")
    assert evaluate(run, "./pets/").metrics["n"] == 6  # the run's test split, not all 24 images
    monkeypatch.chdir(tmp_path)
    saved = load_checkpoint(run).run_config.data
    metrics = evaluate(run, saved.source).metrics
    assert (metrics["split"], metrics["n"]) == ("test", 6)


def test_evaluate_report_leaves_out_top_k_that_covers_every_class():
    # "top2_accuracy 1.0000" under a cats-vs-dogs evaluation is always true and reads like a bug
    from cnnkit.evaluate.metrics import classification_metrics, format_report

    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]])
    three = format_report(classification_metrics(probs, np.array([0, 1, 2]), ("a", "b", "c")))
    assert "accuracy  0.6667" in three and "top" not in three
    two = format_report(classification_metrics(probs[:, :2], np.array([0, 1, 1]), ("cat", "dog")))
    assert "top" not in two and "macro F1" in two
    probs6 = np.eye(6)[[0, 1, 2, 3, 4, 5, 0]]
    six = format_report(classification_metrics(probs6, np.arange(7) % 6, tuple("abcdef")))
    assert "top5_accuracy" in six


def test_resume_removes_temp_files_a_killed_run_left(tmp_path, shapes_splits):
    # SIGKILL/SIGTERM during a checkpoint write leaves our temp file and safetensors' own .tmpXXXXXX
    # (as large as the model) in the run folder; resuming cleans them up, and nothing else
    first = train(run_cfg(tmp_path, epochs=1, fast=False), splits=shapes_splits)
    run = first.run_dir
    junk = [run / ".last.safetensors.k2j4a9x1.tmp", run / ".tmpAb3dE9", run / ".train_state.pt.x7q0.tmp"]
    for p in junk:
        p.write_bytes(b"\0" * 100)
    (run / "notes.txt").write_text("mine")
    train(run_cfg(tmp_path, epochs=2, fast=False), splits=shapes_splits, resume=run)
    assert not any(p.exists() for p in junk)
    assert (run / "notes.txt").read_text() == "mine"


@pytest.mark.slow  # two torchrun start-ups: ~10 s on 2 cores
@pytest.mark.skipif(not torch.distributed.is_available() or __import__("shutil").which("torchrun") is None,
                    reason="torch.distributed / torchrun not available")
def test_resume_under_torchrun(tmp_path, image_folder):
    # ranks other than 0 have no run folder of their own: resuming crashed them on `None / "train_state.pt"`
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["--quiet", "--no-fast", "--no-report"]
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "cnnkit", "train", str(image_folder), "--model", "lenet5", "--epochs", "1",
                    "--batch-size", "8", "--cache-dir", str(tmp_path / "cache"), "--out", str(out), *common],
                   env=env, check=True, capture_output=True, timeout=300)
    proc = subprocess.run(["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "cnnkit", "train",
                           "--resume", str(out), "--epochs", "2", *common],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2]


@pytest.mark.parametrize("section,setting,value", [
    ("train", "batch_size", 0), ("train", "epochs", 0), ("train", "eval_batch_size", 0), ("train", "patience", -1),
    ("optim", "lr", -1.0), ("optim", "momentum", -0.5), ("optim", "weight_decay", -1.0), ("optim", "decay", -0.5),
    ("optim", "warmup_epochs", -1.0), ("optim", "label_smoothing", 1.5), ("optim", "step_size", 0),
    ("optim", "gamma", -0.1)])
def test_impossible_training_settings_are_config_errors(tmp_path, shapes_splits, section, setting, value):
    # they raised ZeroDivisionError / torch's ValueError, or trained silently with a nonsense setting
    import dataclasses

    cfg = run_cfg(tmp_path, epochs=1)
    cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{setting: value})})
    with pytest.raises(ConfigError, match=setting):
        train(cfg, splits=shapes_splits)
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob("*"))


def test_checkpoint_with_wrong_shapes_names_the_mismatch(tmp_path, shapes_splits):
    # the error used to stop at "Error(s) in loading state_dict for CNNKitModel:", naming nothing
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    result = train(run_cfg(tmp_path, epochs=1), splits=shapes_splits)
    best = result.run_dir / "best.safetensors"
    with safe_open(str(best), "pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(best))
    name = next(k for k, v in tensors.items() if v.ndim == 4)
    tensors[name] = tensors[name][:1]
    save_file(tensors, str(best), metadata=meta)
    with pytest.raises(CheckpointError, match=rf"best.safetensors.*size mismatch for {name}"):
        load_checkpoint(best)


def test_monitor_direction_comes_from_a_declared_table_not_the_name():
    from cnnkit.train.callbacks import MONITOR_MODES, BestCheckpoint, EarlyStopping, monitor_mode

    keys = ("loss", "val_loss", "acc", "val_acc", "val_balanced_accuracy", "val_macro_f1")
    assert {k: monitor_mode(k) for k in keys} == {
        "loss": "min", "val_loss": "min", "acc": "max", "val_acc": "max",
        "val_balanced_accuracy": "max", "val_macro_f1": "max"} == MONITOR_MODES
    # a name the table does not know has no direction: a guess from its spelling would be silent nonsense
    for name in ("val_top5", "lr", "lossy_acc"):
        with pytest.raises(ConfigError, match=name):
            monitor_mode(name)
    with pytest.raises(ConfigError, match="lr"):
        EarlyStopping("lr")
    best = BestCheckpoint("val_acc")
    assert best.on_epoch_end(0, {"val_acc": 0.5}).save_best and best.on_epoch_end(1, {"val_acc": 0.4}) is None


def test_adamw_keeps_a_weight_decay_of_zero():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert build_optimizer(params, OptimConfig(name="adamw", weight_decay=0.0)).param_groups[0]["weight_decay"] == 0.0
    assert build_optimizer(params, OptimConfig(name="adamw", weight_decay=0.05)).param_groups[0]["weight_decay"] == 0.05


def test_image_inputs_is_one_conversion_for_nhwc_arrays_and_nchw_batches():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 5, 4, 3), dtype=np.uint8)  # (N, H, W, C) as decoded
    images.setflags(write=False)  # decoded arrays can be read-only: no warning, no shared memory
    inputs = ImageInputs((0.5, 0.4, 0.3), (0.2, 0.25, 0.5))
    want = (images.transpose(0, 3, 1, 2) / 255.0 - np.array([0.5, 0.4, 0.3])[:, None, None]) \
        / np.array([0.2, 0.25, 0.5])[:, None, None]
    from_array = inputs(images, layout="NHWC")
    from_batch = inputs(torch.from_numpy(images.copy()).permute(0, 3, 1, 2))  # as BatchLoader yields them
    assert from_array.shape == (2, 3, 5, 4) and from_array.dtype == torch.float32
    np.testing.assert_allclose(from_array.numpy(), want, atol=1e-5)
    assert torch.equal(from_array, from_batch)
    channels_last = ImageInputs((0.5,) * 3, (0.2,) * 3, channels_last=True)(images, layout="NHWC")
    assert channels_last.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="layout"):
        inputs(images, layout="HWC")


def test_bare_training_draws_nothing_and_the_run_layer_adds_pictures(tmp_path, shapes_splits):
    from cnnkit.commands.train import write_run_outputs
    from cnnkit.train import train as train_only

    result = train_only(run_cfg(tmp_path, epochs=1, report=True), splits=shapes_splits, explicit_out=True)
    run = result.run_dir
    assert (run / "best.safetensors").is_file() and (run / "history.json").is_file()
    pictures = ("curves.png", "metrics.json", "confusion_matrix.csv", "confusion_matrix.png", "report.html")
    assert not any((run / name).exists() for name in pictures)
    metrics, probs, data = result.evaluation.metrics, result.evaluation.probs, result.evaluation.images
    assert metrics is result.metrics and probs.shape == (len(shapes_splits.test), 3) and data is shapes_splits.test
    write_run_outputs(result)
    assert all((run / name).is_file() for name in pictures)


def test_resume_resolves_the_runs_own_config_and_names_what_it_ignores(tmp_path, shapes_splits, capsys):
    from cnnkit.train import Resume

    first = train(run_cfg(tmp_path, epochs=1, fast=False), splits=shapes_splits, explicit_out=True)
    capsys.readouterr()
    # no RunConfig at all: the run's own settings, 2 epochs
    again = train(None, splits=shapes_splits, resume=Resume(first.run_dir, epochs=2, ignored=("--lr",)))
    assert again.run_dir == first.run_dir and [r["epoch"] for r in again.history] == [1, 2]
    assert again.config.optim.lr == 3e-3 and again.config.train.epochs == 2
    assert "ignored: --lr" in capsys.readouterr().err


def test_write_outputs_writes_the_outputs_while_the_run_still_holds_its_folder_lock(tmp_path, shapes_splits):
    from cnnkit.commands.train import write_run_outputs
    from cnnkit.train import train as train_only
    from cnnkit.train.lock import FolderBusy, lock_run_folder

    seen = []

    def write_outputs(result):
        with pytest.raises(FolderBusy, match="another training"):
            lock_run_folder(result.run_dir)  # refused: the training run holds it
        write_run_outputs(result)
        seen.append(sorted(p.name for p in result.run_dir.iterdir()))

    result = train_only(run_cfg(tmp_path, epochs=1), splits=shapes_splits, explicit_out=True,
                        write_outputs=write_outputs)
    assert seen and {"metrics.json", "curves.png", "confusion_matrix.png"} <= set(seen[0])
    lock_run_folder(result.run_dir).release()  # released once train() returned
