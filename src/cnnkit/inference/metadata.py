"""A checkpoint's metadata, checked before anything is built from it.

A ``.safetensors`` checkpoint carries, as JSON strings, its preprocessing (classes, image size,
channels, mean/std), its model config and the run config.  A file from elsewhere may carry
anything, so every field is checked here first: each problem is one :class:`CheckpointError`
naming the file and the field (``preprocess.std=[0, 0, 0]: ...``).  After the model is built,
:func:`check_model_fits` checks that the model takes the channels and gives the logits the
metadata says.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from cnnkit import settings
from cnnkit.config import SIZE_RANGE, ModelConfig, Preprocess, RunConfig
from cnnkit.errors import CheckpointError, ConfigError

FORMAT = "cnnkit-1"
CHANNELS = (1, 3)
_SIZES = settings.Interval.parse(SIZE_RANGE)


@dataclass(frozen=True)
class Metadata:
    """The checked contents of a checkpoint's metadata."""

    preprocess: Preprocess
    model: ModelConfig
    run: RunConfig | None
    info: dict[str, Any]


def check_format(meta: Mapping[str, str], path: str | Path) -> None:
    """A cnnkit checkpoint of a format version this cnnkit reads."""
    fmt = meta.get("format")
    if isinstance(fmt, str) and fmt.startswith("cnnkit-") and fmt != FORMAT:
        raise CheckpointError(f"{path}: format={fmt!r}: unknown checkpoint format version (this cnnkit reads {FORMAT})")
    if fmt != FORMAT:
        raise CheckpointError(f"{path}: a safetensors file, but not a cnnkit checkpoint (no cnnkit metadata)")


def validate_metadata(meta: Mapping[str, str], path: str | Path) -> Metadata:
    """Parse and check every metadata field of the checkpoint at ``path``; CheckpointError names the field."""
    check_format(meta, path)
    pre = check_preprocess(_json_object(meta, "preprocess", path, required=True), path)
    model = _model(_json_object(meta, "model", path, required=True), pre, path)
    run_data = _json_object(meta, "run", path, required=False)
    run = _loaded(RunConfig, run_data, "run", path) if run_data else None
    info = _json_object(meta, "info", path, required=False)
    return Metadata(pre, model, run, info)


def _fail(path: str | Path, field: str, value: Any, problem: str) -> CheckpointError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."  # a hostile value can be huge
    return CheckpointError(f"{path}: {field}={shown}: {problem}")


def _json_object(meta: Mapping[str, str], key: str, path: str | Path, required: bool) -> dict[str, Any]:
    """The JSON object stored under ``key`` ({} for an optional key that is absent or empty)."""
    text = meta.get(key)
    if not text:
        if required:
            raise CheckpointError(f"{path}: {key}: missing from the checkpoint's metadata")
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {key}: not valid JSON ({exc})") from None
    except RecursionError:  # thousands of nested [ or {: a crafted file
        raise CheckpointError(f"{path}: {key}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: {key}: must be a JSON object, not {type(data).__name__}")
    return data


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_preprocess(data: Any, path: str | Path, key: str = "preprocess") -> Preprocess:
    """A checked :class:`Preprocess` from its JSON form (a checkpoint's or an export's metadata)."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: {key}: must be a JSON object, not {type(data).__name__}")
    for key in ("classes", "image_size", "channels", "mean", "std"):
        if key not in data:
            raise CheckpointError(f"{path}: preprocess.{key}: missing")
    classes, size, channels = data["classes"], data["image_size"], data["channels"]
    if not (isinstance(classes, list) and len(classes) >= 2):
        raise _fail(path, "preprocess.classes", classes, "must be a list of at least 2 class names")
    if not all(isinstance(c, str) and c for c in classes):
        raise _fail(path, "preprocess.classes", classes, "class names must be non-empty strings")
    if len(set(classes)) != len(classes):
        raise _fail(path, "preprocess.classes", classes, "class names must be unique")
    # (H, W): bounded as --image-size is, so a crafted size cannot allocate gigabytes per image
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v in _SIZES for v in size)):
        raise _fail(path, "preprocess.image_size", size, f"must be two whole numbers (height, width) in {SIZE_RANGE}")
    if not (_is_int(channels) and channels in CHANNELS):
        raise _fail(path, "preprocess.channels", channels, "must be 1 (greyscale) or 3 (RGB)")
    mean, std = data["mean"], data["std"]
    # one value per channel: a 3-value mean would broadcast 1-channel images to 3 channels
    if not (isinstance(mean, list) and len(mean) == channels and all(_is_number(v) for v in mean)):
        raise _fail(path, "preprocess.mean", mean, f"must be {channels} finite number(s), one per channel")
    if not (isinstance(std, list) and len(std) == channels and all(_is_number(v) and v > 0 for v in std)):
        raise _fail(path, "preprocess.std", std, f"must be {channels} finite number(s) above 0, one per channel")
    model = data.get("model", "")
    if not isinstance(model, str):
        raise _fail(path, "preprocess.model", model, "must be a model name")
    return Preprocess(tuple(classes), (size[0], size[1]), channels, tuple(float(v) for v in mean),
                      tuple(float(v) for v in std), model)


def _loaded(cls: type, data: dict[str, Any], key: str, path: str | Path) -> Any:
    """``cls`` from ``data``, checked as a config file is (type, range, choices of every setting)."""
    try:
        return settings.load(cls, data, strict=False)  # a RunConfig subclass's run may carry more settings
    except settings.SettingError as exc:
        raise CheckpointError(f"{path}: {key}.{exc}") from None
    except (ConfigError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: {key}: {exc}") from None


def _model(data: dict[str, Any], pre: Preprocess, path: str | Path) -> ModelConfig:
    cfg = _loaded(ModelConfig, data, "model", path)
    if "name" not in data:
        raise CheckpointError(f"{path}: model.name: missing")
    if cfg.num_classes != len(pre.classes):
        raise _fail(path, "model.num_classes", cfg.num_classes,
                    f"the model has {cfg.num_classes} classes but preprocess.classes names {len(pre.classes)}")
    if cfg.in_channels != pre.channels:
        raise _fail(path, "model.in_channels", cfg.in_channels,
                    f"the model takes {cfg.in_channels} channels but preprocess.channels is {pre.channels}")
    if tuple(cfg.image_size) != tuple(pre.image_size):
        raise _fail(path, "model.image_size", list(cfg.image_size),
                    f"differs from preprocess.image_size {list(pre.image_size)}")
    return cfg


def check_model_fits(model: nn.Module, md: Metadata, path: str | Path) -> None:
    """The built ``model`` takes ``preprocess.channels`` and gives one logit a class (1 or 2 for two)."""
    from cnnkit.models.base import last_linear, num_outputs

    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is not None and first_conv.in_channels != md.preprocess.channels:
        raise _fail(path, "preprocess.channels", md.preprocess.channels,
                    f"the model's first convolution takes {first_conv.in_channels} channels")
    head = getattr(model, "head", None)
    found = last_linear(head) if isinstance(head, nn.Module) else None
    if found is None:
        return  # no dense head (an all-convolutional custom net): its builder's probe checked the width
    width, k = found[1].out_features, len(md.preprocess.classes)
    binary = getattr(model, "binary_output", None) or md.model.binary_output
    if width != num_outputs(k, binary):
        raise _fail(path, "preprocess.classes", list(md.preprocess.classes),
                    f"{k} classes, but the model gives {width} logits per image")
