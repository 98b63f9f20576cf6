"""Geometric transforms: one inverse affine matrix per image, one ``grid_sample`` per batch.

Matrices map *output* pixel positions to the *input* positions they sample from (what
``F.affine_grid`` wants and what Keras/scipy ``affine_transform`` use).  They are built in
centred pixel coordinates ``(x, y) = (col - (W-1)/2, row - (H-1)/2)`` and composed as Keras
composes them, then the random-resized-crop window and the flips are added:

    input = Crop @ Rotation @ Shift @ Shear @ Zoom @ Flip @ output

Keras works in (row, col) order; the matrices below are the same maps written in (x, y).
Keras puts the centre at ``size/2 + 0.5``; here it is the true pixel centre ``(size-1)/2``,
so a rotation keeps the middle pixel in place.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cnnkit.augment.params import AugmentParams

PADDING = {"nearest": "border", "reflect": "reflection", "constant": "zeros"}


def _mat(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray,
         tx: np.ndarray | float = 0.0, ty: np.ndarray | float = 0.0) -> np.ndarray:
    """(N, 3, 3) homogeneous matrices [[a, b, tx], [c, d, ty], [0, 0, 1]] from (N,) arrays."""
    m = np.zeros((len(a), 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = a, b, tx
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = c, d, ty
    m[:, 2, 2] = 1.0
    return m


def inverse_matrices(p: AugmentParams, size: tuple[int, int]) -> torch.Tensor:
    """(N, 3, 3) float64 output->input maps in centred pixel coordinates (x right, y down).

    Composed in numpy: a handful of 3x3 products per image is far below torch's per-op cost.
    """
    h, w = size
    q = {name: getattr(p, name).double().numpy() for name in p.__dataclass_fields__}
    theta = np.deg2rad(q["angle"])
    shear = np.deg2rad(q["shear"])
    cos, sin = np.cos(theta), np.sin(theta)
    one, zero = np.ones_like(theta), np.zeros_like(theta)

    # Keras rotation [[cos, -sin], [sin, cos]] on (row, col) == [[cos, sin], [-sin, cos]] on (x, y)
    rotation = _mat(cos, sin, -sin, cos)
    # content moves by +shift, so the output samples the input at -shift
    shift = _mat(one, zero, zero, one, -q["shift_x"] * w, -q["shift_y"] * h)
    # Keras shear [[1, -sin s], [0, cos s]] on (row, col) == [[cos s, 0], [-sin s, 1]] on (x, y)
    shear_m = _mat(np.cos(shear), zero, -np.sin(shear), one)
    zoom = _mat(q["zoom_x"], zero, zero, q["zoom_y"])
    flip = _mat(1.0 - 2.0 * q["flip_h"], zero, zero, 1.0 - 2.0 * q["flip_v"])
    crop = _mat(q["crop_w"], zero, zero, q["crop_h"], q["crop_x"] * w, q["crop_y"] * h)
    return torch.from_numpy(crop @ rotation @ shift @ shear_m @ zoom @ flip)


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
    scipy's (and Keras') 'reflect'.  'constant' with a non-zero fill is done by shifting the
    image so that grid_sample's zero padding lands on fill_value.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        # a half-precision grid is off by up to ~0.1 px on 150-px images: resample in float32
        return warp(x.float(), theta, fill_mode, fill_value).to(x.dtype)
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = affine_grid(theta, (int(x.shape[-2]), int(x.shape[-1])))
    if fill_mode == "constant" and fill_value != 0.0:
        out = F.grid_sample(x - fill_value, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out + fill_value
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=PADDING[fill_mode], align_corners=False)


def flip_only(x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    """Exact per-image flips without resampling, for configs whose only geometry is flipping."""
    out = x
    if bool(p.flip_h.any()):
        mask = p.flip_h.to(x.device).bool().view(-1, 1, 1, 1)
        out = torch.where(mask, out.flip(-1), out)
    if bool(p.flip_v.any()):
        mask = p.flip_v.to(x.device).bool().view(-1, 1, 1, 1)
        out = torch.where(mask, out.flip(-2), out)
    return out
