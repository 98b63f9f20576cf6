"""Predictions as text for the command line: a table, CSV, a JSON array or JSON lines.

Predicting itself is :func:`cnnkit.inference.predict` (re-exported here for ``cnnkit predict``).
:func:`write_predictions` writes each prediction as it comes, so a long run shows its results
(and keeps its memory) as it goes; :func:`format_predictions` is the same text for a list.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Iterable, Sequence, TextIO

from cnnkit.inference.load import predict
from cnnkit.inference.predictor import Prediction

__all__ = ["FORMATS", "Prediction", "Tally", "format_predictions", "predict", "write_predictions"]

FORMATS = ("table", "csv", "json", "jsonl")


@dataclass(frozen=True)
class Tally:
    """How many predictions were written, and how many of them are errors."""

    written: int
    errors: int


def _csv_header(k: int, answered: bool) -> list[str]:
    return (["file"] + ["class"] * answered + [f"{name}{i + 1}" for i in range(k) for name in ("class", "prob")]
            + ["error"])


def _csv_row(p: Prediction, k: int, answered: bool) -> list[str]:
    row = [p.file] + [p.answer or ""] * answered
    for c, prob in p.top:
        row += [c, f"{prob:.6f}"]
    return row + [""] * (2 * k - 2 * len(p.top)) + [p.error]


def _table_line(p: Prediction) -> str:
    shown = p.error or "  ".join(f"{c} {prob:.3f}" for c, prob in p.top)
    if p.answer is not None and not p.error:
        shown = f"{p.answer}  ({shown})"
    return f"{p.file}: {shown}"


def write_predictions(preds: Iterable[Prediction], out: TextIO, fmt: str = "table", top_k: int = 3,
                      answered: bool = False) -> Tally:
    """Write each prediction to ``out`` as it arrives (flushed), in ``fmt`` (one of FORMATS).

    ``top_k`` is the number of (class, prob) column pairs in CSV: the most classes any row has
    (the run's top-k, capped at the model's class count).  JSON is one array, opened before the
    first prediction and closed after the last; JSON lines is one object per line.  ``answered``
    (a confidence threshold was given) adds the answer column to CSV; JSON and the table show a
    prediction's answer whenever it has one.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(_csv_header(top_k, answered))
    n = errors = 0
    for p in preds:
        if fmt == "json":
            out.write(("[\n" if n == 0 else ",\n") + json.dumps(p.as_dict()))
        elif fmt == "jsonl":
            out.write(json.dumps(p.as_dict()) + "\n")
        elif writer is not None:
            writer.writerow(_csv_row(p, top_k, answered))
        else:
            out.write(_table_line(p) + "\n")
        out.flush()
        n, errors = n + 1, errors + bool(p.error)
    if fmt == "json":
        out.write("[]\n" if n == 0 else "\n]\n")
        out.flush()
    return Tally(n, errors)


def format_predictions(preds: Sequence[Prediction], fmt: str = "table") -> str:
    """The whole text :func:`write_predictions` writes for ``preds`` (without a final newline).

    With a confidence threshold (``Prediction.answer`` set) every format also gives the answer:
    a ``class`` key (JSON), a ``class`` column after ``file`` (CSV), a first word (table)."""
    buf = io.StringIO()
    write_predictions(preds, buf, fmt, top_k=max((len(p.top) for p in preds), default=0),
                      answered=any(p.answer is not None for p in preds))
    return buf.getvalue().rstrip("\n") if fmt != "csv" else buf.getvalue()
