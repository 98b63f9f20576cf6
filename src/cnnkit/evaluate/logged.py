"""The metrics the training loop logs each epoch, declared once: key, direction, names, curve.

:data:`LOGGED` is the one declaration.  :mod:`cnnkit.train.callbacks` derives ``--monitor``
(its names, each metric's direction, the training twin watched without validation data) from it;
:func:`curves` groups it into the curves that ``curves.png`` (:func:`cnnkit.visualize.curves.plot_curves`),
the report and the studio's page (``/api/info``) draw.  A new metric is computed in the loop's
epoch metrics (``cnnkit.train.loop``) and declared here, one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["LOGGED", "Curve", "Logged", "curves"]

RATE = (0.0, 1.0)  # the fixed y range of an accuracy-like curve


@dataclass(frozen=True)
class Logged:
    """A metric the loop logs each epoch: what ``--monitor`` may watch and what the curves draw."""

    key: str  # its history key (history.csv column)
    mode: str  # "min" (loss-like) or "max" (accuracy-like)
    names: tuple[str, ...]  # its --monitor spellings (Keras 2 spells accuracy out)
    train_twin: str | None = None  # the key watched instead when a run has no validation data
    curve: str = ""  # the title of the curve it is drawn on: a training metric and its val_ twin share one
    limits: tuple[float, float] | None = None  # the curve's fixed y range, None = from the values


# the one declaration of every logged metric, in the order the curves are drawn
LOGGED: tuple[Logged, ...] = (
    Logged("val_acc", "max", ("val_acc", "val_accuracy"), "acc", "accuracy", RATE),
    Logged("val_loss", "min", ("val_loss",), "loss", "loss"),
    Logged("acc", "max", ("acc", "accuracy"), None, "accuracy", RATE),
    Logged("loss", "min", ("loss",), None, "loss"),
    # on the validation predictions at epoch end (cnnkit.train.loop.evaluate_loss); no training twin
    Logged("val_balanced_accuracy", "max", ("val_balanced_accuracy",), None, "balanced accuracy", RATE),
    Logged("val_macro_f1", "max", ("val_macro_f1",), None, "macro F1", RATE),
)


@dataclass(frozen=True)
class Curve:
    """One panel of the training curves: a title and the history keys drawn on it per epoch."""

    title: str
    keys: tuple[str, ...]  # training series first, then validation ("val_...")
    limits: tuple[float, float] | None = None

    @staticmethod
    def label(key: str) -> str:
        """How a series is named in the legend: ``train`` or ``validation``."""
        return "validation" if key.startswith("val_") else "train"

    def as_dict(self) -> dict[str, Any]:
        """For the studio's page: title, [key, label] series, the fixed range or None."""
        return {"title": self.title, "series": [[k, self.label(k)] for k in self.keys],
                "limits": list(self.limits) if self.limits else None}


def curves(logged: Sequence[Logged] = LOGGED) -> tuple[Curve, ...]:
    """The declared metrics grouped by curve, in the order their curves are first declared."""
    groups: dict[str, list[Logged]] = {}
    for metric in logged:
        groups.setdefault(metric.curve or metric.key, []).append(metric)
    out = []
    for title, metrics in groups.items():
        keys = sorted((m.key for m in metrics), key=lambda k: k.startswith("val_"))  # stable: training first
        limits = next((m.limits for m in metrics if m.limits is not None), None)
        out.append(Curve(title, tuple(keys), limits))
    return tuple(out)
