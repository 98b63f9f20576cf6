"""A finished run folder's pictures, metrics files and report, and the training call that writes them.

:func:`train` (public as ``cnnkit.train_model``) is :func:`cnnkit.train.train` with
:func:`write_run_outputs` as its ``finish``: called at the end of training while the run folder is
still locked, for every stage an automatic run trains.  ``cnnkit train`` and recipes use it.  It
sits above both ``cnnkit.train`` and ``cnnkit.visualize``, so training itself never draws.

Files added to the run folder at the end of training::

    metrics.json            final evaluation         confusion_matrix.csv/png
    curves.png              accuracy and loss curves report.html (cnnkit.visualize.report)
    label_issues.csv        file,split,given,suggested,score: the images whose label out-of-sample
                            predictions doubt, most suspicious first (cnnkit.evaluate.label_issues)
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

from cnnkit.config import RunConfig, save_json
from cnnkit.data import DataSplits
from cnnkit.io import atomic_write_text
from cnnkit.models.custom import trusted_code
from cnnkit.train.callbacks import Callback
from cnnkit.train.resume import Resume
from cnnkit.train.run import RunResult
from cnnkit.train.run import train as train_only

log = logging.getLogger("cnnkit")

__all__ = ["train", "write_curves", "write_evaluation", "write_label_issues", "write_report_safely",
           "write_run_outputs"]


def train(cfg: RunConfig | None, splits: DataSplits | None = None, resume: str | Path | Resume | None = None,
          callbacks: list[Callback] | None = None, explicit_out: bool = False) -> RunResult:
    """Train as :func:`cnnkit.train.train` does and write the run folder's pictures, metrics and report
    (under the folder's lock, for each stage of an automatic run)."""
    return train_only(cfg, splits, resume=resume, callbacks=callbacks, explicit_out=explicit_out,
                      finish=write_run_outputs)


def write_run_outputs(result: RunResult) -> None:
    """metrics.json, confusion matrix, curves.png and (unless turned off) report.html of a finished run."""
    if result.run_dir is not None and result.label_issues is not None:
        write_label_issues(result.run_dir, result.label_issues,
                           announce=result.config is not None and result.config.train.progress)
    if result.run_dir is None or result.evaluation is None or result.config is None:
        return  # not the writing process, or nothing held out to evaluate on
    cfg = result.config
    write_evaluation(result.run_dir, result.metrics)
    write_curves(result.run_dir, f"{cfg.model.name} on {Path(cfg.data.source).name}")
    if cfg.train.report:
        with trusted_code(cfg.model.name):  # this run has just imported its builder: its report may load it
            write_report_safely(result.run_dir, result.evaluation)


def write_report_safely(run_dir: Path, evaluation: tuple) -> None:
    """report.html from the evaluation just made; a failure is a warning, never a lost run."""
    try:
        from cnnkit.visualize.report import write_report

        write_report(run_dir, evaluation=evaluation)
    except Exception as exc:  # noqa: BLE001 - the trained weights and metrics are already on disk
        log.warning("could not write %s: %s: %s", run_dir / "report.html", type(exc).__name__, exc)


def write_label_issues(run_dir: Path, rows: list, announce: bool = False) -> Path:
    """``label_issues.csv`` (header only when no label is doubted); ``announce`` says how many rows it has."""
    from cnnkit.evaluate.label_issues import LABEL_ISSUES, issues_csv

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
    fig = plot_confusion_matrix(cm, metrics["classes"], title=f"{metrics.get('split', '')} accuracy {metrics['accuracy']:.4f}")
    save_figure(fig, folder / f"{prefix}confusion_matrix.png")


def write_curves(run_dir: Path, title: str = "") -> None:
    from cnnkit.visualize.curves import plot_curves
    from cnnkit.visualize.figures import save_figure

    path = run_dir / "history.json"
    if path.exists():
        save_figure(plot_curves(json.loads(path.read_text()), title), run_dir / "curves.png")
