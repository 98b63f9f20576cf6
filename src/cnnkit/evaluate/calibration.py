"""Calibration: how far a model's probabilities can be trusted, and one number that fixes most of it.

Temperature scaling (Guo et al., 2017) divides every logit by one positive T fitted on the
validation set: T > 1 softens an overconfident model, T < 1 sharpens a timid one.  It never
changes which class is on top, so accuracy is unchanged; the probabilities become honest.
All functions are pure numpy on the CPU.
"""

from __future__ import annotations

import math

import numpy as np

ECE_BINS = 15
LOG_T_RANGE = (-4.0, 4.0)  # T in [e^-4, e^4] ~ [0.018, 55]: far beyond any useful correction
TARGET_PRECISION = 0.99  # of the accepted answers, for the suggested --min-confidence


def log_probs(logits: np.ndarray) -> np.ndarray:
    """(N,1) sigmoid logits or (N,K) softmax logits -> (N,K) log-probabilities (K=2 for one logit).

    One logit z is the two logits (0, z): softmax((0, z) / T) = (1 - sigmoid(z/T), sigmoid(z/T)),
    so one temperature treats both model kinds alike.
    """
    z = np.asarray(logits, np.float64)
    if z.shape[1] == 1:
        z = np.concatenate([np.zeros_like(z), z], axis=1)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` (N,) under softmax(logits / T)."""
    lp = log_probs(np.asarray(logits, np.float64) / temperature)
    return float(-lp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, tol: float = 1e-4) -> float:
    """The T > 0 that minimises the NLL of ``labels`` under softmax(logits / T).

    A golden-section search over log T (the NLL is unimodal in log T for practical logits);
    1.0 when there is nothing to fit (no images, non-finite logits).
    """
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    if len(labels) == 0 or not np.isfinite(logits).all():
        return 1.0
    f = lambda log_t: nll(logits, labels, math.exp(log_t))  # noqa: E731
    a, b = LOG_T_RANGE
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    t = math.exp((a + b) / 2)
    return t if nll(logits, labels, t) <= nll(logits, labels, 1.0) else 1.0


def scale_probs(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities (N,K) as if their logits had been divided by T: softmax(log p / T).

    Exact for one model pass (log p differs from the logits by a per-row constant); for averaged
    test-time-augmentation probabilities it is the same correction applied to the average.
    """
    probs = np.asarray(probs, np.float64)
    if temperature == 1.0 or probs.size == 0:
        return probs.astype(np.float32)
    lp = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    lp -= lp.max(axis=1, keepdims=True)
    e = np.exp(lp)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per confidence bin (equal width over [0, 1]): image count, mean confidence, accuracy.

    Returns ``edges`` (bins+1,), ``count`` (bins,), ``confidence`` (bins,), ``accuracy`` (bins,)
    (NaN where a bin is empty).  Confidence is the top probability of each image.
    """
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == labels) if len(probs) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # right-closed bins (a, b]; a confidence of exactly 0 cannot occur for K >= 1
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(idx, weights=conf, minlength=bins) / count
        accuracy = np.bincount(idx, weights=correct.astype(np.float64), minlength=bins) / count
    return {"edges": edges, "count": count, "confidence": confidence, "accuracy": accuracy}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the image-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    r = reliability(probs, labels, bins)
    n = r["count"].sum()
    if n == 0:
        return float("nan")
    filled = r["count"] > 0
    gaps = np.abs(r["accuracy"][filled] - r["confidence"][filled])
    return float((r["count"][filled] * gaps).sum() / n)


def suggest_min_confidence(probs: np.ndarray, labels: np.ndarray,
                           precision: float = TARGET_PRECISION) -> float | None:
    """The smallest threshold P such that the answers with top probability >= P are right at least
    ``precision`` of the time (on these images); None when no threshold reaches it."""
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    if len(labels) == 0:
        return None
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    order = np.argsort(-conf, kind="stable")
    conf, correct = conf[order], correct[order]
    # precision of the k most confident answers, k = 1..N; ties share one threshold, so only the
    # last position of each run of equal confidences is a real choice
    prec = np.cumsum(correct) / np.arange(1, len(conf) + 1)
    last_of_tie = np.r_[conf[1:] != conf[:-1], True]
    ok = np.flatnonzero((prec >= precision) & last_of_tie)
    if len(ok) == 0:
        return None
    return float(conf[ok[-1]])


def calibration_summary(val_logits: np.ndarray, val_labels: np.ndarray) -> dict[str, float | None]:
    """What a run stores: ``temperature`` fitted on validation, and the ``min_confidence`` that keeps
    the calibrated validation answers at >= 99% precision (None when none does)."""
    t = fit_temperature(val_logits, val_labels)
    probs = np.exp(log_probs(np.asarray(val_logits, np.float64) / t))
    return {"temperature": t, "min_confidence": suggest_min_confidence(probs, val_labels)}
