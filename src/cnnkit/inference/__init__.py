"""Inference: from a saved model to class probabilities, with nothing from training.

* :mod:`~cnnkit.inference.preprocess`: :class:`ImageInputs`, the one uint8 -> model-input
  conversion (``/255``, then the checkpoint's mean/std), used by training, evaluation, serving
  and explaining alike; :class:`Preprocess` (the saved classes, size, channels, mean/std).
* :mod:`~cnnkit.inference.checkpoint`: reading and writing ``.safetensors`` checkpoints.
* :mod:`~cnnkit.inference.load`: :func:`load_predictor`, the one dispatch between a checkpoint or
  run folder (PyTorch), an ``.onnx`` export (ONNX Runtime) and a TorchScript file (refused with a
  clear message); :func:`predict` for image files and folders.
"""

from __future__ import annotations

from cnnkit.inference.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cnnkit.inference.load import load_predictor, predict, require_gradients
from cnnkit.inference.predictor import BasePredictor, Prediction
from cnnkit.inference.preprocess import ImageInputs, Preprocess
from cnnkit.inference.torch_backend import Predictor

__all__ = ["BasePredictor", "Checkpoint", "ImageInputs", "Prediction", "Predictor", "Preprocess", "load_checkpoint",
           "load_predictor", "predict", "require_gradients", "save_checkpoint"]
