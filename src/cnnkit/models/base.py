"""The one interface every cnnkit model has.

Every model - the tutorial nets, the fast nets, the pretrained backbones and custom networks -
splits the same way::

    features(x)   (N, C, H, W) -> (N, D)     the network up to its flatten or global pooling:
                                             the convolutional trunk, its output flattened
    head(f)       (N, D)       -> logits     the dense part: every Linear after the trunk, with
                                             its activations and dropout
    forward(x)  = head(features(x))

``num_features`` is D.  So ``features`` is what Keras' tutorials call the bottleneck features
(the input of the "top model"), the head of ``simple-cnn`` is its Dense 128 - Dense 512 - Dense 1,
and the head of ``mlp`` is all three of its Dense layers (its trunk is just the Flatten).
``reset_head(num_classes)`` replaces the head's last Linear (the classifier) with a fresh one and
keeps any hidden dense layers; ``param_groups(lr)`` gives the optimizer its parameter groups;
``gradcam_layer`` is the module whose output Grad-CAM explains (the last spatial map) and
``default_config`` the input the model expects (:class:`ModelDefaults`).

Two classes use one sigmoid logit (binary cross-entropy, Keras' ``Dense(1, activation='sigmoid')``)
or, where the model's definition or ``ModelConfig.binary_output`` says so, two softmax logits;
more classes use one logit a class.  Everything downstream reads which from the logits' width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnkit.config import BINARY_OUTPUTS
from cnnkit.errors import ConfigError


@dataclass(frozen=True)
class ModelDefaults:
    """The input a model expects, known before it is built (``cnnkit.models.default_config``).

    ``None`` means the model takes what the data gives: any size, any channel count, the
    training images' own mean/std.  A pretrained backbone fixes all of them.
    """

    input_size: tuple[int, int] | None = None  # preferred (H, W), used unless --image-size is set
    channels: int | None = None  # required channel count (3 for ImageNet backbones)
    mean: tuple[float, ...] | None = None  # per-channel input normalisation on the [0, 1] scale
    std: tuple[float, ...] | None = None
    interpolation: str = "bilinear"  # how images are resized to input_size (the decoder's antialiased bilinear)


def check_binary_output(binary: str) -> str:
    """``binary`` if it is one of :data:`BINARY_OUTPUTS`, else the ConfigError naming the choices."""
    if binary not in BINARY_OUTPUTS:
        raise ConfigError(f"binary_output {binary!r}: choose one of {', '.join(BINARY_OUTPUTS)}")
    return binary


def num_outputs(num_classes: int, binary: str = "sigmoid") -> int:
    """Logits a model needs: two classes -> 1 (``"sigmoid"``) or 2 (``"softmax"``); else one a class."""
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    check_binary_output(binary)
    return 1 if num_classes == 2 and binary == "sigmoid" else num_classes


def logits_to_probs(logits: torch.Tensor) -> torch.Tensor:
    """(N, 1) binary logits -> (N, 2) probabilities; (N, K) -> softmax (N, K)."""
    logits = logits.float()
    if logits.shape[1] == 1:
        p1 = torch.sigmoid(logits)
        return torch.cat([1 - p1, p1], dim=1)
    return torch.softmax(logits, dim=1)


def last_linear(module: nn.Module) -> tuple[str, nn.Linear] | None:
    """(dotted name, layer) of the last ``nn.Linear`` in module order, or None."""
    found = None
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            found = (name, m)
    return found


def replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule ``name`` (dotted, non-empty) of ``root`` is."""
    *path, leaf = name.split(".")
    parent = root.get_submodule(".".join(path)) if path else root
    setattr(parent, leaf, new)


class CNNKitModel(nn.Module):
    """``features`` -> ``head``, with a replaceable classifier, a Grad-CAM layer and input defaults.

    ``binary_output`` is ``"softmax"`` for a model whose definition fixes two softmax logits for
    two classes, ``"sigmoid"`` for one logit, None to follow ``ModelConfig.binary_output``
    (``build_model`` resolves it).
    """

    def __init__(self, features: nn.Module, head: nn.Module, gradcam_layer: nn.Module | None = None,
                 defaults: ModelDefaults | None = None, binary_output: str | None = None,
                 num_features: int | None = None):
        super().__init__()
        self.features = features
        self.head = head
        self._setup(gradcam_layer, defaults, binary_output, num_features)

    def _setup(self, gradcam_layer: nn.Module | None, defaults: ModelDefaults | None, binary_output: str | None,
               num_features: int | None) -> None:
        """The attributes that are not submodules (subclasses that lay out their modules themselves call this)."""
        self._gradcam_layer = [gradcam_layer]  # list: keep it out of the module tree (no double registration)
        self.default_config = defaults if defaults is not None else ModelDefaults()
        self.binary_output = binary_output
        self._num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @property
    def gradcam_layer(self) -> nn.Module:
        layer = self._gradcam_layer[0]
        if layer is None:
            raise AttributeError(f"{type(self).__name__} has no spatial layer for Grad-CAM")
        return layer

    @property
    def num_features(self) -> int:
        """D, the width of ``features(x)``: the input width of the head's first Linear."""
        if self._num_features is not None:
            return self._num_features
        first = next((m for m in self.head.modules() if isinstance(m, nn.Linear)), None)
        if first is None:
            raise AttributeError(f"{type(self).__name__}: its head has no Linear layer")
        return first.in_features

    @property
    def input_norm(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(mean, std) the weights expect (pretrained backbones), None = the data's own statistics."""
        d = self.default_config
        return (d.mean, d.std) if d.mean is not None and d.std is not None else None

    def reset_head(self, num_classes: int, binary: str | None = None) -> None:
        """Replace the classifier (the head's last Linear) with a fresh one for ``num_classes`` classes.

        Hidden dense layers keep their weights.  ``binary`` chooses one sigmoid or two softmax
        logits for two classes; by default the model's own ``binary_output``, else sigmoid.
        """
        found = last_linear(self.head)
        if found is None:
            raise ConfigError(f"{type(self).__name__}: its head has no nn.Linear layer to replace")
        name, layer = found
        new = nn.Linear(layer.in_features, num_outputs(num_classes, binary or self.binary_output or "sigmoid"),
                        device=layer.weight.device, dtype=layer.weight.dtype)
        if name:
            replace_module(self.head, name, new)
        else:  # the head itself is the Linear
            self.head = new

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups: every trainable parameter at ``lr`` (transfer models differ)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]
