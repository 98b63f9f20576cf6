"""Grad-CAM (Selvaraju et al. 2017): where in the image the evidence for a class is.

For the chosen class score y (a logit, before softmax) and the activations A (N,K,h,w) of the
model's ``gradcam_layer``::

    alpha_k = mean over (h,w) of dy/dA_k        one weight per channel
    cam     = ReLU(sum_k alpha_k * A_k)          (N,h,w), upsampled bilinearly to the input size

and each map is divided by its maximum, so 0 = no evidence for the class, 1 = the strongest.

Binary models have ONE logit z (sigmoid): the score of class 1 is z and of class 0 is -z, so
the two maps are the positive and negative parts of the same weighted sum.

Models without a spatial layer (the ``mlp``) cannot have a Grad-CAM; :func:`class_map` falls
back to a gradient saliency map (Simonyan et al. 2014): |dy/dx| of the input pixels, max over
colour channels - the pixels whose change would move the class score most.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import nn

from cnnkit.errors import ConfigError
from cnnkit.models.base import logits_to_probs
from cnnkit.visualize.figures import new_figure

Target = int | Sequence[int] | None


def _targets(logits: torch.Tensor, target: Target) -> torch.Tensor:
    """(N,) class indices: the predicted class where ``target`` is None."""
    n, k = logits.shape
    num_classes = 2 if k == 1 else k
    if target is None:
        return logits_to_probs(logits.detach()).argmax(dim=1)
    t = torch.as_tensor([target] * n if isinstance(target, int) else list(target), dtype=torch.long,
                        device=logits.device)
    if t.shape != (n,):
        raise ConfigError(f"need one target class per image: {n} images, {t.numel()} targets")
    if bool(((t < 0) | (t >= num_classes)).any()):
        raise ConfigError(f"target class {t.tolist()} out of range for a model with {num_classes} classes")
    return t


def class_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N,) the score whose gradient explains class ``targets``: the logit, or +-z for one binary logit."""
    if logits.shape[1] == 1:
        sign = targets.to(logits.dtype) * 2 - 1  # class 1 -> +1, class 0 -> -1
        return sign * logits[:, 0]
    return logits.gather(1, targets[:, None])[:, 0]


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    """Divide each (H,W) map of (N,H,W) by its max; an all-zero map stays zero.

    Only exact zeros count as "no evidence": an untrained or saturated network can have class
    gradients around 1e-14 whose map is still a valid relative picture.
    """
    top = maps.flatten(1).amax(dim=1).clamp_min(torch.finfo(maps.dtype).tiny)
    return maps / top[:, None, None]


def _batched(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if x.dim() == 3:
        return x[None], True
    if x.dim() != 4:
        raise ValueError(f"expected an image tensor (C,H,W) or (N,C,H,W), got shape {tuple(x.shape)}")
    return x, False


def has_gradcam_layer(model: nn.Module) -> bool:
    try:
        return model.gradcam_layer is not None
    except AttributeError:  # CNNKitModel raises it for models without a spatial layer
        return False


def gradcam(model: nn.Module, x: torch.Tensor, target: Target = None, layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM maps, float32 in [0,1] at input resolution: (H,W) for x (C,H,W), (N,H,W) for (N,C,H,W).

    ``x`` is the normalised model input; ``target`` a class index (or one per image), default
    the predicted class; ``layer`` defaults to ``model.gradcam_layer``.
    """
    if layer is None:
        if not has_gradcam_layer(model):
            raise ConfigError(f"{type(model).__name__} has no spatial layer for Grad-CAM (a dense model such as "
                              "'mlp'); use a gradient saliency map instead (cnnkit.visualize.gradcam.saliency)")
        layer = model.gradcam_layer
    xb, single = _batched(x)
    acts: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise ConfigError(f"the Grad-CAM layer {type(_module).__name__} must output (N,K,h,w), "
                              f"got {getattr(output, 'shape', type(output).__name__)}")
        # Cut the graph here and continue from a copy: dy/dA is then exactly the gradient of this
        # leaf, whatever in-place op (ReLU(inplace=True), +=) the layers after it apply to the copy.
        leaf = output.detach().float().requires_grad_(True)
        acts.append(leaf)
        return leaf.clone().to(output.dtype)

    was_training = model.training
    model.eval()
    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(xb)
            if not acts:
                raise ConfigError("the Grad-CAM layer is not used in the model's forward pass")
            a = acts[-1]  # a module called twice: explain its last (deepest) use
            scores = class_scores(logits.float(), _targets(logits, target))
            (grads,) = torch.autograd.grad(scores.sum(), a)  # images are independent in eval mode
    finally:
        handle.remove()
        model.train(was_training)
    alpha = grads.mean(dim=(2, 3), keepdim=True)  # (N,K,1,1)
    cam = F.relu((alpha * a.detach()).sum(dim=1, keepdim=True))  # (N,1,h,w)
    cam = F.interpolate(cam, size=tuple(xb.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    out = _normalise(cam).cpu().numpy().astype(np.float32)
    return out[0] if single else out


def saliency(model: nn.Module, x: torch.Tensor, target: Target = None) -> np.ndarray:
    """Gradient saliency |d score / d pixel|, max over channels, in [0,1]: (H,W) or (N,H,W) like :func:`gradcam`."""
    xb, single = _batched(x)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            xg = xb.detach().float().clone().requires_grad_(True)
            logits = model(xg)
            scores = class_scores(logits.float(), _targets(logits, target))
            (grads,) = torch.autograd.grad(scores.sum(), xg)  # (N,C,H,W)
    finally:
        model.train(was_training)
    out = _normalise(grads.abs().amax(dim=1)).cpu().numpy().astype(np.float32)
    return out[0] if single else out


def class_map(model: nn.Module, x: torch.Tensor, target: Target = None) -> tuple[np.ndarray, str]:
    """Grad-CAM where the model has a spatial layer, else gradient saliency; returns (maps, method name)."""
    if has_gradcam_layer(model):
        return gradcam(model, x, target), "Grad-CAM"
    return saliency(model, x, target), "gradient saliency"


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """uint8 image (H,W,C) or (H,W) + map (H,W) in [0,1] -> float RGB (H,W,3) in [0,1], heat on top."""
    img = np.asarray(image, np.float32) / 255.0
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    heat = colormaps[cmap](np.clip(cam, 0, 1))[..., :3]
    return np.clip((1 - alpha) * img + alpha * heat, 0, 1)


def _show_image(ax, image: np.ndarray) -> None:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(img)


def plot_gradcam(image: np.ndarray, cam: np.ndarray, title: str = "", method: str = "Grad-CAM") -> Figure:
    """Image, heat map (with colour bar) and overlay side by side."""
    fig = new_figure(11, 4)
    axes = fig.subplots(1, 3)
    _show_image(axes[0], image)
    axes[0].set_title("input")
    im = axes[1].imshow(cam, cmap="jet", vmin=0, vmax=1)
    axes[1].set_title(method)
    fig.colorbar(im, ax=axes[1], shrink=0.8, label="relative importance")
    axes[2].imshow(overlay(image, cam))
    axes[2].set_title("overlay")
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


def _rgb01(image: np.ndarray) -> np.ndarray:
    """uint8 (H,W), (H,W,1) or (H,W,3) -> float RGB (H,W,3) in [0,1]."""
    img = np.asarray(image, np.float32) / 255.0
    img = img.reshape(*img.shape[:2], -1)
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img


def plot_gradcam_grid(images: Sequence[np.ndarray], cams: Sequence[np.ndarray], titles: Sequence[str],
                      title: str = "", method: str = "Grad-CAM", cols: int = 4) -> Figure:
    """One panel per image: the image and its heat-map overlay side by side; one shared colour bar.

    Each pair is a single ``imshow`` (half the axes of two panels: laying out axes is what
    costs time in a report of many pictures).
    """
    n = len(images)
    cols = max(1, min(cols, n))
    rows = max(1, math.ceil(n / cols))
    fig = new_figure(3.0 * cols + 0.8, 1.8 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for j, (img, cam, name) in enumerate(zip(images, cams, titles)):
        ax = axes[j // cols, j % cols]
        gap = np.ones((img.shape[0], max(1, img.shape[1] // 16), 3), np.float32)
        ax.imshow(np.concatenate([_rgb01(img), gap, overlay(img, cam)], axis=1))
        ax.set_title(name, fontsize=8)
    fig.colorbar(ScalarMappable(Normalize(0, 1), "jet"), ax=axes, shrink=0.8, label=f"{method}: relative importance")
    if title:
        fig.suptitle(title)
    return fig
