"""What the network learned: first-layer filters and the feature maps of any layer.

Layers are named as in ``model.named_modules()`` (dotted paths such as ``features.3``);
:func:`layer_names` lists them with their types for error messages and ``--layer`` help.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from cnnkit.errors import ConfigError
from cnnkit.visualize.figures import new_figure


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first ``nn.Conv2d`` in module order (the layer that looks at pixels) and its name."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ConfigError(f"{type(model).__name__} has no convolution layer (a dense model such as 'mlp' has no filters to show)")


def filter_weights(model: nn.Module) -> np.ndarray:
    """First conv layer's weights, float32 (out_channels, in_channels, kh, kw)."""
    _, conv = first_conv(model)
    return conv.weight.detach().float().cpu().numpy()


def plot_filters(weights: np.ndarray, title: str = "") -> Figure:
    """One tile per filter of ``weights`` (O, I, kh, kw).

    RGB filters (I == 3) are drawn as colour images, each scaled to its own min..max (as in the
    Keras "visualizing what convnets learn" tutorial).  Other filters show the raw weights (mean
    over input channels if I > 1) on one shared, symmetric red-blue scale with a colour bar:
    red = positive weight, blue = negative.
    """
    w = np.asarray(weights, np.float32)
    o, i = w.shape[:2]
    cols = min(8, max(1, math.ceil(math.sqrt(o))))
    rows = math.ceil(o / cols)
    fig = new_figure(max(5.0, 1.1 * cols + (1.0 if i != 3 else 0.2)), 1.2 * rows + 0.8)
    axes = fig.subplots(rows, cols, squeeze=False)
    rgb = i == 3
    lim = float(max(np.abs(w).max(), 1e-8))
    im = None
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= o:
            continue
        if rgb:
            tile = w[k].transpose(1, 2, 0)  # (kh,kw,3)
            lo, hi = tile.min(), tile.max()
            ax.imshow((tile - lo) / max(hi - lo, 1e-8), interpolation="nearest")
        else:
            im = ax.imshow(w[k].mean(axis=0), cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(f"#{k}", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, label="weight")
    scale = "each filter scaled to its min..max" if rgb else "shared scale"
    fig.suptitle(title or f"first-layer filters\n{o} filters, {i} input channel{'s' * (i > 1)}, "
                 f"{w.shape[2]}×{w.shape[3]} ({scale})", fontsize=10)
    return fig


def layer_names(model: nn.Module) -> list[str]:
    """``name (Type)`` for every named submodule, in forward-definition order."""
    return [f"{name} ({type(m).__name__})" for name, m in model.named_modules() if name]


def find_layer(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if not name or name not in modules:
        known = ", ".join(layer_names(model))
        raise ConfigError(f"layer {name!r} is not in the model; its layers are: {known}")
    return modules[name]


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor, layer: str) -> np.ndarray:
    """Output of layer ``layer`` for ONE input ``x`` (1,C,H,W) or (C,H,W), without the batch axis.

    For a conv layer that is (channels, H', W').  The output is copied inside the hook: the zoo
    models follow convolutions with ``ReLU(inplace=True)``, which would otherwise overwrite the
    captured tensor with its rectified values before we read it.
    """
    module = find_layer(model, layer)
    x = x[None] if x.dim() == 3 else x
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor):
            raise ConfigError(f"layer {layer!r} returns {type(output).__name__}, not a tensor")
        captured.append(output.detach().float().clone())

    was_training = model.training
    model.eval()
    handle = module.register_forward_hook(hook)
    try:
        model(x[:1])
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        raise ConfigError(f"layer {layer!r} is not used in the model's forward pass")
    return captured[-1][0].cpu().numpy()  # a module called twice: the last (deepest) call


def plot_feature_maps(maps: np.ndarray, image: np.ndarray | None = None, layer: str = "", max_maps: int = 64) -> Figure:
    """Grid of the first ``max_maps`` channels of ``maps`` (C,H,W), optionally after the input image.

    All channels share one colour scale (one colour bar), so a channel that stays dark really
    responds weakly - with ReLU often exactly zero (a "dead" filter for this input).
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3:
        raise ConfigError(f"layer {layer!r} outputs shape {tuple(maps.shape)}, not a (channels, H, W) feature map; "
                          "choose a convolution, activation or pooling layer")
    shown = maps[:max_maps]
    n = len(shown) + (image is not None)
    cols = min(8, max(1, math.ceil(math.sqrt(n))))
    rows = math.ceil(n / cols)
    fig = new_figure(1.5 * cols + 1.0, 1.55 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    flat = list(axes.flat)
    if image is not None:
        img = np.asarray(image)
        flat[0].imshow(img[..., 0] if img.ndim == 3 and img.shape[2] == 1 else img,
                       cmap="gray" if img.ndim == 2 or img.shape[2] == 1 else None)
        flat[0].set_title("input", fontsize=8)
        flat = flat[1:]
    vmin, vmax = float(shown.min()), float(shown.max())
    im = None
    for c, (ax, fmap) in enumerate(zip(flat, shown)):
        im = ax.imshow(fmap, cmap="viridis", vmin=vmin, vmax=max(vmax, vmin + 1e-8))
        ax.set_title(f"ch {c}", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, label="activation")
    more = f", first {len(shown)} shown" if len(maps) > len(shown) else ""
    fig.suptitle(f"feature maps of layer {layer or '?'}: {maps.shape[0]} channels × {maps.shape[1]}×{maps.shape[2]}{more}")
    return fig
