"""The run folder's name and the files written when a run starts (config, preprocessing, classes)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cnnkit.config import Preprocess, RunConfig, save_json
from cnnkit.data import DataSplits
from cnnkit.data.skipped import skipped_text
from cnnkit.errors import ConfigError
from cnnkit.inference import checkpoint as ckpt
from cnnkit.io import atomic_write_text


def default_run_dir(cfg: RunConfig, explicit: bool) -> Path:
    base = Path(cfg.train.out)
    if not explicit and base.name == "run":  # the unset default: name the run after data and model
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(cfg.data.source).name or "data").strip("-")
        model = re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.model.name).strip("-")  # "mynets:small" -> "mynets-small"
        base = base.parent / f"{stem}-{model}"
    return base


def fresh_dir(base: Path, explicit: bool) -> Path:
    """An unused run folder: ``base``, else base-2, base-3 ... (explicit --out must not hold a run)."""
    if not (base / ckpt.LAST).exists():
        return base
    if explicit:
        raise ConfigError(f"{base} already holds a run; use --resume {base} to continue it or choose another --out")
    n = 2
    while (base.parent / f"{base.name}-{n}" / ckpt.LAST).exists():
        n += 1
    return base.parent / f"{base.name}-{n}"


def write_run_start(run_dir: Path, cfg: RunConfig, preprocess: Preprocess, splits: DataSplits,
                    features_info: dict[str, Any] | None) -> None:
    """config.json, preprocess.json, classes.txt (and features.json, skipped.txt where they apply)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_json(cfg, run_dir / "config.json")
    save_json(preprocess, run_dir / "preprocess.json")
    if features_info is not None:
        save_json(features_info, run_dir / "features.json")
    atomic_write_text(run_dir / "classes.txt", "\n".join(preprocess.classes) + "\n")
    if splits.skipped:
        atomic_write_text(run_dir / "skipped.txt", skipped_text(splits.skipped))
