"""Predict with a PyTorch checkpoint (a ``.safetensors`` file or a run folder)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from cnnkit import runtime
from cnnkit.config import Preprocess
from cnnkit.errors import CheckpointError
from cnnkit.inference.calibrated import calibrated_probs, min_confidence_of, temperature_of
from cnnkit.inference.checkpoint import Checkpoint, load_checkpoint
from cnnkit.inference.predictor import BasePredictor
from cnnkit.inference.preprocess import ImageInputs


def refuse_torchscript(path: Path) -> None:
    """A TorchScript export is a zip that the safetensors loader would call 'header too large';
    say what it is and what to pass instead."""
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any(n.endswith("/extra/cnnkit.json") for n in z.namelist()):
                raise CheckpointError(f"{path}: a TorchScript export, for use outside cnnkit; predict, serve and "
                                      "explain take the run folder, its .safetensors checkpoint or an .onnx export")


class Predictor(BasePredictor):
    """A loaded checkpoint that turns images into class probabilities (and has gradients to explain)."""

    backend = "pytorch"

    def __init__(self, checkpoint: str | Path | Checkpoint, device: str = "cpu", trust_code: bool | None = None):
        if not isinstance(checkpoint, Checkpoint):
            refuse_torchscript(Path(checkpoint))
        self.device = runtime.select_device(device)
        self.ckpt = (checkpoint if isinstance(checkpoint, Checkpoint)
                     else load_checkpoint(checkpoint, self.device, trust_code=trust_code))
        self.model = self.ckpt.model.to(self.device).eval()
        self.classes = list(self.ckpt.preprocess.classes)
        self.inputs = ImageInputs.from_preprocess(self.ckpt.preprocess, self.device)
        self.temperature = temperature_of(self.ckpt.info)
        self.suggested_min_confidence = min_confidence_of(self.ckpt.info)

    @property
    def preprocess(self) -> Preprocess:
        return self.ckpt.preprocess

    @torch.no_grad()
    def probs(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 (N,H,W,C) -> (N,K) calibrated probabilities (logits / the checkpoint's temperature)."""
        out = []
        for i in range(0, len(images), batch_size):
            logits = self.model(self.inputs(images[i:i + batch_size], layout="NHWC"))
            out.append(calibrated_probs(logits, self.temperature).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)
