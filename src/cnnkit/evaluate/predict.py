"""Model outputs for whole image sets (optionally with test-time augmentation)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cnnkit.data.loader import BatchLoader
from cnnkit.models.base import logits_to_probs
from cnnkit.runtime import autocast


@torch.no_grad()
def predict_probs(model: torch.nn.Module, loader: BatchLoader, inputs: Any, amp: torch.dtype | None = None,
                  tta: str | None = None) -> np.ndarray:
    """(N,K) class probabilities for every image of ``loader`` in order (K=2 for binary models).

    ``tta`` names a set of views (see cnnkit.augment.tta_views); their probabilities are averaged.
    """
    model.eval()
    out = []
    for xb, _ in loader.batches(0):
        x = inputs.scale(xb)
        views = [x]
        if tta:
            from cnnkit.augment import tta_views

            views = tta_views(x, tta)
        probs = 0
        for v in views:
            with autocast(loader.device, amp):
                logits = model(inputs.normalize(v))
            probs = probs + logits_to_probs(logits)
        out.append((probs / len(views)).cpu().numpy())
    k = out[0].shape[1] if out else 0
    return np.concatenate(out) if out else np.zeros((0, k), np.float32)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, loader: BatchLoader, inputs: Any,
                   amp: torch.dtype | None = None) -> np.ndarray:
    """(N,1) or (N,K) raw float32 logits for every image of ``loader`` in order (for calibration)."""
    model.eval()
    out = []
    for xb, _ in loader.batches(0):
        with autocast(loader.device, amp):
            out.append(model(inputs(xb)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)
