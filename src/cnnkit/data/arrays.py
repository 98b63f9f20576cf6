"""Shape coercion and splitting for in-memory uint8 image arrays."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cnnkit.data.types import DataSplits, ImageSet


def coerce_channels(images: np.ndarray, channels: int | None) -> np.ndarray:
    """(N,H,W,C) uint8 -> (N,H,W,channels): grey->RGB by repetition, RGB->grey by ITU-R 601 luma."""
    c = images.shape[3]
    if channels is None or channels == c:
        return images
    if c == 1 and channels == 3:
        return np.repeat(images, 3, axis=3)
    if c == 3 and channels == 1:
        luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
    raise ValueError(f"cannot convert {c} channels to {channels}")


def resize_array(images: np.ndarray, size: tuple[int, int] | None, chunk: int = 4096) -> np.ndarray:
    """Bilinear (antialiased) resize of (N,H,W,C) uint8 to (N,size[0],size[1],C)."""
    if size is None or tuple(images.shape[1:3]) == tuple(size):
        return images
    out = np.empty((len(images), size[0], size[1], images.shape[3]), np.uint8)
    for i in range(0, len(images), chunk):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + chunk])).permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
        out[i:i + chunk] = y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def conform(images: np.ndarray, size: tuple[int, int] | None, channels: int | None) -> np.ndarray:
    return resize_array(coerce_channels(images, channels), size)


def conform_splits(splits: DataSplits, size: tuple[int, int] | None, channels: int | None) -> DataSplits:
    """Every split of ``splits`` at ``size`` and ``channels`` (unchanged where they already match)."""
    def fix(s: ImageSet | None) -> ImageSet | None:
        if s is None:
            return None
        return ImageSet(conform(s.images, size, channels), s.labels, s.classes, s.paths)

    return DataSplits(fix(splits.train), fix(splits.val), fix(splits.test), splits.skipped)


def split_counts(n: int, fractions: list[float]) -> list[int]:
    """Images of a class of ``n`` for each fraction: rounded, but at least one for every fraction
    above 0 while one image is still left to train on (2 images at 0.1 give 1 validation image, not
    none; 1 image gives none)."""
    counts = [int(round(f * n)) for f in fractions]
    for k, f in enumerate(fractions):
        if f > 0 and counts[k] == 0 and n - sum(counts) >= 2:
            counts[k] = 1
    return counts


def stratified_split(labels: np.ndarray, fractions: list[float], seed: int) -> list[np.ndarray]:
    """Split indices into len(fractions)+1 parts (rest first), stratified by label, reproducible."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        start = 0
        counts = split_counts(len(idx), fractions)
        rest = len(idx) - sum(counts)
        bounds = [rest] + counts
        for k, n in enumerate(bounds):
            parts[k].append(idx[start:start + n])
            start += n
    return [np.sort(np.concatenate(p)) if p else np.array([], np.int64) for p in parts]


def split_set(data: ImageSet, val: float, test: float, seed: int) -> DataSplits:
    """One labelled set -> train/val/test by stratified fractions."""
    fractions = [f for f in (val, test)]
    train_idx, val_idx, test_idx = stratified_split(data.labels, fractions, seed)
    return DataSplits(
        train=data.subset(train_idx),
        val=data.subset(val_idx) if len(val_idx) else None,
        test=data.subset(test_idx) if len(test_idx) else None,
    )
