"""What a run builds before it trains: where it runs, its data, its model and the loop's bundle.

:mod:`cnnkit.train.run` calls these as phases: :func:`setup_runtime` (device, precision, seed),
:func:`model_input_config` (the data shaped as the model wants it), :func:`load_checked`,
:func:`build` (the model, its preprocessing and input conversion), :func:`loop_parts` (loaders,
augmentation, loss weights, DDP; the head on cached features in ``--transfer features`` mode) and,
once the learning rate is known, :func:`build_optimization` (optimizer and schedule).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnkit import runtime
from cnnkit.augment import BatchAugment
from cnnkit.config import ModelConfig, Preprocess, RunConfig
from cnnkit.data import DataSplits, ImageSet, load_data
from cnnkit.data.loader import BatchLoader
from cnnkit.errors import ConfigError
from cnnkit.inference.preprocess import ImageInputs
from cnnkit.models import ModelDefaults, build_model, default_config
from cnnkit.train.checks import check_splits, validation_note
from cnnkit.train.loop import Training
from cnnkit.train.losses import class_weights, imbalance
from cnnkit.train.optim import build_optimizer, build_scheduler

__all__ = ["Built", "Env", "Parts", "build", "build_optimization", "channel_stats", "dist_info", "load_checked",
           "loop_parts", "model_input_config", "setup_runtime", "use_compile"]


@dataclass(frozen=True)
class Env:
    """Where and how this process trains."""

    device: torch.device
    amp: torch.dtype | None
    channels_last: bool
    rank: int
    world: int

    @property
    def writer(self) -> bool:  # only rank 0 writes the run folder
        return self.rank == 0


@dataclass(frozen=True)
class Built:
    """The model and everything that turns images into its inputs."""

    model: torch.nn.Module  # the model itself (never DDP-wrapped): its weights are saved and evaluated
    preprocess: Preprocess
    inputs: ImageInputs


@dataclass(frozen=True)
class Parts:
    """What the loop runs: in ``--transfer features`` mode the head and loaders over cached features."""

    model: torch.nn.Module  # DDP-wrapped where world > 1: what the training state saves and restores
    training: Training  # what fit trains (the model, or the head on cached features)
    features_info: dict | None = None  # features mode: the cache record (features.json)
    features_cache: Path | None = None  # features mode: also read by the final evaluation


def dist_info() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torch.distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup_runtime(cfg: RunConfig, rank: int, world: int) -> Env:
    """Device, precision, thread/allocator tuning and the global seed."""
    device = runtime.select_device(cfg.train.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    runtime.prepare(device, cfg.train.fast)
    runtime.seed_everything(cfg.train.seed)
    amp = runtime.amp_dtype(device, cfg.train.amp if cfg.train.fast else "off")
    channels_last = cfg.train.fast and device.type in ("cpu", "cuda")
    return Env(device, amp, channels_last, rank, world)


# ----------------------------------------------------------------------------- data


def model_input_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the data shaped as the model wants it, before the data is loaded at that size.

    Read from the model's default config without building it: a pretrained backbone gives its
    input size (unless the data config sets one) and RGB; other models take the data's own.
    """
    defaults: ModelDefaults = default_config(cfg.model)
    data = cfg.data
    if defaults.channels is not None and data.channels not in (None, defaults.channels):
        kind = "RGB" if defaults.channels == 3 else f"{defaults.channels}-channel"
        raise ConfigError(f"{cfg.model.name} is pretrained on {kind} images: drop --channels {data.channels}")
    size = data.image_size or defaults.input_size
    data = dataclasses.replace(data, image_size=tuple(size) if size else None,
                               channels=defaults.channels or data.channels)
    return dataclasses.replace(cfg, data=data)


def load_checked(cfg: RunConfig, splits: DataSplits | None) -> DataSplits:
    """``splits`` (Python API) or ``cfg.data`` loaded, checked; missing validation images and a label
    map are said once."""
    splits = splits if splits is not None else load_data(cfg.data)
    check_splits(splits)
    note = validation_note(splits)
    if note is not None and dist_info()[0] == 0:  # said before training, --quiet or not
        print(f"cnnkit: note: {note}", file=sys.stderr, flush=True)
    if splits.label_map is not None and cfg.train.progress and dist_info()[0] == 0:
        print(f"cnnkit: {splits.label_map.line()}", file=sys.stderr, flush=True)
    return splits


def channel_stats(images: np.ndarray, max_images: int = 10_000,
                  seed: int = 0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std on the [0,1] scale from (at most ``max_images``) training images."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(images), min(len(images), max_images), replace=False))
    x = np.asarray(images[idx], dtype=np.float32) / 255.0  # (n,H,W,C)
    mean = x.mean(axis=(0, 1, 2))
    std = np.maximum(x.std(axis=(0, 1, 2)), 1e-3)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


# ----------------------------------------------------------------------------- model


def build(cfg: RunConfig, splits: DataSplits, env: Env) -> tuple[RunConfig, Built]:
    """The model for the data's classes, size and channels, and its input normalisation: the
    model's own mean/std where its default config has them (pretrained backbones), else the
    training images' statistics.  Returns ``cfg`` with the model config resolved from the data."""
    model_cfg = _resolve_model_config(cfg.model, splits.train)
    cfg = dataclasses.replace(cfg, model=model_cfg)
    model = build_model(model_cfg)
    mean, std = model.input_norm or channel_stats(splits.train.images, seed=cfg.train.seed)
    preprocess = Preprocess(classes=tuple(splits.train.classes), image_size=splits.train.image_size,
                            channels=splits.train.channels, mean=tuple(mean), std=tuple(std), model=model_cfg.name)
    model.to(env.device)
    if env.channels_last:
        model.to(memory_format=torch.channels_last)
    return cfg, Built(model, preprocess, ImageInputs(mean, std, env.device, env.channels_last))


def _resolve_model_config(model: ModelConfig, train: ImageSet) -> ModelConfig:
    return dataclasses.replace(model, num_classes=len(train.classes), in_channels=train.channels,
                               image_size=train.image_size)


# ----------------------------------------------------------------------------- what the loop runs


def loop_parts(cfg: RunConfig, splits: DataSplits, built: Built, env: Env) -> Parts:
    """Loaders, augmentation, loss weights and DDP: the :class:`~cnnkit.train.loop.Training` that
    ``fit`` and the range test run; in features mode the head and cached features instead."""
    model = built.model
    if env.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model)  # wraps the same parameter objects: param_groups stay valid
    train_loader, val_loader = _loaders(cfg, splits, env)
    augment = _build_augment(cfg, len(built.preprocess.classes))
    training = Training(model, train_loader, built.inputs, val=val_loader, augment=augment, amp=env.amp,
                        label_smoothing=cfg.optim.label_smoothing,
                        class_weights=_class_weights(cfg, splits.train, announce=env.writer and cfg.train.progress),
                        seed=cfg.train.seed)
    if cfg.model.transfer != "features":
        return Parts(model, training)
    # frozen backbone: train the head on features computed once
    from cnnkit.train.features import feature_training, features_cache_dir

    cache = features_cache_dir(cfg.data.cache_dir)
    # features in full precision: what predict, evaluate and serve compute from the saved model (and what
    # ONNX Runtime runs on a CPU), so a run's reported metrics are theirs
    setup = feature_training(model, splits, built.inputs, env.device, None, cache, cfg.train.batch_size,
                             cfg.train.eval_batch_size, cfg.train.seed, augment, env.world)
    training = dataclasses.replace(training, model=setup.head, inputs=setup.inputs, train=setup.train, val=setup.val,
                                   augment=None)
    return Parts(model, training, setup.info, cache)


def build_optimization(cfg: RunConfig, built: Built, training: Training) -> tuple[torch.optim.Optimizer, Any]:
    """The optimizer over the model's parameter groups at ``cfg.optim.lr`` (a backbone may train at a
    lower rate) and its per-step schedule over ``training``'s batches."""
    optimizer = build_optimizer(built.model.param_groups(cfg.optim.lr), cfg.optim)
    return optimizer, build_scheduler(optimizer, cfg.optim, len(training.train), cfg.train.epochs)


def use_compile(cfg: RunConfig, device: torch.device) -> bool:
    """torch.compile pays off on CUDA; on a CPU its start-up usually outweighs a short run's gain."""
    mode = cfg.train.compile
    if mode not in ("auto", "on", "off"):
        raise ConfigError(f"compile must be auto, on or off, not {mode!r}")
    return mode == "on" or (mode == "auto" and cfg.train.fast and device.type == "cuda")


def _loaders(cfg: RunConfig, splits: DataSplits, env: Env) -> tuple[BatchLoader, BatchLoader | None]:
    if cfg.train.batch_size % env.world:
        raise ConfigError(f"--batch-size {cfg.train.batch_size} is the global batch: it must divide evenly over "
                          f"{env.world} processes")
    # each process takes batch_size / world images of the same global batch
    train = BatchLoader(splits.train, cfg.train.batch_size // env.world, env.device, shuffle=True,
                        seed=cfg.train.seed, rank=env.rank, world=env.world)
    val = (BatchLoader(splits.val, cfg.train.eval_batch_size, env.device, rank=env.rank, world=env.world)
           if splits.val is not None and len(splits.val) else None)
    return train, val


def _class_weights(cfg: RunConfig, train: ImageSet, announce: bool) -> torch.Tensor | None:
    """The loss weights ``--class-weight`` asks for on these training counts, said once when used."""
    counts = np.bincount(train.labels, minlength=len(train.classes))
    weights = class_weights(counts, cfg.optim.class_weight)
    if weights is not None and announce:
        shown = ", ".join(f"{c} {w:.2f}" for c, w in zip(train.classes, weights.tolist()))
        why = (f"imbalanced training data, largest/smallest class {imbalance(counts):.1f}x"
               if cfg.optim.class_weight == "auto" else "--class-weight balanced")
        print(f"cnnkit: class-weighted loss ({why}): {shown}", file=sys.stderr, flush=True)
    return weights


def _build_augment(cfg: RunConfig, num_classes: int) -> BatchAugment | None:
    aug = BatchAugment(cfg.augment, num_classes)
    return aug if aug.active else None
