"""Several frozen backbones side by side: their pooled features concatenated, one head on top.

``--model efficientnet_lite0+efficientnet_lite1`` (any backbones of :data:`~cnnkit.models.transfer.BACKBONES`
with the same input normalisation, joined by ``+``) builds one :class:`ConcatModel`: every backbone
sees the same input image, ``features(x)`` is ``cat([b.features(x) for b in parts])`` - (N, D1 + D2 + ...)
- and the head is one dense classifier on that.  The automatic default tries it once the single
backbones' features are cached: each part's features are cached under that part's own key
(:func:`cnnkit.train.features.cached_features`), so the concatenation costs no extra pass.

Only the frozen modes make sense (``features``, ``head``): fine-tuning several backbones at once
is a different, far slower model.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from cnnkit.config import ModelConfig
from cnnkit.errors import ConfigError
from cnnkit.models.base import CNNKitModel, ModelDefaults

SEPARATOR = "+"


def is_concat(name: str) -> bool:
    return SEPARATOR in name and ":" not in name


def part_names(name: str) -> list[str]:
    """``"a+b"`` -> ["a", "b"], each a known backbone, no repeats (a ConfigError naming the bad one)."""
    from cnnkit.models.transfer import BACKBONES

    parts = [p.strip() for p in name.split(SEPARATOR)]
    for p in parts:
        if p not in BACKBONES:
            raise ConfigError(f"model {name!r}: {p!r} is not a backbone ({', '.join(sorted(BACKBONES))})")
    if len(set(parts)) != len(parts) or len(parts) < 2:
        raise ConfigError(f"model {name!r}: name two or more different backbones joined by '+'")
    return parts


class ConcatFeatures(nn.Module):
    """(N, C, H, W) -> (N, sum of the parts' widths): each part's pooled features, side by side."""

    def __init__(self, parts: dict[str, nn.Module]):
        super().__init__()
        self.parts = nn.ModuleDict({k.replace(".", "_"): v for k, v in parts.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([part(x).flatten(1) for part in self.parts.values()], dim=1)


class ConcatModel(CNNKitModel):
    """Frozen backbones' features concatenated, then one head; Grad-CAM on the first backbone."""

    def __init__(self, models: dict[str, CNNKitModel], head: nn.Module, defaults: ModelDefaults):
        features = ConcatFeatures({name: m.features for name, m in models.items()})
        first = next(iter(models.values()))
        super().__init__(features, head, gradcam_layer=first.gradcam_layer, defaults=defaults,
                         num_features=sum(m.num_features for m in models.values()))
        self.backbone = SEPARATOR.join(models)
        self.transfer = "features"
        # (name, features) of each backbone: the features cache keeps one entry per part
        self.feature_parts = [(name, m.features) for name, m in models.items()]

    def train(self, mode: bool = True) -> "ConcatModel":
        super().train(mode)
        self.features.eval()  # frozen, BatchNorm statistics included
        return self

    def param_groups(self, lr: float) -> list[dict]:
        return [{"params": [p for p in self.head.parameters() if p.requires_grad], "lr": lr}]


def concat_defaults(cfg: ModelConfig) -> ModelDefaults:
    """The first backbone's input size; every part's mean/std, which must agree."""
    from cnnkit.models.transfer import BACKBONES, backbone_defaults, spec_defaults

    parts = part_names(cfg.name)
    if cfg.transfer not in ("features", "head"):
        raise ConfigError(f"model {cfg.name!r} keeps its backbones frozen: use --transfer features or head, "
                          f"not {cfg.transfer}")
    # each part's own check (RGB, mode); the random-weights warning is the caller's, once (a checkpoint
    # being loaded builds its parts without pretrained weights on purpose: its file holds them)
    defaults = [spec_defaults(BACKBONES[p]) for p in parts]
    if cfg.in_channels != 3:
        backbone_defaults(dataclasses.replace(cfg, name=parts[0]))  # the one clear error about channels
    if len({(d.mean, d.std) for d in defaults}) != 1:
        raise ConfigError(f"model {cfg.name!r}: its backbones expect different input normalisation "
                          f"({', '.join(f'{p} mean {BACKBONES[p].mean}' for p in parts)})")
    return defaults[0]


def build_concat_model(cfg: ModelConfig) -> ConcatModel:
    """Each part built as a frozen backbone (weights as ``cfg`` says), one head for ``cfg.num_classes``."""
    from cnnkit.models.transfer import build_head, build_transfer_model

    defaults = concat_defaults(cfg)
    models = {p: build_transfer_model(dataclasses.replace(cfg, name=p, head=(), transfer="features"))
              for p in part_names(cfg.name)}
    width = sum(m.num_features for m in models.values())
    dropout = cfg.head_dropout or (cfg.dropout or 0.0)
    head = build_head(width, tuple(cfg.head), dropout, cfg.num_classes)
    for m in models.values():
        m.requires_grad_(False)
    return ConcatModel(models, head, defaults)


__all__ = ["ConcatModel", "build_concat_model", "concat_defaults", "is_concat", "part_names"]
