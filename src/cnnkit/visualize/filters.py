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
    raise ConfigError(f"{type(model).__name__} has no convolution layer "
                      f"(a dense model such as 'mlp' has no filters to show)")


def filter_weights(model: nn.Module) -> np.ndarray:
    """First conv layer's weights, float32 (out_channels, in_channels, kh, kw)."""
    _, conv = first_conv(model)
    return conv.weight.detach().float().cpu().numpy()


def mosaic(tiles: np.ndarray, cols: int, pad: int = 1, fill: float = np.nan) -> np.ndarray:
    """(N,h,w) or (N,h,w,C) tiles -> one float32 image, tile k at grid row k // cols, column k % cols.

    Tiles are separated by ``pad`` pixels of ``fill`` (NaN is drawn transparent).  One image in one
    axes draws in milliseconds; 64 separate axes take seconds to lay out.
    """
    tiles = np.asarray(tiles, np.float32)
    n, h, w = tiles.shape[:3]
    rows = max(1, math.ceil(n / cols))
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, *tiles.shape[3:]), fill, np.float32)
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = tiles[k]
    return out


def grid_columns(n: int) -> int:
    return min(8, max(1, math.ceil(math.sqrt(n))))


def _label_grid(ax, n: int, cols: int, h: int, w: int, pad: int, what: str) -> None:
    """Tick labels that number the tiles: the tile at row label R and column label +C is number R + C."""
    rows = max(1, math.ceil(n / cols))
    ax.set_xticks([c * (w + pad) + (w - 1) / 2 for c in range(min(cols, n))],
                  labels=[f"+{c}" for c in range(min(cols, n))])
    ax.set_yticks([r * (h + pad) + (h - 1) / 2 for r in range(rows)], labels=[str(r * cols) for r in range(rows)])
    ax.tick_params(length=0, labelsize=8)
    ax.set_xlabel(f"{what} number = row label + column label", fontsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)


def plot_filters(weights: np.ndarray, title: str = "") -> Figure:
    """One tile per filter of ``weights`` (O, I, kh, kw), numbered row + column.

    RGB filters (I == 3) are drawn as colour images, each scaled to its own min..max (as in the
    Keras "visualizing what convnets learn" tutorial).  Other filters show the raw weights (mean
    over input channels if I > 1) on one shared, symmetric red-blue scale with a colour bar:
    red = positive weight, blue = negative.
    """
    w = np.asarray(weights, np.float32)
    o, i, kh, kw = w.shape
    cols = grid_columns(o)
    rows = math.ceil(o / cols)
    rgb = i == 3
    fig = new_figure(max(4.5, 0.75 * cols + 1.8), max(2.5, 0.75 * rows * kh / kw + 1.3))
    ax = fig.add_subplot()
    if rgb:
        tiles = w.transpose(0, 2, 3, 1)  # (O,kh,kw,3)
        lo = tiles.min(axis=(1, 2, 3), keepdims=True)
        hi = tiles.max(axis=(1, 2, 3), keepdims=True)
        ax.imshow(mosaic((tiles - lo) / np.maximum(hi - lo, 1e-8), cols, fill=1.0), interpolation="nearest")
    else:
        lim = float(max(np.abs(w).max(), 1e-8))
        im = ax.imshow(mosaic(w.mean(axis=1), cols), cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.8, label="weight")
    _label_grid(ax, o, cols, kh, kw, 1, "filter")
    scale = "each filter scaled to its min..max" if rgb else "red +, blue -, shared scale"
    fig.suptitle(title or f"first-layer filters\n{o} filters, {i} input channel{'s' * (i > 1)}, "
                 f"{kh}×{kw} ({scale})", fontsize=10)
    return fig


def layer_names(model: nn.Module) -> list[str]:
    """``name (Type)`` for every named submodule, in forward-definition order."""
    return [f"{name} ({type(m).__name__})" for name, m in model.named_modules() if name]


def find_layer(model: nn.Module, name: str, all_up_to: int = 24, convs_shown: int = 12) -> nn.Module:
    modules = dict(model.named_modules())
    if not name or name not in modules:
        import difflib

        names = [n for n in modules if n]
        close = difflib.get_close_matches(name or "", names, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        if len(names) <= all_up_to:
            raise ConfigError(f"layer {name!r} is not in the model; "
                              f"{hint}its layers are: {', '.join(layer_names(model))}")
        # a backbone has hundreds of layers: show the last convolutions (the usual choice), not all of them
        convs = [f"{n} (Conv2d)" for n, m in modules.items() if isinstance(m, nn.Conv2d)][-convs_shown:]
        raise ConfigError(f"layer {name!r} is not in the model; {hint}its last {len(convs)} convolutions are: "
                          f"{', '.join(convs)} ({len(names)} layers in all: `cnnkit summary` lists them)")
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
    """The first ``max_maps`` channels of ``maps`` (C,H,W) as numbered tiles, optionally beside the input.

    All channels share one colour scale (one colour bar), so a channel that stays dark really
    responds weakly - with ReLU often exactly zero (a "dead" filter for this input).
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3:
        raise ConfigError(f"layer {layer!r} outputs shape {tuple(maps.shape)}, not a (channels, H, W) feature map; "
                          "choose a convolution, activation or pooling layer")
    shown = maps[:max_maps]
    n, h, w = shown.shape
    cols = grid_columns(n)
    rows = math.ceil(n / cols)
    grid_w = max(3.0, 0.9 * cols)
    grid_h = max(2.2, grid_w * rows * h / (cols * w))
    if image is not None:
        fig = new_figure(grid_w + 3.2, grid_h + 0.9)
        ax_img, ax = fig.subplots(1, 2, width_ratios=[2.0, grid_w])
        img = np.asarray(image)
        grey = img.ndim == 2 or img.shape[2] == 1
        ax_img.imshow(img.reshape(img.shape[:2]) if grey else img, cmap="gray" if grey else None)
        ax_img.set_title("input", fontsize=9)
        ax_img.set_axis_off()
    else:
        fig = new_figure(grid_w + 1.2, grid_h + 0.9)
        ax = fig.add_subplot()
    vmin, vmax = float(shown.min()), float(shown.max())
    im = ax.imshow(mosaic(shown, cols), cmap="viridis", vmin=vmin, vmax=max(vmax, vmin + 1e-8), interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="activation")
    _label_grid(ax, n, cols, h, w, 1, "channel")
    more = f", first {n} shown" if len(maps) > n else ""
    fig.suptitle(f"feature maps of layer {layer or '?'}\n{maps.shape[0]} channels of {h}×{w}{more}", fontsize=10)
    return fig
