"""Augmentation flags shared by ``cnnkit train`` and ``cnnkit augment-preview``.

Every flag defaults to None ("not given"), so a value from a ``--config`` file survives unless
the flag overrides it.
"""

from __future__ import annotations

import argparse
import dataclasses

from cnnkit.augment.presets import FILL_MODES, PRESETS, TTA_MODES, resolve
from cnnkit.config import AugmentConfig, replace


def add_augment_args(p: argparse.ArgumentParser, tta: bool = True, preset_alias: bool = False) -> None:
    """Add the augmentation option group to ``p``.

    ``tta``: add ``--tta`` (only where there is an evaluation); ``preset_alias``: accept
    ``--preset`` as another name for ``--augment``.
    """
    g = p.add_argument_group("augmentation (Keras ImageDataGenerator names; applied per batch on the device)")
    names = ("--augment", "--preset") if preset_alias else ("--augment",)
    g.add_argument(*names, dest="augment", choices=tuple(PRESETS), metavar="PRESET",
                   help="preset: none | light (hflip, shifts 0.1) | standard (+ rotation 15, zoom 0.1) | "
                        "strong (+ shear 10, brightness/contrast 0.2, cutout 0.25); the flags below override it")
    g.add_argument("--rotation", type=float, metavar="DEG", help="rotation_range: degrees, uniform in [-DEG, DEG]")
    g.add_argument("--shift", type=float, metavar="F", help="width and height shift range (fraction of the size)")
    g.add_argument("--width-shift", type=float, metavar="F", help="width_shift_range (fraction of the width)")
    g.add_argument("--height-shift", type=float, metavar="F", help="height_shift_range (fraction of the height)")
    g.add_argument("--shear", type=float, metavar="DEG", help="shear_range in degrees (Keras semantics)")
    g.add_argument("--zoom", type=float, metavar="Z", help="zoom_range: scales in [1-Z, 1+Z], x and y drawn apart")
    g.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None, help="random horizontal flips")
    g.add_argument("--vflip", action=argparse.BooleanOptionalAction, default=None, help="random vertical flips")
    g.add_argument("--fill-mode", choices=FILL_MODES, help="how pixels from outside the image are filled")
    g.add_argument("--fill-value", type=float, metavar="V", help="fill for --fill-mode constant, in [0, 1]")
    g.add_argument("--random-resized-crop", type=float, metavar="MIN_AREA",
                   help="crop a random window of at least this area fraction and resize it back")
    g.add_argument("--brightness", type=float, metavar="S", help="brightness factor in [1-S, 1+S]")
    g.add_argument("--contrast", type=float, metavar="S", help="contrast factor in [1-S, 1+S]")
    g.add_argument("--cutout", type=float, metavar="F", help="erase a square of side F x the image size")
    g.add_argument("--mixup", type=float, metavar="A", help="mixup with weight ~ Beta(A, A)")
    g.add_argument("--cutmix", type=float, metavar="A", help="CutMix with area ~ Beta(A, A)")
    if tta:
        g.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation for the final evaluation")


def augment_config_from_args(a: argparse.Namespace, base: AugmentConfig | None = None) -> AugmentConfig:
    """``base`` (e.g. from a config file) with every flag that was given applied on top.

    A flag that sets a field back to its default where the preset turns it on (``--augment
    standard --no-hflip``, ``--rotation 0``) cannot be expressed as "preset + overrides", since
    an override equal to the default means "unset".  Then the preset is written out: the result
    is ``preset="none"`` with every effective value explicit, so it still means what was asked.
    """
    base = base if base is not None else AugmentConfig()
    given = {
        "preset": a.augment,
        "rotation_range": a.rotation,
        "width_shift_range": a.width_shift if a.width_shift is not None else a.shift,
        "height_shift_range": a.height_shift if a.height_shift is not None else a.shift,
        "shear_range": a.shear,
        "zoom_range": a.zoom,
        "horizontal_flip": a.hflip,
        "vertical_flip": a.vflip,
        "fill_mode": a.fill_mode,
        "fill_value": a.fill_value,
        "random_resized_crop": a.random_resized_crop,
        "brightness": a.brightness,
        "contrast": a.contrast,
        "cutout": a.cutout,
        "mixup": a.mixup,
        "cutmix": a.cutmix,
        "tta": getattr(a, "tta", None),
    }
    given = {k: v for k, v in given.items() if v is not None}
    cfg = replace(base, **given)
    defaults, preset_values = AugmentConfig(), PRESETS.get(cfg.preset, {})
    cleared = {k: v for k, v in given.items()
               if k in preset_values and v == getattr(defaults, k) and preset_values[k] != v}
    if cleared:
        cfg = dataclasses.replace(resolve(cfg), preset="none", **cleared)
    return cfg
