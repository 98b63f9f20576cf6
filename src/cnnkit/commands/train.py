"""A finished run folder's pictures, metrics files and report, and the training call that writes them.

:func:`train` (public as ``cnnkit.train_model``) is :func:`cnnkit.train.train` with
:func:`write_run_outputs` as its ``write_outputs``: called at the end of training while the run folder is
still locked, for every stage an automatic run trains.  ``cnnkit train`` and recipes use it.  It
sits above both ``cnnkit.train`` and ``cnnkit.visualize``, so training itself never draws.

Files added to the run folder at the end of training::

    metrics.json            final evaluation         confusion_matrix.csv/png
    curves.png              every logged metric      report.html (cnnkit.visualize.report)
    label_issues.csv        file,split,given,suggested,score: the images whose label out-of-sample
                            predictions doubt, most suspicious first (cnnkit.data.issues_table)
    lr_find.png             the range test's curve, when the run was trained with --lr auto

:func:`lr_find` (``cnnkit lr-find``) runs the learning-rate range test alone and writes
``lr_find.png`` and ``lr_find.json`` into a folder of its own.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.config import RunConfig, save_json
from cnnkit.data import DataSplits
from cnnkit.evaluate.evaluate import Evaluation
from cnnkit.io import atomic_write_text
from cnnkit.models.custom import trusted_code
from cnnkit.train.callbacks import Callback
from cnnkit.train.resume import Resume
from cnnkit.train.run import RunResult
from cnnkit.train.run import train as train_only

log = logging.getLogger("cnnkit")

__all__ = ["lr_find", "train", "write_curves", "write_evaluation", "write_label_issues", "write_lr_find",
           "write_report_safely", "write_run_outputs"]

LR_FIND_JSON, LR_FIND_PNG = "lr_find.json", "lr_find.png"


def train(cfg: RunConfig | None, splits: DataSplits | None = None, resume: str | Path | Resume | None = None,
          callbacks: list[Callback] | None = None, explicit_out: bool = False) -> RunResult:
    """Train as :func:`cnnkit.train.train` does and write the run folder's pictures, metrics and report
    (under the folder's lock, for each stage of an automatic run)."""
    return train_only(cfg, splits, resume=resume, callbacks=callbacks, explicit_out=explicit_out,
                      write_outputs=write_run_outputs)


def write_run_outputs(result: RunResult) -> None:
    """metrics.json, confusion matrix, curves.png and (unless turned off) report.html of a finished run."""
    if result.run_dir is not None and result.label_issues is not None:
        write_label_issues(result.run_dir, result.label_issues,
                           announce=result.config is not None and result.config.train.progress)
    if result.run_dir is None or result.evaluation is None or result.config is None:
        return  # not the writing process, or nothing held out to evaluate on
    cfg = result.config
    title = _title(cfg)
    write_evaluation(result.run_dir, result.metrics)
    write_curves(result.run_dir, title)
    if (result.run_dir / LR_FIND_JSON).exists():  # trained with --lr auto: its range test's picture
        write_lr_find_picture(result.run_dir, title)
    if cfg.train.report:
        with trusted_code(cfg.model.name):  # this run has just imported its builder: its report may load it
            write_report_safely(result.run_dir, result.evaluation)


def _title(cfg: RunConfig) -> str:
    """The pictures' title: ``model on data``."""
    return f"{cfg.model.name} on {Path(cfg.data.source).name}"


def write_report_safely(run_dir: Path, evaluation: Evaluation) -> None:
    """report.html from the evaluation just made; a failure is a warning, never a lost run."""
    try:
        from cnnkit.visualize.report import write_report

        write_report(run_dir, evaluation=evaluation)
    except Exception as exc:  # noqa: BLE001 - the trained weights and metrics are already on disk
        log.warning("could not write %s: %s: %s", run_dir / "report.html", type(exc).__name__, exc)


def write_label_issues(run_dir: Path, rows: list, announce: bool = False) -> Path:
    """``label_issues.csv`` (header only when no label is doubted); ``announce`` says how many rows it has."""
    from cnnkit.data.issues_table import LABEL_ISSUES, issues_csv

    path = Path(run_dir) / LABEL_ISSUES
    atomic_write_text(path, issues_csv(rows))
    if announce:
        print(f"cnnkit: {len(rows)} {'image' if len(rows) == 1 else 'images'} whose label the model doubts: {path}",
              file=sys.stderr, flush=True)
    return path


def write_evaluation(folder: Path, metrics: dict, prefix: str = "") -> None:
    """metrics.json, confusion_matrix.csv and confusion_matrix.png in ``folder``."""
    from cnnkit.visualize.confusion import plot_confusion_matrix
    from cnnkit.visualize.figures import save_figure

    save_json(metrics, folder / f"{prefix}metrics.json")
    cm = np.asarray(metrics["confusion_matrix"])
    header = "true\\pred," + ",".join(metrics["classes"])
    rows = [f"{c}," + ",".join(str(v) for v in row) for c, row in zip(metrics["classes"], cm)]
    atomic_write_text(folder / f"{prefix}confusion_matrix.csv", "\n".join([header, *rows]) + "\n")
    fig = plot_confusion_matrix(cm, metrics["classes"],
                                title=f"{metrics.get('split', '')} accuracy {metrics['accuracy']:.4f}")
    save_figure(fig, folder / f"{prefix}confusion_matrix.png")


def write_curves(run_dir: Path, title: str = "") -> None:
    from cnnkit.visualize.curves import plot_curves
    from cnnkit.visualize.figures import save_figure

    path = run_dir / "history.json"
    if path.exists():
        save_figure(plot_curves(json.loads(path.read_text()), title), run_dir / "curves.png")


# ----------------------------------------------------------------------------- the learning-rate range test


def lr_find(cfg: RunConfig, splits: DataSplits | None = None, out: str | Path | None = None, *, sweeps: int = 1,
            steps: int | None = None, progress: bool = True) -> tuple[Any, Path]:
    """The range test of :func:`cnnkit.train.run.find_lr`, written to ``out`` (default: a fresh
    ``runs/<data>-<model>-lr-find`` folder, numbered if taken): ``lr_find.json`` (the curve, the
    suggestion and how it was made, the settings) and ``lr_find.png``.  Returns (LRFind, folder).
    """
    from cnnkit.train.run import find_lr

    found, resolved = find_lr(cfg, splits, sweeps=sweeps, steps=steps, progress=progress)
    folder = _lr_find_dir(resolved, out)
    write_lr_find(folder, found, resolved)
    return found, folder


def write_lr_find(folder: Path, found: Any, cfg: RunConfig | None = None) -> None:
    """lr_find.json and lr_find.png of a range test in ``folder`` (written atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    record = found.to_dict()
    if cfg is not None:
        record["config"] = dataclasses.asdict(cfg)
    save_json(record, folder / LR_FIND_JSON)
    write_lr_find_picture(folder, _title(cfg) if cfg is not None else "")


def write_lr_find_picture(folder: Path, title: str = "") -> None:
    """lr_find.png from the folder's lr_find.json."""
    from cnnkit.train.lr_find import LRFind
    from cnnkit.visualize.figures import save_figure
    from cnnkit.visualize.lr_find import plot_lr_find

    found = LRFind.from_dict(json.loads((folder / LR_FIND_JSON).read_text()))
    save_figure(plot_lr_find(found, title), folder / LR_FIND_PNG)


def _lr_find_dir(cfg: RunConfig, out: str | Path | None) -> Path:
    """``out`` as given, else the first of runs/<data>-<model>-lr-find, ...-2, ... without an lr_find.json."""
    if out is not None:
        return Path(out)
    from cnnkit.train.folder import default_run_dir, numbered_dirs

    base = default_run_dir(cfg, False)
    return next(f for f in numbered_dirs(base.parent / f"{base.name}-lr-find") if not (f / LR_FIND_JSON).exists())
