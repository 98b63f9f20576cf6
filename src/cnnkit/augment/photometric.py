"""Per-image colour changes and cutout, vectorised over the batch (x: (N,C,H,W) in [0, 1])."""

from __future__ import annotations

from typing import Any

import torch

# ITU-R 601 luma with the rounding torchvision's rgb_to_grayscale uses (adjust_contrast)
_LUMA = (0.2989, 0.587, 0.114)


def _per_image(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N,) parameter -> (N,1,1,1) on x's device and dtype, for broadcasting."""
    return v.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision ColorJitter brightness: clamp(x * b) with b (N,) per image."""
    return (x * _per_image(factor, x)).clamp(0.0, 1.0)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision ColorJitter contrast: clamp(c * x + (1 - c) * mean_grey(x)) with c (N,) per image."""
    if x.shape[1] == 3:
        luma = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        grey = (x * luma).sum(1, keepdim=True)
    else:
        grey = x.mean(1, keepdim=True)
    mean = grey.mean((-2, -1), keepdim=True)
    c = _per_image(factor, x)
    return (c * x + (1.0 - c) * mean).clamp(0.0, 1.0)


def box_bounds(cx: torch.Tensor, cy: torch.Tensor, bw: torch.Tensor, bh: torch.Tensor,
               size: tuple[int, int]) -> torch.Tensor:
    """(N, 4) int64 pixel bounds [x0, y0, x1, y1) (clipped to the image) of boxes whose centres
    (cx, cy) and sizes (bw, bh) are fractions of W/H; computed on the CPU (tiny).

    The centre may sit anywhere in the image, so a box can be cut off by the edge (as in
    DeVries & Taylor's cutout).
    """
    h, w = size
    x0 = torch.round(cx * w - bw * w / 2).long()
    y0 = torch.round(cy * h - bh * h / 2).long()
    x1 = x0 + torch.round(bw * w).long()
    y1 = y0 + torch.round(bh * h).long()
    return torch.stack([x0.clamp(0, w), y0.clamp(0, h), x1.clamp(0, w), y1.clamp(0, h)], dim=1)


def box_mask(bounds: torch.Tensor, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(N,1,H,W) bool masks of the boxes ``box_bounds`` returned, built directly on ``device``."""
    h, w = size
    b = bounds.to(device).view(-1, 4, 1, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    rows = torch.arange(h, device=device).view(1, h, 1)
    inside = (cols >= b[:, 0]) & (cols < b[:, 2]) & (rows >= b[:, 1]) & (rows < b[:, 3])
    return inside.unsqueeze(1)


def cutout(x: torch.Tensor, p: Any) -> torch.Tensor:
    """Erase one box per image, filled with that image's per-channel mean.

    The mean (rather than black) becomes ~0 after normalisation, like the original cutout that
    zeroed normalised pixels, without needing dataset statistics here.
    """
    n, _, h, w = x.shape
    mask = box_mask(box_bounds(p.cut_x, p.cut_y, p.cut_w, p.cut_h, (h, w)), (h, w), x.device)
    fill = x.mean((-2, -1), keepdim=True)
    return torch.where(mask, fill, x)
