"""BatchAugment: augment a whole batch on its own device (airbench style), not image by image.

It walks the config class's transform list (:data:`cnnkit.augment.transforms.TRANSFORMS`):
geometry first (every geometric transform's matrix, multiplied into one resample), then the
other transforms in list order (brightness, contrast, cutout), then mixing (mixup/cutmix).
Evaluation never calls this; the training loop calls it on the un-normalised [0, 1] batch,
right before normalising.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch

from cnnkit.augment import geometry
from cnnkit.augment.params import sample_params
from cnnkit.augment.presets import is_active, resolve
from cnnkit.augment.transforms import Geometric, Mixing


def inverse_matrices(p: Any, size: tuple[int, int], transforms: Sequence[Any]) -> torch.Tensor:
    """(N, 3, 3) float64 output->input maps in centred pixel coordinates (x right, y down).

    The product of every geometric transform's matrix in ascending ``order`` (for the built-in
    list: Crop @ Rotation @ Shift @ Shear @ Zoom @ Flip), composed in numpy: a handful of 3x3
    products per image is far below torch's per-op cost.
    """
    q = {f.name: getattr(p, f.name).double().numpy() for f in dataclasses.fields(p)}
    geometric = sorted((t for t in transforms if isinstance(t, Geometric)), key=lambda t: t.order)
    m = geometric[0].matrix(q, size)
    for t in geometric[1:]:
        m = m @ t.matrix(q, size)
    return torch.from_numpy(m)


def _keep_format(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Give ``out`` the channels_last layout when ``like`` had it (grid_sample returns NCHW)."""
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        return out.contiguous(memory_format=torch.channels_last)
    return out


def apply_params(x: torch.Tensor, p: Any, cfg: Any) -> torch.Tensor:
    """Deterministic part: apply per-image parameters ``p`` (len N) to x (N,C,H,W) in [0, 1].

    ``cfg`` must be resolved; it says which transforms are on (and the fill mode).
    Each output image depends only on its own input image and parameters.  Mixing is not applied.
    """
    size = (int(x.shape[-2]), int(x.shape[-1]))
    transforms = type(cfg).transforms
    active = [t for t in transforms if t.on(cfg)]
    if any(isinstance(t, Geometric) and t.resamples for t in active):
        theta = geometry.to_theta(inverse_matrices(p, size, transforms), size)
        x = geometry.warp(x, theta, cfg.fill_mode, cfg.fill_value)
    else:  # exact permutations only (flips): no resampling
        for t in active:
            if isinstance(t, Geometric):
                x = t.apply(x, p, cfg)
    for t in active:
        if not isinstance(t, (Geometric, Mixing)):
            x = t.apply(x, p, cfg)
    return x


class BatchAugment:
    """Random training augmentation of whole batches; build once per run.

    All random numbers come from the ``torch.Generator`` passed to each call (normally a CPU
    generator seeded from the run seed), never from the global RNG, so a seed reproduces the
    same augmented batches on CPU and GPU alike.
    """

    def __init__(self, cfg: Any, num_classes: int) -> None:
        self.cfg = resolve(cfg)
        # binary problems train one logit, but soft labels keep two columns (K=2)
        self.num_classes = max(int(num_classes), 2)
        self._mixing = [t for t in type(self.cfg).transforms if isinstance(t, Mixing) and t.on(self.cfg)]

    @property
    def active(self) -> bool:
        return is_active(self.cfg)

    @property
    def mixes(self) -> bool:
        """True when targets come back as soft labels (N, K)."""
        return bool(self._mixing)

    def sample(self, n: int, size: tuple[int, int], gen: torch.Generator) -> Any:
        return sample_params(self.cfg, n, size, gen)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """x: float (N,C,H,W) in [0,1], any device/layout; y: int64 (N,).

        Returns (x_aug with x's shape/device/dtype/layout, target): target is y unchanged, or
        float32 soft labels (N, K) on y's device when mixup/cutmix is on.
        """
        if not x.is_floating_point():
            raise TypeError(f"BatchAugment expects float images in [0, 1], got {x.dtype}")
        if not self.active or x.shape[0] == 0:
            return x, y
        params = self.sample(int(x.shape[0]), (int(x.shape[-2]), int(x.shape[-1])), gen)
        out = apply_params(x, params, self.cfg)
        target = y
        for t in self._mixing:
            out, target = t.mix(out, target, self.num_classes, self.cfg, gen)
        return _keep_format(out, x), target
