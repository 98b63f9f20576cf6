"""The one place that turns a model path into a predictor.

* an ``.onnx`` export -> :class:`~cnnkit.inference.onnx_backend.OnnxPredictor` (ONNX Runtime, CPU);
* a checkpoint file or run folder -> :class:`~cnnkit.inference.torch_backend.Predictor` (PyTorch);
* a TorchScript export (``.pt``) -> a CheckpointError saying what to pass instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from cnnkit.errors import CheckpointError
from cnnkit.inference.files import expand_inputs
from cnnkit.inference.predictor import BasePredictor, Prediction
from cnnkit.inference.torch_backend import Predictor


def is_onnx(model: str | Path) -> bool:
    return Path(model).suffix.lower() == ".onnx"


def load_predictor(model: str | Path, device: str = "cpu", threads: int | None = None,
                   trust_code: bool | None = None) -> BasePredictor:
    """A predictor for ``model`` (see the module docstring).

    ``threads`` is the intra-op thread count of each model call: the ONNX session's own setting,
    or for PyTorch torch's process-wide one (right for a server process; None leaves it alone).
    ``trust_code=True`` lets a checkpoint whose model is named by import path (``mynets:tiny``)
    import that module; None trusts what an enclosing ``cnnkit.trusted_code()`` block trusts.
    """
    if is_onnx(model):
        from cnnkit.inference.onnx_backend import OnnxPredictor

        return OnnxPredictor(model, threads=threads)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return Predictor(model, device, trust_code=trust_code)


def require_gradients(predictor: BasePredictor, what: str) -> Predictor:
    """The PyTorch predictor that ``what`` (Grad-CAM, feature maps, filters) needs; else a clear error."""
    if not isinstance(predictor, Predictor):
        raise CheckpointError(f"{what} needs a PyTorch checkpoint (a run folder or .safetensors file): "
                              f"this model runs on {predictor.backend or 'another backend'} without gradients")
    return predictor


def predict(checkpoint: str | Path, inputs: Sequence[str | Path], top_k: int = 3,
            device: str = "cpu", trust_code: bool | None = None,
            min_confidence: str | float | None = None) -> list[Prediction]:
    """Top-k classes for image files and folders of images (checkpoint, run folder or ``.onnx``);
    with ``min_confidence`` (a probability or ``auto``) each answer is its top class or ``unknown``."""
    return load_predictor(checkpoint, device, trust_code=trust_code).predict_files(
        expand_inputs(inputs), top_k, min_confidence=min_confidence)
