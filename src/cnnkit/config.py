"""Configuration as data: frozen dataclasses, saved as JSON next to every checkpoint.

A run is fully described by a :class:`RunConfig`; a checkpoint additionally carries a
:class:`Preprocess` (classes, image size, channels, normalisation) so that it alone is
enough to predict.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are shaped.

    ``source`` is a dataset name (``mnist``, ``fashion-mnist``, ``cifar10``, ``cats-vs-dogs``,
    ``horses-vs-humans``, ``mnist-mini``, ``digits``) or a folder path.
    """

    source: str = "mnist-mini"
    image_size: tuple[int, int] | None = None  # (H, W); None = the data's own size
    channels: int | None = None  # 1 (grey) or 3 (RGB); None = the data's own
    val_split: float = 0.1  # used only when the source has no validation split
    test_split: float = 0.0
    data_dir: str | None = None  # where named datasets are looked for / downloaded
    cache_dir: str | None = None  # decode-once cache; None = default under ~/.cache/cnnkit
    strict: bool = False  # stop at the first bad image instead of skipping it
    seed: int = 0


@dataclass(frozen=True)
class AugmentConfig:
    """Batch augmentation, Keras ImageDataGenerator names plus modern ones."""

    preset: str = "none"
    rotation_range: float = 0.0  # degrees, uniform in [-r, r]
    width_shift_range: float = 0.0  # fraction of width
    height_shift_range: float = 0.0  # fraction of height
    shear_range: float = 0.0  # degrees (Keras semantics)
    zoom_range: float = 0.0  # scale in [1-z, 1+z]
    horizontal_flip: bool = False
    vertical_flip: bool = False
    fill_mode: str = "nearest"  # nearest | constant | reflect
    fill_value: float = 0.0
    random_resized_crop: float = 0.0  # min area fraction; 0 = off
    brightness: float = 0.0
    contrast: float = 0.0
    cutout: float = 0.0  # erased square side as a fraction of the image; 0 = off
    mixup: float = 0.0  # Beta(a, a); 0 = off
    cutmix: float = 0.0  # Beta(a, a); 0 = off
    tta: str = "none"  # test-time augmentation at evaluation: none | flip | flip-shift


@dataclass(frozen=True)
class ModelConfig:
    name: str = "auto"  # "auto": cnnkit.auto chooses model and settings from the data and the time budget
    num_classes: int = 10
    in_channels: int = 3
    image_size: tuple[int, int] = (32, 32)
    dropout: float | None = None  # None = the architecture's own default
    pretrained: bool = False  # transfer backbones: load ImageNet weights
    weights: str | None = None  # local weight file for the backbone
    transfer: str = "none"  # none | features | head | finetune
    cut: str | None = None  # backbone layer to cut at
    head: tuple[int, ...] = ()  # hidden sizes of a dense head, e.g. (1024,)
    head_dropout: float = 0.0
    finetune_blocks: int = 0  # top blocks to unfreeze in finetune mode


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"  # sgd | rmsprop | adam | adamw
    lr: float = 3e-3  # the peak rate of the default one-cycle schedule
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    decay: float = 0.0  # Keras-style time decay: lr / (1 + decay * step)
    schedule: str = "onecycle"  # none | cosine | onecycle | step
    warmup_epochs: float = 0.0
    step_size: int = 10  # for schedule=step
    gamma: float = 0.1  # for schedule=step
    label_smoothing: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    fast: bool = True  # channels_last, bf16 autocast where safe, malloc tuning
    amp: str = "auto"  # auto | off | bf16 | fp16
    compile: str = "auto"  # torch.compile: auto (on CUDA with the fast path) | on | off
    monitor: str = "val_acc,val_loss"  # best checkpoint / early stopping: val accuracy, ties to lower val loss
    time: float | None = None  # wall-clock budget of the whole run in seconds; None = none (auto plans within 300)
    patience: int | None = None  # early stopping; None = off
    min_delta: float = 0.0
    eval_batch_size: int = 256
    progress: bool = True
    report: bool = True  # write report.html (curves, metrics, most-wrong, Grad-CAM) after training
    out: str = "runs/run"


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class Preprocess:
    """Everything a checkpoint needs to turn a file into a model input."""

    classes: tuple[str, ...]
    image_size: tuple[int, int]  # (H, W)
    channels: int
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale
    std: tuple[float, ...]
    model: str = ""


# ---------------------------------------------------------------- (de)serialisation


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def _coerce(tp: Any, value: Any) -> Any:
    """JSON gives lists where the dataclass wants tuples; convert back."""
    text = str(tp)
    if value is None:
        return None
    if isinstance(value, list) and "tuple" in text:
        return tuple(value)
    return value


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Build dataclass ``cls`` from a (possibly nested) dict, ignoring unknown keys."""
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        sub = _NESTED.get((cls, f.name))
        if sub is not None and isinstance(value, Mapping):
            value = from_dict(sub, value)
        else:
            value = _coerce(f.type, value)
        kwargs[f.name] = value
    return cls(**kwargs)


_NESTED = {
    (RunConfig, "data"): DataConfig,
    (RunConfig, "model"): ModelConfig,
    (RunConfig, "optim"): OptimConfig,
    (RunConfig, "train"): TrainConfig,
    (RunConfig, "augment"): AugmentConfig,
}


def replace(obj: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` that skips ``None`` values (handy for CLI overrides)."""
    return dataclasses.replace(obj, **{k: v for k, v in changes.items() if v is not None})


def save_json(obj: Any, path: str | Path) -> None:
    from cnnkit.io import atomic_write_text

    data = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def load_run_config(path: str | Path) -> RunConfig:
    return from_dict(RunConfig, json.loads(Path(path).read_text()))


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "train": TrainConfig, "augment": AugmentConfig}
# flat names that differ from the field name, or that would be ambiguous
_ALIASES = {"data": ("data", "source"), "model": ("model", "name"), "optimizer": ("optim", "name"),
            "augment": ("augment", "preset")}


def make_config(base: RunConfig | None = None, **flat: Any) -> RunConfig:
    """A RunConfig from flat keyword names, for the Python API::

        make_config(data="mnist-mini", model="lenet5", epochs=5, optimizer="sgd", lr=0.01, augment="light")

    Each name is a field of one section (``image_size`` -> data, ``epochs`` -> train, ...);
    ``seed`` sets both the data split seed and the training seed.
    """
    base = base or RunConfig()
    changes: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    for key, value in flat.items():
        if key in _ALIASES:
            section, fname = _ALIASES[key]
            changes[section][fname] = value
            continue
        owners = [name for name, cls in _SECTIONS.items() if key in {f.name for f in fields(cls)}]
        if not owners:
            from cnnkit.errors import ConfigError

            raise ConfigError(f"unknown setting {key!r}")
        for owner in owners:  # 'seed' lives in data and train: set both
            changes[owner][key] = tuple(value) if isinstance(value, list) else value
    return RunConfig(**{name: dataclasses.replace(getattr(base, name), **changes[name]) for name in _SECTIONS})
