"""Label errors: the images whose given label a model that never fitted them doubts most.

Each scored image gets ``score = 1 - p(given label)`` in [0, 1] (higher = more suspicious) and a
``suggested`` label, the most probable class.  The probabilities are always *out of sample*:

* ``--transfer features`` runs: a K-fold (default 5) cross-validated linear head - multinomial
  logistic regression on the cached bottleneck features, fitted full-batch with L-BFGS - over
  the training and validation images together, so every one of them is scored by a head that
  never saw it (:func:`out_of_fold_probs`); a test split is scored by the run's final model;
* every other run: the validation and test images, scored by the final (calibrated) model.
  Training images are only scored in features mode: a model that fitted them cannot doubt them.

The rows kept (:func:`find_issues`) are the scored images whose suggested label differs from the
given one - the model's answer disagrees with the label - most suspicious first; no other cut-off.
As the suggested class is more probable than the given one, every row's score is above 0.5.
All functions here work on arrays; the run folder's ``label_issues.csv`` is written by
:mod:`cnnkit.commands.train` in the format of :mod:`cnnkit.data.issues_table`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from cnnkit.data.issues_table import LabelIssue
from cnnkit.data.label_map import data_relative
from cnnkit.run_folder import LABEL_ISSUES  # noqa: F401 - in the run folder; imported from here as before

DEFAULT_FOLDS = 5
LBFGS_ITERATIONS = 100  # full-batch steps per fold: a convex problem, converged well before this
# L2 on the standardised features: 1280-d features of a few thousand images are nearly separable, and a
# weak penalty (scikit-learn's C=1, 1/n here) gives flipped labels scores of exactly 1.0, tied with each
# other and with ambiguous images.  0.3 ranked planted flips best on two real sets (benchmarks/README.md).
DEFAULT_WEIGHT_DECAY = 0.3
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


# ----------------------------------------------------------------------------- the cross-validated head


def stratified_folds(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """(N,) fold index in [0, folds) per image: each class shuffled (seeded) and dealt round the folds,
    so every fold holds about 1/folds of each class."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = np.zeros(len(labels), np.int64)
    start = 0  # continue dealing where the last class stopped: small classes do not all land in fold 0
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        out[idx] = (start + np.arange(len(idx))) % folds
        start = (start + len(idx)) % folds
    return out


def fit_linear_head(x: np.ndarray, y: np.ndarray, num_classes: int, weight_decay: float | None = None,
                    iterations: int = LBFGS_ITERATIONS) -> "LinearHead":
    """Multinomial logistic regression on features ``x`` (n, D) with labels ``y`` (n,), by full-batch L-BFGS.

    The features are standardised with the training rows' mean and std.  The loss is the mean
    cross-entropy plus ``weight_decay / 2 * |W|^2`` (default :data:`DEFAULT_WEIGHT_DECAY`).
    It starts from zero weights and is convex, so the fit is deterministic and needs no seed.
    """
    x = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    mean = x.mean(0)
    std = x.std(0, unbiased=False).clamp_min(1e-6)
    z = (x - mean) / std  # (n, D)
    target = torch.from_numpy(np.asarray(y, np.int64))
    lam = DEFAULT_WEIGHT_DECAY if weight_decay is None else weight_decay
    w = torch.zeros(z.shape[1], num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w + b, target) + 0.5 * lam * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return LinearHead(w.detach(), b.detach(), mean, std)


@dataclass(frozen=True)
class LinearHead:
    """A fitted logistic-regression head: probs(x) = softmax(((x - mean) / std) @ weight + bias)."""

    weight: torch.Tensor  # (D, K)
    bias: torch.Tensor  # (K,)
    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)

    def probs(self, x: np.ndarray) -> np.ndarray:
        """(n, K) float32 class probabilities of features ``x`` (n, D)."""
        z = (torch.from_numpy(np.ascontiguousarray(x, np.float32)) - self.mean) / self.std
        return torch.softmax(z @ self.weight + self.bias, dim=1).numpy()


def out_of_fold_probs(features: np.ndarray, labels: np.ndarray, num_classes: int, folds: int = DEFAULT_FOLDS,
                      seed: int = 0, weight_decay: float | None = None) -> np.ndarray:
    """(N, K) float32 probabilities of each image from a linear head fitted on the other folds only.

    ``features`` (N, D) float32 (e.g. cached bottleneck features), ``labels`` (N,) int.  Row i
    never influenced the head that scores it, so its own (possibly wrong) label cannot make it
    look clean.  ``folds`` is capped at N; fewer than 2 images give uniform probabilities.
    """
    n = len(labels)
    probs = np.full((n, num_classes), 1.0 / num_classes, np.float32)
    folds = min(int(folds), n)
    if folds < 2:
        return probs
    fold = stratified_folds(labels, folds, seed)
    labels = np.asarray(labels, np.int64)
    for k in range(folds):
        held = fold == k
        head = fit_linear_head(features[~held], labels[~held], num_classes, weight_decay)
        probs[held] = head.probs(features[held])
    return probs


# ----------------------------------------------------------------------------- scores and rows


def issue_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) 1 - p(given label) of each image, in [0, 1] (probs (N, K), labels (N,))."""
    probs = np.asarray(probs, np.float64)
    p_given = probs[np.arange(len(labels)), np.asarray(labels, np.int64)]
    return np.clip(1.0 - p_given, 0.0, 1.0)


def file_names(paths: Sequence[str] | None, split: str, n: int, root: str | os.PathLike | None = None) -> list[str]:
    """How each of ``n`` images is named in the CSV: its file relative to ``root`` where it lies under
    it (forward slashes), else its absolute path; ``"<split>[index]"`` for array data (no paths)."""
    if paths is None:
        return [f"{split}[{i}]" for i in range(n)]
    return [data_relative(p, root) if root is not None else os.path.abspath(p) for p in paths]


def find_issues(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str], files: Sequence[str],
                split: str) -> list[LabelIssue]:
    """The images of one split whose most probable class is not their given label, most suspicious first.

    ``probs`` (N, K) out-of-sample probabilities, ``labels`` (N,), ``files`` (N,) as :func:`file_names`.
    """
    probs = np.asarray(probs)
    labels = np.asarray(labels, np.int64)
    if not len(labels):
        return []
    scores = issue_scores(probs, labels)
    suggested = probs.argmax(axis=1)
    rows = [LabelIssue(files[i], split, classes[labels[i]], classes[suggested[i]], round(float(scores[i]), 6))
            for i in np.flatnonzero(suggested != labels)]
    return rank_issues(rows)


def rank_issues(rows: Sequence[LabelIssue]) -> list[LabelIssue]:
    """Most suspicious first; ties by split (train, val, test), then file name, so the order is fixed."""
    return sorted(rows, key=lambda r: (-r.score, SPLIT_ORDER.get(r.split, 3), r.file))


__all__ = ["DEFAULT_FOLDS", "LabelIssue", "LinearHead", "file_names", "find_issues", "fit_linear_head", "issue_scores",
           "out_of_fold_probs", "rank_issues", "stratified_folds"]
