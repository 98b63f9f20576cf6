"""The automatic default's candidates: what each one trains, what it costs, and how it is scored.

The race itself (the run folder, its clock, the order and the selection) is
:mod:`cnnkit.commands.auto`; this module gives it the pieces, each an explicit config or a
measurement:

* **feature heads**: a frozen EfficientNet-Lite0/1/2 backbone with its packaged ImageNet weights,
  a linear head on bottleneck features computed once and cached (all three at one input size,
  :data:`FEATURE_SIDE`, so that their features also concatenate: ``lite0+lite1+lite2``);
* **from scratch**: ``fast-cnn`` (``fast-cnn-small`` for small grey images) at the images' own
  size, with and without horizontal flips (a mirrored sign, letter or digit can be another class);
* **fine-tuning** of the top blocks of the leading backbone on lightly augmented images.

Costs come from measurements made in the run: a few timed training steps of a from-scratch net
(:func:`scratch_seconds_per_image`) and the backbone's first feature pass (or a timed batch,
:func:`backbone_seconds_per_image`); other backbones scale that by their multiply-adds
(:data:`LITE_MACS`, a property of the networks, not of the machine).

Scores: feature heads by k-fold cross-validated accuracy of a logistic head on the training
features (:func:`cv_accuracy`), and by the accuracy on the selection split of a head fitted on the
rest (:func:`selection_accuracy`), which is also what a trained candidate is scored on: the best
epoch's validation accuracy, the validation split being the selection split.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cnnkit.config import AugmentConfig, ModelConfig, OptimConfig, RunConfig, override
from cnnkit.data import DataSplits, ImageSet
from cnnkit.data.arrays import stratified_split

AUTO = "auto"
DEFAULT_TIME = 300.0  # seconds: a person waits at the terminal for it (README, "The automatic default")

BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
FEATURE_SIDE = 224  # every backbone sees the images at this size: one decode, features that concatenate
# multiply-adds per image at FEATURE_SIDE relative to Lite0 (0.39 / 0.61 / 0.90 GMACs at 224 px for the
# widths and depths of efficientnet_lite.LITE_VARIANTS): how the measured Lite0 rate predicts the others
LITE_MACS = {"efficientnet_lite0": 1.0, "efficientnet_lite1": 1.55, "efficientnet_lite2": 2.3}
FEATURE_EPOCHS = 10  # head epochs on cached features: a second or two in all, the best epoch is kept
SELECT_FRACTION = 0.2  # of the training images held out to select on, when the data has no spare split
SELECT_MAX = 2_000  # ... at most this many: beyond it the estimate is precise enough
SCRATCH_MAX_SIDE = 128  # larger images are not tried from scratch: an epoch is far too slow on a CPU
SMALL_GREY_SIDE = 28  # grey images up to this size get the quarter-width net
SCRATCH_IMAGES_SEEN = 400_000  # a from-scratch run sees about this many images, 8 to 60 epochs
MIN_FINETUNE_EPOCHS = 3  # fewer fine-tuning epochs than this rarely beat the frozen features
MAX_FINETUNE_EPOCHS = 8
# a feature head this close to 100% (cross-validated) cannot be beaten by more than this, and frozen ImageNet
# heads differ by tenths of a point there (cats vs dogs: Lite0/1/2 and their concatenation 98.7-99.2%) while
# each further backbone costs a whole feature pass: stop adding backbones
GOOD_ENOUGH_ERROR = 0.015


@dataclass
class Candidate:
    """One entry of the leaderboard."""

    name: str  # "lite0 features", "fast-cnn, flips", ...
    kind: str  # features | concat | scratch | finetune
    cfg: RunConfig | None = None  # what it trains (None: scored on cached features only)
    score: float | None = None  # accuracy on held-out training images (the selection score)
    score_kind: str = ""  # "5-fold CV" | "selection split"
    cv: float | None = None  # feature heads: cross-validated accuracy on all training features
    seconds: float = 0.0  # time spent on it, feature passes included
    epochs: int = 0
    stopped: str = ""  # why it stopped, or why it was not run
    chosen: bool = False
    estimate: bool = False  # scored on a short run / a subsample only
    run_dir: Any = None  # where it was trained, when it was
    result: Any = None  # its RunResult, when trained
    extra: dict = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """Its leaderboard row (auto.json ``candidates`` and leaderboard.csv)."""
        return {"name": self.name, "kind": self.kind,
                "model": self.cfg.model.name if self.cfg else self.extra.get("model", ""),
                "transfer": self.cfg.model.transfer if self.cfg else "features",
                "score": None if self.score is None else round(float(self.score), 4), "score_kind": self.score_kind,
                "cv": None if self.cv is None else round(float(self.cv), 4),
                "seconds": round(self.seconds, 1), "epochs": self.epochs, "stopped": self.stopped,
                "chosen": self.chosen, **({"images": self.extra["images"]} if "images" in self.extra else {})}


# ----------------------------------------------------------------------------- given settings


def keep_given(planned: RunConfig, user: RunConfig) -> RunConfig:
    """``planned`` with every setting the user named (``user.given``) at the user's value, whatever it is."""
    given = [k for k in getattr(user, "given", ()) if k != "model.name"]
    if not given:
        return planned
    values = {}
    for key in given:
        obj = user
        for part in key.split("."):
            obj = getattr(obj, part)
        values[key] = obj
    return override(planned, values)


def is_given(user: RunConfig, key: str) -> bool:
    return key in getattr(user, "given", ())


# ----------------------------------------------------------------------------- configs


def features_config(user: RunConfig, backbone: str) -> RunConfig:
    """A frozen ``backbone`` (or ``a+b+c``) and a head trained on its cached features."""
    planned = dataclasses.replace(
        user,
        data=dataclasses.replace(user.data, image_size=(FEATURE_SIDE, FEATURE_SIDE), channels=3),
        model=ModelConfig(name=backbone, transfer="features", pretrained=True, head_dropout=0.2),
        optim=OptimConfig(name="adam", lr=3e-3, schedule="onecycle"),
        train=dataclasses.replace(user.train, epochs=FEATURE_EPOCHS, batch_size=64),
        augment=AugmentConfig())
    return keep_given(planned, user)


def scratch_model(grey: bool, size: tuple[int, int]) -> str:
    return "fast-cnn-small" if grey and max(size) <= SMALL_GREY_SIDE else "fast-cnn"


def scratch_config(user: RunConfig, grey: bool, size: tuple[int, int], channels: int, flips: bool,
                   epochs: int, n_train: int) -> RunConfig:
    """The ``*-speedrun`` recipes' settings at the images' own size, with or without flips."""
    model = scratch_model(grey, size)
    if model == "fast-cnn-small":  # the mnist/fashion-mnist speedruns: no shifts at 28 px
        optim = OptimConfig(name="adam", lr=4e-3, schedule="onecycle", label_smoothing=0.1)
        augment = AugmentConfig(horizontal_flip=flips)
        batch = 128
    else:  # the cifar10 speedrun
        optim = OptimConfig(name="adamw", lr=4e-3, schedule="onecycle", weight_decay=5e-4, label_smoothing=0.2)
        augment = AugmentConfig(horizontal_flip=flips, width_shift_range=0.125, height_shift_range=0.125,
                                fill_mode="reflect", tta="flip-shift" if flips else "none")
        batch = 256 if n_train >= 10_000 else 128
    planned = dataclasses.replace(
        user, data=dataclasses.replace(user.data, image_size=tuple(size), channels=channels),
        model=ModelConfig(name=model), optim=optim,
        train=dataclasses.replace(user.train, epochs=max(1, epochs), batch_size=batch), augment=augment)
    return keep_given(planned, user)


def finetune_config(features: RunConfig, user: RunConfig, epochs: int) -> RunConfig:
    """The top three blocks of a feature candidate's backbone trained on lightly augmented images."""
    planned = dataclasses.replace(
        features, model=dataclasses.replace(features.model, transfer="finetune", finetune_blocks=3),
        optim=dataclasses.replace(features.optim, lr=1e-3), augment=AugmentConfig(preset="light"),
        train=dataclasses.replace(features.train, batch_size=32, epochs=max(1, epochs)))
    return keep_given(planned, user)


def scratch_epochs_wanted(n_train: int) -> int:
    """About :data:`SCRATCH_IMAGES_SEEN` images in all, between 8 and 60 epochs."""
    return min(60, max(8, round(SCRATCH_IMAGES_SEEN / max(1, n_train))))


# ----------------------------------------------------------------------------- splits


def selection_split(splits: DataSplits, seed: int) -> tuple[DataSplits, str, str]:
    """The splits every candidate trains on: (train, selection as val, reported as test), and the
    names of the selection and reported splits.

    The reported split is the data's test split where it has one, else its validation split; the
    selection split is then the validation split, else a stratified :data:`SELECT_FRACTION` of the
    training images (at least one per class, at most :data:`SELECT_MAX`).  No candidate is ever
    chosen, stopped or calibrated on the reported split.
    """
    has_val = splits.val is not None and len(splits.val) > 0
    has_test = splits.test is not None and len(splits.test) > 0
    if has_test and has_val:
        arranged = DataSplits(splits.train, splits.val, splits.test, splits.skipped, splits.label_map)
        return arranged, "validation split", "test"
    reported, name = (splits.test, "test") if has_test else (splits.val, "val")
    train = splits.train
    fraction = min(SELECT_FRACTION, SELECT_MAX / max(1, len(train)))
    keep, held = stratified_split(train.labels, [fraction], seed)
    if len(held) == 0 or len(keep) == 0:
        return DataSplits(train, None, reported, splits.skipped, splits.label_map), "", name
    return DataSplits(train.subset(keep), train.subset(held), reported, splits.skipped, splits.label_map), \
        "held-out training images", name


def subsample_index(images: ImageSet, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a stratified subset of about ``n`` images (all of them when n >= len)."""
    if n >= len(images):
        return np.arange(len(images))
    _, idx = stratified_split(images.labels, [n / len(images)], seed)
    return np.sort(idx)


def subsample(images: ImageSet, n: int, seed: int) -> ImageSet:
    """A stratified subset of about ``n`` images (all of them when n >= len)."""
    return images if n >= len(images) else images.subset(subsample_index(images, n, seed))


# ----------------------------------------------------------------------------- measurements


def _timed_steps(step, warmup: int, timed: int) -> float:
    """Seconds of one ``step()``: the median of ``timed`` steps after ``warmup`` (the first steps of a
    process pay for one-time kernel set-up, several times a step)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(timed):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def scratch_seconds_per_image(model_name: str, size: tuple[int, int], channels: int, num_classes: int,
                              batch: int = 64, device: str = "cpu") -> float:
    """Seconds per training image of ``model_name`` at ``size``, measured on a few random batches
    (forward, backward, step), times 1.25 for augmentation and the validation pass."""
    from cnnkit.models import build_model

    dev = torch.device(device)
    model = build_model(ModelConfig(name=model_name, num_classes=num_classes, in_channels=channels,
                                    image_size=tuple(size))).to(dev)
    model = model.to(memory_format=torch.channels_last) if dev.type == "cpu" else model
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(batch, channels, *size, device=dev)
    y = torch.randint(0, max(2, num_classes), (batch,), device=dev)
    outputs = 1 if num_classes == 2 else num_classes

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], (y % 2).float()) if outputs == 1
                else torch.nn.functional.cross_entropy(logits, y))
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    model.train()
    return 1.25 * _timed_steps(step, 3, 3) / batch


def cv_accuracy(features: np.ndarray, labels: np.ndarray, num_classes: int, folds: int = 5, seed: int = 0) -> float:
    """Out-of-fold accuracy of a logistic head on ``features`` (N, D): every image scored by a head
    that never saw it."""
    from cnnkit.evaluate.label_issues import out_of_fold_probs

    probs = out_of_fold_probs(features, labels, num_classes, folds=folds, seed=seed)
    return float((probs.argmax(1) == labels).mean())


def selection_accuracy(train_f: np.ndarray, train_y: np.ndarray, sel_f: np.ndarray, sel_y: np.ndarray,
                       num_classes: int) -> float:
    """Accuracy on the selection split of a logistic head fitted on the training features alone."""
    from cnnkit.evaluate.label_issues import fit_linear_head

    head = fit_linear_head(train_f, train_y, num_classes)
    return float((head.probs(sel_f).argmax(1) == sel_y).mean())


__all__ = ["AUTO", "BACKBONES", "Candidate", "DEFAULT_TIME", "FEATURE_SIDE", "cv_accuracy", "features_config",
           "finetune_config", "keep_given", "scratch_config", "scratch_seconds_per_image", "selection_accuracy",
           "selection_split", "subsample"]
