"""Custom networks in plain PyTorch, named by import path: ``--model mynets:small_net``.

A builder is any importable function ``builder(in_channels, num_classes, image_size, dropout=None)``
returning an ``nn.Module`` that maps (N, in_channels, H, W) images to logits: (N, 1) for two classes
(sigmoid + binary cross-entropy), (N, num_classes) otherwise (``cnnkit.models.num_outputs`` says
which).  The path is saved in the run's config, so a checkpoint loads wherever the module imports,
as a Keras model file carries its architecture.  A plain module is wrapped as a
:class:`CNNKitModel` (the whole net as ``features``, an identity ``head``, its last convolution as
the Grad-CAM layer) so it explains, exports and serves like the built-in ones.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable

import torch
from torch import nn

from cnnkit.config import ModelConfig
from cnnkit.errors import ConfigError
from cnnkit.models.base import CNNKitModel, num_outputs


def is_import_path(name: str) -> bool:
    module, sep, attr = name.partition(":")
    return bool(sep and module and attr)


def import_builder(path: str) -> Callable[..., nn.Module]:
    """``"package.module:function"`` -> the function; the working directory is searched too (as uvicorn does)."""
    module_name, _, attr = path.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # `cnnkit train --model mynets:net` run beside mynets.py
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--model {path}: cannot import module {module_name!r} ({exc}); run from the folder "
                          f"that holds it, or install it") from None
    builder = getattr(module, attr, None)
    if not callable(builder):
        raise ConfigError(f"--model {path}: module {module_name!r} has no function {attr!r}")
    return builder


def _last_conv(module: nn.Module) -> nn.Module | None:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None


def build_custom(cfg: ModelConfig) -> CNNKitModel:
    """Build, wrap and check a custom network: one forward pass on a zero image checks its output width."""
    builder = import_builder(cfg.name)
    try:
        net = builder(cfg.in_channels, cfg.num_classes, tuple(cfg.image_size), dropout=cfg.dropout)
    except Exception as exc:  # noqa: BLE001 - user code: report it as a setting that does not work
        raise ConfigError(f"--model {cfg.name}: the builder failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"--model {cfg.name}: the builder returned {type(net).__name__}, not a torch.nn.Module")
    model = net if isinstance(net, CNNKitModel) else CNNKitModel(net, nn.Identity(), gradcam_layer=_last_conv(net))
    want = num_outputs(cfg.num_classes)
    h, w = cfg.image_size
    was_training = model.training
    model.eval()  # batch norm cannot run on one image in training mode
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, cfg.in_channels, h, w))
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"--model {cfg.name}: a ({cfg.in_channels}, {h}, {w}) image does not go through the "
                          f"network: {type(exc).__name__}: {exc}") from None
    finally:
        model.train(was_training)
    if tuple(out.shape) != (1, want):
        raise ConfigError(f"--model {cfg.name}: the network gives outputs of shape {tuple(out.shape[1:])} per image; "
                          f"{cfg.num_classes} classes need ({want},) logits (cnnkit.models.num_outputs)")
    return model
