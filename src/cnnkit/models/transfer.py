"""Pretrained torchvision backbones with a new head (filled in by the transfer-learning work)."""

from __future__ import annotations

from cnnkit.config import ModelConfig
from cnnkit.errors import ConfigError
from cnnkit.models.base import CNNKitModel

BACKBONES: dict[str, object] = {}


def build_transfer_model(cfg: ModelConfig) -> CNNKitModel:
    raise ConfigError(f"transfer backbone {cfg.name!r} is not available")
