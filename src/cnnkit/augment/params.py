"""Per-image random parameters, drawn on the generator's device (normally the CPU).

Sampling is separated from applying so that (a) the same seed gives the same picture on any
device - the random numbers never come from the accelerator's RNG - and (b) a batch can be
checked against its images one by one with the very same parameters.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from cnnkit.config import AugmentConfig

# One torch.rand(N, _NCOLS) call feeds every per-image parameter; the column of each is
# fixed, so switching one transform on or off never changes the draws of another.
_COLS = {
    name: i
    for i, name in enumerate(
        (
            "angle", "shift_x", "shift_y", "shear", "zoom_x", "zoom_y", "flip_h", "flip_v",
            "crop_area", "crop_ratio", "crop_x", "crop_y", "brightness", "contrast", "cut_y", "cut_x",
        )
    )
}
_NCOLS = len(_COLS)
_RRC_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))  # torchvision RandomResizedCrop's default ratio


@dataclass(frozen=True)
class AugmentParams:
    """Parameters of N images; every field is a float tensor of shape (N,) on the CPU.

    Geometry (all about the image centre, Keras ImageDataGenerator semantics):
      angle     rotation, degrees (Keras ``theta``)
      shift_x   content moves right by shift_x * W pixels (Keras ``ty``, sign flipped)
      shift_y   content moves down by shift_y * H pixels (Keras ``tx``, sign flipped)
      shear     degrees (Keras ``shear``)
      zoom_x/y  sampling scale along columns/rows; > 1 zooms out, < 1 zooms in (Keras zy/zx)
      flip_h/v  1.0 = mirror left-right / top-bottom, 0.0 = keep
      crop_w/h  random-resized-crop window as a fraction of W/H (1 = whole image)
      crop_x/y  window centre offset from the image centre, as a fraction of W/H
    Photometric:
      brightness, contrast  multiplicative factors (1 = unchanged)
      cut_x/y, cut_w/h      cutout box centre and size as fractions of W/H (cut_w = 0: none)
    """

    angle: torch.Tensor
    shift_x: torch.Tensor
    shift_y: torch.Tensor
    shear: torch.Tensor
    zoom_x: torch.Tensor
    zoom_y: torch.Tensor
    flip_h: torch.Tensor
    flip_v: torch.Tensor
    crop_w: torch.Tensor
    crop_h: torch.Tensor
    crop_x: torch.Tensor
    crop_y: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    cut_x: torch.Tensor
    cut_y: torch.Tensor
    cut_w: torch.Tensor
    cut_h: torch.Tensor

    def __len__(self) -> int:
        return int(self.angle.shape[0])

    def select(self, index: int | slice | torch.Tensor) -> "AugmentParams":
        """The parameters of a subset of the images (keeps the (n,) shape for an int index)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return AugmentParams(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    @staticmethod
    def identity(n: int) -> "AugmentParams":
        """Parameters that change nothing; tests and callers ``dataclasses.replace`` fields."""
        zeros, ones = torch.zeros(n), torch.ones(n)
        return AugmentParams(
            angle=zeros, shift_x=zeros, shift_y=zeros, shear=zeros, zoom_x=ones, zoom_y=ones,
            flip_h=zeros, flip_v=zeros, crop_w=ones, crop_h=ones, crop_x=zeros, crop_y=zeros,
            brightness=ones, contrast=ones, cut_x=zeros, cut_y=zeros, cut_w=zeros, cut_h=zeros,
        )


def _sym(u: np.ndarray, r: float) -> np.ndarray:
    """Uniform in [-r, r] from uniform u in [0, 1)."""
    return (2.0 * u - 1.0) * r


def sample_params(cfg: AugmentConfig, n: int, size: tuple[int, int], gen: torch.Generator) -> AugmentParams:
    """Draw the parameters of ``n`` images of ``size`` (H, W) for a *resolved* config.

    Draws exactly one ``torch.rand(n, 16)`` from ``gen`` (on the generator's device), so the
    stream position after a batch depends only on n.  Returned tensors are float32 on the CPU.
    The arithmetic on these (n,) vectors is done in numpy: dozens of tiny torch ops cost more
    in dispatch and thread wake-ups than the arithmetic itself, badly so on a busy CPU.
    """
    h, w = size
    u = torch.rand(n, _NCOLS, generator=gen, device=gen.device).cpu().numpy().astype(np.float64)
    col = {name: u[:, i] for name, i in _COLS.items()}
    ones, zeros = np.ones(n), np.zeros(n)

    # random-resized-crop: area fraction and aspect ratio as in torchvision, then clamped to
    # fit (vectorised instead of torchvision's 10 rejection-sampling attempts)
    if cfg.random_resized_crop > 0:
        area = cfg.random_resized_crop + (1.0 - cfg.random_resized_crop) * col["crop_area"]
        ratio = np.exp(_RRC_LOG_RATIO[0] + (_RRC_LOG_RATIO[1] - _RRC_LOG_RATIO[0]) * col["crop_ratio"])
        crop_w = np.minimum(np.sqrt(area * h * w * ratio) / w, 1.0)
        crop_h = np.minimum(np.sqrt(area * h * w / ratio) / h, 1.0)
        crop_x = _sym(col["crop_x"], 1.0) * (1.0 - crop_w) / 2.0
        crop_y = _sym(col["crop_y"], 1.0) * (1.0 - crop_h) / 2.0
    else:
        crop_w, crop_h, crop_x, crop_y = ones, ones, zeros, zeros

    z = cfg.zoom_range
    values = dict(
        angle=_sym(col["angle"], cfg.rotation_range),
        shift_x=_sym(col["shift_x"], cfg.width_shift_range),
        shift_y=_sym(col["shift_y"], cfg.height_shift_range),
        shear=_sym(col["shear"], cfg.shear_range),
        zoom_x=1.0 + _sym(col["zoom_x"], z),  # Keras draws zx, zy independently
        zoom_y=1.0 + _sym(col["zoom_y"], z),
        flip_h=(col["flip_h"] < 0.5) * 1.0 if cfg.horizontal_flip else zeros,
        flip_v=(col["flip_v"] < 0.5) * 1.0 if cfg.vertical_flip else zeros,
        crop_w=crop_w,
        crop_h=crop_h,
        crop_x=crop_x,
        crop_y=crop_y,
        brightness=np.maximum(1.0 + _sym(col["brightness"], cfg.brightness), 0.0),
        contrast=np.maximum(1.0 + _sym(col["contrast"], cfg.contrast), 0.0),
        cut_x=col["cut_x"],
        cut_y=col["cut_y"],
        cut_w=cfg.cutout * ones,
        cut_h=cfg.cutout * ones,
    )
    return AugmentParams(**{k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in values.items()})
