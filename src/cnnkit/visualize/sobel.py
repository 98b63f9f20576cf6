"""Sobel edge detection as a convolution: what a first conv layer computes, with hand-made filters.

The 3x3 Sobel kernels are applied with ``torch.nn.functional.conv2d`` - the very operation a
``nn.Conv2d`` layer runs - so the demo shows that edge detection *is* a convolution with fixed
weights, where a CNN learns its weights instead.

``conv2d`` computes a cross-correlation (no kernel flip), so ``dx`` is positive where the image
gets brighter to the right and ``dy`` where it gets brighter downwards (the same signs as
``scipy.ndimage.sobel``).  Borders are padded by repeating the edge pixels (``replicate``), so a
bright image does not get a fake edge at its frame.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from cnnkit.visualize.figures import new_figure

# rows = y (down), columns = x (right); SOBEL_Y is SOBEL_X transposed
SOBEL_X = np.array([[-1.0, 0.0, 1.0],
                    [-2.0, 0.0, 2.0],
                    [-1.0, 0.0, 1.0]], dtype=np.float32)
SOBEL_Y = SOBEL_X.T.copy()

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, as cnnkit.data.arrays.coerce_channels


def default_image() -> np.ndarray:
    """scikit-image's bundled cat photo (uint8 (300, 451, 3)); needs no file and no network."""
    from skimage import data

    return data.chelsea()


def to_grey(image: np.ndarray) -> np.ndarray:
    """(H,W), (H,W,1) or (H,W,3) image, uint8 (0..255) or float (0..1) -> float32 (H,W) in [0,1]."""
    img = np.asarray(image)
    scale = 255.0 if img.dtype == np.uint8 else 1.0
    img = img.astype(np.float32) / scale
    if img.ndim == 3:
        if img.shape[2] == 3:
            img = img @ LUMA
        elif img.shape[2] == 1:
            img = img[..., 0]
        else:
            raise ValueError(f"expected 1 or 3 channels, got image of shape {image.shape}")
    if img.ndim != 2:
        raise ValueError(f"expected an (H,W) or (H,W,C) image, got shape {image.shape}")
    return img


def sobel(image: np.ndarray) -> dict[str, np.ndarray]:
    """Sobel derivatives of ``image`` as one two-filter convolution.

    Returns float32 (H,W) arrays: ``grey`` (the input in [0,1]), ``dx``, ``dy`` and
    ``magnitude`` = sqrt(dx^2 + dy^2).  With values in [0,1], |dx|, |dy| <= 4.
    """
    grey = to_grey(image)
    x = torch.from_numpy(grey)[None, None]  # (1,1,H,W)
    weight = torch.from_numpy(np.stack([SOBEL_X, SOBEL_Y]))[:, None]  # (2,1,3,3): two output channels
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")  # (1,1,H+2,W+2)
    out = F.conv2d(padded, weight)[0]  # (2,H,W)
    dx, dy = out[0], out[1]
    magnitude = torch.sqrt(dx * dx + dy * dy)
    return {"grey": grey, "dx": dx.numpy(), "dy": dy.numpy(), "magnitude": magnitude.numpy()}


def plot_sobel(image: np.ndarray, result: dict[str, np.ndarray] | None = None, title: str = "") -> Figure:
    """Original, dx, dy and gradient magnitude side by side, each derivative with a colour bar."""
    result = result if result is not None else sobel(image)
    h, w = result["grey"].shape
    panel = 3.6
    fig = new_figure(4 * panel + 1.2, panel * h / w + 0.9)
    axes = fig.subplots(1, 4)
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None)
    axes[0].set_title("original")
    # Derivatives on one symmetric scale so that the sign (dark->bright vs bright->dark) reads at a
    # glance.  The scale ends at the 99.5th percentile: a few extreme pixels (eye highlights) would
    # otherwise leave every ordinary edge pale; the colour bar marks the clipped ends.
    lim = float(max(np.percentile(np.abs(np.stack([result["dx"], result["dy"]])), 99.5), 1e-6))
    top = float(max(np.percentile(result["magnitude"], 99.5), 1e-6))
    panels = (
        (axes[1], result["dx"], "dx: Sobel x (vertical edges)", "RdBu_r", -lim, lim),
        (axes[2], result["dy"], "dy: Sobel y (horizontal edges)", "RdBu_r", -lim, lim),
        (axes[3], result["magnitude"], "magnitude sqrt(dx² + dy²)", "magma", 0.0, top),
    )
    for ax, values, name, cmap, vmin, vmax in panels:
        im = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(name)
        fig.colorbar(im, ax=ax, shrink=0.8, extend="both" if vmin < 0 else "max")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title or "Sobel filters as a convolution: conv2d(grey image, 3×3 kernels [-1 0 1; -2 0 2; -1 0 1] "
                          "and its transpose)")
    return fig
