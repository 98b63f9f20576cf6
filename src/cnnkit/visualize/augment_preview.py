"""A picture of what augmentation does: each row is one image, then ``n_aug`` augmented copies.

Uses the very code path training uses (``BatchAugment`` on a [0, 1] float batch), so what you
see is what the model sees (before normalisation).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from cnnkit.augment import BatchAugment, resolve
from cnnkit.config import AugmentConfig, DataConfig
from cnnkit.errors import ConfigError, DataError
from cnnkit.io import atomic_write_bytes

PAD = 2  # pixels of white between tiles
MIN_TILE = 96  # small images (MNIST 28x28) are enlarged to at least this, nearest-neighbour


def augment_preview(images: np.ndarray, cfg: AugmentConfig, n_aug: int = 7, n_images: int = 4,
                    seed: int = 0) -> np.ndarray:
    """Grid of originals and augmented copies.

    images: uint8 (N, H, W, C); the first ``n_images`` are used.
    Returns uint8 (rows*H + (rows+1)*PAD, (n_aug+1)*W + (n_aug+2)*PAD, C), rows = min(N, n_images);
    column 0 holds the originals, columns 1..n_aug the augmented copies.
    """
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
    picked = images[:n_images]
    rows, h, w, c = picked.shape
    x = torch.from_numpy(np.ascontiguousarray(picked)).permute(0, 3, 1, 2).float() / 255.0  # (rows,C,H,W)
    batch = x.repeat_interleave(n_aug, dim=0)  # (rows*n_aug, C, H, W): copies of image 0, then 1, ...
    aug = BatchAugment(cfg, num_classes=2)
    labels = torch.zeros(len(batch), dtype=torch.int64)
    out, _ = aug(batch, labels, torch.Generator().manual_seed(seed))
    tiles = torch.cat([x[:, None], out.reshape(rows, n_aug, c, h, w)], dim=1)  # (rows, 1+n_aug, C, H, W)
    tiles = (tiles.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()

    grid = np.full((rows * h + (rows + 1) * PAD, (n_aug + 1) * w + (n_aug + 2) * PAD, c), 255, np.uint8)
    for r in range(rows):
        for k in range(n_aug + 1):
            top, left = PAD + r * (h + PAD), PAD + k * (w + PAD)
            grid[top : top + h, left : left + w] = tiles[r, k]
    return grid


def plot_augment_preview(images: np.ndarray, cfg: AugmentConfig, n_aug: int = 7, n_images: int = 4,
                         seed: int = 0, title: str | None = None) -> Figure:
    """The preview grid as a matplotlib Figure with a title naming the settings."""
    grid = augment_preview(images, cfg, n_aug, n_images, seed)
    fig = Figure(figsize=(min(2 + 1.2 * (n_aug + 1), 16), 1 + 1.2 * min(len(images), n_images)), layout="constrained")
    ax = fig.add_subplot()
    if grid.shape[2] == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title if title is not None else f"original | {n_aug} augmented ({_describe(cfg)})", fontsize=9)
    return fig


def _describe(cfg: AugmentConfig) -> str:
    """preset plus the effective non-default settings, e.g. 'standard: rotation_range=15, ...'."""
    resolved, default = resolve(cfg), type(cfg)()  # any config class augment_config made
    changed = [f"{k}={v}" for k, v in vars(resolved).items() if k != "preset" and v != getattr(default, k)]
    return f"{cfg.preset}: " + (", ".join(changed) if changed else "no augmentation")


def _pick(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` random images, spread over the classes (one per class before repeats)."""
    order = np.random.default_rng(seed).permutation(len(labels))
    firsts, rest, seen = [], [], set()
    for i in order:
        (rest if labels[i] in seen else firsts).append(i)
        seen.add(labels[i])
    return np.array((firsts + rest)[:n], dtype=np.int64)


def write_augment_preview(data: DataConfig, cfg: AugmentConfig, out: str | Path, n_aug: int = 7, n_images: int = 4,
                          seed: int = 0) -> Path:
    """Load ``data`` (training split), draw a preview of ``cfg`` and write it as an image file.

    Small images are enlarged (nearest neighbour) so each tile is at least MIN_TILE pixels.
    """
    from PIL import Image

    from cnnkit.data import load_data

    for flag, value in (("--n-images", n_images), ("--n-aug", n_aug)):
        if value < 1:  # else a blank strip or a numpy error deep in the grid
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    train = load_data(data).train
    if len(train) == 0:
        raise DataError(f"data {data.source!r}: no training images to preview")
    images = np.asarray(train.images[np.sort(_pick(train.labels, n_images, seed))])
    grid = augment_preview(images, cfg, n_aug=n_aug, n_images=n_images, seed=seed)
    h, w = images.shape[1:3]
    scale = max(1, -(-MIN_TILE // min(h, w)))
    picture = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    out = Path(out)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(out.suffix.lower(), "PNG")
    buf = io.BytesIO()
    picture.save(buf, format=fmt)
    atomic_write_bytes(out, buf.getvalue())
    return out
