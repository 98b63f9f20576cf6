"""BatchAugment: augment a whole batch on its own device (airbench style), not image by image.

Order: geometry (random-resized-crop, rotation, shift, shear, zoom, flips - one resample),
brightness/contrast, cutout, then mixup/cutmix.  Evaluation never calls this; the training
loop calls it on the un-normalised [0, 1] batch, right before normalising.
"""

from __future__ import annotations

import torch

from cnnkit.augment import geometry, photometric
from cnnkit.augment.mix import mix_batch
from cnnkit.augment.params import AugmentParams, sample_params
from cnnkit.augment.presets import is_active, resolve
from cnnkit.config import AugmentConfig


def _keep_format(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Give ``out`` the channels_last layout when ``like`` had it (grid_sample returns NCHW)."""
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        return out.contiguous(memory_format=torch.channels_last)
    return out


def apply_params(x: torch.Tensor, p: AugmentParams, cfg: AugmentConfig) -> torch.Tensor:
    """Deterministic part: apply per-image parameters ``p`` (len N) to x (N,C,H,W) in [0, 1].

    ``cfg`` must be resolved; it says which transforms are on (and the fill mode).
    Each output image depends only on its own input image and parameters.
    """
    size = (int(x.shape[-2]), int(x.shape[-1]))
    resample = any(
        getattr(cfg, name) > 0
        for name in ("rotation_range", "width_shift_range", "height_shift_range", "shear_range", "zoom_range",
                     "random_resized_crop")
    )
    if resample:
        theta = geometry.to_theta(geometry.inverse_matrices(p, size), size)
        x = geometry.warp(x, theta, cfg.fill_mode, cfg.fill_value)
    elif cfg.horizontal_flip or cfg.vertical_flip:
        x = geometry.flip_only(x, p)
    if cfg.brightness > 0 or cfg.contrast > 0:
        x = photometric.brightness_contrast(x, p, cfg.brightness > 0, cfg.contrast > 0)
    if cfg.cutout > 0:
        x = photometric.cutout(x, p)
    return x


class BatchAugment:
    """Random training augmentation of whole batches; build once per run.

    All random numbers come from the ``torch.Generator`` passed to each call (normally a CPU
    generator seeded from the run seed), never from the global RNG, so a seed reproduces the
    same augmented batches on CPU and GPU alike.
    """

    def __init__(self, cfg: AugmentConfig, num_classes: int) -> None:
        self.cfg = resolve(cfg)
        # binary problems train one logit, but soft labels keep two columns (K=2)
        self.num_classes = max(int(num_classes), 2)

    @property
    def active(self) -> bool:
        return is_active(self.cfg)

    @property
    def mixes(self) -> bool:
        """True when targets come back as soft labels (N, K)."""
        return self.cfg.mixup > 0 or self.cfg.cutmix > 0

    def sample(self, n: int, size: tuple[int, int], gen: torch.Generator) -> AugmentParams:
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
        if self.mixes:
            out, target = mix_batch(out, y, self.num_classes, self.cfg.mixup, self.cfg.cutmix, gen)
        return _keep_format(out, x), target
