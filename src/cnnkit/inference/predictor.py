"""What every prediction backend shares: files -> uint8 images -> ``probs`` -> top-k."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TypeVar

import numpy as np

from cnnkit.config import Preprocess
from cnnkit.data.decode import parallel_map
from cnnkit.errors import CheckpointError, CnnkitError, ConfigError, DataError
from cnnkit.inference.calibrated import resolve_min_confidence
from cnnkit.inference.files import read_image

T = TypeVar("T")


def check_top_k(top_k: int) -> None:
    """top-k below 1 would print empty rows (0) or quietly drop classes (negative slicing)."""
    if top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}")


def warm_up(predictor: BasePredictor) -> None:
    """One inference on a black image of the model's input size, checked against its classes.

    What a model file says about itself (classes, size, channels) can disagree with what it
    computes; this finds out before the first request does (serve reports healthy only after it).
    """
    pre = predictor.preprocess
    (h, w), k = pre.image_size, len(predictor.classes)
    where = getattr(predictor, "path", None) or getattr(getattr(predictor, "ckpt", None), "path", None) or "the model"
    try:
        probs = np.asarray(predictor.probs(np.zeros((1, h, w, pre.channels), np.uint8)))
    except CnnkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - runtimes raise their own types; the first line says what
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{where}: cannot run on one {h}x{w} image of {pre.channels} channel(s), "
                              f"the input its metadata describes ({first[:300]})") from None
    if probs.shape != (1, k):
        raise CheckpointError(f"{where}: its metadata names {k} classes but the model gives "
                              f"{probs.shape[-1] if probs.ndim else 0} probabilities per image")
    if not np.isfinite(probs).all():
        raise CheckpointError(f"{where}: gives non-finite probabilities on a black image")


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


_DONE = object()


def prefetch(items: Iterator[T], ahead: int) -> Iterator[T]:
    """``items``, pulled by a background thread up to ``ahead`` items before the consumer.

    The consumer stopping early (or failing) stops the thread; the thread failing re-raises here.
    """
    buf: queue.Queue = queue.Queue(maxsize=max(1, ahead))
    stop = threading.Event()

    def put(x: object) -> bool:
        while not stop.is_set():
            try:
                buf.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for x in items:
                if not put(x):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator's own cleanup (parallel_map's pool) runs here, in its thread

    thread = threading.Thread(target=produce, name="cnnkit-prefetch", daemon=True)
    thread.start()
    try:
        while (x := buf.get()) is not _DONE:
            if isinstance(x, BaseException):
                raise x
            yield x
    finally:
        stop.set()
        thread.join()


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
        """Predict every file; unreadable files get an ``error`` instead of stopping the batch."""
        return list(self.iter_predictions(files, top_k, batch_size, min_confidence=min_confidence))

    def iter_predictions(self, files: Iterable[str | Path], top_k: int = 3, batch_size: int = 64,
                         workers: int | None = None,
                         min_confidence: str | float | None = None) -> Iterator[Prediction]:
        """One :class:`Prediction` per file, in order, as soon as its batch is through the model.

        Files are decoded on a thread pool (``workers``, default every core) while earlier
        batches run, and at most one batch of ``batch_size`` decoded images (plus the pool's
        few in flight) is held at a time, so memory does not grow with the number of files.
        Unreadable files get an ``error`` instead of stopping the rest.  ``min_confidence`` (a
        probability, or ``auto`` for the model's suggested one) fills each prediction's
        ``answer``: its top class, or ``unknown`` when the top probability is lower.
        """
        check_top_k(top_k)
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        threshold = resolve_min_confidence(min_confidence, self.suggested_min_confidence)
        return self._stream(files, top_k, batch_size, workers, threshold)

    def _stream(self, files: Iterable[str | Path], top_k: int, batch_size: int,
                workers: int | None, threshold: float | None) -> Iterator[Prediction]:
        pending: list[tuple[str, np.ndarray | str]] = []  # (file, uint8 (H, W, C) or the error) in file order
        n_images = 0
        # decoding goes on in the background while a batch is in the model: one batch ahead
        for item in prefetch(parallel_map(self._read_or_error, files, workers), batch_size):
            pending.append(item)
            n_images += not isinstance(item[1], str)
            if n_images >= batch_size:
                yield from self._flush(pending, top_k, batch_size, threshold)
                pending, n_images = [], 0
        yield from self._flush(pending, top_k, batch_size, threshold)

    def _read_or_error(self, f: str | Path) -> tuple[str, np.ndarray | str]:
        try:
            return str(f), self.read(f)
        except DataError as exc:
            # the reason only: every output format already shows the file beside it
            return str(f), str(exc).removeprefix(f"{f}: ")

    def _flush(self, pending: list[tuple[str, np.ndarray | str]], top_k: int,
               batch_size: int, threshold: float | None) -> Iterator[Prediction]:
        arrays = [a for _, a in pending if not isinstance(a, str)]
        tops = iter(self.top_k(self.probs(np.stack(arrays), batch_size), top_k) if arrays else ())
        for f, a in pending:
            pred = Prediction(f, [], error=a) if isinstance(a, str) else Prediction(f, next(tops))
            pred.answer = answer(pred.top, threshold)
            yield pred
