"""Named phases of long work, for whoever is watching: a terminal bar, a notebook cell, the studio page.

Work that takes a while announces itself as a phase::

    with phase("decoding", total=len(files), unit="images") as step:
        for f in files:
            ...
            step()            # one more done (step(n) for n)

and a watcher receives :class:`PhaseEvent` values (start, each advance, end) while it listens::

    with listen(print):
        load_data(cfg)

Listeners are held in a context variable, so a studio job's thread hears only its own work.
Phases nest (a candidate's training contains its decoding); each event carries its depth.
Nothing here imports torch: every layer may announce phases.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from dataclasses import dataclass
from typing import Callable, Iterator

__all__ = ["PhaseEvent", "listen", "phase"]


@dataclass(frozen=True)
class PhaseEvent:
    """One moment of a phase: ``kind`` is "start", "advance" or "end"."""

    name: str  # e.g. "decoding", "feature pass", "evaluation", "report", "candidate fast-cnn"
    kind: str
    done: int
    total: int | None  # None: the amount of work is not known in advance
    unit: str
    elapsed: float  # seconds since the phase started
    depth: int = 0  # 0 for an outermost phase

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(1.0, self.done / self.total)

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far (None before any progress or without a total)."""
        if not self.total or self.done <= 0 or self.kind == "end":
            return None if self.kind != "end" else 0.0
        return self.elapsed / self.done * max(0, self.total - self.done)


_LISTENERS: contextvars.ContextVar[tuple[Callable[[PhaseEvent], None], ...]] = contextvars.ContextVar(
    "cnnkit_phase_listeners", default=())
_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("cnnkit_phase_depth", default=0)
MIN_INTERVAL = 0.2  # seconds between "advance" events of one phase: a listener is never flooded


@contextlib.contextmanager
def listen(listener: Callable[[PhaseEvent], None]) -> Iterator[None]:
    """Send every phase event of the work inside this block (this thread/context) to ``listener``."""
    token = _LISTENERS.set(_LISTENERS.get() + (listener,))
    try:
        yield
    finally:
        _LISTENERS.reset(token)


def _emit(event: PhaseEvent) -> None:
    for listener in _LISTENERS.get():
        try:
            listener(event)
        except Exception:  # noqa: BLE001 - a watcher's failure must never stop the work it watches
            pass


@contextlib.contextmanager
def phase(name: str, total: int | None = None, unit: str = "") -> Iterator[Callable[[int], None]]:
    """Announce the work inside the block as phase ``name``; yields ``step(n=1)`` to report progress.

    Without listeners this costs one context-variable read per step."""
    listeners = _LISTENERS.get()
    depth = _DEPTH.get()
    start = time.perf_counter()
    state = {"done": 0, "sent": 0.0}

    def event(kind: str) -> PhaseEvent:
        return PhaseEvent(name, kind, state["done"], total, unit, time.perf_counter() - start, depth)

    def step(n: int = 1) -> None:
        state["done"] += n
        if listeners:
            now = time.perf_counter()
            if now - state["sent"] >= MIN_INTERVAL or (total is not None and state["done"] >= total):
                state["sent"] = now
                _emit(event("advance"))

    token = _DEPTH.set(depth + 1)
    if listeners:
        _emit(event("start"))
    try:
        yield step
    finally:
        _DEPTH.reset(token)
        if listeners:
            _emit(event("end"))
