"""Named augmentation presets and the rule that combines a preset with explicit settings.

Presets (all are a *choice*, not a property of the data: digit and text datasets should
not be flipped, so pick ``none``/explicit settings for them):

=========  ==================================================================================
none       nothing; ``BatchAugment.active`` is False and the training loop skips it
light      horizontal_flip + width/height shifts of 0.1
standard   rotation 15 deg, width/height shifts 0.1, zoom 0.1, horizontal_flip
strong     standard + shear 10 deg, brightness 0.2, contrast 0.2, cutout 0.25
=========  ==================================================================================

These functions work on any config class :func:`cnnkit.augment.transforms.augment_config`
makes (they read its ``transforms``), so this module needs neither torch nor the config class.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

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


def resolve(cfg: Any) -> Any:
    """Return the effective settings: the preset's values, overridden by every field the user
    set to a non-default value.  Idempotent (``resolve(resolve(c)) == resolve(c)``).

    A field set explicitly to its *default* cannot be told apart from an unset one, so it does
    not switch off something the preset turns on: start from ``preset="none"`` for that.
    """
    if cfg.preset not in PRESETS:
        raise ConfigError(f"augment preset {cfg.preset!r} is unknown; choose one of {', '.join(PRESETS)}")
    defaults = type(cfg)()
    values = dict(PRESETS[cfg.preset])
    for f in dataclasses.fields(cfg):
        if f.name != "preset" and getattr(cfg, f.name) != getattr(defaults, f.name):
            values[f.name] = getattr(cfg, f.name)
    resolved = dataclasses.replace(defaults, preset=cfg.preset, **values)
    validate(resolved)
    return resolved


def is_active(cfg: Any) -> bool:
    """True when the resolved config changes training batches at all."""
    return any(t.on(cfg) for t in type(cfg).transforms)


def validate(cfg: Any) -> None:
    """Raise ConfigError (a SettingError) naming the first augment setting that cannot be used."""
    from cnnkit.settings import check

    check(cfg, "augment.")


def write_out_cleared(cfg: Any, given: Mapping[str, Any]) -> Any:
    """``cfg`` after the flags ``given`` (field -> value), with the preset written out where needed.

    A flag that sets a field back to its default where the preset turns it on (``--augment
    standard --no-hflip``, ``--rotation 0``) cannot be expressed as "preset + overrides", since
    an override equal to the default means "unset".  Then the preset is written out: the result
    is ``preset="none"`` with every effective value explicit, so it still means what was asked.
    """
    defaults, preset_values = type(cfg)(), PRESETS.get(cfg.preset, {})
    cleared = {k: v for k, v in given.items()
               if k in preset_values and v == getattr(defaults, k) and preset_values[k] != v}
    if cleared:
        cfg = dataclasses.replace(resolve(cfg), preset="none", **cleared)
    return cfg
