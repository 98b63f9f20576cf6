"""Geometric transforms: one inverse affine matrix per image, one ``grid_sample`` per batch.

Matrices map *output* pixel positions to the *input* positions they sample from (what
``F.affine_grid`` wants and what Keras/scipy ``affine_transform`` use).  They are built in
centred pixel coordinates ``(x, y) = (col - (W-1)/2, row - (H-1)/2)`` and composed as Keras
composes them, then the random-resized-crop window and the flips are added (each matrix is
written by its transform in :mod:`cnnkit.augment.transforms`):

    input = Crop @ Rotation @ Shift @ Shear @ Zoom @ Flip @ output

One convention, Keras' own (Keras >= 2.4 swaps its matrices onto (col, row) before scipy
resamples, so they act on (x, y) with y pointing down, as here): a positive rotation turns the
content counter-clockwise on the displayed image (90 degrees is ``np.rot90``); shear is
horizontal (rows slide sideways, rows above the centre go left for a positive angle); the width
shift moves content horizontally and the height shift vertically (Keras 3 swaps these two, a bug
not copied); a zoom factor z > 1 shows more of the image (content shrinks by 1/z).  Keras puts the
centre at ``size/2 + 0.5``; here it is the true pixel centre ``(size-1)/2``, so a rotation keeps
the middle pixel in place.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

PADDING = {"nearest": "border", "reflect": "reflection"}  # 'constant' is a mask over 'border' (warp)


def to_theta(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centred-pixel (N,3,3) matrices -> (N,2,3) ``affine_grid`` thetas (align_corners=False).

    With align_corners=False a normalised coordinate is centred_pixel * 2/size, so
    theta = S m S^-1 with S = diag(2/W, 2/H, 1).
    """
    h, w = size
    s = np.diag([2.0 / w, 2.0 / h, 1.0])
    s_inv = np.diag([w / 2.0, h / 2.0, 1.0])
    return torch.from_numpy((s @ m.double().numpy() @ s_inv)[:, :2, :])


def affine_grid(theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Same result as ``F.affine_grid(theta, (N, C, H, W), align_corners=False)``: (N, H, W, 2).

    Built by broadcasting x and y coordinate vectors instead of a batched matmul over a
    (N, H*W, 3) base grid: on the CPU that is ~3x faster and, unlike affine_grid, does not slow
    down with more threads (measured in benchmarks/bench_augment.py's setting).
    """
    h, w = size
    xs = (torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1  # pixel centres
    ys = (torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1
    t = theta.reshape(-1, 6, 1, 1)
    xs, ys = xs.view(1, 1, w), ys.view(1, h, 1)
    gx = t[:, 0] * xs + t[:, 1] * ys + t[:, 2]
    gy = t[:, 3] * xs + t[:, 4] * ys + t[:, 5]
    return torch.stack([gx, gy], dim=-1)


def warp(x: torch.Tensor, theta: torch.Tensor, fill_mode: str = "nearest", fill_value: float = 0.0) -> torch.Tensor:
    """Resample x (N,C,H,W) with thetas (N,2,3): one grid + one grid_sample per batch, bilinear.

    align_corners=False samples pixel centres exactly, so an identity/flip/90-degree theta is
    an exact pixel permutation, and 'reflection' then mirrors about the image edge like
    scipy's (and Keras') 'reflect'.  'constant' cuts hard, as scipy's 'constant' mode does: an
    output pixel whose sampling point's nearest input pixel lies outside the image is exactly
    ``fill_value``; every other one interpolates image pixels only (edge-clamped), so no ring
    blends the fill into the image.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        # a half-precision grid is off by up to ~0.1 px on 150-px images: resample in float32
        return warp(x.float(), theta, fill_mode, fill_value).to(x.dtype)
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = affine_grid(theta, (int(x.shape[-2]), int(x.shape[-1])))  # (N, H, W, 2) in [-1, 1] = inside
    if fill_mode == "constant":
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        # normalised -1 and 1 are the outer edges of the first and last pixels: the nearest pixel of a
        # point is inside exactly when the point is in [-1, 1) (pixel centres round half up)
        inside = ((grid >= -1) & (grid < 1)).all(dim=-1).unsqueeze(1)  # (N, 1, H, W)
        return torch.where(inside, out, torch.as_tensor(fill_value, dtype=x.dtype, device=x.device))
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=PADDING[fill_mode], align_corners=False)


def flip_only(x: torch.Tensor, p: Any) -> torch.Tensor:
    """Exact per-image flips without resampling, for configs whose only geometry is flipping."""
    out = x
    if bool(p.flip_h.any()):
        mask = p.flip_h.to(x.device).bool().view(-1, 1, 1, 1)
        out = torch.where(mask, out.flip(-1), out)
    if bool(p.flip_v.any()):
        mask = p.flip_v.to(x.device).bool().view(-1, 1, 1, 1)
        out = torch.where(mask, out.flip(-2), out)
    return out
