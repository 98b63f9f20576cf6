"""Named augmentation presets and the rule that combines a preset with explicit settings.

Presets (all are a *choice*, not a property of the data: digit and text datasets should
not be flipped, so pick ``none``/explicit settings for them):

=========  ==================================================================================
none       nothing; ``BatchAugment.active`` is False and the training loop skips it
light      horizontal_flip + width/height shifts of 0.1
standard   rotation 15 deg, width/height shifts 0.1, zoom 0.1, horizontal_flip
strong     standard + shear 10 deg, brightness 0.2, contrast 0.2, cutout 0.25
=========  ==================================================================================
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cnnkit.config import AugmentConfig
from cnnkit.errors import ConfigError

_LIGHT: dict[str, Any] = {"horizontal_flip": True, "width_shift_range": 0.1, "height_shift_range": 0.1}
_STANDARD: dict[str, Any] = {
    "rotation_range": 15.0,
    "width_shift_range": 0.1,
    "height_shift_range": 0.1,
    "zoom_range": 0.1,
    "horizontal_flip": True,
}
_STRONG: dict[str, Any] = {**_STANDARD, "shear_range": 10.0, "brightness": 0.2, "contrast": 0.2, "cutout": 0.25}

PRESETS: dict[str, dict[str, Any]] = {"none": {}, "light": _LIGHT, "standard": _STANDARD, "strong": _STRONG}

FILL_MODES = ("nearest", "constant", "reflect")
TTA_MODES = ("none", "flip", "flip-shift")

# Fields that switch a training-time transform on (fill_mode/fill_value/tta only modify or
# are used elsewhere); a config with all of these at their default does nothing.
TRANSFORM_FIELDS = (
    "rotation_range",
    "width_shift_range",
    "height_shift_range",
    "shear_range",
    "zoom_range",
    "horizontal_flip",
    "vertical_flip",
    "random_resized_crop",
    "brightness",
    "contrast",
    "cutout",
    "mixup",
    "cutmix",
)


def resolve(cfg: AugmentConfig) -> AugmentConfig:
    """Return the effective settings: the preset's values, overridden by every field the user
    set to a non-default value.  Idempotent (``resolve(resolve(c)) == resolve(c)``).

    A field set explicitly to its *default* cannot be told apart from an unset one, so it does
    not switch off something the preset turns on: start from ``preset="none"`` for that.
    """
    if cfg.preset not in PRESETS:
        raise ConfigError(f"augment preset {cfg.preset!r} is unknown; choose one of {', '.join(PRESETS)}")
    defaults = AugmentConfig()
    values = dict(PRESETS[cfg.preset])
    for f in dataclasses.fields(cfg):
        if f.name != "preset" and getattr(cfg, f.name) != getattr(defaults, f.name):
            values[f.name] = getattr(cfg, f.name)
    resolved = dataclasses.replace(defaults, preset=cfg.preset, **values)
    validate(resolved)
    return resolved


def is_active(cfg: AugmentConfig) -> bool:
    """True when the resolved config changes training batches at all."""
    defaults = AugmentConfig()
    return any(getattr(cfg, name) != getattr(defaults, name) for name in TRANSFORM_FIELDS)


def _check(ok: bool, name: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(f"augment setting {name}={value!r} is invalid: {why}")


def validate(cfg: AugmentConfig) -> None:
    """Raise ConfigError naming the first setting that cannot be used."""
    _check(0.0 <= cfg.rotation_range <= 180.0, "rotation_range", cfg.rotation_range, "degrees in [0, 180]")
    for name in ("width_shift_range", "height_shift_range"):
        value = getattr(cfg, name)
        _check(0.0 <= value < 1.0, name, value, "a fraction of the image size in [0, 1)")
    _check(0.0 <= cfg.shear_range < 90.0, "shear_range", cfg.shear_range, "degrees in [0, 90)")
    _check(0.0 <= cfg.zoom_range < 1.0, "zoom_range", cfg.zoom_range, "z in [0, 1) giving scales in [1-z, 1+z]")
    _check(cfg.fill_mode in FILL_MODES, "fill_mode", cfg.fill_mode, f"one of {', '.join(FILL_MODES)}")
    _check(0.0 <= cfg.random_resized_crop <= 1.0, "random_resized_crop", cfg.random_resized_crop,
           "the minimum kept area fraction in (0, 1], or 0 for off")
    for name in ("brightness", "contrast"):
        value = getattr(cfg, name)
        _check(0.0 <= value <= 1.0, name, value, "a strength in [0, 1] (factor drawn from [1-s, 1+s])")
    _check(0.0 <= cfg.cutout <= 1.0, "cutout", cfg.cutout, "the erased side as a fraction of the image in [0, 1]")
    for name in ("mixup", "cutmix"):
        value = getattr(cfg, name)
        _check(value >= 0.0, name, value, "the Beta(a, a) parameter a > 0, or 0 for off")
    _check(cfg.tta in TTA_MODES, "tta", cfg.tta, f"one of {', '.join(TTA_MODES)}")
