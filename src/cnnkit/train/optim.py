"""Optimizers and learning-rate schedules by name (Keras-compatible meanings)."""

from __future__ import annotations

import math
from typing import Iterable

import torch

from cnnkit.config import OPTIMIZERS, SCHEDULES, OptimConfig
from cnnkit.errors import ConfigError


def build_optimizer(params: Iterable, cfg: OptimConfig) -> torch.optim.Optimizer:
    name = cfg.name.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    if name == "rmsprop":
        # Keras RMSprop: rho=0.9, eps=1e-7, no momentum unless asked for
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.9, eps=1e-7, weight_decay=cfg.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ConfigError(f"unknown optimizer {cfg.name!r}; choose one of {', '.join(OPTIMIZERS)}")


def lr_factor(step: int, cfg: OptimConfig, steps_per_epoch: int, epochs: int) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    Composes: linear warm-up, the schedule, and Keras' ``decay`` (lr / (1 + decay * step)).
    """
    total = max(1, steps_per_epoch * epochs)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    factor = 1.0
    if warmup > 0 and step < warmup:
        factor *= (step + 1) / warmup
    if cfg.schedule == "cosine":
        t = min(1.0, max(0, step - warmup) / max(1, total - warmup))
        factor *= 0.5 * (1.0 + math.cos(math.pi * t))
    elif cfg.schedule == "onecycle":
        # triangle: up for the first 25% (unless an explicit warm-up is set), then linearly to zero
        peak = warmup if warmup > 0 else max(1, total // 4)
        factor = (step + 1) / peak if step < peak else max(0.0, (total - step) / max(1, total - peak))
    elif cfg.schedule == "step":
        factor *= cfg.gamma ** ((step // max(1, steps_per_epoch)) // max(1, cfg.step_size))
    elif cfg.schedule != "none":
        raise ConfigError(f"unknown schedule {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if cfg.decay > 0:
        factor /= 1.0 + cfg.decay * step
    return factor


def build_scheduler(opt: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int,
                    epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per batch."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg, steps_per_epoch, epochs))
