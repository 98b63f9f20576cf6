"""Test-time augmentation views: exact flips and whole-pixel shifts (no resampling)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnkit.augment.presets import TTA_MODES
from cnnkit.errors import ConfigError


def shift_pixels(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move the content of x (N,C,H,W) by (dy, dx) whole pixels, edges mirrored (reflect)."""
    pad = max(abs(dy), abs(dx))
    if pad == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    top, left = pad - dy, pad - dx
    return padded[..., top : top + h, left : left + w]


def tta_views(x: torch.Tensor, mode: str = "flip") -> list[torch.Tensor]:
    """Views of a batch to average predictions over; the identity is always first.

    none:       [x]
    flip:       [x, hflip(x)]
    flip-shift: [x, hflip(x), x shifted up-left by d, x shifted down-right by d, and the
                 flips of those two] with d = max(1, min(H, W) // 32) pixels - airbench's
                 mirror + 1-pixel-translate TTA on 32x32 images, scaled to the image size.
    Horizontal flips suit natural images; for digits or text use ``none``.
    """
    if mode not in TTA_MODES:
        raise ConfigError(f"tta mode {mode!r} is unknown; choose one of {', '.join(TTA_MODES)}")
    if mode == "none":
        return [x]
    views = [x, x.flip(-1)]
    if mode == "flip-shift":
        d = max(1, min(int(x.shape[-2]), int(x.shape[-1])) // 32)
        for shifted in (shift_pixels(x, -d, -d), shift_pixels(x, d, d)):
            views += [shifted, shifted.flip(-1)]
    return views
