"""``cnnkit train`` and ``cnnkit lr-find``: a training run with its pictures, metrics and report.

:func:`train` (public as ``cnnkit.train_model``) trains one explicit config with
:func:`cnnkit.train.train` and :func:`~cnnkit.commands.outputs.write_run_outputs` as its ``write_outputs``
(called while the run folder is still locked), or, with no model named (``--model auto``), runs
the automatic default's race (:mod:`cnnkit.commands.auto`), which writes the chosen model's run
folder the same way.  It sits above both ``cnnkit.train`` and ``cnnkit.visualize``, so training
itself never draws.

:func:`lr_find` (``cnnkit lr-find``) runs the learning-rate range test alone and writes
``lr_find.png`` and ``lr_find.json`` into a folder of its own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cnnkit.commands.outputs import (
    LR_FIND_JSON,
    LR_FIND_PNG,
    title,
    write_curves,
    write_evaluation,
    write_label_issues,
    write_lr_find_picture,
    write_report_safely,
    write_run_outputs,
)
from cnnkit.commands.result import TrainResult
from cnnkit.config import RunConfig, save_json
from cnnkit.data import DataSplits
from cnnkit.run_folder import check_usable, claim, usable
from cnnkit.train.callbacks import Callback
from cnnkit.train.candidates import AUTO
from cnnkit.train.lock import RunLock
from cnnkit.train.resume import Resume
from cnnkit.train.run import train as train_only

__all__ = ["LR_FIND_JSON", "LR_FIND_PNG", "lr_find", "train", "write_curves", "write_evaluation",
           "write_label_issues", "write_lr_find", "write_report_safely", "write_run_outputs"]


def train(cfg: RunConfig | None, splits: DataSplits | None = None, resume: str | Path | Resume | None = None,
          callbacks: list[Callback] | None = None, explicit_out: bool = False,
          folder: RunLock | None = None) -> TrainResult:
    """Train as :func:`cnnkit.train.train` does and write the run folder's pictures, metrics and report
    (under the folder's lock); with no model named (``auto``), race the automatic default's
    candidates and write the chosen one's (:func:`cnnkit.commands.auto.train_auto`).  ``folder``: a run
    folder already claimed and locked by the caller.

    Returns a :class:`~cnnkit.commands.result.TrainResult`: the run's ``RunResult`` with
    ``plot_curves()``, ``plot_confusion()``, ``plot_top_losses(k)``, ``plot_gradcam(image)``,
    ``plot_label_issues(k)`` and a summary view in a notebook cell.
    """
    if cfg is not None and explicit_out and resume is None and folder is None:
        check_usable(Path(cfg.train.out))  # a person's folder is refused before any work
    if cfg is not None and cfg.model.name == AUTO and resume is None:
        from cnnkit.commands.auto import train_auto

        return TrainResult.of(train_auto(cfg, splits, callbacks=callbacks, explicit_out=explicit_out))
    return TrainResult.of(train_only(cfg, splits, resume=resume, callbacks=callbacks, explicit_out=explicit_out,
                                     write_outputs=write_run_outputs, folder=folder))


# ----------------------------------------------------------------------------- the learning-rate range test


def lr_find(cfg: RunConfig, splits: DataSplits | None = None, out: str | Path | None = None, *, sweeps: int = 1,
            steps: int | None = None, progress: bool = True) -> tuple[Any, Path]:
    """The range test of :func:`cnnkit.train.run.find_lr`, written to ``out`` (default: a fresh
    ``runs/<data>-<model>-lr-find`` folder, numbered if taken): ``lr_find.json`` (the curve, the
    suggestion and how it was made, the settings) and ``lr_find.png``.  Returns (LRFind, folder).
    """
    from cnnkit.train.run import find_lr

    if out is not None:
        check_usable(Path(out))  # a person's folder is refused before the test runs
    found, resolved = find_lr(cfg, splits, sweeps=sweeps, steps=steps, progress=progress)
    folder = _lr_find_dir(resolved, out)
    claim(folder, "lr-find")
    write_lr_find(folder, found, resolved)
    return found, folder


def write_lr_find(folder: Path, found: Any, cfg: RunConfig | None = None) -> None:
    """lr_find.json and lr_find.png of a range test in ``folder`` (written atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    record = found.to_dict()
    if cfg is not None:
        record["config"] = dataclasses.asdict(cfg)
    save_json(record, folder / LR_FIND_JSON)
    write_lr_find_picture(folder, title(cfg) if cfg is not None else "")


def _lr_find_dir(cfg: RunConfig, out: str | Path | None) -> Path:
    """``out`` as given, else the first of runs/<data>-<model>-lr-find, ...-2, ... without an lr_find.json."""
    if out is not None:
        return Path(out)
    from cnnkit.train.folder import default_run_dir, numbered_dirs

    base = default_run_dir(cfg, False)
    return next(f for f in numbered_dirs(base.parent / f"{base.name}-lr-find")
                if usable(f) and not (f / LR_FIND_JSON).exists())
