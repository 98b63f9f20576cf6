"""The training loop: batch -> augment -> model -> loss -> backward -> step -> schedule -> metrics.

Everything else (data, model, optimizer, checkpoint files) is prepared by ``cnnkit.train.run``;
this module only runs epochs of a :class:`Training` (model, batches, input conversion, augmentation,
loss settings).  Each epoch's shuffling, augmentation and dropout draw from RNGs seeded by
(seed, epoch), so a run resumed at an epoch boundary replays the uninterrupted run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.distributed as dist

from cnnkit.data.loader import BatchLoader, epoch_generator
from cnnkit.evaluate.metrics import balanced_accuracy, macro_f1
from cnnkit.runtime import autocast
from cnnkit.train.callbacks import Callback
from cnnkit.train.losses import cross_entropy, hard_labels, predicted_class


@dataclass(frozen=True)
class Training:
    """What the loop trains and how it makes the loss: one bundle for :func:`fit`, :func:`train_step`
    and the learning-rate range test (:func:`cnnkit.train.lr_find.lr_range_test`)."""

    model: torch.nn.Module  # what is trained: the whole model, or the head in --transfer features mode
    train: BatchLoader  # batches of (B,C,H,W) uint8 images, or (B,D) cached features
    inputs: Any  # an ImageInputs (or anything with its scale, normalize and call): batch -> model input
    val: BatchLoader | None = None  # evaluated at each epoch's end (val_loss, val_acc, ...)
    augment: Callable | None = None  # (x, y, generator) -> (x, target): a BatchAugment, None = none
    amp: torch.dtype | None = None  # autocast dtype, None = float32
    label_smoothing: float = 0.0
    class_weights: torch.Tensor | None = None  # (K,) loss weights of the true classes, None = plain loss
    seed: int = 0  # with the epoch: the batch order, augmentation and dropout draws


@dataclass
class FitState:
    """What survives an epoch: restored on resume."""

    epoch: int = 0  # next epoch to run
    step: int = 0
    stop_reason: str = ""
    logs: list[dict[str, float]] = field(default_factory=list)
    diverged: bool = False  # stopped on a non-finite loss or weights (not saved: never resumed from)


class RunningMeans(Mapping[str, float]):
    """Loss and accuracy summed on the training device; read (one host sync) only when asked.

    ``add`` queues three tiny device ops per batch instead of two ``.item()`` calls, so on CUDA the
    loop never waits for the GPU; the progress bar reads the means only when it redraws.
    """

    KEYS = ("loss", "acc")

    def __init__(self, device: torch.device):
        # loss*n, correct, n; float64 where the device has it (MPS does not)
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.sums = torch.zeros(3, dtype=dtype, device=device)

    @torch.no_grad()
    def add(self, loss: torch.Tensor, predicted: torch.Tensor, labels: torch.Tensor) -> None:
        n = labels.shape[0]
        self.sums[0] += loss.detach() * n
        self.sums[1] += (predicted == labels).sum()
        self.sums[2] += n

    def reduce(self) -> "RunningMeans":
        """Sum the counters over DDP ranks (no-op in a single process); NCCL needs them on the GPU."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.sums, op=dist.ReduceOp.SUM)
        return self

    def as_dict(self) -> dict[str, float]:
        loss_sum, correct, n = self.sums.tolist()  # the one host sync
        if n == 0:
            return {"loss": math.nan, "acc": math.nan}
        return {"loss": loss_sum / n, "acc": correct / n}

    def __getitem__(self, key: str) -> float:
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, loader: BatchLoader, inputs: Any, amp: torch.dtype | None,
                  label_smoothing: float = 0.0) -> dict[str, float]:
    """Mean loss and accuracy, balanced accuracy and macro-F1 over ``loader`` (all ranks together).

    The loss is the plain (unweighted) one: a class-weighted training loss is a training choice,
    the validation loss stays comparable between runs.
    """
    model.eval()
    means = RunningMeans(loader.device)
    cm = None
    for xb, yb in loader.batches(0):
        with autocast(loader.device, amp):
            logits = model(inputs(xb))
        predicted = predicted_class(logits)
        means.add(cross_entropy(logits, yb, label_smoothing), predicted, yb)
        cm = confusion_counts(predicted, yb, max(2, logits.shape[1]), cm)
    return {**means.reduce().as_dict(), **class_balance(cm)}


def confusion_counts(predicted: torch.Tensor, labels: torch.Tensor, k: int, cm: torch.Tensor | None) -> torch.Tensor:
    """Add a batch to the (K,K) confusion counts kept on the device (rows = true class)."""
    batch = torch.bincount(labels * k + predicted, minlength=k * k).view(k, k)
    return batch if cm is None else cm + batch


def class_balance(cm: torch.Tensor | None) -> dict[str, float]:
    """balanced_accuracy and macro_f1 of the confusion counts summed over DDP ranks."""
    if cm is None:
        return {"balanced_accuracy": math.nan, "macro_f1": math.nan}
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(cm, op=dist.ReduceOp.SUM)
    counts = cm.cpu().numpy()
    return {"balanced_accuracy": balanced_accuracy(counts), "macro_f1": macro_f1(counts)}


def fit(training: Training, optimizer: torch.optim.Optimizer, scheduler: Any, *, epochs: int, rank: int = 0,
        callbacks: Sequence[Callback] = (), save: Callable[[FitState, bool], None] = lambda state, best: None,
        state: FitState | None = None) -> FitState:
    """Train ``training.model`` for ``epochs`` epochs (from ``state.epoch`` when resuming).

    ``save(state, best)`` commits each finished epoch (``best``: the monitored metric improved).
    An epoch whose training loss or weights are not finite is not saved: the run stops with
    ``state.diverged`` and a ``stop_reason`` naming it.
    """
    state = state or FitState()
    model, train, val = training.model, training.train, training.val
    steps = len(train)
    # fp16 gradients underflow without loss scaling; bf16 and fp32 need none (the scaler is then a no-op).
    # Its scale is not checkpointed: after a resume it re-finds its level within a few steps.
    scaler = torch.amp.GradScaler(train.device.type, enabled=training.amp is torch.float16)
    for cb in callbacks:
        cb.on_train_begin({"epochs": epochs, "steps": steps})
    while state.epoch < epochs and not state.stop_reason:
        epoch = state.epoch
        # dropout and augmentation RNGs for this epoch (and this DDP rank)
        torch.manual_seed(epoch_generator(training.seed, epoch, 2 + 2 * rank).initial_seed())
        aug_gen = epoch_generator(training.seed, epoch, 1 + 2 * rank)
        for cb in callbacks:
            cb.on_epoch_begin(epoch, steps)
        model.train()
        t0 = time.perf_counter()
        means = RunningMeans(train.device)
        for i, (xb, yb) in enumerate(train.batches(epoch)):
            loss, logits, target = train_step(training, xb, yb, aug_gen, optimizer, scaler)
            scheduler.step()
            state.step += 1
            means.add(loss, predicted_class(logits.detach()), hard_labels(target))
            for cb in callbacks:
                cb.on_batch_end(i, means)  # lazy: read only by a callback that needs the numbers now
        logs = means.reduce().as_dict()
        if val is not None and math.isfinite(logs["loss"]):
            logs.update({f"val_{k}": v for k, v in evaluate_loss(model, val, training.inputs, training.amp,
                                                                 training.label_smoothing).items()})
        broken = _not_finite(logs, model)  # one host sync per epoch, none per step
        if broken:
            state.stop_reason, state.diverged = _diverged_reason(broken, epoch), True
            break
        logs["lr"] = optimizer.param_groups[0]["lr"]
        logs["time"] = time.perf_counter() - t0
        state.epoch += 1
        state.logs.append(logs)
        signals = [s for s in (cb.on_epoch_end(epoch, logs) for cb in callbacks) if s is not None]
        stops = [s.reason for s in signals if s.stop]
        if stops:
            state.stop_reason = stops[0]
        save(state, any(s.save_best for s in signals))  # one commit: last, best and training state together
    for cb in callbacks:
        cb.on_train_end({"stop_reason": state.stop_reason, "epochs_run": state.epoch, "diverged": state.diverged})
    return state


def train_step(training: Training, xb: torch.Tensor, yb: torch.Tensor, aug_gen: torch.Generator,
               optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step of ``training.model`` on one batch: augment -> model -> loss -> backward -> step.

    ``xb`` (B,C,H,W) uint8 (or ready features), ``yb`` (B,) labels; returns (loss, logits (B,1|K),
    target (B,) or soft (B,K)).  The schedule is the caller's: ``fit`` steps it after each batch,
    the learning-rate range test sets the rate itself.
    """
    x = training.inputs.scale(xb)  # (B,C,H,W) float in [0,1]
    target = yb
    if training.augment is not None:
        x, target = training.augment(x, yb, aug_gen)  # target: (B,) or soft (B,K) for mixup/cutmix
    x = training.inputs.normalize(x)
    with autocast(xb.device, training.amp):
        logits = training.model(x)
    loss = cross_entropy(logits, target, training.label_smoothing, training.class_weights)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)  # skips the step if fp16 gradients overflowed
    scaler.update()
    return loss, logits, target


def _not_finite(logs: dict[str, float], model: torch.nn.Module) -> str:
    """What is not finite after an epoch: its losses, else any floating weight or buffer ("" if none)."""
    for key, what in (("loss", "training loss"), ("val_loss", "validation loss")):
        if not math.isfinite(logs.get(key, 0.0)):
            return f"the {what} is {logs[key]}"
    tensors = [t.detach() for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    if tensors and not bool(torch.stack([t.isfinite().all() for t in tensors]).all()):
        return "the weights are not finite"
    return ""


def _diverged_reason(what: str, epoch: int) -> str:
    kept = f"the checkpoints keep epoch {epoch}" if epoch else "no checkpoint was written"
    return f"training diverged: {what} in epoch {epoch + 1}; {kept} (a lower --lr may help)"
