"""Run folders under the studio's runs folder: the list, one run's numbers, and its evaluation.

A run's evaluation (the best checkpoint on the run's own held-out split, as ``cnnkit
evaluate RUN`` makes it) is computed once and kept in memory with its images, so confusion
cells, most-wrong images, thumbnails and Grad-CAM all refer to the same numbered images.
It is recomputed when the checkpoint file changes (a resumed run).
"""

from __future__ import annotations

import csv
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.run_folder import CONFIG, HISTORY_JSON, LEADERBOARD, METRICS, STATE, RunFolder
from cnnkit.studio import engine
from cnnkit.studio.paths import PathError, inside, relative_to, resolve_under

MAX_CELL_IMAGES = 200
# a candidate of the automatic default, as auto.json and leaderboard.csv write it
CANDIDATE_COLUMNS = ("name", "kind", "model", "transfer", "score", "score_kind", "cv", "seconds", "epochs",
                     "stopped", "chosen")
MAX_CANDIDATES = 50
MAX_NOTES = 20  # the race's decisions ("no fine-tuning: ...") shown under its candidates


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def open_run(runs_dir: Path, name: str) -> Path:
    """The run folder ``name`` (one level under ``runs_dir``); PathError if it is not a run."""
    if not name or "/" in name.replace("\\", "/"):
        raise PathError(f"{name!r}: not a run name")
    run_dir = resolve_under(runs_dir, name)
    if not (run_dir / CONFIG).is_file():
        raise PathError(f"{name!r}: not a run folder (no {CONFIG})", 404)
    return run_dir


def data_label(source: str, root: Path) -> str:
    """A dataset name as is; a folder as its path under the root (else only its name)."""
    path = Path(source)
    if not path.is_absolute():
        return source
    try:
        return relative_to(root, path) or "."
    except ValueError:
        return path.name


def summary(run_dir: Path, root: Path, active: dict[Path, str]) -> dict[str, Any]:
    """Key numbers of one run: model, data, accuracy, epochs, date, state."""
    cfg = _read_json(run_dir / CONFIG) or {}
    history = _read_json(run_dir / HISTORY_JSON) or []
    metrics = _read_json(run_dir / METRICS) or {}
    planned = (cfg.get("train") or {}).get("epochs")
    done = len(history)
    stamp = max((p.stat().st_mtime for p in (run_dir / HISTORY_JSON, run_dir / CONFIG) if p.exists()),
                default=0.0)
    last = history[-1] if history else {}
    state = active.get(run_dir.resolve()) or active.get(run_dir)
    if state is None:
        if metrics:
            state = "done"
        elif (run_dir / STATE).is_file() and planned is not None and done < planned:
            state = "stopped"
        else:
            state = "incomplete" if not (run_dir / engine.CHECKPOINT).is_file() else "done"
    return {
        "name": run_dir.name,
        "model": (cfg.get("model") or {}).get("name", ""),
        "data": data_label(str((cfg.get("data") or {}).get("source", "")), root),
        "accuracy": metrics.get("accuracy"),
        "split": metrics.get("split"),
        "val_acc": last.get("val_acc"),
        "epochs": done,
        "epochs_planned": planned,
        "date": datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M") if stamp else "",
        "timestamp": stamp,
        "state": state,
        "resumable": state == "stopped",
        "has_checkpoint": (run_dir / engine.CHECKPOINT).is_file(),
    }


def list_runs(runs_dir: Path, root: Path, active: dict[Path, str]) -> list[dict[str, Any]]:
    """Every run folder under ``runs_dir``, newest first."""
    if not runs_dir.is_dir():
        return []
    base = runs_dir.resolve()
    runs = [summary(p, root, active) for p in runs_dir.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / CONFIG).is_file() and inside(base, p)]
    return sorted(runs, key=lambda r: -r["timestamp"])


def _leaderboard(path: Path) -> list[dict[str, Any]] | None:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))[:MAX_CANDIDATES]
    except (OSError, ValueError, csv.Error):
        return None


def auto_choice(run_dir: Path) -> dict[str, Any] | None:
    """What the automatic default chose and why (``auto.json``, with ``leaderboard.csv``'s candidates
    when the record has none); None for a run with an explicit model.  Older records, which keep
    their reasons as a list and have no candidates, read as a line and a reason."""
    record = RunFolder(run_dir).auto()
    rows = record.get("candidates") if record is not None else None
    if not isinstance(rows, list):
        rows = _leaderboard(run_dir / LEADERBOARD) if (run_dir / LEADERBOARD).is_file() else None
    if record is None and rows is None:
        return None
    record = record or {}
    reason = record.get("reason")
    if not isinstance(reason, str):
        reason = "; ".join(str(r) for r in record.get("reasons") or [] if r)
    line = str(record.get("line") or "")
    notes = record.get("notes")
    return {"line": line.removeprefix("cnnkit: ").removeprefix("auto: "), "reason": reason,
            "chosen": record.get("chosen"), "budget_s": record.get("budget_s"), "elapsed_s": record.get("elapsed_s"),
            "notes": [str(n) for n in notes if n][:MAX_NOTES] if isinstance(notes, list) else [],
            "candidates": [{c: row.get(c) for c in CANDIDATE_COLUMNS} for row in rows or []
                           if isinstance(row, dict)][:MAX_CANDIDATES]}


def details(run_dir: Path, root: Path, active: dict[Path, str]) -> dict[str, Any]:
    """The summary plus history, saved metrics and the settings that matter to a reader."""
    cfg = _read_json(run_dir / CONFIG) or {}
    train, optim, aug = cfg.get("train") or {}, cfg.get("optim") or {}, cfg.get("augment") or {}
    return {
        **summary(run_dir, root, active),
        "history": _read_json(run_dir / HISTORY_JSON) or [],
        "metrics": _read_json(run_dir / METRICS),
        "settings": {"batch_size": train.get("batch_size"), "optimizer": optim.get("name"), "lr": optim.get("lr"),
                     "schedule": optim.get("schedule"), "augment": aug.get("preset"), "seed": train.get("seed")},
        "files": sorted(p.name for p in run_dir.iterdir() if p.is_file() and not p.name.startswith(".")),
        "auto": auto_choice(run_dir),
    }


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    probs: np.ndarray  # (N, K)
    labels: np.ndarray  # (N,)
    preds: np.ndarray  # (N,)
    images: Any  # the evaluated ImageSet: images uint8 (N, H, W, C)
    stamp: int  # mtime_ns of the checkpoint it was made from

    def image(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self.labels):
            raise PathError(f"image {index}: the evaluation has images 0-{len(self.labels) - 1}", 404)
        return np.asarray(self.images.images[index])

    def item(self, i: int) -> dict[str, Any]:
        classes = self.metrics["classes"]
        t, p = int(self.labels[i]), int(self.preds[i])
        return {"index": int(i), "true": classes[t], "pred": classes[p], "prob": float(self.probs[i, p]),
                "prob_true": float(self.probs[i, t])}

    def cell(self, true: int, pred: int) -> dict[str, Any]:
        k = len(self.metrics["classes"])
        if not (0 <= true < k and 0 <= pred < k):
            raise PathError(f"no confusion cell ({true}, {pred}) for {k} classes", 404)
        idx = np.flatnonzero((self.labels == true) & (self.preds == pred))
        # the most confident mistakes (or least confident right answers) first
        order = idx[np.argsort(self.probs[idx, pred] * (1 if true != pred else -1))[::-1]] if len(idx) else idx
        return {"true": self.metrics["classes"][true], "pred": self.metrics["classes"][pred], "count": int(len(idx)),
                "images": [self.item(int(i)) for i in order[:MAX_CELL_IMAGES]]}

    def most_wrong(self, n: int) -> list[dict[str, Any]]:
        result = engine.most_wrong(self.probs, self.labels, n)
        return [{**self.item(int(i)), "loss": float(loss)} for i, loss in zip(result["index"], result["loss"])]


class RunCache:
    """Evaluations and loaded models per run, rebuilt when the run's checkpoint changes."""

    def __init__(self, max_upload_bytes: int, root: Path | None = None):
        self.max_upload_bytes, self.root = max_upload_bytes, root  # root: the data a run may be evaluated on
        self._lock = threading.Lock()
        self._locks: dict[Path, threading.Lock] = {}
        self._evals: dict[Path, Evaluation] = {}
        self._services: dict[Path, tuple[int, Any]] = {}

    def _run_lock(self, run_dir: Path) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(run_dir, threading.Lock())

    @staticmethod
    def _stamp(run_dir: Path) -> int:
        return engine.checkpoint_file(run_dir).stat().st_mtime_ns

    def evaluation(self, run_dir: Path) -> Evaluation:
        stamp = self._stamp(run_dir)
        with self._run_lock(run_dir):
            cached = self._evals.get(run_dir)
            if cached is not None and cached.stamp == stamp:
                return cached
            metrics, probs, data = engine.evaluate(run_dir, self.root)
            ev = Evaluation(metrics, probs, np.asarray(data.labels), probs.argmax(axis=1), data, stamp)
            self._evals[run_dir] = ev
            return ev

    def service(self, run_dir: Path) -> Any:
        stamp = self._stamp(run_dir)
        with self._run_lock(run_dir):
            cached = self._services.get(run_dir)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            service = engine.model_service(run_dir, self.max_upload_bytes)
            self._services[run_dir] = (stamp, service)
            return service
