"""``label_issues.csv``: the table of images whose label a run doubts - its rows, writer and reader.

A run writes it (:mod:`cnnkit.commands.train`, rows from :mod:`cnnkit.evaluate.label_issues`); the
report shows it and ``cnnkit relabel --from`` (:func:`cnnkit.data.label_map.suggestions`) applies its
suggestions.  Both read it with :func:`read_issues`, so the format lives here, once::

    file,split,given,suggested,score
    train/cats/cat.17.jpg,train,cats,dogs,0.981234
    val[3],val,cats,dogs,0.874000

``file`` is relative to the data folder where the image lies under it, else absolute, and
``<split>[index]`` for an image of array data (:data:`ARRAY_NAME`).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cnnkit.errors import DataError
from cnnkit.run_folder import LABEL_ISSUES  # in the run folder

__all__ = ["ARRAY_NAME", "COLUMNS", "LABEL_ISSUES", "LabelIssue", "issues_csv", "read_issues", "read_issues_file"]

COLUMNS = ("file", "split", "given", "suggested", "score")
REQUIRED = ("file", "suggested")  # what relabelling needs: a hand-trimmed table may keep only these
ARRAY_NAME = re.compile(r"(train|val|test)\[(\d+)\]")  # how the table names an image of array data


@dataclass(frozen=True)
class LabelIssue:
    """One image whose label the out-of-sample probabilities doubt (a row of ``label_issues.csv``)."""

    file: str  # relative to the data folder where under it, else absolute; "<split>[index]" without files
    split: str  # train | val | test
    given: str  # the label the data gives it
    suggested: str  # the most probable class
    score: float  # 1 - p(given), in [0, 1]


def issues_csv(rows: Sequence[LabelIssue]) -> str:
    """``label_issues.csv`` text: a header ``file,split,given,suggested,score`` and one row per issue."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([r.file, r.split, r.given, r.suggested, f"{r.score:.6f}"])
    return buf.getvalue()


def read_issues(text: str, source: str | os.PathLike = LABEL_ISSUES) -> list[LabelIssue]:
    """The rows of a ``label_issues.csv`` text (as :func:`issues_csv` writes it), in file order.

    A table without the ``file`` and ``suggested`` columns is a DataError naming ``source``; other
    missing columns read as "" (a score as NaN)."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is not None and not set(REQUIRED) <= set(reader.fieldnames):
        raise DataError(f"{source}: not a label_issues.csv (no file and suggested columns)")
    try:
        return [LabelIssue(r["file"], r.get("split") or "", r.get("given") or "", r["suggested"],
                           float(r["score"]) if r.get("score") else math.nan) for r in reader]
    except ValueError as exc:
        raise DataError(f"{source}: row {reader.line_num}: {exc}") from None


def read_issues_file(path: str | os.PathLike) -> list[LabelIssue]:
    """:func:`read_issues` of the file ``path``; an unreadable file is a DataError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    return read_issues(text, path)
