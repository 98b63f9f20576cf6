"""Binary or categorical cross-entropy, chosen by the model's output width.

One logit (N, 1) is a sigmoid output: binary cross-entropy.  K logits (N, K) are softmax outputs:
categorical cross-entropy - two classes included, when a model gives two softmax logits
(``catdog-cnn``, or ``ModelConfig.binary_output="softmax"``).  Keras tutorials that train two
softmax outputs with ``loss="binary_crossentropy"`` against one-hot labels (the KDnuggets
cats-vs-dogs net) compute the same number: with p1 = 1 - p0 and y1 = 1 - y0 both columns'
binary cross-entropies equal -y0 log p0 - y1 log p1, so their mean is the categorical one.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

IMBALANCE_RATIO = 1.5  # largest over smallest training class count above which `auto` weights the loss


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0,
                  class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """logits (N,1) -> binary cross-entropy; (N,K) -> categorical.

    target is int64 (N,) class indices or float (N,K) soft labels (mixup/cutmix; K=2 for binary).
    ``class_weights`` (K,) weight each true class (K=2 for one logit: the positive class then
    weighs ``w[1] / w[0]`` times the negative one, BCE's ``pos_weight``).
    """
    logits = logits.float()
    if logits.shape[1] == 1:
        p = target[:, 1].float() if target.ndim == 2 else target.float()
        if label_smoothing:
            p = p * (1 - label_smoothing) + 0.5 * label_smoothing
        pos_weight = None if class_weights is None else (class_weights[1] / class_weights[0]).to(logits.device)
        return F.binary_cross_entropy_with_logits(logits[:, 0], p, pos_weight=pos_weight)
    weight = None if class_weights is None else class_weights.to(logits.device, torch.float32)
    return F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing)


def imbalance(counts: Sequence[int]) -> float:
    """Largest over smallest class count (inf when a class has no images)."""
    counts = [int(c) for c in counts]
    return math.inf if min(counts) == 0 else max(counts) / min(counts)


def class_weights(counts: Sequence[int], mode: str) -> torch.Tensor | None:
    """Loss weights n / (K * n_k) for ``balanced`` (and ``auto`` when the counts are imbalanced,
    ratio > IMBALANCE_RATIO); None (plain loss) for ``none`` or balanced-enough data."""
    if mode == "none" or (mode == "auto" and imbalance(counts) <= IMBALANCE_RATIO):
        return None
    n = torch.tensor([float(c) for c in counts], dtype=torch.float64)
    return (n.sum() / (len(n) * n.clamp(min=1))).float()


def predicted_class(logits: torch.Tensor) -> torch.Tensor:
    """(N,1) -> 0/1 by sign; (N,K) -> argmax."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def hard_labels(target: torch.Tensor) -> torch.Tensor:
    return target.argmax(dim=1) if target.ndim == 2 else target
