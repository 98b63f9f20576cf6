"""A training run: data + model + optimizer around the loop, as a few phases.

:func:`train` reads top to bottom like torchvision's reference ``train.py``: resolve the config
(resume, paths, settings); device, precision and seed; the model and its preprocessing; data
loaders and what the loop runs (:mod:`cnnkit.train.build`); the learning rate (``--lr auto``: the
range test); optimizer and schedule; the run folder; callbacks; fit; the conclusion (best weights
back in, calibration, the final evaluation of :mod:`cnnkit.train.final`, label issues).  Pictures,
metrics files and the report of a finished run are drawn one layer up
(:func:`cnnkit.commands.train.write_run_outputs`): :func:`cnnkit.commands.train.train`
(= ``cnnkit.train_model``) hands that in as ``write_outputs``, which :func:`train` calls while it
still holds the run folder's lock.

Files this module writes in the run folder::

    config.json        resolved RunConfig           preprocess.json  classes, size, channels, mean/std
    classes.txt        one class a line             history.csv/json per-epoch metrics
    best.safetensors   best weights (+ metadata)    last.safetensors latest weights (+ metadata)
    train_state.pt     optimizer etc. for --resume  commit.json      the committed epoch, each file's sha256
    data_listing.json  classes, per split a digest of the files (committed: --resume checks the data)
    .lock              held while a run writes the folder (names its pid and host)
    lr_find.json       the range test behind --lr auto
    tensorboard/       event files of the epoch metrics (--tensorboard; logs, not part of the commit)

Each epoch's checkpoints, training state and history are one commit (:mod:`cnnkit.train.commit`),
so ``--resume`` always finds weights and state of the same epoch; the data listing
(:mod:`cnnkit.train.data_listing`) joins the first commit, so ``--resume`` notices changed data.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from cnnkit.config import Preprocess, RunConfig, save_json
from cnnkit.data import DataSplits
from cnnkit.errors import ConfigError
from cnnkit.evaluate.calibration import calibration_summary
from cnnkit.evaluate.evaluate import Evaluation
from cnnkit.inference import checkpoint as ckpt
from cnnkit.inference.calibrated import calibrated_bytes
from cnnkit.phases import phase
from cnnkit.run_folder import DATA_LISTING, LR_FIND_JSON
from cnnkit.train.build import (
    Built,
    Env,
    Parts,
    build,
    build_optimization,
    channel_stats,
    dist_info,
    load_checked,
    loop_parts,
    model_input_config,
    setup_runtime,
    use_compile,
)
from cnnkit.train.callbacks import BestCheckpoint, Callback, EarlyStopping, History, Progress, TimeBudget
from cnnkit.train.candidates import AUTO
from cnnkit.train.checks import check_out, check_settings, monitor_key, portable_paths
from cnnkit.train.commit import commit, read_commit
from cnnkit.train.data_listing import data_listing, listing_bytes
from cnnkit.train.final import final_evaluation, val_logits
from cnnkit.train.folder import claim_fresh_dir, default_run_dir, write_run_start
from cnnkit.train.issues import held_out_probs, run_label_issues
from cnnkit.train.lock import RunLock, lock_run_folder
from cnnkit.train.loop import FitState, fit
from cnnkit.train.lr_find import LRFind, lr_range_test, range_test_bar
from cnnkit.train.resume import Resume, as_resume, check_commit, check_data, restore, resume_note, train_state
from cnnkit.train.tensorboard import TensorBoardLogger

__all__ = ["Resume", "RunResult", "WriteOutputs", "channel_stats", "find_lr", "model_input_config", "train"]

AUTO_LR = "auto"  # OptimConfig.lr's word: the range test's suggestion
AUTO_LR_SWEEPS = 1  # sweeps of the range test behind --lr auto (each ~100 training steps)

WriteOutputs = Callable[["RunResult"], None]  # writes a finished run's outputs while its folder is still locked


@dataclass
class RunResult:
    run_dir: Path | None
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    model: torch.nn.Module
    preprocess: Preprocess
    config: RunConfig | None = None  # as resolved and saved in config.json
    evaluation: Evaluation | None = None  # the final evaluation, for the run folder's pictures
    stop_reason: str = ""  # why training ended before its last epoch ("" when it ran them all)
    diverged: bool = False  # it stopped on a non-finite loss; the run folder keeps the last finite epoch
    label_issues: list | None = None  # cnnkit.data.issues_table.LabelIssue rows, most suspicious first

    def __repr__(self) -> str:
        """One line: where, what and how well (the history and the model are attributes, not the repr)."""
        model = self.config.model.name if self.config is not None else self.preprocess.model
        score = (f", {self.metrics['split']} accuracy {self.metrics['accuracy']:.4f} on {self.metrics['n']} images"
                 if self.metrics and "accuracy" in self.metrics else "")
        stop = f", stopped: {self.stop_reason}" if self.stop_reason else ""
        return (f"{type(self).__name__}(run_dir={str(self.run_dir)!r}, model={model!r}, "
                f"epochs={len(self.history)}{score}{stop})")


def train(cfg: RunConfig | None, splits: DataSplits | None = None, resume: str | Path | Resume | None = None,
          callbacks: list[Callback] | None = None, explicit_out: bool = False,
          write_outputs: WriteOutputs | None = None, folder: RunLock | None = None) -> RunResult:
    """Train a model as ``cfg`` says; return the run folder, history and final metrics.

    ``splits`` may be passed directly (Python API); otherwise ``cfg.data`` is loaded.
    ``resume`` continues the run in that folder from its last completed epoch, with the run's own
    config: a folder takes ``cfg``'s epochs and progress setting, a :class:`Resume` says them itself
    (``cfg`` may then be None).
    ``write_outputs`` is called with the :class:`RunResult` after the final evaluation, before the
    run folder's lock is released, so that what it writes there (pictures, report) is written by
    the run that owns the folder.
    ``cfg`` names one explicit model: the automatic default (``auto``) is a race of such configs,
    run one level up (:mod:`cnnkit.commands.auto`).
    ``cfg.optim.lr == "auto"`` runs the learning-rate range test (:func:`find_lr`) once the model and
    data are built, and builds the optimizer at its suggestion; config.json records that number.
    ``folder``: a run folder the caller has already claimed and locked
    (:func:`cnnkit.train.folder.claim_fresh_dir`); the run writes there and leaves the lock to the caller.
    """
    started = time.perf_counter()  # --time counts from here: loading and feature extraction included
    if cfg is not None and cfg.model.name == AUTO and resume is None:
        raise ConfigError("train() trains one explicit model: the automatic default is cnnkit.train_model "
                          "(cnnkit.commands.auto.train_auto), or name a model")
    rank, world = dist_info()
    resume = as_resume(resume, cfg)
    cfg = _resolve_config(cfg, resume, announce=rank == 0)  # the run's own when resuming; checked
    if rank == 0:  # its folder can be written: found out now, not after training
        check_out(cfg, folder.folder if folder is not None else resume.run_dir if resume is not None else None)
    finding = _finds_lr(cfg, resume)
    env = setup_runtime(cfg, rank, world)  # device, precision, seed
    cfg, splits, built, parts = _prepare(cfg, splits, env)  # model input, data, model, what the loop runs
    listing = data_listing(splits) if env.writer else None  # committed with the first epoch; --resume checks it
    found = None
    if finding:  # --lr auto: the range test on copies of the model chooses the rate
        found, cfg = _choose_lr(cfg, built, parts, env, AUTO_LR_SWEEPS, cfg.train.progress)
        if env.writer:
            print(f"cnnkit: --lr auto: {cfg.optim.lr:.1e}, {_found_text(found)}", file=sys.stderr, flush=True)
    optimizer, scheduler = build_optimization(cfg, built, parts.training)  # at the run's one rate
    lock = folder or _run_folder(cfg, resume, explicit_out, env)  # locked until this run returns
    try:
        run_dir = lock.folder if lock is not None else None
        history = History(None)  # its files are committed with each epoch's checkpoints
        cbs = _callbacks(cfg, parts.training.val is not None, history, env, callbacks, started, run_dir)
        state = _restore(cfg, resume, parts, optimizer, scheduler, cbs, env, listing)
        if run_dir is not None:
            write_run_start(run_dir, cfg, built.preprocess, splits, parts.features_info, listing)
            if found is not None:
                save_json(found.to_dict(), run_dir / LR_FIND_JSON)
        state = _fit(cfg, built, parts, optimizer, scheduler, env, cbs, history, run_dir, state, listing)
        result = _conclude(cfg, splits, built, parts, env, run_dir, history, state)
        if write_outputs is not None:
            write_outputs(result)  # still under the lock
        return result
    finally:
        if lock is not None and lock is not folder:  # a folder handed in stays the caller's
            lock.release()


def find_lr(cfg: RunConfig, splits: DataSplits | None = None, *, sweeps: int = 1, steps: int | None = None,
            progress: bool = True) -> tuple[LRFind, RunConfig]:
    """The learning-rate range test (:func:`cnnkit.train.lr_find.lr_range_test`) on what ``train(cfg)``
    would build: its model (the head on cached features in ``--transfer features`` mode), data and
    augmentation.  Returns the result and ``cfg`` as resolved, at the suggested rate.

    Writes nothing (a features-mode test fills the features cache as training would).  ``sweeps`` > 1 repeats the sweep
    over other batch orders and suggests the geometric median.  One process (under torchrun every
    rank would test alone).
    """
    if cfg.model.name == AUTO:
        raise ConfigError("lr-find tests one model: name it with --model (the automatic default races several, "
                          "each at its own rate)")
    cfg = _resolve_config(cfg, None, announce=False)
    env = setup_runtime(cfg, 0, 1)
    cfg, splits, built, parts = _prepare(cfg, splits, env)
    return _choose_lr(cfg, built, parts, env, sweeps, progress, steps)


# ----------------------------------------------------------------------------- phases


def _resolve_config(cfg: RunConfig | None, resume: Resume | None, announce: bool = True) -> RunConfig:
    """The config this run uses (a resumed run's own), with portable paths and checked settings."""
    if resume is not None:
        cfg = resume.config(announce)
    if cfg is None:
        raise ConfigError("train needs a RunConfig (or a run folder to resume)")
    cfg = portable_paths(cfg)
    check_settings(cfg)
    monitor_key(cfg.train.monitor, True)  # a misspelt --monitor fails now, not silently after training
    return cfg


def _finds_lr(cfg: RunConfig, resume: Resume | None) -> bool:
    if cfg.optim.lr != AUTO_LR:
        return False
    if resume is not None:  # a run records the number it trained at: resuming never tests again
        raise ConfigError(f"{resume.run_dir}: its config says lr auto, not the rate it trained at; "
                          f"set optim.lr in its config.json")
    return True


def _prepare(cfg: RunConfig, splits: DataSplits | None, env: Env) -> tuple[RunConfig, DataSplits, Built, Parts]:
    """The model and its preprocessing, the data and what the loop runs (loaders, augmentation, loss) -
    what a run trains and what the range test tries rates on.  Returns (cfg resolved for the model and
    data, splits, built, parts)."""
    cfg = model_input_config(cfg)  # the data shaped as the model wants it, before loading
    splits = load_checked(cfg, splits)
    cfg, built = build(cfg, splits, env)
    return cfg, splits, built, loop_parts(cfg, splits, built, env)


def _choose_lr(cfg: RunConfig, built: Built, parts: Parts, env: Env, sweeps: int, progress: bool,
               steps: int | None = None) -> tuple[LRFind | None, RunConfig]:
    """The range test's result and ``cfg`` at its suggestion: rank 0 runs the test on its share of each
    batch and broadcasts the rate (the other ranks get None and the number)."""
    found = None
    if env.writer:
        training = parts.training
        training = dataclasses.replace(training, model=getattr(training.model, "module", training.model))
        with range_test_bar(progress) as on_step:
            # each group's lr at rate 1 is its scale; the test's own optimizer sets the rates
            found = lr_range_test(training, built.model.param_groups(1.0), cfg.optim, steps=steps, sweeps=sweeps,
                                  on_step=on_step)
    lr = found.suggestion if found is not None else None
    if env.world > 1:
        import torch.distributed as dist

        box = [lr]
        dist.broadcast_object_list(box, src=0)
        lr = box[0]
    return found, dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=float(lr)))


def _found_text(found: LRFind | None) -> str:
    if found is None:
        return "found by rank 0"
    last = found.sweeps[0]
    return (f"{found.method}; a range test of {len(last.lrs)} steps from {found.start:.0e} "
            f"({last.stopped})")




def _run_folder(cfg: RunConfig, resume: Resume | None, explicit_out: bool, env: Env) -> RunLock | None:
    """The run folder, locked for this run (rank 0 only: the other ranks write nothing)."""
    if not env.writer:
        return None
    if resume is not None:
        return lock_run_folder(Path(resume.run_dir))
    return claim_fresh_dir(default_run_dir(cfg, explicit_out), explicit_out)


def _callbacks(cfg: RunConfig, has_val: bool, history: History, env: Env,
               extra: list[Callback] | None, started: float | None = None,
               run_dir: Path | None = None) -> list[Callback]:
    """Best checkpoint, history, early stopping, progress, the --time budget (counted from ``started``),
    the caller's callbacks, then the TensorBoard logs (last: it has no state to restore)."""
    monitor = monitor_key(cfg.train.monitor, has_val)
    # the order is saved with train_state.pt: --resume restores each callback's state by position
    cbs: list[Callback] = [BestCheckpoint(monitor), history]
    if cfg.train.patience is not None:
        cbs.append(EarlyStopping(monitor, cfg.train.patience, cfg.train.min_delta))
    budget = TimeBudget(cfg.train.time, started) if cfg.train.time is not None else None
    cbs.append(Progress(cfg.train.epochs, enabled=cfg.train.progress and env.writer,
                        deadline=budget.deadline if budget is not None else None))
    cbs += [budget] if budget is not None else []
    cbs += list(extra or [])
    if cfg.train.tensorboard and run_dir is not None:
        cbs.append(TensorBoardLogger(run_dir))
    return cbs


def _restore(cfg: RunConfig, resume: Resume | None, parts: Parts, optimizer: torch.optim.Optimizer, scheduler: Any,
             cbs: list[Callback], env: Env, listing: dict | None = None) -> FitState:
    """A resumed run's state from its last commit, checked by rank 0 before any rank reads it;
    its data checked against the committed listing (a change is refused unless allowed)."""
    if resume is None:
        return FitState()
    run_dir = Path(resume.run_dir)
    note = None
    if env.writer:
        check_commit(run_dir)
        note = check_data(run_dir, listing, resume.allow_data_change) if listing is not None else None
    if env.world > 1:
        import torch.distributed as dist

        dist.barrier()
    state = restore(run_dir, parts.model, optimizer, scheduler, cbs, tidy=False)
    if env.writer:
        print(note or resume_note(run_dir, state, cfg.train.epochs), file=sys.stderr)
    return state


def _fit(cfg: RunConfig, built: Built, parts: Parts, optimizer: torch.optim.Optimizer, scheduler: Any, env: Env,
         cbs: list[Callback], history: History, run_dir: Path | None, state: FitState,
         listing: dict | None = None) -> FitState:
    """Run the loop, committing each epoch's checkpoints, training state and history together
    (and the data listing with this process's first commit)."""
    pending = {DATA_LISTING: listing_bytes(listing)} if listing is not None else {}

    def save(st: FitState, best: bool) -> None:
        if run_dir is None:
            return
        info = {"epoch": st.epoch, **(st.logs[-1] if st.logs else {})}
        weights = ckpt.checkpoint_bytes(parts.model, built.preprocess, cfg.model, cfg, info)
        files = {ckpt.LAST: weights,
                 ckpt.STATE: ckpt.train_state_bytes(train_state(st, optimizer, scheduler, cbs))}
        files.update(history.files())
        files.update(pending)
        pending.clear()
        if best:
            files[ckpt.BEST] = weights
        commit(run_dir, st.epoch, files)

    training = parts.training
    if use_compile(cfg, env.device):  # the compiled wrapper shares parameters with `model`, which is what gets saved
        training = dataclasses.replace(training, model=torch.compile(training.model))
    return fit(training, optimizer, scheduler, epochs=cfg.train.epochs, rank=env.rank, callbacks=cbs, save=save,
               state=state)


def _conclude(cfg: RunConfig, splits: DataSplits, built: Built, parts: Parts, env: Env, run_dir: Path | None,
              history: History, state: FitState) -> RunResult:
    """The best weights back into the model, its calibration on the validation set (stored in the
    best checkpoint), then the final evaluation with calibrated probabilities and the label issues
    (rank 0 only).

    A diverged run is evaluated on its last committed weights, or not at all when none were.
    """
    model = built.model
    saved = [run_dir / name for name in (ckpt.BEST, ckpt.LAST) if run_dir is not None and (run_dir / name).exists()]
    if saved and (state.diverged or saved[0].name == ckpt.BEST):
        ckpt.load_weights_into(model, saved[0], cfg.model.name)
    best = run_dir / ckpt.BEST if run_dir is not None else None
    evaluation = issues = None
    if env.writer and (not state.diverged or bool(saved)):
        logits = val_logits(model, splits, built, env, cfg, parts.features_cache)
        calibration = calibration_summary(logits, splits.val.labels) if logits is not None else None
        if calibration is not None and best is not None and best.exists():
            # the calibrated best checkpoint joins the last commit, so commit.json still vouches for it
            record = read_commit(run_dir)
            data = calibrated_bytes(best, calibration["temperature"], calibration["min_confidence"])
            commit(run_dir, record.epoch if record else state.epoch, {ckpt.BEST: data})
        weights = parts.training.class_weights
        extra = None if weights is None else {"class_weights": dict(zip(built.preprocess.classes, weights.tolist()))}
        with phase("evaluation"):
            evaluation = final_evaluation(model, splits, built, env, cfg, calibration, logits, parts.features_cache,
                                          extra)
        issues = run_label_issues(cfg, splits, held_out_probs(evaluation, logits, calibration), parts.features_info)
    metrics = evaluation.metrics if evaluation is not None else {}
    return RunResult(run_dir, history.rows, metrics, model, built.preprocess, cfg, evaluation, state.stop_reason,
                     state.diverged, issues)
