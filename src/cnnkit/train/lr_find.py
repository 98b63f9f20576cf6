"""The learning-rate range test: raise the rate exponentially over a short sweep, watch the loss.

A copy of the model to train (the head in ``--transfer features`` mode) takes :data:`MAX_STEPS`
optimizer steps (fewer when the data is small) through the training loop's own
:func:`~cnnkit.train.loop.train_step` - batch -> augment -> model -> loss -> backward -> step -
while the rate climbs from ``start`` (1e-7) to ``end`` (10) on a log scale.  The sweep stops early
once the running loss exceeds :data:`DIVERGE` times its lowest value, or is not finite.  The run's
own model, optimizer and random state are untouched, and nothing is written.

**The suggestion** is made to be steady across seeds, where the steepest point of a noisy curve
jumps by an order of magnitude from one seed to the next:

1. the losses are capped at 1.5x the starting loss (a diverging tail carries no information) and
   smoothed *in log-lr space* with a centred Gaussian window (:data:`SMOOTH_DECADES` wide), so the
   curve is not shifted towards higher rates as a running average would shift it;
2. the suggestion is the middle (in log lr) of the *longest descending stretch* of that curve -
   fastai's "valley" rule - rather than the single steepest point; a step of the stretch must
   fall by at least :data:`VALLEY_STEP` of the curve's whole fall, so the ripples of the flat
   start do not stretch it to the left;
3. where the test has several sweeps (each over its own batch order), the suggestion is the
   geometric median of theirs.

``benchmarks/README.md`` measures the spread of the suggestion over seeds for this rule and the
alternatives, and the accuracy of short trainings at the suggestion against a grid of rates.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from cnnkit.config import OptimConfig
from cnnkit.data.loader import epoch_generator
from cnnkit.errors import ConfigError
from cnnkit.io import finite_json
from cnnkit.train.loop import Training, train_step
from cnnkit.train.optim import build_optimizer

__all__ = ["DIVERGE", "END_LR", "LRFind", "MAX_STEPS", "START_LR", "Sweep", "geometric_median", "lr_range_test",
           "lr_schedule", "range_test_bar", "round_lr", "smooth_losses", "steepest_index", "suggest_lr", "sweep_steps",
           "valley_index"]

START_LR = 1e-7
END_LR = 10.0
MAX_STEPS = 100
MIN_STEPS = 30  # fewer points cannot show a valley
PASSES = 3  # small data: at most this many passes over the training batches per sweep
DIVERGE = 4.0  # stop once the running loss is this many times its lowest
RUNNING_BETA = 0.9  # running average of the loss for the stop rule (causal, bias-corrected)
SMOOTH_DECADES = 0.25  # Gaussian sigma of the suggestion's smoothing, in decades of lr
MIN_VALLEY = 0.1  # a descending stretch shorter than this share of the points is no valley
VALLEY_STEP = 0.02  # a valley's points each lie this share of the curve's whole fall below the one before
CLIP = 1.5  # before smoothing, losses are capped at this many times the starting loss: a diverging tail's
            # huge values would otherwise bleed backwards through the centred window
BELOW_MINIMUM = 10.0  # without a valley: this factor below the rate of the lowest loss
SWEEP_EPOCH = 1_000  # sweep r draws the batch orders of epochs r*1000, r*1000+1, ...: its own order


@dataclass(frozen=True)
class Sweep:
    """One sweep: the rate and training loss at each step (the loss of the batch the step was made on)."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]  # raw; may end in a non-finite value
    smoothed: tuple[float, ...]  # in log-lr space, over the finite losses (as long as ``losses`` up to them)
    suggestion: float
    method: str  # how ``suggestion`` was read off this sweep's curve
    stopped: str  # why it ended: "end of the range" or the divergence


@dataclass(frozen=True)
class LRFind:
    """The result of :func:`lr_range_test`: the first sweep's curve, the suggestion and how it was made."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestion: float
    method: str  # in words, e.g. "valley of the smoothed loss, geometric median of 3 sweeps"
    sweeps: tuple[Sweep, ...]
    start: float = START_LR
    end: float = END_LR

    @property
    def spread(self) -> float:
        """max/min of the sweeps' suggestions (1.0 for one sweep)."""
        s = [w.suggestion for w in self.sweeps]
        return max(s) / min(s) if s and min(s) > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        return finite_json(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LRFind":
        """Back from :meth:`to_dict` (an lr_find.json); a null loss is read as NaN."""
        def floats(values: Any) -> tuple[float, ...]:
            return tuple(math.nan if v is None else float(v) for v in values)

        sweeps = tuple(Sweep(floats(s["lrs"]), floats(s["losses"]), floats(s["smoothed"]), float(s["suggestion"]),
                             s["method"], s["stopped"]) for s in data["sweeps"])
        return cls(floats(data["lrs"]), floats(data["losses"]), floats(data["smoothed"]), float(data["suggestion"]),
                   data["method"], sweeps, float(data.get("start", START_LR)), float(data.get("end", END_LR)))


# ----------------------------------------------------------------------------- the curve (arrays)


def sweep_steps(batches_per_epoch: int, steps: int | None = None) -> int:
    """Steps of one sweep: ``steps``, else :data:`MAX_STEPS`, fewer on small data (at most
    :data:`PASSES` passes over its batches, never under :data:`MIN_STEPS`)."""
    if steps is not None:
        if steps < 2:
            raise ConfigError(f"the learning-rate range test needs at least 2 steps, not {steps}")
        return int(steps)
    return int(min(MAX_STEPS, max(MIN_STEPS, PASSES * max(1, batches_per_epoch))))


def lr_schedule(start: float, end: float, steps: int) -> np.ndarray:
    """(steps,) rates from ``start`` to ``end``, evenly spaced in log lr."""
    if not 0 < start < end:
        raise ConfigError(f"the learning-rate range test needs 0 < start < end, not {start:g} to {end:g}")
    return np.geomspace(start, end, steps)


def smooth_losses(lrs: np.ndarray, losses: np.ndarray, decades: float = SMOOTH_DECADES) -> np.ndarray:
    """Losses smoothed with a centred Gaussian in log10(lr) (sigma ``decades``); (n,) -> (n,).

    Centred, so a falling curve is not dragged to the right as a running average drags it; the
    window is renormalised at the ends.  Only finite losses are given (the caller cuts at the first
    non-finite one).
    """
    x = np.log10(np.asarray(lrs, dtype=np.float64))
    y = np.asarray(losses, dtype=np.float64)
    if len(y) < 3 or decades <= 0:
        return y.copy()
    w = np.exp(-0.5 * ((x[:, None] - x[None, :]) / decades) ** 2)  # (n, n): row i weighs every point for i
    return (w @ y) / w.sum(axis=1)


def valley_index(smoothed: np.ndarray, step: float | None = None) -> tuple[int, int]:
    """(first, last) index of the longest descending stretch of ``smoothed`` (fastai's "valley").

    The stretch is the longest subsequence ending at ``last`` in which each point lies at least
    ``step`` below the one before (default :data:`VALLEY_STEP` of the curve's whole fall); ``first``
    is ``last`` minus its length, so small bumps inside a long descent do not cut it, and the ripples
    of the flat start (smaller than ``step``) do not join it.  O(n^2), n <= a few hundred.
    """
    y = np.asarray(smoothed, dtype=np.float64)
    n = len(y)
    if n == 0:
        raise ValueError("no losses")
    if step is None:
        step = VALLEY_STEP * max(0.0, float(y[0] - y.min()))
    longest = np.ones(n, dtype=int)  # longest such subsequence ending at each point
    for i in range(1, n):
        earlier = longest[:i][y[:i] - y[i] > step]
        if len(earlier):
            longest[i] = earlier.max() + 1
    last = int(np.argmax(longest))
    return max(0, last - int(longest[last]) + 1), last


def steepest_index(lrs: np.ndarray, smoothed: np.ndarray) -> int:
    """Index of the steepest fall of ``smoothed`` per decade of lr (Lightning's rule), for comparison."""
    g = np.gradient(np.asarray(smoothed, dtype=np.float64), np.log10(np.asarray(lrs, dtype=np.float64)))
    return int(np.argmin(g))


def suggest_lr(lrs: Any, losses: Any, rule: str = "valley") -> tuple[float, str, np.ndarray]:
    """(suggested lr, how, smoothed losses) for one sweep; ``lrs``/``losses`` (n,) as recorded.

    ``rule``: ``valley`` (the default: the middle of the longest descending stretch), ``steepest``
    (the steepest fall) or ``minimum`` (:data:`BELOW_MINIMUM` times below the lowest loss) - all on
    the smoothed curve.  A valley shorter than :data:`MIN_VALLEY` of the points falls back to ``minimum``.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    finite = np.isfinite(losses)
    n = int(np.argmin(finite)) if not finite.all() else len(losses)  # cut at the first non-finite loss
    if n < 2:
        raise ConfigError("the learning-rate range test diverged at its first steps: lower its start rate")
    lrs, losses = lrs[:n], losses[:n]
    start = float(np.median(losses[:max(1, n // 10)]))  # the untrained model's loss
    smoothed = smooth_losses(lrs, np.minimum(losses, CLIP * start))
    if rule == "steepest":
        return float(lrs[steepest_index(lrs, smoothed)]), "steepest fall of the smoothed loss", smoothed
    if rule == "valley":
        first, last = valley_index(smoothed)
        if last - first + 1 >= max(2, MIN_VALLEY * n):
            # the middle of the stretch in log lr: the rates are evenly spaced there
            how = "valley of the smoothed loss: the middle of its longest descent"
            return float(np.sqrt(lrs[first] * lrs[last])), how, smoothed
    elif rule != "minimum":
        raise ConfigError(f"unknown suggestion rule {rule!r}: valley, steepest or minimum")
    at = float(lrs[int(np.argmin(smoothed))])
    return at / BELOW_MINIMUM, f"{BELOW_MINIMUM:g}x below the rate of the lowest smoothed loss", smoothed


def geometric_median(values: list[float]) -> float:
    """The median in log space (for an even count, the geometric mean of the middle two)."""
    return float(np.exp(np.median(np.log(np.asarray(values, dtype=np.float64)))))


def round_lr(lr: float) -> float:
    """Two significant digits (2.1e-03): what is printed is what trains, and what ``--lr`` repeats."""
    return float(f"{lr:.1e}")


# ----------------------------------------------------------------------------- the sweep


@contextlib.contextmanager
def range_test_bar(enabled: bool = True, stream: Any = None) -> Iterator[Callable[[int, int], None] | None]:
    """``on_step`` for :func:`lr_range_test`: a live bar (rich) on a terminal, None elsewhere."""
    stream = stream or sys.stderr
    if not enabled or not stream.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("lr range test"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(file=stream), transient=True) as bar:
        task = bar.add_task("lr", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _unit_groups(model: nn.Module, groups: list[dict]) -> list[dict]:
    """``groups`` (at unit rate: each group's ``lr`` is its scale) mapped onto ``model``'s parameters,
    groups without any of them dropped (a frozen backbone's)."""
    own = {id(p) for p in model.parameters()}
    out = []
    for g in groups:
        params = [p for p in g["params"] if id(p) in own]
        if params:
            out.append({**g, "params": params})
    if not out:
        raise ConfigError("the learning-rate range test found no trainable parameters")
    return out


def lr_range_test(training: Training, groups: list[dict], optim: OptimConfig, *, start: float = START_LR,
                  end: float = END_LR, steps: int | None = None, sweeps: int = 1, rule: str = "valley",
                  on_step: Callable[[int, int], None] | None = None) -> LRFind:
    """Run ``sweeps`` range tests on copies of ``training.model`` and suggest a learning rate.

    ``training`` is what ``fit`` would run (the head in features mode; its ``val`` is not used);
    ``groups`` the model's parameter groups at unit rate (``param_groups(1.0)``: each group's ``lr``
    is its scale, e.g. 0.1 for a fine-tuned backbone) - groups with none of the trained parameters
    are dropped; ``optim`` the optimizer settings (its ``lr`` and schedule are ignored: the sweep
    sets the rate).  ``on_step(done, total)`` is called after each step (a progress bar).  The
    model, its parameters and buffers, and the global random state are as they were afterwards.
    """
    if sweeps < 1:
        raise ConfigError(f"the learning-rate range test needs at least one sweep, not {sweeps}")
    loader = training.train
    if len(loader) == 0:
        raise ConfigError("the learning-rate range test has no training batches")
    n = sweep_steps(len(loader), steps)
    lrs = lr_schedule(start, end, n)
    devices = [loader.device.index or 0] if loader.device.type == "cuda" else []
    done: list[Sweep] = []
    with torch.random.fork_rng(devices=devices):  # dropout draws here leave the run's own stream as it was
        for r in range(sweeps):
            torch.manual_seed(epoch_generator(training.seed, SWEEP_EPOCH * (r + 1), 2).initial_seed())
            losses, stopped = _sweep(training, lrs, r, groups, optim,
                                     (lambda i, r=r: on_step(r * n + i, sweeps * n)) if on_step else None)
            lr, how, smoothed = suggest_lr(lrs[:len(losses)], losses, rule)
            done.append(Sweep(tuple(float(v) for v in lrs[:len(losses)]), tuple(losses),
                              tuple(float(v) for v in smoothed), lr, how, stopped))
    suggestion = round_lr(geometric_median([s.suggestion for s in done]))
    median = f", geometric median of {sweeps} sweeps over their own batch orders" if sweeps > 1 else ""
    method = done[0].method + median
    return LRFind(done[0].lrs, done[0].losses, done[0].smoothed, suggestion, method, tuple(done), start, end)


def _sweep(training: Training, lrs: np.ndarray, r: int, groups: list[dict], optim: OptimConfig,
           on_step: Callable[[int], None] | None) -> tuple[list[float], str]:
    """One sweep on a fresh copy of ``training.model``: (loss at each step taken, why it stopped)."""
    model, loader = training.model, training.train
    work = copy.deepcopy(model)  # the run's model keeps its own initial weights and BatchNorm statistics
    work.train()
    mapping = {id(p): q for p, q in zip(model.parameters(), work.parameters())}
    mine = [{**g, "params": [mapping[id(p)] for p in g["params"]]} for g in _unit_groups(model, groups)]
    scales = [float(g.get("lr", 1.0)) for g in mine]
    optimizer = build_optimizer([{**g, "lr": s * lrs[0]} for g, s in zip(mine, scales)],
                                _with_lr(optim, float(lrs[0])))
    scaler = torch.amp.GradScaler(loader.device.type, enabled=training.amp is torch.float16)
    step = dataclasses.replace(training, model=work)
    losses: list[float] = []
    running, lowest = 0.0, math.inf
    epoch = SWEEP_EPOCH * r
    whole = len(loader) > 1  # skip an epoch's short last batch: its loss is noisier than the others'
    while True:
        aug_gen = epoch_generator(training.seed, epoch, 1)
        for xb, yb in loader.batches(epoch):
            if whole and len(yb) < loader.batch_size:
                continue
            i = len(losses)
            for g, s in zip(optimizer.param_groups, scales):
                g["lr"] = s * float(lrs[i])
            loss, _, _ = train_step(step, xb, yb, aug_gen, optimizer, scaler)
            value = float(loss.detach())  # one host sync per step: the stop rule needs it now
            losses.append(value)
            if on_step is not None:
                on_step(i + 1)
            if not math.isfinite(value):
                return losses, f"the loss was {value} at lr {lrs[i]:.1e}"
            running = RUNNING_BETA * running + (1 - RUNNING_BETA) * value
            mean = running / (1 - RUNNING_BETA ** (i + 1))  # bias-corrected
            lowest = min(lowest, mean)
            if mean > DIVERGE * lowest:
                return losses, f"the running loss passed {DIVERGE:g}x its lowest at lr {lrs[i]:.1e}"
            if len(losses) == len(lrs):
                return losses, "end of the range"
        epoch += 1


def _with_lr(optim: OptimConfig, lr: float) -> OptimConfig:
    return dataclasses.replace(optim, lr=lr)
