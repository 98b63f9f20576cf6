"""``cnnkit explain``: files and checkpoints in, one matplotlib Figure out (the CLI saves it).

The computations live in :mod:`cnnkit.visualize` (sobel, filters, gradcam, mostwrong); this
module only reads images and checkpoints and passes the arrays between them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from cnnkit.data.types import class_index
from cnnkit.errors import ConfigError, DataError
from cnnkit.inference.files import read_image
from cnnkit.inference.load import load_predictor, require_gradients
from cnnkit.inference.torch_backend import Predictor


def read_full_image(path: str | Path, max_side: int = 1024) -> np.ndarray:
    """An image file at its own size (longest side capped at ``max_side``) as uint8 (H,W,3)."""
    from cnnkit.data.decode import BadImage, probe

    try:
        info = probe(str(path))
    except BadImage as exc:
        raise DataError(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise DataError(f"{path}: no such image file") from None
    scale = min(1.0, max_side / max(info.width, info.height, 1))
    size = (max(1, round(info.height * scale)), max(1, round(info.width * scale)))
    return read_image(path, size, 3)


def model_input(predictor: Predictor, image: np.ndarray) -> torch.Tensor:
    """uint8 (H,W,C) at the checkpoint's size -> normalised float (1,C,H,W), as the model was trained."""
    return predictor.inputs(image[None], layout="NHWC")


def _torch_predictor(checkpoint: str | Path, what: str) -> Predictor:
    """The model behind ``checkpoint`` with its gradients (an ONNX export is refused by name)."""
    return require_gradients(load_predictor(checkpoint), what)


def sobel_figure(image: str | Path | None = None) -> Figure:
    """Sobel dx, dy and magnitude of an image file (default: scikit-image's cat photo)."""
    from cnnkit.visualize.sobel import default_image, plot_sobel

    if image is None:
        return plot_sobel(default_image(), title="")
    return plot_sobel(read_full_image(image))


def filters_figure(checkpoint: str | Path) -> Figure:
    """First-layer filters of a checkpoint."""
    from cnnkit.visualize.filters import filter_weights, first_conv, plot_filters

    pred = _torch_predictor(checkpoint, "first-layer filters")
    try:
        name, _ = first_conv(pred.model)
        weights = filter_weights(pred.model)
    except ConfigError as exc:
        raise ConfigError(f"{checkpoint}: {exc}") from None
    o, i, kh, kw = weights.shape
    title = (f"{pred.preprocess.model or 'model'}: first-layer filters\n"
             f"layer {name}: {o} filters of {i}×{kh}×{kw}{' (each scaled to its min..max)' if i == 3 else ''}")
    return plot_filters(weights, title=title)


def features_figure(checkpoint: str | Path, image: str | Path, layer: str) -> Figure:
    """Feature maps of layer ``layer`` (dotted name) for one image file."""
    from cnnkit.visualize.filters import feature_maps, plot_feature_maps

    pred = _torch_predictor(checkpoint, "feature maps")
    img = np.array(pred.read(image))  # writable: decoded arrays may be read-only
    maps = feature_maps(pred.model, model_input(pred, img), layer)
    return plot_feature_maps(maps, image=img, layer=layer)


def gradcam_figure(checkpoint: str | Path, image: str | Path, class_name: str | None = None) -> Figure:
    """Grad-CAM (gradient saliency for dense models) of the predicted or the named class."""
    pred = _torch_predictor(checkpoint, "Grad-CAM")
    img = np.array(pred.read(image))  # writable: decoded arrays may be read-only
    return gradcam_picture(pred, img, class_name, Path(image).name)


def gradcam_picture(pred: Predictor, img: np.ndarray, class_name: str | None = None, name: str = "") -> Figure:
    """Grad-CAM of one uint8 (H,W,C) image already at the predictor's size and channels."""
    from cnnkit.visualize.gradcam import class_map, plot_gradcam

    x = model_input(pred, img)
    probs = pred.probs(img[None])[0]
    target = class_index(pred.classes, class_name)
    shown = int(probs.argmax()) if target is None else target
    cam, method = class_map(pred.model, x[0], shown)  # (C,H,W) in -> (H,W) out
    top = int(probs.argmax())
    which = "predicted class" if target is None else "chosen class"
    title = (f"{method} for {which} {pred.classes[shown]!r} (p={probs[shown]:.3f}); "
             f"prediction {pred.classes[top]!r} p={probs[top]:.3f}{' - ' + name if name else ''}")
    return plot_gradcam(img, cam, title=title, method=method)


def most_wrong_figure(checkpoint: str | Path, data: str | None = None, n: int = 16, split: str = "auto",
                      data_dir: str | None = None) -> Figure:
    """The ``n`` highest-loss images of the checkpoint's evaluation on ``data`` (default: its own data)."""
    from cnnkit.evaluate.evaluate import evaluate
    from cnnkit.inference.checkpoint import load_checkpoint
    from cnnkit.visualize.mostwrong import most_wrong, n_mistakes, plot_most_wrong

    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if data is None:
        run_cfg = load_checkpoint(checkpoint).run_config
        if run_cfg is None:
            raise ConfigError(f"{checkpoint}: name the data to look at (the checkpoint does not record it)")
        data = run_cfg.data.source
    evaluation = evaluate(checkpoint, data, split=split, data_dir=data_dir)
    metrics, imageset = evaluation.metrics, evaluation.images
    result = most_wrong(evaluation.probs, imageset.labels, n)
    title = (f"{len(result['index'])} most-wrong of {metrics['n']} {metrics['split']} images of {Path(data).name}, "
             f"{n_mistakes(result)} misclassified (red)\n"
             f"(accuracy {metrics['accuracy']:.4f}; highest loss first; p of the predicted class)")
    return plot_most_wrong(imageset, result, title=title)
