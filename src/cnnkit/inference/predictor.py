"""What every prediction backend shares: files -> uint8 images -> ``probs`` -> top-k."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cnnkit.config import Preprocess
from cnnkit.errors import ConfigError, DataError
from cnnkit.inference.calibrated import resolve_min_confidence
from cnnkit.inference.files import read_image


def check_top_k(top_k: int) -> None:
    """top-k below 1 would print empty rows (0) or quietly drop classes (negative slicing)."""
    if top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}")


@dataclass
class Prediction:
    file: str
    top: list[tuple[str, float]]  # (class, probability), best first
    error: str = ""
    answer: str | None = None  # with a confidence threshold: the top class, or UNKNOWN below it

    def as_dict(self) -> dict:
        return {"file": self.file, **({"class": self.answer} if self.answer is not None else {}),
                "top": [{"class": c, "prob": p} for c, p in self.top],
                **({"error": self.error} if self.error else {})}


UNKNOWN = "unknown"


def answer(top: list[tuple[str, float]], min_confidence: float | None) -> str | None:
    """The class to answer: the top one, or ``unknown`` when its probability is below the threshold
    (None without a threshold, or without a prediction)."""
    if min_confidence is None or not top:
        return None
    return top[0][0] if top[0][1] >= min_confidence else UNKNOWN


def with_answers(preds: list[Prediction], min_confidence: float | None) -> list[Prediction]:
    """Each prediction with its :func:`answer` filled in."""
    for p in preds:
        p.answer = answer(p.top, min_confidence)
    return preds


class BasePredictor:
    """A backend (PyTorch checkpoint, ONNX export) sets ``preprocess`` and ``classes`` and
    implements ``probs(uint8 (N,H,W,C)) -> (N,K)``; the rest is shared."""

    preprocess: Preprocess
    classes: list[str]
    backend: str = ""
    temperature: float = 1.0  # the calibration that ``probs`` applies (see cnnkit.inference.calibrated)
    suggested_min_confidence: float | None = None  # the model's own threshold for ``min_confidence="auto"``

    def probs(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        raise NotImplementedError

    def read(self, source: str | Path) -> np.ndarray:
        return read_image(source, tuple(self.preprocess.image_size), self.preprocess.channels)

    def top_k(self, probs: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        k = min(k, len(self.classes))
        order = np.argsort(-probs, axis=1)[:, :k]
        return [[(self.classes[j], float(p[j])) for j in row] for p, row in zip(probs, order)]

    def predict_files(self, files: Sequence[str | Path], top_k: int = 3, batch_size: int = 64,
                      min_confidence: str | float | None = None) -> list[Prediction]:
        """Predict every file; unreadable files get an ``error`` instead of stopping the batch.

        ``min_confidence`` (a probability, or ``auto`` for the model's suggested one) fills each
        prediction's ``answer``: its top class, or ``unknown`` when the top probability is lower.
        """
        check_top_k(top_k)
        threshold = resolve_min_confidence(min_confidence, self.suggested_min_confidence)
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
        return with_answers([r for r in results if r is not None], threshold)
