"""A finished run folder's pictures, metrics files and report.

:func:`write_run_outputs` is what every finished training writes (handed to
:func:`cnnkit.train.train` as its ``write_outputs`` by :func:`cnnkit.commands.train.train`, and called by
the automatic default for the model it chose), under the run folder's lock::

    metrics.json            final evaluation         confusion_matrix.csv/png
    curves.png              every logged metric      report.html (cnnkit.visualize.report)
    label_issues.csv        file,split,given,suggested,score: the images whose label out-of-sample
                            predictions doubt, most suspicious first (cnnkit.data.issues_table)
    lr_find.png             the range test's curve, when the run was trained with --lr auto
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

from cnnkit.config import RunConfig, save_json
from cnnkit.evaluate.evaluate import Evaluation
from cnnkit.io import atomic_write_text
from cnnkit.models.custom import trusted_code
from cnnkit.phases import phase
from cnnkit.run_folder import (
    CONFUSION_CSV,
    CONFUSION_PNG,
    CURVES,
    HISTORY_JSON,
    LR_FIND_JSON,
    LR_FIND_PNG,
    METRICS,
    REPORT,
)
from cnnkit.train.run import RunResult

log = logging.getLogger("cnnkit")


__all__ = ["LR_FIND_JSON", "LR_FIND_PNG", "write_curves", "write_evaluation", "write_label_issues",
           "write_lr_find_picture", "write_report_safely", "write_run_outputs", "title"]


def write_run_outputs(result: RunResult) -> None:
    """metrics.json, confusion matrix, curves.png and (unless turned off) report.html of a finished run."""
    if result.run_dir is not None and result.label_issues is not None:
        write_label_issues(result.run_dir, result.label_issues,
                           announce=result.config is not None and result.config.train.progress)
    if result.run_dir is None or result.evaluation is None or result.config is None:
        return  # not the writing process, or nothing held out to evaluate on
    cfg = result.config
    picture_title = title(cfg)
    with phase("report", total=3 if cfg.train.report else 2, unit="files") as step:
        write_evaluation(result.run_dir, result.metrics)
        step()
        write_curves(result.run_dir, picture_title)
        if (result.run_dir / LR_FIND_JSON).exists():  # trained with --lr auto: its range test's picture
            write_lr_find_picture(result.run_dir, picture_title)
        step()
        if cfg.train.report:
            with trusted_code(cfg.model.name):  # this run has just imported its builder: its report may load it
                write_report_safely(result.run_dir, result.evaluation)
            step()


def title(cfg: RunConfig) -> str:
    """The pictures' title: ``model on data``."""
    return f"{cfg.model.name} on {Path(cfg.data.source).name}"


def write_report_safely(run_dir: Path, evaluation: Evaluation) -> None:
    """report.html from the evaluation just made; a failure is a warning, never a lost run."""
    try:
        from cnnkit.visualize.report import write_report

        write_report(run_dir, evaluation=evaluation)
    except Exception as exc:  # noqa: BLE001 - the trained weights and metrics are already on disk
        log.warning("could not write %s: %s: %s", run_dir / REPORT, type(exc).__name__, exc)


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

    save_json(metrics, folder / f"{prefix}{METRICS}")
    cm = np.asarray(metrics["confusion_matrix"])
    header = "true\\pred," + ",".join(metrics["classes"])
    rows = [f"{c}," + ",".join(str(v) for v in row) for c, row in zip(metrics["classes"], cm)]
    atomic_write_text(folder / f"{prefix}{CONFUSION_CSV}", "\n".join([header, *rows]) + "\n")
    fig = plot_confusion_matrix(cm, metrics["classes"],
                                title=f"{metrics.get('split', '')} accuracy {metrics['accuracy']:.4f}")
    save_figure(fig, folder / f"{prefix}{CONFUSION_PNG}")


def write_curves(run_dir: Path, title: str = "") -> None:
    from cnnkit.visualize.curves import plot_curves
    from cnnkit.visualize.figures import save_figure

    path = run_dir / HISTORY_JSON
    if path.exists():
        save_figure(plot_curves(json.loads(path.read_text()), title), run_dir / CURVES)


def write_lr_find_picture(folder: Path, title: str = "") -> None:
    """lr_find.png from the folder's lr_find.json."""
    from cnnkit.train.lr_find import LRFind
    from cnnkit.visualize.figures import save_figure
    from cnnkit.visualize.lr_find import plot_lr_find

    found = LRFind.from_dict(json.loads((folder / LR_FIND_JSON).read_text()))
    save_figure(plot_lr_find(found, title), folder / LR_FIND_PNG)
