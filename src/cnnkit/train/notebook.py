"""Training progress in a Jupyter cell: a bar for the epoch and a table that fills in epoch by epoch.

fastai's ``fit`` and Keras' notebook bar show the same; the terminal and logs keep plain lines
(:class:`cnnkit.train.callbacks.Progress` chooses).  The display is one IPython display object
(``display(..., display_id=True)``) updated in place: plain HTML, so it needs no widget library and
survives in a saved notebook; its ``text/plain`` form is the same table as text.
"""

from __future__ import annotations

import html
import sys
import time
from typing import Any, Mapping

REDRAW_S = 0.5  # seconds between redraws within an epoch (each one is a message to the front end)
SKIP = ("lr", "time")  # logged keys shown in their own columns


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not in a terminal IPython, not in a plain interpreter).

    Looks only at what is already imported: a program that never imported IPython is not in a kernel.
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes} min {s:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class ProgressView:
    """What the cell shows: finished epochs as rows, the running epoch as a bar (IPython's rich repr)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.rows: list[dict[str, float]] = []  # one per finished epoch: its logs
        self.epoch, self.step, self.steps = 0, 0, 0
        self.running = ""  # the running loss/accuracy of the epoch
        self.left = ""  # the time left, in words
        self.note = ""  # why training stopped early

    def columns(self) -> list[str]:
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in SKIP and k not in keys]
        return ["epoch", *keys, "lr", "time"]

    def _cells(self, epoch: int, row: Mapping[str, float]) -> list[str]:
        out = [str(epoch)]
        for key in self.columns()[1:]:
            v = row.get(key)
            text = f"{v:.2e}" if key == "lr" else _duration(v) if key == "time" else f"{v:.4f}"
            out.append("" if v is None else text)
        return out

    def _status(self) -> str:
        if self.steps == 0:
            return self.note
        return (f"epoch {self.epoch + 1}/{self.epochs}: step {self.step}/{self.steps}"
                f"{'  ' + self.running if self.running else ''}{'  ' + self.left if self.left else ''}")

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns())
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in self._cells(i + 1, r)) + "</tr>"
                       for i, r in enumerate(self.rows))
        bar = (f"<div><progress value='{self.step}' max='{self.steps}' style='width:300px;height:1em'></progress> "
               f"<span>{html.escape(self._status())}</span></div>" if self.steps else
               f"<div>{html.escape(self.note)}</div>" if self.note else "")
        table = (f"<table class='cnnkit-progress' style='text-align:right'><thead><tr>{head}</tr></thead>"
                 f"<tbody>{body}</tbody></table>" if self.rows else "")
        return f"<div class='cnnkit-progress'>{bar}{table}</div>"

    def __repr__(self) -> str:
        lines = ["  ".join(self.columns())] + ["  ".join(self._cells(i + 1, r)) for i, r in enumerate(self.rows)]
        return "\n".join((lines if self.rows else []) + ([self._status()] if self._status() else []))


class NotebookDisplay:
    """Drives one :class:`ProgressView` in the cell from the loop's callback events."""

    def __init__(self, epochs: int, deadline: float | None = None) -> None:
        self.view = ProgressView(epochs)
        self.deadline = deadline  # time.perf_counter() value the time budget ends at
        self._handle: Any = None
        self._drawn = 0.0
        self._epoch_t0 = 0.0
        self._durations: list[float] = []

    def _show(self) -> None:
        from IPython.display import display

        if self._handle is None:
            self._handle = display(self.view, display_id=True)
        else:
            self._handle.update(self.view)

    def epoch_begin(self, epoch: int, steps: int) -> None:
        self.view.epoch, self.view.step, self.view.steps, self.view.running = epoch, 0, steps, ""
        self._epoch_t0 = time.perf_counter()
        self.view.left = self._left(0.0, None, done=epoch)
        self._show()
        self._drawn = time.perf_counter()

    def batch_end(self, step: int, logs: Mapping[str, float]) -> None:
        self.view.step += 1
        now = time.perf_counter()
        if now - self._drawn < REDRAW_S:  # reading the means would sync the GPU: only now and then
            return
        self._drawn = now
        means = dict(logs)
        self.view.running = f"loss {means['loss']:.4f} acc {means['acc']:.4f}"
        per_step = (now - self._epoch_t0) / self.view.step
        self.view.left = self._left(per_step * (self.view.steps - self.view.step), per_step * self.view.steps)
        self._show()

    def epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        self._durations.append(time.perf_counter() - self._epoch_t0)
        self.view.rows.append(dict(logs))
        self.view.step = self.view.steps
        self.view.left = self._left(0.0, None, done=epoch + 1)
        self._show()

    def train_end(self, stop_reason: str = "") -> None:
        self.view.steps, self.view.note = 0, stop_reason
        self._show()

    def _left(self, rest_of_epoch: float, epoch_estimate: float | None, done: int | None = None) -> str:
        """'about N s left' for the run: this epoch's rest plus the epochs after it, each taking the mean
        epoch time so far (or, in the first epoch, ``epoch_estimate`` from its step rate)."""
        done = self.view.epoch + 1 if done is None else done
        per_epoch = sum(self._durations) / len(self._durations) if self._durations else epoch_estimate
        if per_epoch is None:
            return ""
        left = rest_of_epoch + per_epoch * max(0, self.view.epochs - done)
        if self.deadline is not None:
            left = min(left, max(0.0, self.deadline - time.perf_counter()))
        return f"about {_duration(left)} left"
