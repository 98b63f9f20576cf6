"""The studio's one door into the library: every cnnkit call the studio makes is here.

The rest of the studio (jobs, runs, the web app) calls these functions only, so a rename in
the library is a change of a few lines in this module.  It imports the modules behind the
public names (``cnnkit.train_model`` is ``cnnkit.commands.train.train``...), not the package root, which
sits above the studio in the layer order.  Training goes through the same ``cnnkit.train_model``
as ``cnnkit train``; evaluation, prediction, Grad-CAM, most-wrong and
export are the library's own functions.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from cnnkit.config import RunConfig, make_config
from cnnkit.errors import CheckpointError, CnnkitError, ConfigError, DataError
from cnnkit.run_folder import BEST, CONFIG, LAST
from cnnkit.train.callbacks import Callback, Signal
from cnnkit.train.candidates import AUTO  # the automatic default: candidates raced on the data
from cnnkit.train.candidates import DEFAULT_TIME as AUTO_TIME  # its budget when none is given

__all__ = ["Callback", "Signal", "CnnkitError", "ConfigError", "DataError", "CheckpointError",
           "AUTO", "AUTO_TIME", "OFFLINE_DATASETS", "FORM_SETTINGS", "check_form_value", "confined",
           "augment_presets", "curves", "dataset_names", "default_model", "default_epochs", "model_names",
           "build_config", "check_config", "train", "resume", "saved_epochs", "saved_settings", "training_size",
           "pixel_limit_error", "inspect", "sample_grid_png", "evaluate",
           "model_service", "most_wrong", "export_onnx", "checkpoint_file", "png_bytes", "CHECKPOINT", "LAST"]

OFFLINE_DATASETS = ("mnist-mini", "digits")  # ship inside installed packages: no download
# the form's fields -> the settings they set (checked as the CLI checks its flags)
FORM_SETTINGS = {"model": "model.name", "epochs": "train.epochs", "augment": "augment.preset",
                 "batch_size": "train.batch_size", "time_budget": "train.time"}
ROOT_NAME = "the studio folder"


def check_form_value(field: str, value: Any) -> None:
    """ConfigError naming the form field unless ``value`` fits its setting (type, range, choices).

    JSON gives the types as they are: ``"1e18"`` or ``true`` for epochs is not a whole number."""
    from cnnkit.settings import SettingError, check_value, walk

    key = FORM_SETTINGS[field]
    spec = next(s for s in walk(RunConfig) if s.key == key)
    try:
        check_value(spec, value)
    except SettingError as exc:
        raise exc.named({key: field}) from None


@contextlib.contextmanager
def confined(source: str, root: Path | None) -> Iterator[None]:
    """Data work on a folder source lists only what lies under ``root`` once links are followed
    (a link in the folder that leads outside is left out and reported); a dataset name is not a folder."""
    from cnnkit.data.folders import within

    if root is None or source in dataset_names():
        yield
        return
    real, base = os.path.realpath(source), os.path.realpath(root)
    if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
        raise DataError(f"the data of this run is outside {ROOT_NAME}: the studio opens only data under its root")
    with within(root, ROOT_NAME):
        yield
CHECKPOINT = BEST


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


def train(cfg: RunConfig, callbacks: Sequence[Callback], root: Path | None = None) -> Any:
    """The library's training run (the one ``cnnkit train`` makes) into a new run folder; its RunResult.

    ``root``: a folder source lists only the images under it (links out are left out)."""
    from cnnkit.commands.train import train as train_model  # cnnkit.train_model

    with confined(cfg.data.source, root):
        return train_model(cfg, callbacks=list(callbacks), explicit_out=True)


def resume(run_dir: Path, callbacks: Sequence[Callback], epochs: int | None = None, root: Path | None = None) -> Any:
    """``cnnkit train --resume RUN [--epochs N]``: the run's own settings, to its own epoch count unless given."""
    from cnnkit.commands.train import train as train_model
    from cnnkit.config import load_run_config
    from cnnkit.train.resume import Resume

    with confined(load_run_config(run_dir / CONFIG).data.source, root):
        return train_model(None, resume=Resume(run_dir, epochs, progress=False), callbacks=list(callbacks))


def saved_epochs(run_dir: Path) -> int | None:
    """Epochs the run folder's config asks for (None if unreadable)."""
    return saved_settings(run_dir).get("epochs")


def saved_settings(run_dir: Path) -> dict[str, Any]:
    """What the run folder's config says it trains with: model, epochs, augment, time_budget, source
    (empty when unreadable)."""
    from cnnkit.config import load_run_config

    try:
        cfg = load_run_config(run_dir / CONFIG)
    except (OSError, ValueError, TypeError, CnnkitError):
        return {}
    return {"model": cfg.model.name, "epochs": int(cfg.train.epochs), "augment": cfg.augment.preset,
            "time_budget": cfg.train.time, "source": cfg.data.source}


def inspect(source: str, cache_dir: str | None = None, data_dir: str | None = None,
            root: Path | None = None) -> dict[str, Any]:
    """``cnnkit inspect``'s report as a dict (counts, sizes, problems, duplicates...)."""
    from cnnkit.data.inspection import inspect_data

    with confined(source, root):
        return inspect_data(source, data_dir=data_dir, cache_dir=cache_dir)


def training_size(report: dict[str, Any]) -> dict[str, Any] | None:
    """The size (H, W) training resizes this data to when no image size is set, and why.

    One size in the data: that size.  Several: the library's mixed-size default.  A model with
    a fixed input (a pretrained backbone) and auto's plan may choose another; the page says so."""
    from cnnkit.data.cache import MIXED_SIZE_DEFAULT

    sizes = report.get("sizes") or {}
    if not sizes.get("distinct"):
        return None
    if sizes["distinct"] == 1:
        h, w = sizes["median_hw"]
        return {"size": [h, w], "why": "every image has this size"}
    return {"size": list(MIXED_SIZE_DEFAULT),
            "why": f"the images have {sizes['distinct']} different sizes, so each is resized to this one"}


def pixel_limit_error(data: bytes, limit: int) -> str | None:
    """"too large: 36 MP; the limit is 16 MP" when the image's header declares more than ``limit`` pixels
    (the same rule for every format: a JPEG is not let through because it could be decoded smaller)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            pixels = im.width * im.height
    except Exception:  # noqa: BLE001 - not an image at all: the decoder says why, in its own words
        return None
    if pixels <= limit:
        return None
    return f"too large: {_megapixels(pixels)} MP; the limit is {_megapixels(limit)} MP"


def _megapixels(n: int) -> str:
    return f"{n / 1e6:.3g}"


def sample_grid_png(source: str, n: int = 16, cache_dir: str | None = None, data_dir: str | None = None,
                    root: Path | None = None) -> bytes:
    """PNG of ``n`` training images with their class names (``cnnkit inspect --samples``)."""
    from cnnkit.config import DataConfig
    from cnnkit.data import load_data
    from cnnkit.visualize.figures import printable_text
    from cnnkit.visualize.samples import plot_samples

    cfg = DataConfig(source=source, cache_dir=cache_dir, data_dir=data_dir, val_split=0.0, test_split=0.0)
    with confined(source, root):
        train_set = load_data(cfg).train
    fig = plot_samples(train_set, n, title=f"{len(train_set)} training images, {len(train_set.classes)} classes")
    buf = io.BytesIO()
    printable_text(fig).savefig(buf, format="png", dpi=90)  # tabs, CJK class names: no missing-glyph warnings
    return buf.getvalue()


def evaluate(run_dir: Path, root: Path | None = None) -> Any:
    """The :class:`~cnnkit.evaluate.evaluate.Evaluation` (metrics, probs (N,K), evaluated ImageSet) of the
    run's best checkpoint on its own held-out split."""
    from cnnkit.config import load_run_config
    from cnnkit.evaluate.evaluate import evaluate as evaluate_model  # cnnkit.evaluate_model

    source = load_run_config(run_dir / CONFIG).data.source
    with confined(source, root):
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
    if os.path.dirname(os.path.realpath(path)) != os.path.realpath(run_dir):
        raise CheckpointError(f"{run_dir.name}: {CHECKPOINT} is a link that leads out of its run folder; not opened")
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
