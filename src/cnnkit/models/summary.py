"""Keras-style model summary: one row per layer with its output shape and parameter count."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LayerRow:
    name: str  # dotted module path, e.g. "features.0"
    kind: str  # class name, e.g. "Conv2d"
    output_shape: tuple  # without the batch dimension
    params: int
    trainable: int


@dataclass
class Summary:
    rows: list[LayerRow]
    input_shape: tuple[int, int, int]
    total: int
    trainable: int

    @property
    def non_trainable(self) -> int:
        return self.total - self.trainable


def summarize(model: nn.Module, input_shape: tuple[int, int, int]) -> Summary:
    """Run one (C,H,W) zero image through ``model`` in eval mode and record every leaf layer's output."""
    rows: list[LayerRow] = []
    hooks = []

    def hook(name: str):
        def record(module: nn.Module, _inp, out) -> None:
            shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ()
            own = list(module.parameters(recurse=False))
            rows.append(LayerRow(name, type(module).__name__, shape, sum(p.numel() for p in own),
                                 sum(p.numel() for p in own if p.requires_grad)))
        return record

    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    params = list(model.parameters())
    return Summary(rows, tuple(input_shape), sum(p.numel() for p in params),
                   sum(p.numel() for p in params if p.requires_grad))


def format_summary(summary: Summary, title: str = "") -> str:
    """The table Keras' ``model.summary()`` prints."""
    header = ("Layer (type)", "Output Shape", "Param #")
    body = [(f"{r.name} ({r.kind})", str((None, *r.output_shape)), f"{r.params:,}") for r in summary.rows]
    w0 = max(len(header[0]), *(len(b[0]) for b in body)) + 2
    w1 = max(len(header[1]), *(len(b[1]) for b in body)) + 2
    w2 = max(len(header[2]), *(len(b[2]) for b in body))
    width = w0 + w1 + w2
    lines = [f'Model: "{title}"' if title else "Model", "_" * width,
             f"{header[0]:<{w0}}{header[1]:<{w1}}{header[2]:>{w2}}", "=" * width]
    for i, (a, b, c) in enumerate(body):
        lines.append(f"{a:<{w0}}{b:<{w1}}{c:>{w2}}")
        lines.append("_" * width if i < len(body) - 1 else "=" * width)
    lines += [f"Total params: {summary.total:,}", f"Trainable params: {summary.trainable:,}",
              f"Non-trainable params: {summary.non_trainable:,}", f"Input shape: {(None, *summary.input_shape)}"]
    return "\n".join(lines)
