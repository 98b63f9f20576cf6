"""A finished run's final evaluation: the best weights on the test split (else validation, else the
training images, which every output then says).

:func:`cnnkit.train.run.train` concludes with it: the validation logits (:func:`val_logits`) fit the
calibration temperature, then :func:`final_evaluation` gives the :class:`~cnnkit.evaluate.evaluate.Evaluation`
with calibrated probabilities that the run folder's metrics, pictures, report and label issues read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnkit.config import RunConfig
from cnnkit.data import DataSplits
from cnnkit.data.loader import BatchLoader
from cnnkit.evaluate.calibration import expected_calibration_error, log_probs, scale_probs
from cnnkit.evaluate.evaluate import NO_VALIDATION, Evaluation
from cnnkit.evaluate.metrics import classification_metrics
from cnnkit.evaluate.predict import predict_logits, predict_probs
from cnnkit.train.build import Built, Env

__all__ = ["final_evaluation", "val_logits"]


# the final evaluation and the calibration run in full precision, as `cnnkit evaluate`, predict and serve
# do with the saved model: a run reports the metrics its checkpoint gives (bf16 autocast, where the CPU or
# GPU has it, only speeds up training)
EVAL_AMP = None


def val_logits(model: torch.nn.Module, splits: DataSplits, built: Built, env: Env, cfg: RunConfig,
               features_cache: Path | None = None) -> np.ndarray | None:
    """(N,1) or (N,K) logits of the validation images (what the temperature is fitted on), or None.

    In features mode (``features_cache``) the head runs on the cached features: no backbone pass."""
    if splits.val is None or not len(splits.val):
        return None
    if features_cache is not None:
        from cnnkit.train.features import logits_from_features

        return logits_from_features(model, splits.val, built.inputs, env.device, EVAL_AMP, features_cache)
    return predict_logits(model, BatchLoader(splits.val, cfg.train.eval_batch_size, env.device), built.inputs, EVAL_AMP)


def final_evaluation(model: torch.nn.Module, splits: DataSplits, built: Built, env: Env, cfg: RunConfig,
                     calibration: dict | None = None, val_logits: np.ndarray | None = None,
                     features_cache: Path | None = None, extra: dict | None = None) -> Evaluation:
    """The model on the test split, else validation, else (nothing held out) the training images:
    then the metrics' ``note`` says "no validation: metrics are training metrics".

    With a ``calibration`` the probabilities (and the metrics' loss) are the calibrated ones, and
    the metrics hold ``temperature``, ``ece`` and ``ece_uncalibrated``.  ``val_logits`` spare a
    second pass when the evaluated split is the validation one; ``features_cache`` (features mode)
    runs the head on the cached features instead of the backbone again.  ``extra`` joins the
    metrics as it is (e.g. the loss's ``class_weights``).
    """
    name, data = ("test", splits.test) if splits.test is not None and len(splits.test) else ("val", splits.val)
    note = {}
    if data is None or not len(data):  # nothing held out: the training images, and every output says so
        name, data, note = "train", splits.train, {"note": NO_VALIDATION}
    tta = None if cfg.augment.tta in (None, "none") else cfg.augment.tta
    if name == "val" and tta is None and val_logits is not None:
        probs = np.exp(log_probs(val_logits)).astype(np.float32)
    elif features_cache is not None and tta is None:
        from cnnkit.train.features import probs_from_features

        probs = probs_from_features(model, data, built.inputs, env.device, EVAL_AMP, features_cache)
    else:
        probs = predict_probs(model, BatchLoader(data, cfg.train.eval_batch_size, env.device), built.inputs, EVAL_AMP,
                              tta=tta)
    calibrated = {}
    if calibration is not None:
        calibrated = {"temperature": calibration["temperature"], "min_confidence": calibration["min_confidence"],
                      "ece_uncalibrated": expected_calibration_error(probs, data.labels)}
        probs = scale_probs(probs, calibration["temperature"])
        calibrated["ece"] = expected_calibration_error(probs, data.labels)
    metrics = {"split": name, **classification_metrics(probs, data.labels, data.classes), **calibrated,
               **({"tta": tta} if tta else {}), **(extra or {}), **note}
    return Evaluation(metrics, probs, data)
