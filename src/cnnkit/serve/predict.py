"""Predict classes of image files with nothing but a checkpoint."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from cnnkit import runtime
from cnnkit.config import Preprocess
from cnnkit.data.folders import is_hidden, is_image_name
from cnnkit.errors import CheckpointError, ConfigError, DataError
from cnnkit.train.checkpoint import Checkpoint, load_checkpoint
from cnnkit.train.loop import ImageInputs
from cnnkit.models.base import logits_to_probs

def read_image(source: str | Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """Decode one image file to uint8 (H, W, C) at ``size`` with ``channels``; DataError if unusable."""
    from cnnkit.data.decode import BadImage, decode

    try:
        return decode(str(source), tuple(size), channels)
    except BadImage as exc:
        raise DataError(f"{source}: {exc}") from None


def expand_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Files stay; folders become their image files (recursively, sorted, hidden files skipped)."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and is_image_name(f.name)
                          and not any(is_hidden(part) for part in f.relative_to(p).parts))
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    if not out:
        raise DataError(f"no image files found in {', '.join(map(str, items))}")
    return out


def check_top_k(top_k: int) -> None:
    """top-k below 1 would print empty rows (0) or quietly drop classes (negative slicing)."""
    if top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}")


def refuse_torchscript(path: Path) -> None:
    """A TorchScript export is a zip that the safetensors loader would call 'header too large';
    say what it is and what to pass instead."""
    import zipfile

    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any(n.endswith("/extra/cnnkit.json") for n in z.namelist()):
                raise CheckpointError(f"{path}: a TorchScript export, for use outside cnnkit; predict, serve and "
                                      "explain take the run folder, its .safetensors checkpoint or an .onnx export")


@dataclass
class Prediction:
    file: str
    top: list[tuple[str, float]]  # (class, probability), best first
    error: str = ""

    def as_dict(self) -> dict:
        return {"file": self.file, "top": [{"class": c, "prob": p} for c, p in self.top],
                **({"error": self.error} if self.error else {})}


class BasePredictor:
    """What every backend shares: files -> uint8 images -> ``probs`` -> top-k.

    A backend (PyTorch checkpoint, ONNX export) sets ``preprocess`` and ``classes`` and
    implements ``probs(uint8 (N,H,W,C)) -> (N,K)``.
    """

    preprocess: Preprocess
    classes: list[str]
    backend: str = ""

    def probs(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        raise NotImplementedError

    def read(self, source: str | Path) -> np.ndarray:
        return read_image(source, tuple(self.preprocess.image_size), self.preprocess.channels)

    def top_k(self, probs: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        k = min(k, len(self.classes))
        order = np.argsort(-probs, axis=1)[:, :k]
        return [[(self.classes[j], float(p[j])) for j in row] for p, row in zip(probs, order)]

    def predict_files(self, files: Sequence[str | Path], top_k: int = 3, batch_size: int = 64) -> list[Prediction]:
        """Predict every file; unreadable files get an ``error`` instead of stopping the batch."""
        check_top_k(top_k)
        results: list[Prediction | None] = [None] * len(files)
        good: list[int] = []
        arrays = []
        for i, f in enumerate(files):
            try:
                arrays.append(self.read(f))
                good.append(i)
            except DataError as exc:
                # the reason only: every output format already shows the file beside it
                reason = str(exc).removeprefix(f"{f}: ")
                results[i] = Prediction(str(f), [], error=reason)
        if arrays:
            tops = self.top_k(self.probs(np.stack(arrays), batch_size), top_k)
            for i, top in zip(good, tops):
                results[i] = Prediction(str(files[i]), top)
        return [r for r in results if r is not None]


class Predictor(BasePredictor):
    """A loaded checkpoint that turns images into class probabilities."""

    backend = "pytorch"

    def __init__(self, checkpoint: str | Path | Checkpoint, device: str = "cpu"):
        if not isinstance(checkpoint, Checkpoint):
            refuse_torchscript(Path(checkpoint))
        self.device = runtime.select_device(device)
        self.ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint, self.device)
        self.model = self.ckpt.model.to(self.device).eval()
        pre = self.ckpt.preprocess
        self.classes = list(pre.classes)
        self.inputs = ImageInputs(pre.mean, pre.std, self.device, channels_last=False)

    @property
    def preprocess(self) -> Preprocess:
        return self.ckpt.preprocess

    @torch.no_grad()
    def probs(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 (N,H,W,C) -> (N,K) probabilities."""
        out = []
        for i in range(0, len(images), batch_size):
            # a copy: decoded images can be read-only views, which torch.from_numpy warns about
            xb = torch.from_numpy(np.array(images[i:i + batch_size])).to(self.device).permute(0, 3, 1, 2)
            logits = self.model(self.inputs.normalize(self.inputs.scale(xb)))
            out.append(logits_to_probs(logits).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)


def load_predictor(model: str | Path, device: str = "cpu") -> BasePredictor:
    """A checkpoint or run folder -> PyTorch; an ``.onnx`` export -> ONNX Runtime (CPU)."""
    if Path(model).suffix.lower() == ".onnx":
        from cnnkit.serve.onnx_predict import OnnxPredictor

        return OnnxPredictor(model)
    return Predictor(model, device)


def predict(checkpoint: str | Path, inputs: Sequence[str | Path], top_k: int = 3, device: str = "cpu") -> list[Prediction]:
    """Top-k classes for image files and folders of images (checkpoint, run folder or ``.onnx``)."""
    return load_predictor(checkpoint, device).predict_files(expand_inputs(inputs), top_k)


def format_predictions(preds: Sequence[Prediction], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps([p.as_dict() for p in preds], indent=1)
    if fmt == "csv":
        k = max((len(p.top) for p in preds), default=0)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["file"] + [f"{name}{i + 1}" for i in range(k) for name in ("class", "prob")] + ["error"])
        for p in preds:
            row = [p.file]
            for c, prob in p.top:
                row += [c, f"{prob:.6f}"]
            row += [""] * (2 * k - 2 * len(p.top)) + [p.error]
            w.writerow(row)
        return buf.getvalue()
    lines = []
    for p in preds:
        shown = p.error or "  ".join(f"{c} {prob:.3f}" for c, prob in p.top)
        lines.append(f"{p.file}: {shown}")
    return "\n".join(lines)
