"""A run folder, named once: every file a run writes there, whether a folder is a cnnkit run, its records.

A folder becomes a run folder when cnnkit claims it: :func:`claim` writes the :data:`MARKER` file
(``{"format": 1, "kind": "train" | "lr-find", "created": ...}``) before anything else.  From then on
:func:`is_run` says yes; a run folder of an older cnnkit, written before the marker, is recognised
by its :data:`COMMIT` record.  cnnkit writes only into a new folder, an empty one, or a run folder
(:func:`check_usable`), so a person's files that happen to be called ``config.json`` or
``best.safetensors`` are never overwritten.

Files of a run folder::

    cnnkit-run.json      the marker: cnnkit wrote this folder     .lock   held while a run writes it
    config.json          resolved RunConfig                       preprocess.json  classes, size, mean/std
    classes.txt          one class a line                         skipped.txt      images left out, and why
    history.csv/.json    per-epoch metrics                        features.json    the cached features' pass
    best.safetensors     best weights (+ metadata)                last.safetensors latest weights (+ metadata)
    train_state.pt       optimizer etc. for --resume              commit.json      the committed epoch
    data_listing.json    the data trained on (committed)
    metrics.json         final evaluation                         confusion_matrix.csv/.png
    curves.png           the logged metrics by epoch              report.html      the run's report
    label_issues.csv     images whose label is doubted            lr_find.json/.png the range test
    auto.json            the automatic default's choice           leaderboard.csv  every candidate it tried
    candidates/          the candidates not chosen                tensorboard/     event files
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from cnnkit.config import Preprocess, RunConfig, from_dict, load_run_config, save_json
from cnnkit.errors import ConfigError
from cnnkit.io import atomic_write_text

MARKER = "cnnkit-run.json"
MARKER_FORMAT = 1
KINDS = ("train", "lr-find")

CONFIG = "config.json"
PREPROCESS = "preprocess.json"
CLASSES = "classes.txt"
SKIPPED = "skipped.txt"
FEATURES = "features.json"
HISTORY_CSV, HISTORY_JSON = "history.csv", "history.json"
BEST, LAST, STATE = "best.safetensors", "last.safetensors", "train_state.pt"
COMMIT = "commit.json"
DATA_LISTING = "data_listing.json"  # the data trained on, committed with the epochs (cnnkit.train.data_listing)
METRICS = "metrics.json"
CONFUSION_CSV, CONFUSION_PNG = "confusion_matrix.csv", "confusion_matrix.png"
CURVES = "curves.png"
REPORT = "report.html"
LABEL_ISSUES = "label_issues.csv"
LR_FIND_JSON, LR_FIND_PNG = "lr_find.json", "lr_find.png"
AUTO = "auto.json"
LEADERBOARD = "leaderboard.csv"
CANDIDATES = "candidates"  # a subfolder: one folder per candidate not chosen
TENSORBOARD = "tensorboard"  # a subfolder of event files
LOCK = ".lock"


def is_run(folder: str | Path) -> bool:
    """True when cnnkit wrote ``folder``: its marker, or the commit record of an older cnnkit's run."""
    folder = Path(folder)
    return (folder / MARKER).is_file() or (folder / COMMIT).is_file()


def is_empty(folder: str | Path) -> bool:
    """True when ``folder`` holds nothing but (at most) a run lock left by a claim that went no further."""
    return all(p.name == LOCK for p in Path(folder).iterdir())


def usable(folder: str | Path) -> bool:
    """True when cnnkit may write into ``folder``: new, an empty folder, or a cnnkit run folder."""
    folder = Path(folder)
    if not folder.exists():
        return not folder.is_symlink()
    try:
        return folder.is_dir() and (is_run(folder) or is_empty(folder))
    except OSError:
        return False


def check_usable(folder: str | Path, flag: str = "--out") -> None:
    """ConfigError unless cnnkit may write into ``folder``: it does not exist yet, is an empty folder,
    or is a cnnkit run folder (:func:`is_run`).  Reads only: the folder is left as it is."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir():
        raise ConfigError(f"{flag} {folder}: exists and is not a folder; choose a new folder")
    try:
        if is_run(folder) or is_empty(folder):
            return
    except OSError as exc:
        raise ConfigError(f"{flag} {folder}: cannot read the folder ({exc.strerror or exc})") from None
    raise ConfigError(f"{flag} {folder}: holds files but is not a cnnkit run folder (no {MARKER}); cnnkit writes "
                      f"only into a new or empty folder or a run folder of its own, so choose another {flag}")


def claim(folder: str | Path, kind: str = "train") -> None:
    """Mark ``folder`` as cnnkit's (the first file written when a run takes a folder); kept if already there."""
    if kind not in KINDS:
        raise ValueError(f"run folder kind {kind!r}: one of {', '.join(KINDS)}")
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    save_json({"format": MARKER_FORMAT, "kind": kind, "created": created}, folder / MARKER)


def _read_json(path: Path) -> Any:
    """A JSON file's value; None when the file is absent; ConfigError naming it when unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from None


class RunFolder:
    """One run folder: its files' paths and its JSON records, read and written.

    ``RunFolder(path).config()`` is the run's :class:`~cnnkit.config.RunConfig` as it was saved;
    ``metrics()``, ``auto()``, ``features()``, ``marker()`` are None where the run has none.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def is_run(self) -> bool:
        return is_run(self.path)

    def claim(self, kind: str = "train") -> None:
        claim(self.path, kind)

    def marker(self) -> dict | None:
        return _read_json(self.path / MARKER)

    # ---- records read
    def config(self, cls: type = RunConfig) -> RunConfig:
        """The run's config as saved (ConfigError naming the file when absent or unusable)."""
        path = self.path / CONFIG
        if not path.is_file():
            raise ConfigError(f"{self.path}: not a run folder (no {CONFIG})")
        return load_run_config(path, cls, named=False)

    def preprocess(self) -> Preprocess:
        data = _read_json(self.path / PREPROCESS)
        if not isinstance(data, dict):
            raise ConfigError(f"{self.path / PREPROCESS}: missing or not a JSON object")
        try:
            return from_dict(Preprocess, data)
        except TypeError as exc:
            raise ConfigError(f"{self.path / PREPROCESS}: unusable ({exc})") from None

    def classes(self) -> tuple[str, ...]:
        path = self.path / CLASSES
        try:
            return tuple(line for line in path.read_text(encoding="utf-8").splitlines() if line)
        except OSError as exc:
            raise ConfigError(f"{path}: unreadable ({exc.strerror or exc})") from None

    def history(self) -> list[dict]:
        """The per-epoch metrics ([] before the first epoch)."""
        return _read_json(self.path / HISTORY_JSON) or []

    def metrics(self) -> dict | None:
        return _read_json(self.path / METRICS)

    def features(self) -> dict | None:
        return _read_json(self.path / FEATURES)

    def auto(self) -> dict | None:
        """The automatic default's record (what it chose and why), or None (a run with an explicit model)."""
        try:
            record = _read_json(self.path / AUTO)
        except ConfigError:
            return None
        return record if isinstance(record, dict) else None

    # ---- records written (atomically)
    def write_config(self, cfg: RunConfig) -> None:
        save_json(cfg, self.path / CONFIG)

    def write_preprocess(self, preprocess: Preprocess) -> None:
        save_json(preprocess, self.path / PREPROCESS)

    def write_classes(self, classes: tuple[str, ...] | list[str]) -> None:
        atomic_write_text(self.path / CLASSES, "\n".join(classes) + "\n")

    def write_metrics(self, metrics: dict) -> None:
        save_json(metrics, self.path / METRICS)

    def write_features(self, info: dict) -> None:
        save_json(info, self.path / FEATURES)

    def write_auto(self, record: dict) -> None:
        save_json(record, self.path / AUTO)


__all__ = ["AUTO", "BEST", "CANDIDATES", "CLASSES", "COMMIT", "CONFIG", "CONFUSION_CSV", "CONFUSION_PNG",
           "CURVES", "DATA_LISTING", "FEATURES", "HISTORY_CSV", "HISTORY_JSON", "KINDS", "LABEL_ISSUES",
           "LAST", "LEADERBOARD", "LOCK", "LR_FIND_JSON", "LR_FIND_PNG", "MARKER", "MARKER_FORMAT",
           "METRICS", "PREPROCESS", "REPORT", "RunFolder", "SKIPPED", "STATE", "TENSORBOARD",
           "check_usable", "claim", "is_empty", "is_run", "usable"]
