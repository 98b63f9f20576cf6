"""Predict with an exported ``.onnx`` file on ONNX Runtime: no PyTorch model, no checkpoint.

The export carries its classes and preprocessing (see :mod:`cnnkit.inference.exported`), so
this behaves exactly like :class:`cnnkit.inference.Predictor` on the checkpoint it came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnkit.config import Preprocess
from cnnkit.errors import CheckpointError, CnnkitError
from cnnkit.inference.calibrated import min_confidence_of, temperature_of
from cnnkit.inference.exported import read_export_metadata
from cnnkit.inference.metadata import check_preprocess
from cnnkit.inference.predictor import BasePredictor


class OnnxPredictor(BasePredictor):
    """An ONNX export -> class probabilities, on the CPU execution provider."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        try:
            meta = read_export_metadata(self.path)
        except CnnkitError as exc:  # one error type for "this model file cannot be used"
            raise CheckpointError(str(exc)) from None
        self.preprocess: Preprocess = check_preprocess(meta.get("preprocess"), self.path)
        self.classes = list(self.preprocess.classes)
        # the temperature is inside the graph already: kept here only to describe the model
        self.temperature = temperature_of(meta)
        self.suggested_min_confidence = min_confidence_of(meta)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            first = str(exc).splitlines()[0]
            raise CheckpointError(f"{self.path}: ONNX Runtime cannot load this model ({first})") from None

    def probs(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 (N,H,W,C) -> (N,K) probabilities; the graph normalises its [0, 1] NCHW input itself."""
        out = []
        for i in range(0, len(images), batch_size):
            x = np.ascontiguousarray(images[i:i + batch_size].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
            out.append(self.session.run(["probs"], {"image": x})[0])
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)
