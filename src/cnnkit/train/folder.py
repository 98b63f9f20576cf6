"""The run folder's name, its claim (locked, unused) and the files written when a run starts (config,
preprocessing, classes)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Iterator

from cnnkit.config import Preprocess, RunConfig
from cnnkit.data import DataSplits
from cnnkit.data.skipped import skipped_text
from cnnkit.errors import ConfigError
from cnnkit.io import atomic_write_bytes, atomic_write_text
from cnnkit.run_folder import COMMIT, DATA_LISTING, LAST, SKIPPED, RunFolder, check_usable, claim, usable
from cnnkit.train.data_listing import listing_bytes
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
    return (folder / COMMIT).exists() or (folder / LAST).exists()


def _free(folder: Path) -> bool:
    """A numbered candidate cnnkit may take: new, empty, or a run folder without a committed epoch."""
    return usable(folder) and not holds_run(folder)


def claim_fresh_dir(base: Path, explicit: bool, kind: str = "train") -> RunLock:
    """Lock an unused run folder and mark it as cnnkit's: ``base``, else base-2, base-3 ...

    An explicit ``--out`` must be new, empty or a cnnkit run folder (a person's folder is refused,
    untouched), and must not hold a run already.  Whether a folder is used is decided while holding
    its lock, so two runs started together never pick the same one; an explicit ``--out`` that
    another run is writing is a ConfigError.  The marker (:func:`cnnkit.run_folder.claim`) is the
    first file written.
    """
    if explicit:
        check_usable(base)
        lock = lock_run_folder(base)
        if holds_run(base):
            lock.release()
            raise ConfigError(f"{base} already holds a run; use --resume {base} to continue it or choose another --out")
        claim(base, kind)
        return lock
    for folder in numbered_dirs(base):
        if not _free(folder):
            continue
        try:
            lock = lock_run_folder(folder)
        except FolderBusy:  # another run is starting in it now: take the next number
            continue
        if _free(folder):
            claim(folder, kind)
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
    folder = RunFolder(run_dir)
    folder.write_config(cfg)
    folder.write_preprocess(preprocess)
    if features_info is not None:
        folder.write_features(features_info)
    folder.write_classes(preprocess.classes)
    if splits.skipped:
        atomic_write_text(run_dir / SKIPPED, skipped_text(splits.skipped))
