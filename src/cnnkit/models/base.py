"""The one interface every cnnkit model has.

``features`` maps images (N, C, H, W) to whatever the head consumes; ``head`` maps that to
logits (N, num_outputs).  ``gradcam_layer`` is the module whose output Grad-CAM explains
(the last spatial feature map).  Binary problems use a single logit (sigmoid + binary
cross-entropy, as Keras' ``Dense(1, activation='sigmoid')``); others use one logit a class.
"""

from __future__ import annotations

import torch
from torch import nn


def num_outputs(num_classes: int) -> int:
    """Two classes -> one sigmoid logit; otherwise one logit per class."""
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    return 1 if num_classes == 2 else num_classes


def logits_to_probs(logits: torch.Tensor) -> torch.Tensor:
    """(N, 1) binary logits -> (N, 2) probabilities; (N, K) -> softmax (N, K)."""
    logits = logits.float()
    if logits.shape[1] == 1:
        p1 = torch.sigmoid(logits)
        return torch.cat([1 - p1, p1], dim=1)
    return torch.softmax(logits, dim=1)


class CNNKitModel(nn.Module):
    """features -> head, with a replaceable head and a named Grad-CAM layer."""

    def __init__(self, features: nn.Module, head: nn.Module, gradcam_layer: nn.Module | None = None):
        super().__init__()
        self.features = features
        self.head = head
        self._gradcam_layer = [gradcam_layer]  # list: keep it out of the module tree (no double registration)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @property
    def gradcam_layer(self) -> nn.Module:
        layer = self._gradcam_layer[0]
        if layer is None:
            raise AttributeError(f"{type(self).__name__} has no spatial layer for Grad-CAM")
        return layer

    def head_in_features(self) -> int:
        last = [m for m in self.head.modules() if isinstance(m, nn.Linear)][-1]
        return last.in_features

    def reset_head(self, num_classes: int) -> None:
        """Replace the final Linear layer with a fresh one for ``num_classes`` classes."""
        for name, module in reversed(list(self.head.named_modules())):
            if isinstance(module, nn.Linear):
                new = nn.Linear(module.in_features, num_outputs(num_classes))
                parent = self.head
                *path, leaf = name.split(".") if name else [""]
                if not name:  # the head itself is the Linear
                    self.head = new
                    return
                for part in path:
                    parent = getattr(parent, part)
                setattr(parent, leaf, new)
                return
        raise TypeError("head has no Linear layer to reset")
