"""Models by name.  ``MODELS`` is a plain dict from name to builder; nothing registers itself on import."""

from __future__ import annotations

from typing import Callable

from cnnkit.config import ModelConfig
from cnnkit.errors import ConfigError
from cnnkit.models import fast, zoo
from cnnkit.models.base import CNNKitModel, logits_to_probs, num_outputs

# builder(in_channels, num_classes, image_size, dropout) -> CNNKitModel
MODELS: dict[str, Callable[..., CNNKitModel]] = {
    "mlp": zoo.mlp,
    "lenet5": zoo.lenet5,
    "mnist-cnn": zoo.mnist_cnn,
    "simple-cnn": zoo.simple_cnn,
    "cifar-cnn": zoo.cifar_cnn,
    "cifar-cnn-bn": zoo.cifar_cnn_bn,
    "fast-cnn-small": fast.fast_cnn_small,
    "fast-cnn": fast.fast_cnn,
    "fast-cnn-wide": fast.fast_cnn_wide,
    "fashion-functional": zoo.fashion_functional,
}


def build_model(cfg: ModelConfig) -> CNNKitModel:
    """Build the model ``cfg.name`` for the configured input and class count."""
    if cfg.name in MODELS:
        try:
            return MODELS[cfg.name](cfg.in_channels, cfg.num_classes, tuple(cfg.image_size), dropout=cfg.dropout)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    from cnnkit.models import custom, transfer  # imported only when asked for

    if custom.is_import_path(cfg.name):  # "package.module:builder": a network in plain PyTorch
        return custom.build_custom(cfg)
    if cfg.name in transfer.BACKBONES:
        return transfer.build_transfer_model(cfg)
    known = ", ".join(sorted(MODELS) + sorted(transfer.BACKBONES))
    raise ConfigError(f"unknown model {cfg.name!r}; known models: {known}, or a builder of your own "
                      f"as 'module:function'")


def model_names() -> list[str]:
    from cnnkit.models import transfer

    return sorted(MODELS) + sorted(transfer.BACKBONES)


__all__ = ["MODELS", "CNNKitModel", "build_model", "logits_to_probs", "model_names", "num_outputs"]
