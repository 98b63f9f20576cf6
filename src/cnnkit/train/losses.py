"""Binary or categorical cross-entropy, chosen by the model's output width.

One logit (N, 1) is a sigmoid output: binary cross-entropy.  K logits (N, K) are softmax outputs:
categorical cross-entropy - two classes included, when a model gives two softmax logits
(``catdog-cnn``, or ``ModelConfig.binary_output="softmax"``).  Keras tutorials that train two
softmax outputs with ``loss="binary_crossentropy"`` against one-hot labels (the KDnuggets
cats-vs-dogs net) compute the same number: with p1 = 1 - p0 and y1 = 1 - y0 both columns'
binary cross-entropies equal -y0 log p0 - y1 log p1, so their mean is the categorical one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """logits (N,1) -> binary cross-entropy; (N,K) -> categorical.

    target is int64 (N,) class indices or float (N,K) soft labels (mixup/cutmix; K=2 for binary).
    """
    logits = logits.float()
    if logits.shape[1] == 1:
        p = target[:, 1].float() if target.ndim == 2 else target.float()
        if label_smoothing:
            p = p * (1 - label_smoothing) + 0.5 * label_smoothing
        return F.binary_cross_entropy_with_logits(logits[:, 0], p)
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)


def predicted_class(logits: torch.Tensor) -> torch.Tensor:
    """(N,1) -> 0/1 by sign; (N,K) -> argmax."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def hard_labels(target: torch.Tensor) -> torch.Tensor:
    return target.argmax(dim=1) if target.ndim == 2 else target
