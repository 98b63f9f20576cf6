"""Predictions as text for the command line: a table, CSV or JSON.

Predicting itself is :func:`cnnkit.inference.predict` (re-exported here for ``cnnkit predict``).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Sequence

from cnnkit.inference.load import predict
from cnnkit.inference.predictor import Prediction

__all__ = ["Prediction", "format_predictions", "predict"]


def format_predictions(preds: Sequence[Prediction], fmt: str = "table") -> str:
    """With a confidence threshold (``Prediction.answer`` set) every format also gives the answer:
    a ``class`` key (JSON), a ``class`` column after ``file`` (CSV), a first word (table)."""
    answered = any(p.answer is not None for p in preds)
    if fmt == "json":
        return json.dumps([p.as_dict() for p in preds], indent=1)
    if fmt == "csv":
        k = max((len(p.top) for p in preds), default=0)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["file"] + ["class"] * answered + [f"{name}{i + 1}" for i in range(k) for name in ("class", "prob")]
                   + ["error"])
        for p in preds:
            row = [p.file] + [p.answer or ""] * answered
            for c, prob in p.top:
                row += [c, f"{prob:.6f}"]
            row += [""] * (2 * k - 2 * len(p.top)) + [p.error]
            w.writerow(row)
        return buf.getvalue()
    lines = []
    for p in preds:
        shown = p.error or "  ".join(f"{c} {prob:.3f}" for c, prob in p.top)
        if p.answer is not None and not p.error:
            shown = f"{p.answer}  ({shown})"
        lines.append(f"{p.file}: {shown}")
    return "\n".join(lines)
