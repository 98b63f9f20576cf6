"""A checkpoint's calibration: the temperature its logits are divided by, and its suggested
``--min-confidence`` threshold.

Both live in the checkpoint's ``info`` metadata as ``"calibration": {"temperature": T,
"min_confidence": P or null}`` (fitted on the validation set when training finishes, see
:mod:`cnnkit.evaluate.calibration`).  A checkpoint without them predicts with T = 1 and has
no suggested threshold.  Exports carry the same entry in their metadata, with T inside the graph.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from cnnkit.errors import ConfigError
from cnnkit.models.base import logits_to_probs

KEY = "calibration"


def temperature_of(info: dict[str, Any] | None) -> float:
    """The stored temperature, 1.0 when there is none (or it is not a usable positive number)."""
    t = ((info or {}).get(KEY) or {}).get("temperature", 1.0)
    try:
        t = float(t)
    except (TypeError, ValueError):
        return 1.0
    return t if math.isfinite(t) and t > 0 else 1.0


def min_confidence_of(info: dict[str, Any] | None) -> float | None:
    """The stored suggested threshold, or None."""
    p = ((info or {}).get(KEY) or {}).get("min_confidence")
    return float(p) if isinstance(p, (int, float)) and 0.0 <= p <= 1.0 else None


def calibrated_probs(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(N,1) or (N,K) logits -> (N,K) probabilities of softmax(logits / T) (sigmoid for one logit)."""
    logits = logits.float()
    return logits_to_probs(logits / temperature if temperature != 1.0 else logits)


def calibrated_bytes(path: str | Path, temperature: float, min_confidence: float | None) -> bytes:
    """The checkpoint at ``path`` with the calibration added to its ``info`` metadata, as file bytes
    (a run folder commits them with its other files, so its commit record stays true)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save

    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
    info = json.loads(meta.get("info") or "{}")
    info[KEY] = {"temperature": float(temperature), "min_confidence": min_confidence}
    meta["info"] = json.dumps(info)
    return save(load_file(str(path), device="cpu"), metadata=meta)


def store_calibration(path: str | Path, temperature: float, min_confidence: float | None) -> None:
    """Add the calibration to the ``info`` metadata of a lone checkpoint file (rewritten atomically)."""
    from cnnkit.io import atomic_write_bytes

    atomic_write_bytes(path, calibrated_bytes(path, temperature, min_confidence))


def resolve_min_confidence(value: str | float | None, suggested: float | None) -> float | None:
    """``--min-confidence`` as a threshold: a number in [0, 1], ``auto`` (the model's suggested one,
    None when it has none), or None (answer every image)."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().lower() == "auto":
        return suggested
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--min-confidence must be a probability in [0, 1] or auto, not {value!r}") from None
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"--min-confidence must be a probability in [0, 1] or auto, not {value!r}")
    return p
