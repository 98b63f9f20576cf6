"""The studio's one door into the library: every cnnkit call the studio makes is here.

The rest of the studio (jobs, runs, the web app) calls these functions only, so a rename in
the library is a change of a few lines in this module.  It imports the modules behind the
public names (``cnnkit.train_model`` is ``cnnkit.commands.train.train``...), not the package root, which
sits above the studio in the layer order.  Training goes through the same ``cnnkit.train_model``
as ``cnnkit train``; evaluation, prediction, Grad-CAM, most-wrong and
export are the library's own functions.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cnnkit.config import RunConfig, make_config
from cnnkit.errors import CheckpointError, CnnkitError, ConfigError, DataError
from cnnkit.train.auto import AUTO  # the automatic default: model and settings planned from the data
from cnnkit.train.auto import DEFAULT_TIME as AUTO_TIME  # seconds it plans within when no budget is given
from cnnkit.train.callbacks import Callback, Signal

__all__ = ["Callback", "Signal", "CnnkitError", "ConfigError", "DataError", "CheckpointError",
           "AUTO", "AUTO_TIME", "OFFLINE_DATASETS", "augment_presets", "curves", "dataset_names", "default_model",
           "default_epochs", "model_names", "build_config",
           "check_config", "train", "resume", "saved_epochs", "inspect", "sample_grid_png", "evaluate",
           "model_service", "most_wrong", "export_onnx", "checkpoint_file", "png_bytes", "CHECKPOINT", "LAST"]

OFFLINE_DATASETS = ("mnist-mini", "digits")  # ship inside installed packages: no download
CHECKPOINT = "best.safetensors"
LAST = "last.safetensors"


def augment_presets() -> list[str]:
    from cnnkit.augment.presets import PRESETS

    return list(PRESETS)


def dataset_names() -> list[str]:
    from cnnkit.data.sources import SOURCES

    return list(SOURCES)


def default_model() -> str:
    return RunConfig().model.name


def default_epochs() -> int:
    return RunConfig().train.epochs


def curves() -> list[dict]:
    """The training curves the page draws, from the declaration of the logged metrics."""
    from cnnkit.evaluate.logged import curves as declared

    return [c.as_dict() for c in declared()]


def model_names() -> list[str]:
    from cnnkit.models import model_names as names

    return names()


def build_config(source: str, *, out: Path, cache_dir: str | None = None, data_dir: str | None = None,
                 **settings: Any) -> RunConfig:
    """A validated RunConfig from the form's flat settings (``model``, ``epochs``, ``augment``...).

    ``make_config`` names an unknown setting; :func:`check_config` the values that cannot work.
    """
    cfg = make_config(data=source, out=str(out), cache_dir=cache_dir, data_dir=data_dir,
                             progress=False, **{k: v for k, v in settings.items() if v is not None})
    check_config(cfg)
    return cfg


def check_config(cfg: RunConfig) -> None:
    """ConfigError for what ``cnnkit train`` would refuse, before the job is queued
    (``make_config`` has checked every value already)."""
    from cnnkit.train.checks import check_settings, monitor_key

    if cfg.model.name != AUTO and cfg.model.name not in model_names():  # no 'module:function' from a web form
        raise ConfigError(f"model {cfg.model.name!r} is unknown; choose {AUTO} or one of {', '.join(model_names())}")
    check_settings(cfg)
    monitor_key(cfg.train.monitor, True)


def train(cfg: RunConfig, callbacks: Sequence[Callback]) -> Any:
    """The library's training run (the one ``cnnkit train`` makes) into a new run folder; its RunResult."""
    from cnnkit.commands.train import train as train_model  # cnnkit.train_model

    return train_model(cfg, callbacks=list(callbacks), explicit_out=True)


def resume(run_dir: Path, callbacks: Sequence[Callback], epochs: int | None = None) -> Any:
    """``cnnkit train --resume RUN [--epochs N]``: the run's own settings, to its own epoch count unless given."""
    from cnnkit.commands.train import train as train_model
    from cnnkit.train.resume import Resume

    return train_model(None, resume=Resume(run_dir, epochs, progress=False), callbacks=list(callbacks))


def saved_epochs(run_dir: Path) -> int | None:
    """Epochs the run folder's config asks for (None if unreadable)."""
    from cnnkit.config import load_run_config

    try:
        return int(load_run_config(run_dir / "config.json").train.epochs)
    except (OSError, ValueError, TypeError):
        return None


def inspect(source: str, cache_dir: str | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """``cnnkit inspect``'s report as a dict (counts, sizes, problems, duplicates...)."""
    from cnnkit.data.inspection import inspect_data

    return inspect_data(source, data_dir=data_dir, cache_dir=cache_dir)


def sample_grid_png(source: str, n: int = 16, cache_dir: str | None = None, data_dir: str | None = None) -> bytes:
    """PNG of ``n`` training images with their class names (``cnnkit inspect --samples``)."""
    from cnnkit.config import DataConfig
    from cnnkit.visualize.samples import plot_samples

    cfg = DataConfig(source=source, cache_dir=cache_dir, data_dir=data_dir, val_split=0.0, test_split=0.0)
    from cnnkit.data import load_data

    train_set = load_data(cfg).train
    fig = plot_samples(train_set, n, title=f"{len(train_set)} training images, {len(train_set.classes)} classes")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def evaluate(run_dir: Path) -> Any:
    """The :class:`~cnnkit.evaluate.evaluate.Evaluation` (metrics, probs (N,K), evaluated ImageSet) of the
    run's best checkpoint on its own held-out split."""
    from cnnkit.config import load_run_config
    from cnnkit.evaluate.evaluate import evaluate as evaluate_model  # cnnkit.evaluate_model

    source = load_run_config(run_dir / "config.json").data.source
    return evaluate_model(run_dir, source, device="cpu")


def model_service(run_dir: Path, max_upload_bytes: int) -> Any:
    """The serve app's model service (decode, predict top-k, Grad-CAM PNG) for the run's best checkpoint."""
    from cnnkit.inference import Predictor
    from cnnkit.serve.app import ModelService

    return ModelService(Predictor(run_dir, "cpu"), max_upload_bytes)


def most_wrong(probs: np.ndarray, labels: np.ndarray, n: int) -> dict[str, np.ndarray]:
    from cnnkit.visualize.mostwrong import most_wrong as highest_loss

    return highest_loss(probs, labels, n)


def export_onnx(run_dir: Path) -> Path:
    """``cnnkit export RUN --format onnx`` (checked against PyTorch); returns the written file."""
    from cnnkit.serve.export import export_model

    ckpt = checkpoint_file(run_dir)
    return export_model(ckpt, "onnx", ckpt.with_suffix(".onnx")).path


def checkpoint_file(run_dir: Path) -> Path:
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{run_dir.name}: no {CHECKPOINT} yet (the run has not finished an epoch)")
    return path


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (H,W,C) with C 1 or 3 -> PNG bytes."""
    from PIL import Image

    img = np.asarray(image, np.uint8)
    pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    buf = io.BytesIO()
    pil.save(buf, "PNG")
    return buf.getvalue()
