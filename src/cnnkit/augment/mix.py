"""Mixup and CutMix: mix each image with a partner from the same batch, soft targets.

One mixing weight ``lam ~ Beta(a, a)`` and one partner permutation per batch (as in the
mixup and CutMix papers and timm).  When both are on, each batch uses one of them with
probability 1/2.  Targets: ``lam * onehot(y) + (1 - lam) * onehot(y[perm])``, shape (N, K).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from cnnkit.augment.photometric import box_bounds, box_mask


def _beta(a: float, gen: torch.Generator) -> float:
    """One Beta(a, a) draw, seeded from ``gen`` (torch has no generator-aware Beta sampler)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
    return float(np.random.default_rng(seed).beta(a, a))


def mix_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup: float, cutmix: float,
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (N,C,H,W), y: int64 (N,) -> (mixed x, float32 soft targets (N, num_classes))."""
    n, _, h, w = x.shape
    perm = torch.randperm(n, generator=gen, device=gen.device).cpu()
    use_cutmix = cutmix > 0 and (mixup <= 0 or float(torch.rand(1, generator=gen, device=gen.device)) < 0.5)
    lam = _beta(cutmix if use_cutmix else mixup, gen)
    perm_dev = perm.to(x.device)
    partner = x.index_select(0, perm_dev)
    if use_cutmix:
        # box of area (1 - lam), centre uniform; lam is then corrected to the area actually kept
        centre = torch.rand(2, generator=gen, device=gen.device).cpu()
        side = math.sqrt(1.0 - lam)
        one = torch.ones(1)
        bounds = box_bounds(centre[0:1], centre[1:2], side * one, side * one, (h, w))
        x = torch.where(box_mask(bounds, (h, w), x.device), partner, x)
        x0, y0, x1, y1 = bounds[0].tolist()
        lam = 1.0 - (x1 - x0) * (y1 - y0) / (h * w)  # from the CPU bounds: no device sync
    else:
        x = lam * x + (1.0 - lam) * partner
    onehot = F.one_hot(y, num_classes).float()
    target = lam * onehot + (1.0 - lam) * onehot.index_select(0, perm_dev.to(onehot.device))
    return x, target
