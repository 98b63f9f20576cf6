"""The label issues of a finished run: which images out-of-sample probabilities doubt.

In ``--transfer features`` mode the training and validation images are scored by a K-fold
cross-validated linear head on their cached features (seconds: the features are already on
disk); in every mode the splits the model never fitted - validation (outside features mode)
and test - are scored by the final, calibrated model.  See :mod:`cnnkit.evaluate.label_issues`
for the score and the rows kept; :mod:`cnnkit.commands.train` writes them as ``label_issues.csv``.
"""

from __future__ import annotations

import numpy as np

from cnnkit.config import RunConfig
from cnnkit.data.issues_table import LabelIssue
from cnnkit.data.sources import image_folder
from cnnkit.data.types import DataSplits, ImageSet
from cnnkit.evaluate.calibration import log_probs, scale_probs
from cnnkit.evaluate.evaluate import Evaluation
from cnnkit.evaluate.label_issues import file_names, find_issues, out_of_fold_probs, rank_issues


def _rows(probs: np.ndarray, data: ImageSet, split: str, root: str | None) -> list[LabelIssue]:
    return find_issues(probs, data.labels, data.classes, file_names(data.paths, split, len(data), root), split)


def _features(info: dict, split: str) -> np.ndarray:
    """(N, D) float32 cached features of one split, as feature training wrote them."""
    path = info["splits"][split]["path"]
    if isinstance(path, list):  # backbones side by side: one cache file each, (N, D1 + D2 + ...)
        return np.concatenate([np.load(p, mmap_mode="r") for p in path], axis=1)
    return np.load(path, mmap_mode="r")


def held_out_probs(evaluation: Evaluation | None, val_logits: np.ndarray | None,
                   calibration: dict | None) -> dict[str, np.ndarray]:
    """{split: (N, K) calibrated probabilities} of the splits the final model did not fit (val, test)."""
    out: dict[str, np.ndarray] = {}
    if evaluation is not None and evaluation.split != "train":  # the training images are not held out
        out[evaluation.split] = np.asarray(evaluation.probs)
    if "val" not in out and val_logits is not None:
        probs = np.exp(log_probs(val_logits))
        out["val"] = scale_probs(probs, calibration["temperature"]) if calibration is not None else probs
    return out


def run_label_issues(cfg: RunConfig, splits: DataSplits, held_out: dict[str, np.ndarray],
                     features_info: dict | None = None) -> list[LabelIssue] | None:
    """The run's label issues, most suspicious first; None when ``--label-issues off``.

    ``held_out``: {split: (N, K) probabilities of the final model} (see :func:`held_out_probs`);
    ``features_info``: a features-mode run's cache record (its ``splits[...]["path"]`` files).
    """
    if cfg.train.label_issues == "off":
        return None
    root = image_folder(cfg.data)  # the CSV's file names are relative to it; None for named datasets
    classes = splits.classes
    rows: list[LabelIssue] = []
    scored = {}
    if features_info is not None:  # train (+ val): a cross-validated head that never saw the image it scores
        parts = [("train", splits.train)] + ([("val", splits.val)] if "val" in features_info["splits"] else [])
        feats = np.concatenate([_features(features_info, s) for s, _ in parts])  # (N_train + N_val, D)
        labels = np.concatenate([d.labels for _, d in parts])
        probs = out_of_fold_probs(feats, labels, len(classes), cfg.train.label_folds, cfg.train.seed)
        start = 0
        for split, data in parts:
            scored[split] = probs[start:start + len(data)]
            start += len(data)
    for split in ("val", "test"):  # the final model on what it never fitted
        data = getattr(splits, split)
        if split not in scored and split in held_out and data is not None and len(data):
            scored[split] = held_out[split]
    for split, probs in scored.items():
        rows += _rows(probs, getattr(splits, split), split, root)
    return rank_issues(rows)
