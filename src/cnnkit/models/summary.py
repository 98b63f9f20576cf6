"""Keras-style model summary: the table ``model.summary()`` prints, for a PyTorch model.

One row per layer in the order the forward pass runs them: ``name (Type)`` (the module path as
``model.named_modules()`` gives it, the layer type in Keras' words: Conv2D, MaxPooling2D, Dense,
...), the output shape channels-last as Keras writes it - ``(None, H, W, C)``, ``(None, D)`` for a
dense output - and the parameter count.  As in a Keras model whose ``Conv2D``/``Dense`` carry
``activation="relu"``, activations have no row of their own: they are folded into the layer before
them; padding layers are folded into the layer after them (Keras' ``padding="same"``).  Dropout,
pooling and Flatten keep their rows.  BatchNorm counts its moving mean and variance as
non-trainable parameters, as Keras does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.PReLU, nn.SELU, nn.Sigmoid, nn.Tanh,
               nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.Softmax, nn.LogSoftmax, nn.Identity)
PADDINGS = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)

# PyTorch layer -> Keras' name for it (subclasses, e.g. a TF-"same" Conv2d, match their base)
KERAS_TYPES: tuple[tuple[type, str], ...] = (
    (nn.Conv2d, "Conv2D"), (nn.ConvTranspose2d, "Conv2DTranspose"), (nn.Linear, "Dense"),
    (nn.MaxPool2d, "MaxPooling2D"), (nn.AvgPool2d, "AveragePooling2D"),
    (nn.AdaptiveAvgPool2d, "AdaptiveAveragePooling2D"), (nn.AdaptiveMaxPool2d, "AdaptiveMaxPooling2D"),
    (nn.Dropout, "Dropout"), (nn.Dropout2d, "SpatialDropout2D"), (nn.Flatten, "Flatten"),
    (nn.modules.batchnorm._BatchNorm, "BatchNormalization"), (nn.LayerNorm, "LayerNormalization"),
    (nn.Embedding, "Embedding"),
)


@dataclass
class LayerRow:
    name: str  # dotted module path, e.g. "features.0"
    kind: str  # Keras layer type, e.g. "Conv2D" (else the PyTorch class name)
    output_shape: tuple  # channels-last, without the batch dimension: (H, W, C) or (D,)
    params: int
    trainable: int


@dataclass
class Summary:
    rows: list[LayerRow]
    input_shape: tuple[int, int, int]  # (C, H, W), as the model takes it
    total: int
    trainable: int

    @property
    def non_trainable(self) -> int:
        return self.total - self.trainable


def keras_type(module: nn.Module) -> str:
    for cls, name in KERAS_TYPES:
        if isinstance(module, cls):
            return name
    return type(module).__name__


def keras_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A PyTorch per-sample shape (C, H, W) -> Keras' (H, W, C); others unchanged."""
    return (*shape[1:], shape[0]) if len(shape) == 3 else tuple(shape)


def _counts(module: nn.Module) -> tuple[int, int]:
    """(parameters, trainable) of the module itself; BatchNorm's moving statistics count as non-trainable."""
    own = list(module.parameters(recurse=False))
    total = sum(p.numel() for p in own)
    trainable = sum(p.numel() for p in own if p.requires_grad)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
        total += module.running_mean.numel() + module.running_var.numel()
    return total, trainable


def _moving_stats(model: nn.Module) -> int:
    return sum(m.running_mean.numel() + m.running_var.numel() for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None)


def summarize(model: nn.Module, input_shape: tuple[int, int, int]) -> Summary:
    """Run one (C,H,W) zero image through ``model`` in eval mode and record every layer's output."""
    calls: list[tuple[str, nn.Module, tuple]] = []  # (name, module, per-sample output shape) in call order
    hooks = []

    def hook(name: str):
        def record(module: nn.Module, _inp, out) -> None:
            calls.append((name, module, tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ()))
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
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return Summary(_rows(calls), tuple(input_shape), sum(p.numel() for p in params) + _moving_stats(model), trainable)


def _rows(calls: list[tuple[str, nn.Module, tuple]]) -> list[LayerRow]:
    """Fold activations into the row before and padding into the row after; count each module's weights once."""
    rows: list[LayerRow] = []
    counted: set[int] = set()
    for name, module, shape in calls:
        if isinstance(module, ACTIVATIONS) and rows:
            rows[-1].output_shape = keras_shape(shape)  # same shape; keeps in-place ops honest
            continue
        if isinstance(module, PADDINGS):
            continue
        total, trainable = (0, 0) if id(module) in counted else _counts(module)
        counted.add(id(module))
        rows.append(LayerRow(name, keras_type(module), keras_shape(shape), total, trainable))
    return rows


def format_summary(summary: Summary, title: str = "") -> str:
    """The table Keras' ``model.summary()`` prints."""
    header = ("Layer (type)", "Output Shape", "Param #")
    body = [(f"{r.name} ({r.kind})", str((None, *r.output_shape)), f"{r.params:,}") for r in summary.rows]
    w0 = max(len(header[0]), *(len(b[0]) for b in body)) + 2
    w1 = max(len(header[1]), *(len(b[1]) for b in body)) + 2
    w2 = max(len(header[2]), *(len(b[2]) for b in body))
    width = w0 + w1 + w2
    c, h, w = summary.input_shape
    lines = [f'Model: "{title}"' if title else "Model", f"Input shape: {(None, h, w, c)}", "_" * width,
             f"{header[0]:<{w0}}{header[1]:<{w1}}{header[2]:>{w2}}", "=" * width]
    for i, (a, b, c) in enumerate(body):
        lines.append(f"{a:<{w0}}{b:<{w1}}{c:>{w2}}")
        lines.append("_" * width if i < len(body) - 1 else "=" * width)
    lines += [f"Total params: {summary.total:,}", f"Trainable params: {summary.trainable:,}",
              f"Non-trainable params: {summary.non_trainable:,}", "_" * width]
    return "\n".join(lines)


class SummaryTable:
    """A model's summary that shows itself: Keras' text table as its ``repr`` (and ``str``), an HTML
    table in a Jupyter cell.  ``.summary`` holds the numbers (:class:`Summary`)."""

    def __init__(self, summary: Summary, title: str = "") -> None:
        self.summary, self.title = summary, title

    def __repr__(self) -> str:
        return format_summary(self.summary, self.title)

    def _repr_html_(self) -> str:
        import html

        s = self.summary
        c, h, w = s.input_shape
        rows = "".join(f"<tr><td style='text-align:left'>{html.escape(r.name)} ({html.escape(r.kind)})</td>"
                       f"<td style='text-align:left'>{html.escape(str((None, *r.output_shape)))}</td>"
                       f"<td>{r.params:,}</td></tr>" for r in s.rows)
        title = f"Model: &quot;{html.escape(self.title)}&quot;, " if self.title else ""
        return (f"<div class='cnnkit-summary'><p>{title}input shape {(None, h, w, c)}</p><table>"
                f"<thead><tr><th style='text-align:left'>Layer (type)</th><th style='text-align:left'>Output Shape"
                f"</th><th>Param #</th></tr></thead><tbody>{rows}</tbody></table>"
                f"<p>Total params: {s.total:,}<br>Trainable params: {s.trainable:,}<br>"
                f"Non-trainable params: {s.non_trainable:,}</p></div>")


def summary(model: str | nn.Module, image_size: int | tuple[int, int] | None = None, channels: int | None = None,
            num_classes: int = 10, title: str | None = None) -> SummaryTable:
    """Keras' ``model.summary()`` for a model name (see ``cnnkit models``) or a built model.

    ``image_size`` (N or (H, W)) and ``channels`` default to the model's own input (a pretrained
    backbone's), else 32x32 and 3 channels (a built model: give them unless it takes 32x32 RGB).
    Shown as an HTML table in a notebook cell and as Keras' text table in a terminal
    (``print(cnnkit.summary("lenet5", 28, 1))``).
    """
    from cnnkit.config import ModelConfig, image_pair

    size = image_pair(image_size) if image_size is not None else None
    if isinstance(model, str):
        from cnnkit.models import build_model, default_config

        name = model
        defaults = default_config(ModelConfig(name=name, num_classes=num_classes))
        size = size or defaults.input_size or (32, 32)
        channels = channels or defaults.channels or 3
        model = build_model(ModelConfig(name=name, num_classes=num_classes, in_channels=channels, image_size=size))
    else:
        name = type(model).__name__
        size, channels = size or (32, 32), channels or 3
    return SummaryTable(summarize(model, (channels, *size)), name if title is None else title)
