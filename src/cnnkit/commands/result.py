"""A finished run as ``cnnkit.train_model`` returns it: the pictures one call away, and a notebook view.

:class:`TrainResult` is :class:`cnnkit.train.run.RunResult` (training never draws) with, one layer
up, what fastai's ``Learner`` and ``ClassificationInterpretation`` give in a notebook::

    result = cnnkit.train_model(cfg)   # the cell shows a compact summary (_repr_html_)
    result.plot_curves()               # accuracy and loss per epoch
    result.plot_confusion()            # the confusion matrix of the held-out split
    result.plot_top_losses(9)          # the highest-loss images (fastai's plot_top_losses)
    result.plot_gradcam("cat.jpg")     # where the model looked (a file, or an evaluated image's index)
    result.plot_label_issues(16)       # the images whose label the predictions doubt

Each ``plot_*`` returns a matplotlib Figure (built by :mod:`cnnkit.visualize`): shown inline in a
notebook, saved with ``cnnkit.visualize.save_figure(fig, "x.png")`` anywhere.
"""

from __future__ import annotations

import dataclasses
import html
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cnnkit.errors import ConfigError, DataError
from cnnkit.evaluate.evaluate import Evaluation
from cnnkit.run_folder import CONFUSION_PNG, CURVES, REPORT, RunFolder
from cnnkit.train.notebook import in_notebook
from cnnkit.train.run import RunResult


def show_figures_inline() -> None:
    """In a Jupyter kernel, show a returned matplotlib Figure as a picture (what ``%matplotlib inline``
    sets up): cnnkit's figures are made without pyplot, so nothing else registers the formatter."""
    if not in_notebook():
        return
    from IPython import get_ipython
    from IPython.core.pylabtools import select_figure_formats

    shell = get_ipython()
    if Figure not in shell.display_formatter.formatters["image/png"].type_printers:
        select_figure_formats(shell, {"png"})


def auto_reason(run_dir: Path | None) -> str:
    """What the automatic default chose and why (its ``auto.json``), "" for a run with an explicit model."""
    if run_dir is None:
        return ""
    record = RunFolder(run_dir).auto() or {}
    text = record.get("reason") or record.get("line") or ""
    return str(text).removeprefix("cnnkit: auto: ")


@dataclasses.dataclass(repr=False)
class TrainResult(RunResult):
    """A finished run (:class:`~cnnkit.train.run.RunResult`: ``run_dir``, ``history``, ``metrics``,
    ``model``, ``config``, ``label_issues`` ...) with its pictures as methods and an HTML view."""

    @classmethod
    def of(cls, result: RunResult) -> "TrainResult":
        return result if isinstance(result, cls) else cls(
            **{f.name: getattr(result, f.name) for f in dataclasses.fields(RunResult)})

    # ------------------------------------------------------------------ pictures

    @property
    def title(self) -> str:
        model = self.config.model.name if self.config is not None else self.preprocess.model
        data = Path(self.config.data.source).name if self.config is not None else ""
        return f"{model} on {data}" if data else model

    def _evaluated(self, what: str) -> Evaluation:
        if self.evaluation is None:
            raise DataError(f"{what}: this run evaluated no held-out images (no validation or test split, or "
                            f"not the writing process)")
        return self.evaluation

    def plot_curves(self) -> Figure:
        """Accuracy and loss per epoch, training and validation (Keras' ``history.history`` plotted)."""
        from cnnkit.visualize.curves import plot_curves

        show_figures_inline()
        return plot_curves(self.history, self.title)

    def plot_confusion(self, normalize: bool = False) -> Figure:
        """The confusion matrix of the evaluated split (rows: true class); ``normalize``: each row sums to 1."""
        from cnnkit.visualize.confusion import plot_confusion_matrix

        if not self.metrics:
            raise DataError("plot_confusion: this run has no final evaluation")
        show_figures_inline()
        m = self.metrics
        return plot_confusion_matrix(np.asarray(m["confusion_matrix"]), m["classes"], normalize=normalize,
                                     title=f"{m.get('split', '')} accuracy {m['accuracy']:.4f}")

    def plot_top_losses(self, k: int = 9) -> Figure:
        """The ``k`` evaluated images with the highest loss: confident mistakes and possible label errors."""
        from cnnkit.visualize.mostwrong import most_wrong, plot_most_wrong

        if k < 1:
            raise ConfigError(f"plot_top_losses: k must be at least 1, got {k}")
        _, probs, data = self._evaluated("plot_top_losses")
        show_figures_inline()
        return plot_most_wrong(data, most_wrong(probs, data.labels, k))

    def plot_gradcam(self, image: str | os.PathLike | int | np.ndarray, class_name: str | None = None) -> Figure:
        """Grad-CAM (gradient saliency for a dense model) of the predicted class, or of ``class_name``.

        ``image``: an image file, the index of an evaluated image (as ``plot_top_losses`` orders
        them: ``result.evaluation.images``), or a uint8 (H, W, C) array.
        """
        from cnnkit.commands.explain import gradcam_figure, gradcam_picture
        from cnnkit.inference.load import load_predictor, require_gradients

        if self.run_dir is None:
            raise DataError("plot_gradcam: this run has no run folder (not the writing process)")
        show_figures_inline()
        if isinstance(image, (str, os.PathLike)):
            return gradcam_figure(self.run_dir, image, class_name)
        pred = require_gradients(load_predictor(self.run_dir), "Grad-CAM")
        if isinstance(image, (int, np.integer)):
            _, _, data = self._evaluated("plot_gradcam")
            if not 0 <= image < len(data):
                raise DataError(f"plot_gradcam: image {image}: the evaluation has images 0-{len(data) - 1}")
            name = Path(data.paths[image]).name if data.paths is not None else f"image {image}"
            return gradcam_picture(pred, np.array(data.images[image]), class_name, name)
        from cnnkit.data.arrays import conform

        img = np.asarray(image)
        if img.dtype != np.uint8 or img.ndim not in (2, 3):
            raise DataError(f"plot_gradcam: an array image is uint8 (H, W) or (H, W, C), not {img.dtype} {img.shape}")
        img = img[..., None] if img.ndim == 2 else img
        pre = pred.preprocess
        return gradcam_picture(pred, conform(img[None], tuple(pre.image_size), pre.channels)[0].copy(), class_name)

    def plot_label_issues(self, k: int = 16) -> Figure:
        """The ``k`` images whose label the out-of-sample predictions doubt most (``label_issues.csv``)."""
        from cnnkit.data.sources import image_folder
        from cnnkit.visualize.label_issues import THUMBNAIL, issue_thumbnails, plot_label_issues

        if self.label_issues is None:
            raise DataError("plot_label_issues: this run scored no label issues (label_issues off)")
        if not self.label_issues:
            raise DataError("plot_label_issues: no suspected label errors: every scored image's most probable "
                            "class is its label")
        top = self.label_issues[:max(1, k)]
        data = self.evaluation.images if self.evaluation is not None else None
        split = self.evaluation.split if self.evaluation is not None else None
        root = image_folder(self.config.data) if self.config is not None else None
        size, channels = (data.image_size, data.channels) if data is not None else (THUMBNAIL, 3)
        images, found = issue_thumbnails(top, root, data, split, size, channels)
        show_figures_inline()
        return plot_label_issues(images, top, found=found)

    # ------------------------------------------------------------------ the notebook view

    def _picture(self, name: str, draw) -> str:
        from cnnkit.visualize.report import figure_data_uri, png_data_uri

        path = self.run_dir / name if self.run_dir is not None else None
        try:
            uri = png_data_uri(path.read_bytes()) if path is not None and path.is_file() else figure_data_uri(draw())
        except Exception:  # noqa: BLE001 - a picture that cannot be drawn leaves the rest of the view
            return ""
        return f"<img src='{uri}' alt='{html.escape(name)}' style='max-width:48%;vertical-align:top'>"

    def _metric_rows(self) -> list[tuple[str, str]]:
        m = self.metrics or {}
        rows = []
        for key, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                           ("macro_f1", "macro F1"), ("loss", "loss"), ("ece", "calibration error (ECE)")):
            if isinstance(m.get(key), (int, float)):
                rows.append((label, f"{m[key]:.4f}"))
        if self.history:
            rows.append(("epochs", str(len(self.history))))
        if self.label_issues:
            rows.append(("suspected label errors", f"{len(self.label_issues)} (plot_label_issues)"))
        if self.stop_reason:
            rows.append(("stopped", self.stop_reason))
        return rows

    def _repr_html_(self) -> str:
        m = self.metrics or {}
        head = f"<h3 style='margin:0'>{html.escape(self.title)}</h3>"
        score = (f"<p><b>{html.escape(str(m.get('split', '')))} accuracy {m['accuracy']:.4f}</b> on {m.get('n', '?')} "
                 f"images</p>" if "accuracy" in m else "<p>no held-out evaluation</p>")
        why = auto_reason(self.run_dir)
        chosen = f"<p>chosen automatically: {html.escape(why)}</p>" if why else ""
        table = "<table>" + "".join(f"<tr><td style='text-align:left'>{html.escape(a)}</td>"
                                    f"<td style='text-align:left'>{html.escape(b)}</td></tr>"
                                    for a, b in self._metric_rows()) + "</table>"
        pictures = ""
        if self.history:
            pictures += self._picture(CURVES, self.plot_curves)
        if m:
            pictures += self._picture(CONFUSION_PNG, self.plot_confusion)
        links = ""
        if self.run_dir is not None:
            report = self.run_dir / REPORT
            href = os.path.relpath(report) if report.is_file() else ""
            links = (f"<p>run folder <code>{html.escape(str(self.run_dir))}</code>"
                     + (f" &middot; <a href='{html.escape(href)}' target='_blank'>{REPORT}</a>" if href else "")
                     + "</p>")
        return f"<div class='cnnkit-result'>{head}{score}{chosen}{table}<div>{pictures}</div>{links}</div>"


__all__ = ["TrainResult", "auto_reason", "show_figures_inline"]
