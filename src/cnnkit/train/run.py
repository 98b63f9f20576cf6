"""A training run: data + model + optimizer around the loop, as a few phases.

:func:`train` reads top to bottom like torchvision's reference ``train.py``: resolve the config
(resume, paths, settings); device, precision and seed; the model and its preprocessing; data
loaders; optimizer, schedule and augmentation; the run folder; callbacks; fit; finish (best
weights back in, final evaluation).  Pictures, metrics files and the report of a finished run
are drawn one layer up (:func:`cnnkit.commands.train.write_run_outputs`): :func:`cnnkit.commands.train.train`
(= ``cnnkit.train_model``) hands that in as ``finish``, which :func:`train` calls while it still
holds the run folder's lock.

Files this module writes in the run folder::

    config.json        resolved RunConfig           preprocess.json  classes, size, channels, mean/std
    classes.txt        one class a line             history.csv/json per-epoch metrics
    best.safetensors   best weights (+ metadata)    last.safetensors latest weights (+ metadata)
    train_state.pt     optimizer etc. for --resume  commit.json      the committed epoch, each file's sha256
    data_listing.json  classes, per split a digest of the files (committed: --resume checks the data)
    .lock              held while a run writes the folder (names its pid and host)
    tensorboard/       event files of the epoch metrics (--tensorboard; logs, not part of the commit)

Each epoch's checkpoints, training state and history are one commit (:mod:`cnnkit.train.commit`),
so ``--resume`` always finds weights and state of the same epoch.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cnnkit import runtime
from cnnkit.augment import BatchAugment
from cnnkit.config import ModelConfig, Preprocess, RunConfig, save_json
from cnnkit.data import DataSplits, ImageSet, load_data
from cnnkit.data.loader import BatchLoader
from cnnkit.errors import ConfigError
from cnnkit.evaluate.calibration import calibration_summary, expected_calibration_error, log_probs, scale_probs
from cnnkit.evaluate.evaluate import NO_VALIDATION
from cnnkit.evaluate.metrics import classification_metrics
from cnnkit.evaluate.predict import predict_logits, predict_probs
from cnnkit.inference import checkpoint as ckpt
from cnnkit.inference.calibrated import calibrated_bytes
from cnnkit.inference.preprocess import ImageInputs
from cnnkit.models import ModelDefaults, build_model, default_config
from cnnkit.train.callbacks import BestCheckpoint, Callback, EarlyStopping, History, Progress, TimeBudget
from cnnkit.train.checks import check_out, check_settings, check_splits, monitor_key, portable_paths, validation_note
from cnnkit.train.commit import commit, read_commit
from cnnkit.train.data_listing import DATA_LISTING, data_listing, listing_bytes
from cnnkit.train.folder import claim_fresh_dir, default_run_dir, write_run_start
from cnnkit.train.issues import held_out_probs, run_label_issues
from cnnkit.train.lock import RunLock, lock_run_folder
from cnnkit.train.loop import FitState, fit
from cnnkit.train.losses import class_weights, imbalance
from cnnkit.train.lr_find import LRFind, lr_range_test, range_test_bar
from cnnkit.train.optim import build_optimizer, build_scheduler
from cnnkit.train.resume import Resume, as_resume, check_commit, check_data, restore, resume_note, train_state
from cnnkit.train.tensorboard import TensorBoardLogger

__all__ = ["Resume", "RunResult", "channel_stats", "find_lr", "model_input_config", "train"]

AUTO_LR = "auto"  # OptimConfig.lr's word: the range test's suggestion
UNIT_LR = 1.0  # --lr auto builds the parts at this rate: each parameter group's lr is then its scale
AUTO_LR_SWEEPS = 1  # sweeps of the range test behind --lr auto (each ~100 training steps)

Evaluation = tuple[dict, np.ndarray, ImageSet]  # (metrics, probs (N,K), evaluated images)
Finish = Callable[["RunResult"], None]  # writes a finished run's outputs while its folder is still locked


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
    label_issues: list | None = None  # cnnkit.evaluate.label_issues.LabelIssue rows, most suspicious first


@dataclass
class Env:
    """Where and how this process trains."""

    device: torch.device
    amp: torch.dtype | None
    channels_last: bool
    rank: int
    world: int

    @property
    def writer(self) -> bool:  # only rank 0 writes the run folder
        return self.rank == 0


@dataclass
class Built:
    """The model and everything that turns images into its inputs."""

    cfg: RunConfig  # with the model config resolved from the data
    model: torch.nn.Module
    preprocess: Preprocess
    inputs: ImageInputs
    params: list  # parameters or parameter groups for the optimizer


@dataclass
class Parts:
    """What ``fit`` runs: in ``--transfer features`` mode the head and loaders over cached features."""

    model: torch.nn.Module  # DDP-wrapped where world > 1
    fit_model: torch.nn.Module
    fit_inputs: Any
    train: BatchLoader
    val: BatchLoader | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    augment: BatchAugment | None
    features_info: dict | None = None
    class_weights: torch.Tensor | None = None  # (K,) loss weights of the true classes, None = plain loss
    features_cache: Path | None = None  # features mode: also read by the final evaluation


def train(cfg: RunConfig | None, splits: DataSplits | None = None, resume: str | Path | Resume | None = None,
          callbacks: list[Callback] | None = None, explicit_out: bool = False,
          finish: Finish | None = None) -> RunResult:
    """Train a model as ``cfg`` says; return the run folder, history and final metrics.

    ``splits`` may be passed directly (Python API); otherwise ``cfg.data`` is loaded.
    ``resume`` continues the run in that folder from its last completed epoch, with the run's own
    config: a folder takes ``cfg``'s epochs and progress setting, a :class:`Resume` says them itself
    (``cfg`` may then be None).
    ``finish`` is called with the :class:`RunResult` after the final evaluation, before the run
    folder's lock is released, so that what it writes there (pictures, report) is written by the
    run that owns the folder.
    ``cfg.model.name == "auto"`` lets :mod:`cnnkit.train.auto` choose the model and settings first
    (``finish`` is then called for each stage it trains, in that stage's own folder).
    ``cfg.optim.lr == "auto"`` runs the learning-rate range test (:func:`find_lr`) once the model,
    data and optimizer are built, and trains at its suggestion; config.json records that number.
    """
    started = time.perf_counter()  # --time counts from here: loading and feature extraction included
    if cfg is not None and cfg.model.name == "auto" and resume is None:
        from cnnkit.train.auto import train_auto

        return train_auto(cfg, train, model_input_config, splits=splits, callbacks=callbacks,
                          explicit_out=explicit_out, finish=finish)
    rank, world = _dist_info()
    resume = as_resume(resume, cfg)
    cfg = _resolve_config(cfg, resume, announce=rank == 0)  # the run's own when resuming; checked
    if rank == 0:  # its folder can be written: found out now, not after training
        check_out(cfg, resume.run_dir if resume is not None else None)
    finding = _finds_lr(cfg, resume)  # --lr auto: built at unit rate, then set by the range test
    cfg = _with_lr(cfg, UNIT_LR) if finding else cfg
    env = _setup_runtime(cfg, rank, world)  # device, precision, seed
    cfg, splits, built, val_loader, parts = _prepare(cfg, splits, env)  # model, data, optimizer, augment
    listing = data_listing(splits) if env.writer else None  # committed with the first epoch; --resume checks it
    found = None
    if finding:  # the range test on copies of these parts; then the optimizer and schedule at its suggestion
        found, lr = _range_test(cfg, built, parts, env, AUTO_LR_SWEEPS, cfg.train.progress)
        cfg, built, parts = _at_lr(cfg, built, parts, lr)
        if env.writer:
            print(f"cnnkit: --lr auto: {lr:.1e}, {_found_text(found)}", file=sys.stderr, flush=True)
    lock = _run_folder(cfg, resume, explicit_out, env)  # locked until this run returns
    try:
        run_dir = lock.folder if lock is not None else None
        history = History(None)  # its files are committed with each epoch's checkpoints
        cbs = _callbacks(cfg, val_loader is not None, history, env, callbacks, started, run_dir)
        state = _restore(cfg, resume, parts, cbs, env, listing)
        if run_dir is not None:
            write_run_start(run_dir, cfg, built.preprocess, splits, parts.features_info, listing)
            if found is not None:
                save_json(found.to_dict(), run_dir / "lr_find.json")
        state = _fit(cfg, built, parts, env, cbs, history, run_dir, state, listing)
        result = _finish(cfg, splits, built, parts, env, run_dir, history, state)
        if finish is not None:
            finish(result)  # still under the lock
        return result
    finally:
        if lock is not None:
            lock.release()


def find_lr(cfg: RunConfig, splits: DataSplits | None = None, *, sweeps: int = 1, steps: int | None = None,
            progress: bool = True) -> tuple[LRFind, RunConfig]:
    """The learning-rate range test (:func:`cnnkit.train.lr_find.lr_range_test`) on what ``train(cfg)``
    would build: its model (the head on cached features in ``--transfer features`` mode), data,
    optimizer and augmentation.  Returns the result and ``cfg`` as resolved, at the suggested rate.

    Writes nothing (a features-mode test fills the features cache as training would); ``--model
    auto`` tests the model the automatic plan would train first.  ``sweeps`` > 1 repeats the sweep
    over other batch orders and suggests the geometric median.  One process (under torchrun every
    rank would test alone).
    """
    if cfg.model.name == "auto":
        cfg, splits = _planned(cfg, splits)
    cfg = _with_lr(_resolve_config(cfg, None, announce=False), UNIT_LR)
    env = _setup_runtime(cfg, 0, 1)
    cfg, splits, built, _, parts = _prepare(cfg, splits, env)
    found, lr = _range_test(cfg, built, parts, env, sweeps, progress, steps)
    return found, _with_lr(cfg, lr)


# ----------------------------------------------------------------------------- phases


def _prepare(cfg: RunConfig, splits: DataSplits | None, env: Env
             ) -> tuple[RunConfig, DataSplits, Built, BatchLoader | None, Parts]:
    """The model and its preprocessing, the data, the loaders and the training parts (optimizer,
    schedule, augmentation) - what a run trains and what the range test tries rates on.
    Returns (cfg resolved for the model and data, splits, built, the validation loader, parts)."""
    cfg = model_input_config(cfg)  # the data shaped as the model wants it, before loading
    splits = _data(cfg, splits)
    built = _build_model(cfg, splits, env)
    cfg = built.cfg
    train_loader, val_loader = _loaders(cfg, splits, env)
    return cfg, splits, built, val_loader, _training_parts(cfg, splits, built, env, train_loader, val_loader)


def _finds_lr(cfg: RunConfig, resume: Resume | None) -> bool:
    if cfg.optim.lr != AUTO_LR:
        return False
    if resume is not None:  # a run records the number it trained at: resuming never tests again
        raise ConfigError(f"{resume.run_dir}: its config says lr auto, not the rate it trained at; "
                          f"set optim.lr in its config.json")
    return True


def _with_lr(cfg: RunConfig, lr: float) -> RunConfig:
    return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=lr))


def _planned(cfg: RunConfig, splits: DataSplits | None) -> tuple[RunConfig, DataSplits | None]:
    """``--model auto``: the config of the plan's first stage (said as ``train`` says it), and the
    Python API's arrays brought to its size."""
    from cnnkit.train.auto import data_stats, plan_run

    plan = plan_run(cfg, data_stats(cfg.data, splits))
    print(plan.line, file=sys.stderr, flush=True)
    if splits is not None:
        from cnnkit.data.arrays import conform_splits

        data = model_input_config(plan.first).data
        splits = conform_splits(splits, data.image_size, data.channels)
    return plan.first, splits


def _range_test(cfg: RunConfig, built: Built, parts: Parts, env: Env, sweeps: int, progress: bool,
                steps: int | None = None) -> tuple[LRFind | None, float]:
    """(result, suggested lr): rank 0 runs the test on its share of each batch and broadcasts the rate
    (the other ranks get None and the number)."""
    found = None
    if env.writer:
        with range_test_bar(progress) as on_step:
            found = lr_range_test(getattr(parts.fit_model, "module", parts.fit_model), parts.train,
                                  inputs=parts.fit_inputs, augment=parts.augment,
                                  groups=built.model.param_groups(UNIT_LR),  # fresh: the schedule rescales built.params
                                  optim=cfg.optim, amp=env.amp, label_smoothing=cfg.optim.label_smoothing,
                                  class_weights=parts.class_weights, seed=cfg.train.seed, steps=steps,
                                  sweeps=sweeps, on_step=on_step)
    lr = found.suggestion if found is not None else None
    if env.world > 1:
        import torch.distributed as dist

        box = [lr]
        dist.broadcast_object_list(box, src=0)
        lr = box[0]
    return found, float(lr)


def _at_lr(cfg: RunConfig, built: Built, parts: Parts, lr: float) -> tuple[RunConfig, Built, Parts]:
    """The config, parameter groups, optimizer and schedule at rate ``lr`` (the model as it is)."""
    cfg = _with_lr(cfg, lr)
    params = built.model.param_groups(lr)
    optimizer = build_optimizer(params, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, len(parts.train), cfg.train.epochs)
    return (cfg, dataclasses.replace(built, cfg=cfg, params=params),
            dataclasses.replace(parts, optimizer=optimizer, scheduler=scheduler))


def _found_text(found: LRFind | None) -> str:
    if found is None:
        return "found by rank 0"
    last = found.sweeps[0]
    return (f"{found.method}; a range test of {len(last.lrs)} steps from {found.start:.0e} "
            f"({last.stopped})")



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


def _setup_runtime(cfg: RunConfig, rank: int, world: int) -> Env:
    """Device, precision, thread/allocator tuning and the global seed."""
    device = runtime.select_device(cfg.train.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    runtime.prepare(device, cfg.train.fast)
    runtime.seed_everything(cfg.train.seed)
    amp = runtime.amp_dtype(device, cfg.train.amp if cfg.train.fast else "off")
    channels_last = cfg.train.fast and device.type in ("cpu", "cuda")
    return Env(device, amp, channels_last, rank, world)


def model_input_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the data shaped as the model wants it, before the data is loaded at that size.

    Read from the model's default config without building it: a pretrained backbone gives its
    input size (unless the data config sets one) and RGB; other models take the data's own.
    """
    defaults: ModelDefaults = default_config(cfg.model)
    data = cfg.data
    if defaults.channels is not None and data.channels not in (None, defaults.channels):
        kind = "RGB" if defaults.channels == 3 else f"{defaults.channels}-channel"
        raise ConfigError(f"{cfg.model.name} is pretrained on {kind} images: drop --channels {data.channels}")
    size = data.image_size or defaults.input_size
    data = dataclasses.replace(data, image_size=tuple(size) if size else None, channels=defaults.channels or data.channels)
    return dataclasses.replace(cfg, data=data)


def _data(cfg: RunConfig, splits: DataSplits | None) -> DataSplits:
    splits = splits if splits is not None else load_data(cfg.data)
    check_splits(splits)
    note = validation_note(splits)
    if note is not None and _dist_info()[0] == 0:  # said before training, --quiet or not
        print(f"cnnkit: note: {note}", file=sys.stderr, flush=True)
    if splits.label_map is not None and cfg.train.progress and _dist_info()[0] == 0:
        print(f"cnnkit: {splits.label_map.line()}", file=sys.stderr, flush=True)
    return splits


def _build_model(cfg: RunConfig, splits: DataSplits, env: Env) -> Built:
    """The model for the data's classes, size and channels, and its input normalisation: the
    model's own mean/std where its default config has them (pretrained backbones), else the
    training images' statistics; its parameter groups (a backbone may train at a lower rate)."""
    model_cfg = _resolve_model_config(cfg.model, splits.train)
    cfg = dataclasses.replace(cfg, model=model_cfg)
    model = build_model(model_cfg)
    mean, std = model.input_norm or channel_stats(splits.train.images, seed=cfg.train.seed)
    preprocess = Preprocess(classes=tuple(splits.train.classes), image_size=splits.train.image_size,
                            channels=splits.train.channels, mean=tuple(mean), std=tuple(std), model=model_cfg.name)
    model.to(env.device)
    if env.channels_last:
        model.to(memory_format=torch.channels_last)
    inputs = ImageInputs(mean, std, env.device, env.channels_last)
    # (DDP wraps the same parameter objects later, so the groups stay valid)
    params = model.param_groups(cfg.optim.lr)
    return Built(cfg, model, preprocess, inputs, params)


def _loaders(cfg: RunConfig, splits: DataSplits, env: Env) -> tuple[BatchLoader, BatchLoader | None]:
    if cfg.train.batch_size % env.world:
        raise ConfigError(f"--batch-size {cfg.train.batch_size} is the global batch: it must divide evenly over "
                          f"{env.world} processes")
    # each process takes batch_size / world images of the same global batch
    train = BatchLoader(splits.train, cfg.train.batch_size // env.world, env.device, shuffle=True,
                        seed=cfg.train.seed, rank=env.rank, world=env.world)
    val = (BatchLoader(splits.val, cfg.train.eval_batch_size, env.device, rank=env.rank, world=env.world)
           if splits.val is not None and len(splits.val) else None)
    return train, val


def _training_parts(cfg: RunConfig, splits: DataSplits, built: Built, env: Env, train_loader: BatchLoader,
                    val_loader: BatchLoader | None) -> Parts:
    """DDP, optimizer, schedule and augmentation; in features mode the head and cached features instead."""
    model = built.model
    if env.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model)
    optimizer = build_optimizer(built.params, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, len(train_loader), cfg.train.epochs)
    augment = _build_augment(cfg, len(built.preprocess.classes))
    weights = _class_weights(cfg, splits.train, announce=env.writer and cfg.train.progress)
    parts = Parts(model, model, built.inputs, train_loader, val_loader, optimizer, scheduler, augment,
                  class_weights=weights)
    if cfg.model.transfer == "features":  # frozen backbone: train the head on features computed once
        from cnnkit.train.features import feature_training, features_cache_dir

        cache = features_cache_dir(cfg.data.cache_dir)
        setup = feature_training(model, splits, built.inputs, env.device, env.amp, cache, cfg.train.batch_size,
                                 cfg.train.eval_batch_size, cfg.train.seed, augment, env.world)
        parts = dataclasses.replace(parts, fit_model=setup.head, fit_inputs=setup.inputs, train=setup.train,
                                    val=setup.val, augment=None, features_info=setup.info,
                                    features_cache=cache)
    return parts


def _run_folder(cfg: RunConfig, resume: Resume | None, explicit_out: bool, env: Env) -> RunLock | None:
    """The run folder, locked for this run (rank 0 only: the other ranks write nothing)."""
    if not env.writer:
        return None
    if resume is not None:
        return lock_run_folder(Path(resume.run_dir))
    return claim_fresh_dir(default_run_dir(cfg, explicit_out), explicit_out)


def _restore(cfg: RunConfig, resume: Resume | None, parts: Parts, cbs: list[Callback], env: Env,
             listing: dict | None = None) -> FitState:
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
    state = restore(run_dir, parts.model, parts.optimizer, parts.scheduler, cbs, tidy=False)
    if env.writer:
        print(note or resume_note(run_dir, state, cfg.train.epochs), file=sys.stderr)
    return state


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


def _fit(cfg: RunConfig, built: Built, parts: Parts, env: Env, cbs: list[Callback], history: History,
         run_dir: Path | None, state: FitState, listing: dict | None = None) -> FitState:
    """Run the loop, committing each epoch's checkpoints, training state and history together
    (and the data listing with this process's first commit)."""
    pending = {DATA_LISTING: listing_bytes(listing)} if listing is not None else {}

    def save(st: FitState, best: bool) -> None:
        if run_dir is None:
            return
        info = {"epoch": st.epoch, **(st.logs[-1] if st.logs else {})}
        weights = ckpt.checkpoint_bytes(parts.model, built.preprocess, cfg.model, cfg, info)
        files = {ckpt.LAST: weights, ckpt.STATE: ckpt.train_state_bytes(train_state(st, parts.optimizer,
                                                                                  parts.scheduler, cbs))}
        files.update(history.files())
        files.update(pending)
        pending.clear()
        if best:
            files[ckpt.BEST] = weights
        commit(run_dir, st.epoch, files)

    fit_model = parts.fit_model
    if _use_compile(cfg, env.device):  # the compiled wrapper shares parameters with `model`, which is what gets saved
        fit_model = torch.compile(fit_model)
    return fit(fit_model, parts.train, parts.val, inputs=parts.fit_inputs, augment=parts.augment,
               optimizer=parts.optimizer, scheduler=parts.scheduler, epochs=cfg.train.epochs, seed=cfg.train.seed,
               rank=env.rank, amp=env.amp, label_smoothing=cfg.optim.label_smoothing,
               class_weights=parts.class_weights, callbacks=cbs, save=save, state=state)


def _finish(cfg: RunConfig, splits: DataSplits, built: Built, parts: Parts, env: Env, run_dir: Path | None,
            history: History, state: FitState) -> RunResult:
    """The best weights back into the model, its calibration on the validation set (stored in the
    best checkpoint), then the final evaluation with calibrated probabilities (rank 0 only).

    A diverged run is evaluated on its last committed weights, or not at all when none were.
    """
    model = getattr(parts.model, "module", parts.model)
    saved = [run_dir / name for name in (ckpt.BEST, ckpt.LAST) if run_dir is not None and (run_dir / name).exists()]
    if saved and (state.diverged or saved[0].name == ckpt.BEST):
        ckpt.load_weights_into(model, saved[0], cfg.model.name)
    best = run_dir / ckpt.BEST if run_dir is not None else None
    evaluation = issues = None
    if env.writer and (not state.diverged or bool(saved)):
        val_logits = _val_logits(model, splits, built.inputs, env, cfg, parts.features_cache)
        calibration = calibration_summary(val_logits, splits.val.labels) if val_logits is not None else None
        if calibration is not None and best is not None and best.exists():
            # the calibrated best checkpoint joins the last commit, so commit.json still vouches for it
            record = read_commit(run_dir)
            data = calibrated_bytes(best, calibration["temperature"], calibration["min_confidence"])
            commit(run_dir, record.epoch if record else state.epoch, {ckpt.BEST: data})
        evaluation = final_evaluation(model, splits, built.inputs, env.device, env.amp, cfg, calibration, val_logits,
                                      parts.features_cache)
        if evaluation is not None and parts.class_weights is not None:
            evaluation[0]["class_weights"] = dict(zip(built.preprocess.classes, parts.class_weights.tolist()))
        issues = run_label_issues(cfg, splits, held_out_probs(evaluation, val_logits, calibration), parts.features_info)
    metrics = evaluation[0] if evaluation is not None else {}
    return RunResult(run_dir, history.rows, metrics, model, built.preprocess, cfg, evaluation, state.stop_reason,
                     state.diverged, issues)


def _val_logits(model: torch.nn.Module, splits: DataSplits, inputs: ImageInputs, env: Env,
                cfg: RunConfig, features_cache: Path | None = None) -> np.ndarray | None:
    """(N,1) or (N,K) logits of the validation images (what the temperature is fitted on), or None.

    In features mode (``features_cache``) the head runs on the cached features: no backbone pass."""
    if splits.val is None or not len(splits.val):
        return None
    if features_cache is not None:
        from cnnkit.train.features import logits_from_features

        return logits_from_features(model, splits.val, inputs, env.device, env.amp, features_cache)
    return predict_logits(model, BatchLoader(splits.val, cfg.train.eval_batch_size, env.device), inputs, env.amp)


def _class_weights(cfg: RunConfig, train: ImageSet, announce: bool) -> torch.Tensor | None:
    """The loss weights ``--class-weight`` asks for on these training counts, said once when used."""
    counts = np.bincount(train.labels, minlength=len(train.classes))
    weights = class_weights(counts, cfg.optim.class_weight)
    if weights is not None and announce:
        shown = ", ".join(f"{c} {w:.2f}" for c, w in zip(train.classes, weights.tolist()))
        why = (f"imbalanced training data, largest/smallest class {imbalance(counts):.1f}x"
               if cfg.optim.class_weight == "auto" else "--class-weight balanced")
        print(f"cnnkit: class-weighted loss ({why}): {shown}", file=sys.stderr, flush=True)
    return weights


# ----------------------------------------------------------------------------- helpers


def channel_stats(images: np.ndarray, max_images: int = 10_000, seed: int = 0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std on the [0,1] scale from (at most ``max_images``) training images."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(images), min(len(images), max_images), replace=False))
    x = np.asarray(images[idx], dtype=np.float32) / 255.0  # (n,H,W,C)
    mean = x.mean(axis=(0, 1, 2))
    std = np.maximum(x.std(axis=(0, 1, 2)), 1e-3)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _resolve_model_config(model: ModelConfig, train: ImageSet) -> ModelConfig:
    return dataclasses.replace(model, num_classes=len(train.classes), in_channels=train.channels,
                               image_size=train.image_size)


def _use_compile(cfg: RunConfig, device: torch.device) -> bool:
    """torch.compile pays off on CUDA; on a CPU its start-up usually outweighs a short run's gain."""
    mode = cfg.train.compile
    if mode not in ("auto", "on", "off"):
        raise ConfigError(f"compile must be auto, on or off, not {mode!r}")
    return mode == "on" or (mode == "auto" and cfg.train.fast and device.type == "cuda")


def _build_augment(cfg: RunConfig, num_classes: int) -> BatchAugment | None:
    aug = BatchAugment(cfg.augment, num_classes)
    return aug if aug.active else None


def final_evaluation(model: torch.nn.Module, splits: DataSplits, inputs: ImageInputs, device: torch.device,
                     amp: torch.dtype | None, cfg: RunConfig, calibration: dict | None = None,
                     val_logits: np.ndarray | None = None, features_cache: Path | None = None) -> Evaluation | None:
    """The best weights on the test split (else validation): (metrics, probs (N,K), images), or None.

    With a ``calibration`` the probabilities (and the metrics' loss) are the calibrated ones, and
    the metrics hold ``temperature``, ``ece`` and ``ece_uncalibrated``.  ``val_logits`` spare a
    second pass when the evaluated split is the validation one; ``features_cache`` (features mode)
    runs the head on the cached features instead of the backbone again.
    """
    name, data = ("test", splits.test) if splits.test is not None and len(splits.test) else ("val", splits.val)
    note = {}
    if data is None or not len(data):  # nothing held out: the training images, and every output says so
        name, data, note = "train", splits.train, {"note": NO_VALIDATION}
    tta = None if cfg.augment.tta in (None, "none") else cfg.augment.tta
    if name == "val" and tta is None and val_logits is not None:
        probs = np.exp(log_probs(val_logits)).astype(np.float32)
    elif features_cache is not None and tta is None:
        from cnnkit.train.features import probs_from_features

        probs = probs_from_features(model, data, inputs, device, amp, features_cache)
    else:
        probs = predict_probs(model, BatchLoader(data, cfg.train.eval_batch_size, device), inputs, amp, tta=tta)
    extra = {}
    if calibration is not None:
        extra = {"temperature": calibration["temperature"], "min_confidence": calibration["min_confidence"],
                 "ece_uncalibrated": expected_calibration_error(probs, data.labels)}
        probs = scale_probs(probs, calibration["temperature"])
        extra["ece"] = expected_calibration_error(probs, data.labels)
    metrics = {"split": name, **classification_metrics(probs, data.labels, data.classes), **extra,
               **({"tta": tta} if tta else {}), **note}
    return metrics, probs, data
