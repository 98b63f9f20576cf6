"""Per-image random parameters, drawn on the generator's device (normally the CPU).

Sampling is separated from applying so that (a) the same seed gives the same picture on any
device - the random numbers never come from the accelerator's RNG - and (b) a batch can be
checked against its images one by one with the very same parameters.

The parameter fields are the ``params`` of the config class's transforms
(:mod:`cnnkit.augment.transforms`); :data:`AugmentParams` is the class for :data:`TRANSFORMS`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import numpy as np
import torch

from cnnkit.augment.transforms import TRANSFORMS, Transform


class _Params:
    """Parameters of N images; every field is a float tensor of shape (N,) on the CPU."""

    identity_values: dict[str, float] = {}

    def __len__(self) -> int:
        return int(getattr(self, dataclasses.fields(self)[0].name).shape[0])

    def select(self, index: int | slice | torch.Tensor) -> Any:
        """The parameters of a subset of the images (keeps the (n,) shape for an int index)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return type(self)(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    @classmethod
    def identity(cls, n: int) -> Any:
        """Parameters that change nothing; tests and callers ``dataclasses.replace`` fields."""
        return cls(**{name: torch.full((n,), float(v)) for name, v in cls.identity_values.items()})


_DOC = """Parameters of N images; every field is a float tensor of shape (N,) on the CPU.

Geometry (all about the image centre, Keras ImageDataGenerator semantics):
  angle     rotation, degrees, positive = counter-clockwise on screen (Keras ``theta``)
  shift_x   content moves right by shift_x * W pixels (drawn from width_shift_range)
  shift_y   content moves down by shift_y * H pixels (drawn from height_shift_range)
  shear     horizontal shear, degrees: rows above the centre move left when > 0 (Keras ``shear``)
  zoom_x/y  sampling scale along columns/rows; > 1 zooms out, < 1 zooms in (Keras zy/zx)
  flip_h/v  1.0 = mirror left-right / top-bottom, 0.0 = keep
  crop_w/h  random-resized-crop window as a fraction of W/H (1 = whole image)
  crop_x/y  window centre offset from the image centre, as a fraction of W/H
Photometric:
  brightness, contrast  multiplicative factors (1 = unchanged)
  cut_x/y, cut_w/h      cutout box centre and size as fractions of W/H (cut_w = 0: none)
Transforms of one's own add their own ``params``.
"""


@functools.lru_cache(maxsize=None)
def params_class(transforms: Sequence[Transform]) -> type:
    """The frozen parameter class of a transform list: one (N,) tensor field per declared parameter."""
    identity = {name: value for t in transforms for name, value in t.params.items()}
    return dataclasses.make_dataclass("AugmentParams", [(name, torch.Tensor) for name in identity], bases=(_Params,),
                                      frozen=True, namespace={"identity_values": identity, "__doc__": _DOC,
                                                              "__module__": __name__})


AugmentParams = params_class(TRANSFORMS)


def sample_params(cfg: Any, n: int, size: tuple[int, int], gen: torch.Generator) -> Any:
    """Draw the parameters of ``n`` images of ``size`` (H, W) for a *resolved* config.

    Draws exactly one ``torch.rand(n, columns)`` from ``gen`` (on the generator's device; 16
    columns for the built-in transforms), so the stream position after a batch depends only on
    n.  Returned tensors are float32 on the CPU.  The arithmetic on these (n,) vectors is done in
    numpy: dozens of tiny torch ops cost more in dispatch and thread wake-ups than the arithmetic
    itself, badly so on a busy CPU.
    """
    transforms = type(cfg).transforms
    ncols = sum(len(t.columns) for t in transforms)
    u = torch.rand(n, ncols, generator=gen, device=gen.device).cpu().numpy().astype(np.float64)
    values: dict[str, Any] = {}
    start = 0
    for t in transforms:
        cols = {name: u[:, start + i] for i, name in enumerate(t.columns)}
        start += len(t.columns)
        values.update(t.sample(cfg, cols, n, size))
    cls = params_class(transforms)
    return cls(**{k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in values.items()})
