"""Bottleneck features: run the frozen backbone once, cache its outputs, train the head on them.

This is the recipe of Keras' "bottleneck features" tutorial (VGG16 on cats vs dogs): with the
backbone frozen and no augmentation, every epoch would recompute the same features, so they are
computed once - ``model.features(images)``, (N, D) float32 - written to disk and reused by later
runs.  The head then trains through the ordinary :func:`cnnkit.train.loop.fit` with a
:class:`~cnnkit.data.loader.BatchLoader` over the cached rows and :class:`IdentityInputs` (the features need no
scaling or normalising); an epoch costs a few matrix products instead of a backbone pass.
The head is a submodule of the full model, so the checkpoints written during ``fit`` are the
full model (backbone + trained head) and predict/serve/explain use them as any other.

Cache layout under the cache root (``DataConfig.cache_dir``, else ``$CNNKIT_CACHE_DIR``, else
``~/.cache/cnnkit``)::

    features/<backbone>-<key>.npy    (N, D) float32, written atomically

``<key>`` hashes everything the features depend on: the backbone's weights (so ``--weights``,
``--cut`` and pretrained weights give different entries), the image bytes and shape (so another
dataset, split or image size does too), the input normalisation and the autocast dtype.
Labels are not part of it: features do not depend on them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnkit.data.loader import BatchLoader
from cnnkit.data.types import DataSplits, ImageSet
from cnnkit.errors import ConfigError
from cnnkit.io import atomic_path
from cnnkit.runtime import autocast

log = logging.getLogger("cnnkit")

FEATURES_VERSION = 1
EXTRACT_BATCH = 64  # images per backbone pass: bounds activation memory at 224-299 px


class IdentityInputs:
    """``fit``'s inputs object for ready-made features: no scaling, no normalising."""

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x


@torch.no_grad()
def compute_features(model: nn.Module, images: ImageSet, inputs: Any, device: torch.device,
                     amp: torch.dtype | None = None, batch_size: int = EXTRACT_BATCH) -> np.ndarray:
    """``model.features`` of every image, in order: (N, D) float32 (eval mode: BatchNorm running stats)."""
    model.eval()
    out = []
    for xb, _ in BatchLoader(images, batch_size, device).batches(0):
        with autocast(device, amp):
            f = model.features(inputs(xb))
        out.append(f.float().flatten(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _update_tensor(h: "hashlib._Hash", t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)  # raw bytes (any dtype, 0-d included)


def features_key(model: nn.Module, images: ImageSet, amp: torch.dtype | None, norm: Any = None) -> str:
    """Content hash of (backbone weights and structure, images, normalisation, autocast dtype)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"v{FEATURES_VERSION}|{getattr(model, 'backbone', type(model).__name__)}|{amp}|{norm}".encode())
    h.update(repr(model.features).encode())  # the layers kept (--cut) and the pooling
    for name, t in model.features.state_dict().items():
        h.update(name.encode())
        _update_tensor(h, t)
    arr = np.ascontiguousarray(images.images)
    h.update(f"{arr.shape}".encode())
    step = 1 << 26  # hash in 64 MiB slices: no second copy of a large memmap in memory
    flat = arr.reshape(-1)
    for i in range(0, flat.size, step):
        h.update(flat[i:i + step].data)
    return h.hexdigest()


def cached_features(model: nn.Module, images: ImageSet, inputs: Any, device: torch.device,
                    amp: torch.dtype | None, cache_dir: str | Path) -> tuple[np.ndarray, dict]:
    """Features of ``images`` from the cache, else computed and cached; returns (features, info)."""
    t0 = time.perf_counter()
    key = features_key(model, images, amp, model.input_norm)
    path = Path(cache_dir) / "features" / f"{getattr(model, 'backbone', 'model')}-{key}.npy"
    feats = None
    if path.is_file():
        try:
            feats = np.load(path)
        except (OSError, ValueError) as exc:  # a damaged entry is rebuilt, not fatal
            log.warning("features cache %s unreadable (%s): recomputing", path, exc)
        if feats is not None and feats.shape[0] != len(images):
            log.warning("features cache %s has %d rows for %d images: recomputing", path, feats.shape[0], len(images))
            feats = None
    reused = feats is not None
    if feats is None:
        feats = compute_features(model, images, inputs, device, amp)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, feats)
    seconds = time.perf_counter() - t0
    log.info("features: %s %d x %d in %.1fs (%s)", "reused" if reused else "computed", *feats.shape, seconds, path)
    return feats, {"path": str(path), "reused": reused, "seconds": round(seconds, 3), "shape": list(feats.shape)}


@dataclass
class FeatureSetup:
    """What ``fit`` gets in features mode instead of the image model and loaders."""

    head: nn.Module
    inputs: IdentityInputs
    train: BatchLoader
    val: BatchLoader | None
    info: dict[str, Any] = field(default_factory=dict)


def feature_training(model: nn.Module, splits: DataSplits, inputs: Any, device: torch.device,
                     amp: torch.dtype | None, cache_dir: str | Path, batch_size: int, eval_batch_size: int,
                     seed: int, augment: Any = None, world: int = 1) -> FeatureSetup:
    """Cached train/val features and loaders over them, for training ``model.head`` with ``fit``."""
    if augment is not None:
        raise ConfigError("--transfer features trains on bottleneck features computed once, so it cannot "
                          "augment images: drop the augmentation flags, or use --transfer head")
    if world > 1:
        raise ConfigError("--transfer features runs in one process (the head trains in seconds): "
                          "start it without torchrun")
    info: dict[str, Any] = {"backbone": getattr(model, "backbone", ""), "splits": {}}
    train_feats, info["splits"]["train"] = cached_features(model, splits.train, inputs, device, amp, cache_dir)
    train = BatchLoader((train_feats, splits.train.labels), batch_size, device, shuffle=True, seed=seed)
    val = None
    if splits.val is not None and len(splits.val):
        val_feats, info["splits"]["val"] = cached_features(model, splits.val, inputs, device, amp, cache_dir)
        val = BatchLoader((val_feats, splits.val.labels), eval_batch_size, device)
    info["seconds"] = round(sum(s["seconds"] for s in info["splits"].values()), 3)
    return FeatureSetup(model.head, IdentityInputs(), train, val, info)


def features_cache_dir(cache_dir: str | None) -> Path:
    """The features cache lives beside the decoded-image cache."""
    from cnnkit.data.cache import cache_root

    return cache_root(cache_dir)
