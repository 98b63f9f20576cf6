"""Callbacks observe the loop and may ask it to stop or to save the best checkpoint.

They never touch the batch, the loss or the model: the loop owns those.  Each callback's
``state_dict`` is saved with the training state so that ``--resume`` continues exactly.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cnnkit.errors import ConfigError
from cnnkit.evaluate.logged import LOGGED, Logged
from cnnkit.io import atomic_write_bytes
from cnnkit.run_folder import HISTORY_CSV, HISTORY_JSON
from cnnkit.train.notebook import NotebookDisplay, in_notebook


@dataclass
class Signal:
    stop: bool = False
    save_best: bool = False
    reason: str = ""


def _better(mode: str, value: float, best: float, min_delta: float) -> bool:
    if math.isnan(value):
        return False
    return value < best - min_delta if mode == "min" else value > best + min_delta


# --monitor's names and directions, derived from the one declaration of the logged metrics
MONITORS: dict[str, Logged] = {name: m for m in LOGGED for name in m.names}  # --monitor name -> metric
MONITOR_MODES = {m.key: m.mode for m in LOGGED}  # history key -> direction


def monitor_key(name: str, has_val: bool) -> str:
    """The history key(s) that ``--monitor name`` watches; without validation data, their training twins.

    ``a,b`` watches ``a`` and breaks its ties with ``b`` (the default: ``val_acc,val_loss``).
    """
    keys = []
    for part in (p.strip() for p in name.split(",")):
        metric = MONITORS.get(part)
        if metric is None:
            raise ConfigError(f"--monitor {name!r}: not a logged metric; choose one of {', '.join(MONITORS)}, "
                              f"or two separated by a comma (the second breaks ties)")
        if has_val:
            keys.append(metric.key)
        elif metric.train_twin is None:
            raise ConfigError(f"--monitor {part}: computed on validation data, and this run has none "
                              f"(set --val-split or give a validation folder)")
        else:
            keys.append(metric.train_twin)
    return ",".join(keys)


def monitor_mode(monitor: str) -> str:
    """``min`` or ``max`` for a history key of :data:`MONITOR_MODES`; ConfigError for any other."""
    mode = MONITOR_MODES.get(monitor)
    if mode is None:
        raise ConfigError(f"monitor {monitor!r}: not a metric with a known direction; "
                          f"choose one of {', '.join(MONITOR_MODES)}")
    return mode


class Monitor:
    """One metric, or several separated by commas: the first decides, the next break its ties.

    ``"val_acc,val_loss"`` (the default) ranks epochs by validation accuracy and, among epochs of
    equal accuracy, by the lower validation loss.  ``min_delta`` applies to the first metric only.
    """

    def __init__(self, monitor: str, min_delta: float = 0.0):
        self.keys = [k.strip() for k in monitor.split(",") if k.strip()]
        self.modes = [monitor_mode(k) for k in self.keys]
        self.min_delta = abs(min_delta)

    def worst(self) -> tuple[float, ...]:
        return tuple(math.inf if m == "min" else -math.inf for m in self.modes)

    def read(self, logs: Mapping[str, float]) -> tuple[float, ...] | None:
        """The monitored values of an epoch; None when the first is not logged."""
        if self.keys[0] not in logs:
            return None
        return tuple(float(logs.get(k, math.nan)) for k in self.keys)

    def better(self, value: tuple[float, ...], best: tuple[float, ...]) -> bool:
        for i, (v, b, mode) in enumerate(zip(value, best, self.modes)):
            delta = self.min_delta if i == 0 else 0.0
            if _better(mode, v, b, delta):
                return True
            if not (v == b or (i == 0 and abs(v - b) <= delta)):  # worse (or NaN): later keys cannot help
                return False
        return False


def _as_tuple(value: Any) -> tuple[float, ...]:
    """Saved bests: a tuple, or the single float an older run (one metric) saved."""
    return tuple(value) if isinstance(value, (tuple, list)) else (float(value),)


def _saved(value: tuple[float, ...]) -> Any:
    return value[0] if len(value) == 1 else value


class Callback:
    def on_train_begin(self, info: dict[str, Any]) -> None: ...
    def on_epoch_begin(self, epoch: int, steps: int) -> None: ...
    # logs: running means of the epoch so far; reading a value syncs the device, so read sparingly
    def on_batch_end(self, step: int, logs: Mapping[str, float]) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> Signal | None: ...
    def on_train_end(self, logs: dict[str, Any]) -> None: ...
    def state_dict(self) -> dict[str, Any]:
        return {}
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class BestCheckpoint(Callback):
    """Asks for a save whenever ``monitor`` improves (see :class:`Monitor` for ``"a,b"``)."""

    def __init__(self, monitor: str = "val_acc,val_loss"):
        self.monitor, self._rule = monitor, Monitor(monitor)
        self.best = self._rule.worst()
        self.best_epoch = -1

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> Signal | None:
        value = self._rule.read(logs)
        if value is not None and self._rule.better(value, self.best):
            self.best, self.best_epoch = value, epoch
            return Signal(save_best=True)
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"best": _saved(self.best), "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = _as_tuple(state["best"]), state["best_epoch"]


class EarlyStopping(Callback):
    """Keras semantics: stop after ``patience`` epochs without an improvement larger than ``min_delta``."""

    def __init__(self, monitor: str = "val_acc,val_loss", patience: int = 3, min_delta: float = 0.0):
        self.monitor, self._rule = monitor, Monitor(monitor, min_delta)
        self.patience, self.min_delta = patience, abs(min_delta)
        self.best = self._rule.worst()
        self.wait = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> Signal | None:
        value = self._rule.read(logs)
        if value is None:
            return None
        if self._rule.better(value, self.best):
            self.best, self.wait = value, 0
            return None
        self.wait += 1
        if self.wait >= self.patience:
            return Signal(stop=True,
                          reason=f"early stopping: {self.monitor} did not improve for {self.patience} epochs")
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"best": _saved(self.best), "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = _as_tuple(state["best"]), state["wait"]


class TimeBudget(Callback):
    """Stops at an epoch's end when the next epoch would not finish within the run's wall-clock budget,
    unless the rest of the run is predicted to take less than a small grace.

    ``seconds`` counts from ``start`` (a ``time.perf_counter()`` reading taken when the run began,
    so data loading and feature extraction count too).  The next epoch is estimated from the
    measured ones - the slower of the last epoch and their mean, so one fast epoch does not
    promise too much - plus the validation pass again, which the final evaluation costs.

    The grace is ``min(GRACE_S, GRACE_SHARE * seconds)`` (10 s, or 5% of a short budget): when every
    remaining epoch together (same estimate, plus the final validation pass) is predicted to take
    less than that, the run finishes its epochs although the budget is spent - a head trained on
    cached features after a long feature pass, say, whose remaining epochs take a second.
    Otherwise it stops; at most the grace is spent past the budget this way.
    At least one epoch always runs; the best checkpoint so far is what the run keeps.
    ``epochs`` is the run's epoch count (read from the loop's ``on_train_begin`` when not given).
    """

    GRACE_S = 10.0
    GRACE_SHARE = 0.05

    def __init__(self, seconds: float, start: float | None = None, clock=time.perf_counter, epochs: int | None = None):
        self.seconds, self.clock, self.epochs = float(seconds), clock, epochs
        self.start = clock() if start is None else start
        self.durations: list[float] = []  # wall seconds of each epoch, validation included
        self.val_seconds = 0.0
        self._t0 = 0.0

    @property
    def deadline(self) -> float:
        return self.start + self.seconds

    @property
    def grace(self) -> float:
        return min(self.GRACE_S, self.GRACE_SHARE * self.seconds)

    def _epoch_estimate(self) -> float:
        return max(self.durations[-1], sum(self.durations) / len(self.durations)) if self.durations else 0.0

    def next_epoch_estimate(self) -> float:
        return self.rest_estimate(1)

    def rest_estimate(self, epochs_left: int) -> float:
        """Seconds the remaining ``epochs_left`` epochs and the final validation pass are predicted to take."""
        return self._epoch_estimate() * epochs_left + self.val_seconds

    def on_train_begin(self, info: dict[str, Any]) -> None:
        if self.epochs is None and info.get("epochs") is not None:
            self.epochs = int(info["epochs"])

    def on_epoch_begin(self, epoch: int, steps: int) -> None:
        self._t0 = self.clock()

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> Signal | None:
        now = self.clock()
        self.durations.append(now - self._t0)
        self.val_seconds = max(0.0, self.durations[-1] - logs.get("time", self.durations[-1]))
        left = self.deadline - now
        need = self.next_epoch_estimate()
        if need <= left:
            return None
        epochs_left = self.epochs - (epoch + 1) if self.epochs is not None else None
        if epochs_left is not None and (epochs_left <= 0 or self.rest_estimate(epochs_left) < self.grace):
            return None  # the rest of the run costs less than the grace: let it finish
        return Signal(stop=True, reason=f"time budget: {self.seconds:.0f} s; stopped after epoch {epoch + 1} "
                                        f"with {max(left, 0):.0f} s left (the next epoch needs about {need:.0f} s)")

    def state_dict(self) -> dict[str, Any]:
        return {"durations": list(self.durations)}  # a resumed run gets the budget afresh

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.durations = list(state.get("durations", []))


class History(Callback):
    """Per-epoch metrics as CSV and JSON: rewritten atomically after every epoch when given a folder.

    A training run passes no folder: it commits :meth:`files` with each epoch's checkpoints, so
    the history on disk always ends at the committed epoch.
    """

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder is not None else None
        self.rows: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> Signal | None:
        self.rows.append({"epoch": epoch + 1, **logs})
        if self.folder is not None:
            self.write()
        return None

    def files(self) -> dict[str, bytes]:
        """``history.csv`` and ``history.json`` of the rows so far, as bytes."""
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        return {HISTORY_CSV: buf.getvalue().encode(), HISTORY_JSON: (json.dumps(self.rows, indent=1) + "\n").encode()}

    def write(self) -> None:
        for name, data in self.files().items():
            atomic_write_bytes(self.folder / name, data)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state["rows"])


class Progress(Callback):
    """A live bar (rich) on a terminal; in a Jupyter cell a bar and a table filled in epoch by epoch
    (:mod:`cnnkit.train.notebook`); one line per epoch otherwise (logs, CI)."""

    REDRAW_S = 0.5  # seconds between reads of the running loss/accuracy

    def __init__(self, epochs: int, enabled: bool = True, stream=None, deadline: float | None = None):
        self.epochs, self.enabled = epochs, enabled
        self.deadline = deadline  # time.perf_counter() value the run's --time budget ends at; None = no budget
        self._drawn = 0.0
        self.stream = stream or sys.stderr
        self.notebook = NotebookDisplay(epochs, deadline) if enabled and stream is None and in_notebook() else None
        self.live = enabled and self.notebook is None and self.stream.isatty()
        self._bar = None
        self._task = None
        self._t0 = 0.0

    def on_epoch_begin(self, epoch: int, steps: int) -> None:
        self._t0 = time.perf_counter()
        if self.notebook is not None:
            self.notebook.epoch_begin(epoch, steps)
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn(f"epoch {epoch + 1}/{self.epochs}{self._left()}"), BarColumn(),
                            MofNCompleteColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[stats]}"), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("train", total=steps, stats="")

    def on_batch_end(self, step: int, logs: Mapping[str, float]) -> None:
        if self.notebook is not None:
            self.notebook.batch_end(step, logs)
        if self._bar is None:
            return
        now = time.perf_counter()
        if now - self._drawn < self.REDRAW_S:  # advance only: reading the means would sync the GPU
            self._bar.update(self._task, advance=1)
            return
        self._drawn = now
        means = dict(logs)
        self._bar.update(self._task, advance=1, stats=f"loss {means['loss']:.4f} acc {means['acc']:.4f}")

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> Signal | None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if self.notebook is not None:
            self.notebook.epoch_end(epoch, logs)
        elif self.enabled:
            parts = [f"epoch {epoch + 1}/{self.epochs}"]
            parts += [f"{k} {v:.4f}" for k, v in logs.items() if k not in ("lr", "time")]
            parts.append(f"lr {logs.get('lr', 0):.2e}  {time.perf_counter() - self._t0:.1f}s{self._left()}")
            print("  ".join(parts), file=self.stream, flush=True)
        return None

    def _left(self) -> str:
        if self.deadline is None:
            return ""
        return f"  ({max(0.0, self.deadline - time.perf_counter()):.0f} s of the time budget left)"

    def on_train_end(self, logs: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.stop()
        # a diverged run is reported by its caller (the CLI's error line, RunResult.stop_reason)
        reason = logs.get("stop_reason") if not logs.get("diverged") else ""
        if self.notebook is not None:
            self.notebook.train_end(reason or "")
        elif self.enabled and reason:
            print(logs["stop_reason"], file=self.stream, flush=True)
