"""Batch augmentation on the training device (airbench style), Keras ImageDataGenerator names.

Public API (the training loop uses exactly these):

    resolve(cfg) -> AugmentConfig          preset values overridden by explicit settings
    BatchAugment(cfg, num_classes)          x, target = aug(x, y, generator); aug.active
    tta_views(x, mode="flip") -> [views]    identity first; "flip" or "flip-shift"

Each augmentation is one object in :data:`TRANSFORMS` (:mod:`cnnkit.augment.transforms`), and
:class:`AugmentConfig` is assembled from that list.  Presets are listed in
:mod:`cnnkit.augment.presets`.  The torch-based names are imported on first use (PEP 562) so
that the config and the command-line parser load without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cnnkit.augment.presets import FILL_MODES, PRESETS, TTA_MODES, is_active, resolve, validate
from cnnkit.augment.transforms import TRANSFORMS, AugmentConfig, Geometric, Mixing, Transform, augment_config

if TYPE_CHECKING:
    from cnnkit.augment.batch import BatchAugment, apply_params
    from cnnkit.augment.params import AugmentParams, sample_params
    from cnnkit.augment.tta import tta_views

_LAZY = {
    "BatchAugment": "cnnkit.augment.batch",
    "apply_params": "cnnkit.augment.batch",
    "AugmentParams": "cnnkit.augment.params",
    "sample_params": "cnnkit.augment.params",
    "tta_views": "cnnkit.augment.tta",
}

__all__ = ["FILL_MODES", "PRESETS", "TRANSFORMS", "TTA_MODES", "AugmentConfig", "Geometric", "Mixing", "Transform",
           "augment_config", "is_active", "resolve", "validate",
           "BatchAugment", "apply_params", "AugmentParams", "sample_params", "tta_views"]  # the lazy ones (_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnkit.augment' has no attribute {name!r}")
