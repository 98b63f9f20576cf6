"""A training run: data + model + optimizer around the loop, and the run folder it writes.

Run folder::

    config.json        resolved RunConfig           preprocess.json  classes, size, channels, mean/std
    classes.txt        one class a line             history.csv/json per-epoch metrics
    best.safetensors   best weights (+ metadata)    last.safetensors latest weights (+ metadata)
    train_state.pt     optimizer etc. for --resume  curves.png       accuracy and loss curves
    metrics.json       final evaluation             confusion_matrix.csv/png
    report.html        all of it on one offline page (cnnkit.visualize.report)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnkit import runtime
from cnnkit.augment import BatchAugment
from cnnkit.config import ModelConfig, Preprocess, RunConfig, load_run_config, replace, save_json
from cnnkit.data import DataSplits, ImageSet, load_data
from cnnkit.data.loader import BatchLoader
from cnnkit.errors import CheckpointError, ConfigError, DataError
from cnnkit.evaluate.metrics import classification_metrics
from cnnkit.evaluate.predict import predict_probs
from cnnkit.io import atomic_write_text
from cnnkit.models import build_model
from cnnkit.models.transfer import prepare_run_config
from cnnkit.train import checkpoint as ckpt
from cnnkit.train.callbacks import BestCheckpoint, Callback, EarlyStopping, History, Progress, TimeBudget
from cnnkit.train.loop import FitState, ImageInputs, fit
from cnnkit.train.optim import build_optimizer, build_scheduler

log = logging.getLogger("cnnkit")


@dataclass
class RunResult:
    run_dir: Path | None
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    model: torch.nn.Module
    preprocess: Preprocess


def channel_stats(images: np.ndarray, max_images: int = 10_000, seed: int = 0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std on the [0,1] scale from (at most ``max_images``) training images."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(images), min(len(images), max_images), replace=False))
    x = np.asarray(images[idx], dtype=np.float32) / 255.0  # (n,H,W,C)
    mean = x.mean(axis=(0, 1, 2))
    std = np.maximum(x.std(axis=(0, 1, 2)), 1e-3)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def _default_run_dir(cfg: RunConfig, explicit: bool) -> Path:
    base = Path(cfg.train.out)
    if not explicit and base.name == "run":  # the unset default: name the run after data and model
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(cfg.data.source).name or "data").strip("-")
        model = re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.model.name).strip("-")  # "mynets:small" -> "mynets-small"
        base = base.parent / f"{stem}-{model}"
    return base


def _fresh_dir(base: Path, explicit: bool) -> Path:
    """An unused run folder: ``base``, else base-2, base-3 ... (explicit --out must not hold a run)."""
    if not (base / ckpt.LAST).exists():
        return base
    if explicit:
        raise ConfigError(f"{base} already holds a run; use --resume {base} to continue it or choose another --out")
    n = 2
    while (base.parent / f"{base.name}-{n}" / ckpt.LAST).exists():
        n += 1
    return base.parent / f"{base.name}-{n}"


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _resolve_model_config(cfg: RunConfig, train: ImageSet) -> ModelConfig:
    return dataclasses.replace(cfg.model, num_classes=len(train.classes), in_channels=train.channels,
                               image_size=train.image_size)


def _check_splits(splits: DataSplits) -> None:
    if len(splits.train) == 0:
        raise DataError("the training set is empty")
    if len(splits.train.classes) < 2:
        raise DataError(f"need at least 2 classes to train a classifier, found {list(splits.train.classes)}")
    counts = np.bincount(splits.train.labels, minlength=len(splits.train.classes))
    untrained = [c for c, n in zip(splits.train.classes, counts) if n == 0]
    if untrained:  # e.g. validation/cats beside train/cat: an output the model could never learn
        raise DataError(f"class(es) {', '.join(map(repr, untrained))} have no training images, only validation "
                        f"or test ones; give every class training images (check the class folder names)")


def check_settings(cfg: RunConfig) -> None:
    """Training and optimizer settings that can work; ConfigError naming the setting otherwise.

    (Without this, a zero batch size is a ZeroDivisionError, a negative rate torch's ValueError,
    and zero epochs or a label smoothing of 1.5 train silently into nonsense.)
    """
    t, o = cfg.train, cfg.optim
    rules = [("train.epochs", t.epochs, t.epochs >= 1, "at least 1"),
             ("train.batch_size", t.batch_size, t.batch_size >= 1, "at least 1"),
             ("train.eval_batch_size", t.eval_batch_size, t.eval_batch_size >= 1, "at least 1"),
             ("train.patience", t.patience, t.patience is None or t.patience >= 0, "0 or more"),
             ("optim.label_smoothing", o.label_smoothing, 0 <= o.label_smoothing < 1, "in [0, 1)"),
             ("optim.step_size", o.step_size, o.step_size >= 1, "at least 1")]
    rules += [(f"optim.{name}", getattr(o, name), getattr(o, name) >= 0, "0 or more")
              for name in ("lr", "momentum", "weight_decay", "decay", "warmup_epochs", "gamma")]
    for name, value, ok, want in rules:
        if not ok:
            raise ConfigError(f"{name}={value}: must be {want}")


# --monitor names -> history keys; Keras 2 spells accuracy out
MONITORS = {"val_loss": "val_loss", "val_acc": "val_acc", "val_accuracy": "val_acc",
            "loss": "loss", "acc": "acc", "accuracy": "acc"}


def monitor_key(name: str, has_val: bool) -> str:
    """The history key(s) that ``--monitor name`` watches; without validation data, their training twins.

    ``a,b`` watches ``a`` and breaks its ties with ``b`` (the default: ``val_acc,val_loss``).
    """
    keys = []
    for part in name.split(","):
        key = MONITORS.get(part.strip())
        if key is None:
            raise ConfigError(f"--monitor {name!r}: not a logged metric; choose one of {', '.join(MONITORS)}, "
                              f"or two separated by a comma (the second breaks ties)")
        keys.append(key if has_val else key.replace("val_", ""))
    return ",".join(keys)


def portable_paths(cfg: RunConfig) -> RunConfig:
    """Folder/archive sources and data/cache folders as absolute path strings.

    The config is saved with the run and read back by evaluate/report/--resume, possibly from
    another working directory; a relative ``data/pets`` would then name nothing (or another folder).
    """
    from cnnkit.data.sources import SOURCES

    def absolute(p):
        return None if p is None else os.path.abspath(os.path.expanduser(p))

    source = str(cfg.data.source)
    if source not in SOURCES and os.path.exists(os.path.expanduser(source)):
        source = absolute(source)
    data = dataclasses.replace(cfg.data, source=source, data_dir=absolute(cfg.data.data_dir),
                               cache_dir=absolute(cfg.data.cache_dir))
    return dataclasses.replace(cfg, data=data, train=dataclasses.replace(cfg.train, out=str(cfg.train.out)))


def train(cfg: RunConfig, splits: DataSplits | None = None, resume: str | Path | None = None,
          callbacks: list[Callback] | None = None, explicit_out: bool = False) -> RunResult:
    """Train a model as ``cfg`` says; return the run folder, history and final metrics.

    ``splits`` may be passed directly (Python API); otherwise ``cfg.data`` is loaded.
    ``resume`` continues the run in that folder from its last completed epoch.
    ``cfg.model.name == "auto"`` lets :mod:`cnnkit.auto` choose the model and settings first.
    """
    started = time.perf_counter()  # --time counts from here: loading and feature extraction included
    if cfg.model.name == "auto" and resume is None:
        from cnnkit.auto import train_auto

        return train_auto(cfg, splits=splits, callbacks=callbacks, explicit_out=explicit_out)
    rank, world = _dist_info()
    if resume is not None:
        cfg = resumed_config(resume, cfg.train.epochs, cfg.train.progress)
    cfg = portable_paths(cfg)
    check_settings(cfg)
    monitor_key(cfg.train.monitor, True)  # a misspelt --monitor fails now, not silently after training
    device = runtime.select_device(cfg.train.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    runtime.prepare(device, cfg.train.fast)
    runtime.seed_everything(cfg.train.seed)
    cfg = prepare_run_config(cfg)  # pretrained backbones: their input size (unless set) and RGB
    splits = splits if splits is not None else load_data(cfg.data)
    _check_splits(splits)
    model_cfg = _resolve_model_config(cfg, splits.train)
    cfg = dataclasses.replace(cfg, model=model_cfg)

    model = build_model(model_cfg)
    norm = getattr(model, "input_norm", None)  # pretrained backbones bring their own mean/std
    mean, std = norm if norm is not None else channel_stats(splits.train.images, seed=cfg.train.seed)
    preprocess = Preprocess(classes=tuple(splits.train.classes), image_size=splits.train.image_size,
                            channels=splits.train.channels, mean=tuple(mean), std=tuple(std), model=model_cfg.name)

    channels_last = cfg.train.fast and device.type in ("cpu", "cuda")
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    amp = runtime.amp_dtype(device, cfg.train.amp if cfg.train.fast else "off")
    inputs = ImageInputs(mean, std, device, channels_last)

    if cfg.train.batch_size % world:
        raise ConfigError(f"--batch-size {cfg.train.batch_size} is the global batch: it must divide evenly over {world} processes")
    # each process takes batch_size / world images of the same global batch
    train_loader = BatchLoader(splits.train, cfg.train.batch_size // world, device, shuffle=True, seed=cfg.train.seed,
                               rank=rank, world=world)
    val_loader = (BatchLoader(splits.val, cfg.train.eval_batch_size, device, rank=rank, world=world)
                  if splits.val is not None and len(splits.val) else None)
    monitor = monitor_key(cfg.train.monitor, has_val=val_loader is not None)

    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model)
    target = getattr(model, "module", model)  # transfer models give the backbone its own (lower) rate
    params = (target.param_groups(cfg.optim.lr) if hasattr(target, "param_groups")
              else [p for p in model.parameters() if p.requires_grad])
    optimizer = build_optimizer(params, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, len(train_loader), cfg.train.epochs)
    augment = _build_augment(cfg, len(preprocess.classes))
    fit_model, fit_inputs, features_info, features_cache = model, inputs, None, None
    if model_cfg.transfer == "features":  # frozen backbone: train the head on features computed once
        from cnnkit.train.features import feature_training, features_cache_dir

        features_cache = features_cache_dir(cfg.data.cache_dir)  # also read by the final evaluation
        setup = feature_training(model, splits, inputs, device, amp, features_cache,
                                 cfg.train.batch_size, cfg.train.eval_batch_size, cfg.train.seed, augment, world)
        fit_model, fit_inputs, train_loader, val_loader, augment = setup.head, setup.inputs, setup.train, setup.val, None
        features_info = setup.info

    writer = rank == 0
    run_dir = (Path(resume) if resume is not None else _fresh_dir(_default_run_dir(cfg, explicit_out), explicit_out)) if writer else None
    history = History(run_dir)
    cbs: list[Callback] = [BestCheckpoint(monitor), history]
    if cfg.train.patience is not None:
        cbs.append(EarlyStopping(monitor, cfg.train.patience, cfg.train.min_delta))
    budget = TimeBudget(cfg.train.time, started) if cfg.train.time is not None else None
    cbs.append(Progress(cfg.train.epochs, enabled=cfg.train.progress and writer,
                        deadline=budget.deadline if budget is not None else None))
    cbs += [budget] if budget is not None else []
    cbs += callbacks or []

    state = FitState()
    if resume is not None:  # every rank restores the same state; only rank 0 tidies the folder
        state = _restore(Path(resume), model, optimizer, scheduler, cbs, tidy=writer)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_json(cfg, run_dir / "config.json")
        save_json(preprocess, run_dir / "preprocess.json")
        if features_info is not None:
            save_json(features_info, run_dir / "features.json")
        atomic_write_text(run_dir / "classes.txt", "\n".join(preprocess.classes) + "\n")
        if splits.skipped:
            atomic_write_text(run_dir / "skipped.txt", "".join(f"{f}\t{why}\n" for f, why in splits.skipped))

    def save(kind: str, st: FitState) -> None:
        if run_dir is None:
            return
        info = {"epoch": st.epoch, **(st.logs[-1] if st.logs else {})}
        ckpt.save_checkpoint(run_dir / (ckpt.BEST if kind == "best" else ckpt.LAST), model, preprocess, model_cfg, cfg, info)
        if kind == "last":
            ckpt.save_train_state(run_dir / ckpt.STATE, {
                "epoch": st.epoch, "step": st.step, "stop_reason": st.stop_reason, "logs": st.logs,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "callbacks": [cb.state_dict() for cb in cbs]})

    if _use_compile(cfg, device):  # the compiled wrapper shares parameters with `model`, which is what gets saved
        fit_model = torch.compile(fit_model)
    state = fit(fit_model, train_loader, val_loader, inputs=fit_inputs, augment=augment, optimizer=optimizer,
                scheduler=scheduler, epochs=cfg.train.epochs, seed=cfg.train.seed, rank=rank, amp=amp,
                label_smoothing=cfg.optim.label_smoothing, callbacks=cbs, save=save, state=state)

    model = getattr(model, "module", model)
    if run_dir is not None and (run_dir / ckpt.BEST).exists():
        ckpt.load_weights_into(model, run_dir / ckpt.BEST, model_cfg.name)
    metrics = final_evaluation(model, splits, inputs, device, amp, cfg, run_dir, features_cache) if writer else {}
    return RunResult(run_dir, history.rows, metrics, model, preprocess)


def resumed_config(run_dir: str | Path, epochs: int | None = None, progress: bool | None = None) -> RunConfig:
    """The config saved in ``run_dir``, for ``--resume``: its own epoch count unless ``epochs`` is given."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a run folder (no config.json) to resume")
    try:
        saved = load_run_config(path)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable run config ({exc})") from None
    return dataclasses.replace(saved, train=replace(saved.train, epochs=epochs, progress=progress))


def _use_compile(cfg: RunConfig, device: torch.device) -> bool:
    """torch.compile pays off on CUDA; on a CPU its start-up usually outweighs a short run's gain."""
    mode = cfg.train.compile
    if mode not in ("auto", "on", "off"):
        raise ConfigError(f"compile must be auto, on or off, not {mode!r}")
    return mode == "on" or (mode == "auto" and cfg.train.fast and device.type == "cuda")


def _build_augment(cfg: RunConfig, num_classes: int) -> BatchAugment | None:
    aug = BatchAugment(cfg.augment, num_classes)
    return aug if aug.active else None


# temporary files of writes cut short by a kill: ours (cnnkit.io.atomic_path) and safetensors' own
_TEMP_FILE = re.compile(r"^\.(.+\.[A-Za-z0-9_]+\.tmp|tmp[A-Za-z0-9]{6})$")


def remove_stale_temp_files(run_dir: Path) -> None:
    """Delete what a killed run's interrupted writes left behind (as large as the model each)."""
    for p in run_dir.iterdir():
        if _TEMP_FILE.match(p.name) and p.is_file():
            p.unlink(missing_ok=True)


def _restore(run_dir: Path, model, optimizer, scheduler, cbs: list[Callback], tidy: bool = True) -> FitState:
    if tidy:
        remove_stale_temp_files(run_dir)
    state = ckpt.load_train_state(run_dir / ckpt.STATE)
    ckpt.read_metadata(run_dir / ckpt.LAST)  # a clear error if it is not a cnnkit checkpoint
    ckpt.load_weights_into(model, run_dir / ckpt.LAST)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    for cb, sd in zip(cbs, state["callbacks"]):
        cb.load_state_dict(sd)
    return FitState(epoch=state["epoch"], step=state["step"], stop_reason=state["stop_reason"], logs=list(state["logs"]))


def final_evaluation(model, splits: DataSplits, inputs, device, amp, cfg: RunConfig, run_dir: Path | None,
                     features_cache: Path | None = None) -> dict:
    """Evaluate the best weights on the test split (else validation); write metrics and pictures.

    ``features_cache`` (features mode): the head runs on the cached features, not the backbone again.
    """
    name, data = ("test", splits.test) if splits.test is not None and len(splits.test) else ("val", splits.val)
    if data is None or not len(data):
        return {}
    tta = None if cfg.augment.tta in (None, "none") else cfg.augment.tta
    if features_cache is not None and tta is None:
        from cnnkit.train.features import probs_from_features

        probs = probs_from_features(model, data, inputs, device, amp, features_cache)
    else:
        probs = predict_probs(model, BatchLoader(data, cfg.train.eval_batch_size, device), inputs, amp, tta=tta)
    metrics = {"split": name, **classification_metrics(probs, data.labels, data.classes), **({"tta": tta} if tta else {})}
    if run_dir is not None:
        write_evaluation(run_dir, metrics)
        write_curves(run_dir, f"{cfg.model.name} on {Path(cfg.data.source).name}")
        if cfg.train.report:
            write_report_safely(run_dir, (metrics, probs, data))
    return metrics


def write_report_safely(run_dir: Path, evaluation: tuple) -> None:
    """report.html from the evaluation just made; a failure is a warning, never a lost run."""
    try:
        from cnnkit.visualize.report import write_report

        write_report(run_dir, evaluation=evaluation)
    except Exception as exc:  # noqa: BLE001 - the trained weights and metrics are already on disk
        log.warning("could not write %s: %s: %s", run_dir / "report.html", type(exc).__name__, exc)


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
