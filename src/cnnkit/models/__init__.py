"""Models by name.  ``MODELS`` is a plain dict from name to builder; nothing registers itself on import.

Every model is a :class:`~cnnkit.models.base.CNNKitModel` (``features`` -> ``head``, see
:mod:`cnnkit.models.base`); :func:`default_config` says what input a model expects without
building it.
"""

from __future__ import annotations

from typing import Callable

from cnnkit.config import ModelConfig
from cnnkit.errors import ConfigError
from cnnkit.models import fast, zoo
from cnnkit.models.base import (
    CNNKitModel,
    ModelDefaults,
    check_binary_output,
    last_linear,
    logits_to_probs,
    num_outputs,
)

# builder(in_channels, num_classes, image_size, dropout) -> CNNKitModel
MODELS: dict[str, Callable[..., CNNKitModel]] = {
    "mlp": zoo.mlp,
    "lenet5": zoo.lenet5,
    "mnist-cnn": zoo.mnist_cnn,
    "simple-cnn": zoo.simple_cnn,
    "simple-cnn-same": zoo.simple_cnn_same,
    "catdog-cnn": zoo.catdog_cnn,
    "chollet-cnn": zoo.chollet_cnn,
    "horses-cnn": zoo.horses_cnn,
    "cifar-cnn": zoo.cifar_cnn,
    "cifar-cnn-same": zoo.cifar_cnn_same,
    "cifar-cnn-bn": zoo.cifar_cnn_bn,
    "fast-cnn-small": fast.fast_cnn_small,
    "fast-cnn": fast.fast_cnn,
    "fast-cnn-wide": fast.fast_cnn_wide,
    "fashion-functional": zoo.fashion_functional,
}


def match_binary_output(model: CNNKitModel, cfg: ModelConfig) -> None:
    """Two classes: give ``model`` the outputs its definition fixes, else those ``cfg.binary_output`` asks for.

    The builders make one sigmoid logit for two classes; ``binary_output="softmax"`` swaps the
    classifier for a fresh two-logit one.  Sets ``model.binary_output`` to the choice made.
    """
    choice = model.binary_output or cfg.binary_output
    model.binary_output = choice
    if cfg.num_classes != 2:
        return
    found = last_linear(model.head)
    if found is not None and found[1].out_features != num_outputs(2, choice):
        model.reset_head(2, choice)


def build_model(cfg: ModelConfig) -> CNNKitModel:
    """Build the model ``cfg.name`` for the configured input and class count."""
    check_binary_output(cfg.binary_output)
    if cfg.name in MODELS:
        try:
            model = MODELS[cfg.name](cfg.in_channels, cfg.num_classes, tuple(cfg.image_size), dropout=cfg.dropout)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        match_binary_output(model, cfg)
        return model
    from cnnkit.models import concat, custom, transfer  # imported only when asked for

    if custom.is_import_path(cfg.name):  # "package.module:builder": a network in plain PyTorch
        return custom.build_custom(cfg)
    if cfg.name in transfer.BACKBONES or concat.is_concat(cfg.name):
        model = (transfer.build_transfer_model(cfg) if cfg.name in transfer.BACKBONES
                 else concat.build_concat_model(cfg))
        match_binary_output(model, cfg)
        return model
    raise ConfigError(_unknown(cfg.name))


def _unknown(name: str) -> str:
    from cnnkit.models import transfer

    known = ", ".join(sorted(MODELS) + sorted(transfer.BACKBONES))
    return (f"unknown model {name!r}; known models: {known}, backbones joined by '+' (their features side by "
            f"side), or a builder of your own as 'module:function'")


def default_config(cfg: ModelConfig) -> ModelDefaults:
    """The input model ``cfg.name`` expects, without building it or loading weights.

    Pretrained backbones give their input size, 3 channels and mean/std; every other model
    takes what the data gives.  Raises ConfigError for a transfer mode on a model without a
    pretrained backbone and for a backbone fed other than 3 channels; warns for a frozen
    backbone with random weights.
    """
    from cnnkit.models import concat, custom, transfer

    check_binary_output(cfg.binary_output)
    if cfg.name in transfer.BACKBONES:
        return transfer.backbone_defaults(cfg)
    if concat.is_concat(cfg.name):
        return concat.concat_defaults(cfg)
    if cfg.transfer not in ("none", ""):
        raise ConfigError(f"--transfer {cfg.transfer} needs a pretrained backbone "
                          f"({', '.join(sorted(transfer.BACKBONES))}), not {cfg.name!r}")
    if cfg.name in MODELS or custom.is_import_path(cfg.name):
        return ModelDefaults()
    raise ConfigError(_unknown(cfg.name))


def model_names() -> list[str]:
    from cnnkit.models import transfer

    return sorted(MODELS) + sorted(transfer.BACKBONES)


__all__ = ["MODELS", "CNNKitModel", "ModelDefaults", "build_model", "default_config",
           "logits_to_probs", "model_names", "num_outputs"]
