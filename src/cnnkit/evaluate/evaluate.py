"""Evaluate a checkpoint on a dataset: an :class:`Evaluation` (metrics, probabilities, the images)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from cnnkit import runtime
from cnnkit.config import DataConfig
from cnnkit.data import DataSplits, ImageSet, load_data
from cnnkit.data.loader import BatchLoader
from cnnkit.errors import DataError
from cnnkit.evaluate.calibration import expected_calibration_error, scale_probs
from cnnkit.evaluate.metrics import classification_metrics
from cnnkit.evaluate.predict import predict_probs
from cnnkit.inference.calibrated import temperature_of
from cnnkit.inference.checkpoint import Checkpoint, load_checkpoint
from cnnkit.inference.preprocess import ImageInputs

# what a run's metrics say when it had no validation images: they were measured on the training images
NO_VALIDATION = "no validation: metrics are training metrics"


@dataclass(frozen=True)
class Evaluation:
    """A model's answers on one split: the metrics, the probabilities they come from, the images.

    Made once, complete (a run's final evaluation, :func:`evaluate`), then only read: by the run
    folder's metrics files and report, the label-issue scores and the studio.
    """

    metrics: dict[str, Any]  # classification_metrics + "split", calibration (temperature, ece, ...), "tta"
    probs: np.ndarray  # (N, K) float32, calibrated where the metrics hold a temperature
    images: ImageSet  # the evaluated images (N, H, W, C) uint8, their labels (N,) and paths

    @property
    def split(self) -> str | None:
        """Which split was evaluated: "test", "val" or "train"."""
        return self.metrics.get("split")

    def __iter__(self) -> Iterator[Any]:
        """``metrics, probs, images = evaluate(...)``: the public API has always unpacked so."""
        return iter((self.metrics, self.probs, self.images))


def same_source(a: str, b: str) -> bool:
    """The same dataset name, or two spellings of one folder/archive (``pets``, ``./pets/``, absolute)."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    try:
        return pa.exists() and pb.exists() and os.path.samefile(pa, pb)
    except OSError:
        return False


def data_config_for(ckpt: Checkpoint, source: str, data_dir: str | None = None) -> DataConfig:
    """The data settings that reproduce the checkpoint's input; its own splits if it is the same source."""
    pre = ckpt.preprocess
    run_data = ckpt.run_config.data if ckpt.run_config is not None else None
    if run_data is not None and same_source(run_data.source, source):
        base = run_data
    else:  # a different dataset: use all of it (its own test/validation folders stay separate)
        base = DataConfig(source=source, val_split=0.0, test_split=0.0)
    return dataclasses.replace(base, image_size=tuple(pre.image_size), channels=pre.channels,
                               data_dir=data_dir or base.data_dir)


def pick_split(splits: DataSplits, split: str) -> tuple[str, ImageSet]:
    """``auto`` = test, else validation, else train (a plain folder is all 'train')."""
    order = ["test", "val", "train"] if split == "auto" else [split]
    for name in order:
        data = getattr(splits, name, None)
        if data is not None and len(data):
            return name, data
    raise DataError(f"the data has no {split!r} split")


def align_classes(data: ImageSet, classes: tuple[str, ...]) -> ImageSet:
    """Relabel ``data`` to the checkpoint's class order; unknown classes are an error."""
    if tuple(data.classes) == tuple(classes):
        return data
    unknown = [c for c in data.classes if c not in classes]
    if unknown:
        raise DataError(f"the data has classes the model does not know: {unknown} (model classes: {list(classes)})")
    mapping = np.array([classes.index(c) for c in data.classes], np.int64)
    return ImageSet(data.images, mapping[data.labels], tuple(classes), data.paths)


def evaluate(checkpoint: str | Path, source: str, split: str = "auto", tta: str | None = None,
             device: str = "auto", data_dir: str | None = None, batch_size: int = 256) -> Evaluation:
    """Metrics of ``checkpoint`` on ``source``: an :class:`Evaluation` (metrics, probs (N,K), the evaluated
    ImageSet; it also unpacks as that triple).

    The probabilities are calibrated with the checkpoint's temperature (1 when it has none), as
    ``predict`` gives them; the metrics hold ``ece`` and ``ece_uncalibrated`` beside it.
    """
    dev = runtime.select_device(device)
    runtime.prepare(dev, fast=True)
    ckpt = load_checkpoint(checkpoint, dev)
    data_cfg = data_config_for(ckpt, source, data_dir)
    splits = load_data(data_cfg)
    name, data = pick_split(splits, split)
    # the run's own data split as it trained: its train split is what the model learnt from
    trained_on = name == "train" and ckpt.run_config is not None and data_cfg.source == ckpt.run_config.data.source
    data = align_classes(data, ckpt.preprocess.classes)
    inputs = ImageInputs.from_preprocess(ckpt.preprocess, dev)
    probs = predict_probs(ckpt.model, BatchLoader(data, batch_size, dev), inputs, tta=tta)
    temperature = temperature_of(ckpt.info)
    uncalibrated = expected_calibration_error(probs, data.labels)
    probs = scale_probs(probs, temperature)
    metrics = {"split": name, "checkpoint": str(ckpt.path), "data": source,
               **classification_metrics(probs, data.labels, data.classes), "temperature": temperature,
               "ece": expected_calibration_error(probs, data.labels), "ece_uncalibrated": uncalibrated}
    if tta:
        metrics["tta"] = tta
    if trained_on:
        metrics["note"] = NO_VALIDATION
    return Evaluation(metrics, probs, data)
