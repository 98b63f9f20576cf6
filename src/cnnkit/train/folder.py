"""The run folder's name, its claim (locked, unused) and the files written when a run starts (config, preprocessing, classes)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Iterator

from cnnkit.config import Preprocess, RunConfig, save_json
from cnnkit.data import DataSplits
from cnnkit.data.skipped import skipped_text
from cnnkit.errors import ConfigError
from cnnkit.inference import checkpoint as ckpt
from cnnkit.io import atomic_write_bytes, atomic_write_text
from cnnkit.train.commit import MANIFEST
from cnnkit.train.data_listing import DATA_LISTING, listing_bytes
from cnnkit.train.lock import FolderBusy, RunLock, lock_run_folder


def default_run_dir(cfg: RunConfig, explicit: bool) -> Path:
    base = Path(cfg.train.out)
    if not explicit and base.name == "run":  # the unset default: name the run after data and model
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(cfg.data.source).name or "data").strip("-")
        model = re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.model.name).strip("-")  # "mynets:small" -> "mynets-small"
        base = base.parent / f"{stem}-{model}"
    return base


def numbered_dirs(base: Path) -> Iterator[Path]:
    """``base``, then base-2, base-3, ...: the names a run folder (or an lr-find folder) takes in turn."""
    for n in itertools.count(1):
        yield base if n == 1 else base.parent / f"{base.name}-{n}"


def holds_run(folder: Path) -> bool:
    """True when ``folder`` has a committed epoch (or the last checkpoint of an older cnnkit's run)."""
    return (folder / MANIFEST).exists() or (folder / ckpt.LAST).exists()


def claim_fresh_dir(base: Path, explicit: bool) -> RunLock:
    """Lock an unused run folder: ``base``, else base-2, base-3 ... (explicit --out must not hold a run).

    Whether a folder is used is decided while holding its lock, so two runs started together
    never pick the same one; an explicit ``--out`` that another run is writing is a ConfigError.
    """
    if explicit:
        lock = lock_run_folder(base)
        if holds_run(base):
            lock.release()
            raise ConfigError(f"{base} already holds a run; use --resume {base} to continue it or choose another --out")
        return lock
    for folder in numbered_dirs(base):
        if holds_run(folder):
            continue
        try:
            lock = lock_run_folder(folder)
        except FolderBusy:  # another run is starting in it now: take the next number
            continue
        if not holds_run(folder):
            return lock
        lock.release()
    raise AssertionError("unreachable")


def write_run_start(run_dir: Path, cfg: RunConfig, preprocess: Preprocess, splits: DataSplits,
                    features_info: dict[str, Any] | None, listing: dict[str, Any] | None = None) -> None:
    """config.json, preprocess.json, classes.txt (and features.json, skipped.txt where they apply),
    and the data listing (``listing``; committed with the next epoch, see :mod:`cnnkit.train.data_listing`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if listing is not None:
        atomic_write_bytes(run_dir / DATA_LISTING, listing_bytes(listing))
    save_json(cfg, run_dir / "config.json")
    save_json(preprocess, run_dir / "preprocess.json")
    if features_info is not None:
        save_json(features_info, run_dir / "features.json")
    atomic_write_text(run_dir / "classes.txt", "\n".join(preprocess.classes) + "\n")
    if splits.skipped:
        atomic_write_text(run_dir / "skipped.txt", skipped_text(splits.skipped))
