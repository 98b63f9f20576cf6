"""``report.html``: one self-contained page per run (curves, metrics, confusion matrix, samples,
most-wrong images, possible label errors, Grad-CAM examples, first-layer filters).

Every picture is embedded as a base64 PNG data URI and the style sheet is inline, so the file
opens offline, can be mailed or attached to an issue, and never points at files that moved.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cnnkit.config import RunConfig, load_run_config
from cnnkit.data.types import ImageSet
from cnnkit.errors import CheckpointError, CnnkitError, ConfigError
from cnnkit.evaluate.evaluate import Evaluation
from cnnkit.inference.checkpoint import Checkpoint, load_checkpoint
from cnnkit.io import atomic_write_text, check_writable_file
from cnnkit.run_folder import CONFIG, CURVES, HISTORY_JSON, METRICS, REPORT, RunFolder
from cnnkit.visualize.figures import printable_text

log = logging.getLogger("cnnkit")


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 0.25em 0.8em; border: 1px solid #ddd; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; border: 1px solid #eee; } pre { background: #f7f7f7; padding: 0.8em; }
.note { color: #666; font-size: 0.9em; } .big { font-size: 1.3em; font-weight: 600; }
"""


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_data_uri(fig: Figure, dpi: int = 90) -> str:
    # Hidden axes still compute tick labels on every constrained-layout pass; dropping their
    # ticks makes image grids ~2.5x faster to save and changes nothing visible.
    for ax in fig.axes:
        if not ax.axison:
            ax.set_xticks([])
            ax.set_yticks([])
    buf = io.BytesIO()
    printable_text(fig).savefig(buf, format="png", dpi=dpi)  # tabs, CJK class names: no missing-glyph warnings
    return png_data_uri(buf.getvalue())


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _per_class_table(metrics: dict) -> str:
    head = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(r['class'])}</td><td class=num>{r['precision']:.3f}</td>"
        f"<td class=num>{r['recall']:.3f}</td><td class=num>{r['f1']:.3f}</td><td class=num>{r['support']}</td></tr>"
        for r in metrics["per_class"])
    return f"<table>{head}{body}</table>"


def _candidates_table(choice: dict) -> str:
    """The automatic default's leaderboard: each candidate's score on held-out training images, time and
    how it ended; the chosen one marked; the race's decisions below it."""
    def num(v: Any, fmt: str) -> str:
        return format(v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) else ""

    head = ("<tr><th>candidate</th><th>score</th><th>cross-validated</th><th>seconds</th><th>epochs</th>"
            "<th>how it ended</th></tr>")
    rows = "".join(
        f"<tr><td>{'<b>' if c.get('chosen') else ''}{html.escape(str(c.get('name', '')))}"
        f"{' (chosen)</b>' if c.get('chosen') else ''}</td><td class=num>{num(c.get('score'), '.1%')}</td>"
        f"<td class=num>{num(c.get('cv'), '.1%')}</td><td class=num>{num(c.get('seconds'), '.0f')}</td>"
        f"<td class=num>{html.escape(str(c.get('epochs', '')))}</td>"
        f"<td>{html.escape(str(c.get('stopped', '')))}</td></tr>"
        for c in choice["candidates"] if isinstance(c, dict))
    where = choice.get("selection") or "held-out training images"
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in choice.get("notes") or [])
    return (f"<p class=note>Scores are accuracy on the {html.escape(str(where))}, never on the split reported "
            f"above.</p><table>{head}{rows}</table>" + (f"<ul>{notes}</ul>" if notes else ""))


# ----------------------------------------------------------------------------- sections


def _run_rows(run_dir: Path, cfg: RunConfig | None, history: list[dict]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [("run folder", run_dir.resolve())]
    if cfg is not None:
        m, o, t = cfg.model, cfg.optim, cfg.train
        rows += [("model", m.name), ("data", cfg.data.source),
                 ("input", f"{m.image_size[0]}×{m.image_size[1]}×{m.in_channels}, {m.num_classes} classes"),
                 ("optimiser", f"{o.name} lr {o.lr:g}, schedule {o.schedule}, batch {t.batch_size}"),
                 ("augmentation", cfg.augment.preset), ("epochs", f"{len(history)} run of {t.epochs}")]
    return rows


def _metric_rows(metrics: dict) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [("split", f"{metrics.get('split', '?')} ({metrics['n']} images)"),
                                   ("accuracy", f"{metrics['accuracy']:.4f}")]
    n_classes = len(metrics.get("classes") or ()) or None
    for key, value in metrics.items():
        k = key[3:-len("_accuracy")] if key.startswith("top") and key.endswith("_accuracy") else ""
        # top-k with k >= the number of classes is always 1.0: it says nothing
        if k.isdigit() and (n_classes is None or int(k) < n_classes):
            rows.append((key.replace("_", " "), f"{value:.4f}"))
    if "balanced_accuracy" in metrics:  # older metrics files have none
        rows.append(("balanced accuracy", f"{metrics['balanced_accuracy']:.4f}"))
    rows += [("loss (cross-entropy)", f"{metrics['loss']:.4f}"), ("macro F1", f"{metrics['macro_f1']:.4f}")]
    if "ece" in metrics:
        rows += [("calibration temperature", f"{metrics['temperature']:.3f}"),
                 ("ECE (calibrated)", f"{metrics['ece']:.4f}"),
                 ("ECE (uncalibrated)", f"{metrics['ece_uncalibrated']:.4f}")]
    if metrics.get("min_confidence") is not None:
        rows.append(("suggested --min-confidence", f"{metrics['min_confidence']:.4f}"))
    if metrics.get("class_weights"):
        rows.append(("class-weighted loss", ", ".join(f"{c} {w:.2f}" for c, w in metrics["class_weights"].items())))
    return rows


def _reliability_section(probs: np.ndarray, labels: np.ndarray) -> str:
    from cnnkit.visualize.reliability import plot_reliability

    return ("<p class=note>Accuracy of the answers in each confidence bin; on the diagonal, a probability "
            "of 0.8 is right 80% of the time.</p>" + _img(figure_data_uri(plot_reliability(probs, labels)),
                                                           "reliability diagram"))


def _curves_section(run_dir: Path, history: list[dict], title: str) -> str | None:
    """curves.png (else the curves drawn from the history now): every logged metric per epoch."""
    from cnnkit.visualize.curves import drawn_curves, plot_curves

    alt = ", ".join(c.title for c in drawn_curves(history)) + " per epoch"
    if (run_dir / CURVES).is_file():
        return _img(png_data_uri((run_dir / CURVES).read_bytes()), alt)
    if history:
        return _img(figure_data_uri(plot_curves(history, title)), alt)
    return None


def confident_right(probs: np.ndarray, labels: np.ndarray, n: int) -> list[int]:
    """Up to ``n`` correctly classified images, most confident first, taking the classes in turn."""
    preds = probs.argmax(axis=1)
    pools = []
    for c in np.unique(labels):
        right = np.flatnonzero((preds == labels) & (labels == c))
        pools.append(list(right[np.argsort(-probs[right, c], kind="stable")]))
    out: list[int] = []
    while len(out) < n and any(pools):
        for pool in pools:
            if pool and len(out) < n:
                out.append(int(pool.pop(0)))
    return out


def _gradcam_section(ckpt: Checkpoint, probs: np.ndarray, data: ImageSet, wrong: dict, n: int) -> str:
    """Grad-CAM of the predicted class for the most-wrong images and the most confident right ones."""
    from cnnkit.inference.preprocess import ImageInputs
    from cnnkit.visualize.gradcam import class_map, plot_gradcam_grid

    preds = probs.argmax(axis=1)
    wrong_idx = [int(i) for i in wrong["index"] if preds[i] != data.labels[i]][: n // 2]
    index = np.array(wrong_idx + confident_right(probs, data.labels, n - len(wrong_idx)), np.int64)
    if not len(index):
        return ""
    images = np.asarray(data.images[index])
    x = ImageInputs.from_preprocess(ckpt.preprocess)(images, layout="NHWC")  # (n, C, H, W) on the CPU
    maps, method = class_map(ckpt.model, x, [int(preds[i]) for i in index])
    titles = [("WRONG " if preds[i] != data.labels[i] else "") +
              f"true {data.classes[data.labels[i]]}\npred {data.classes[preds[i]]} {probs[i, preds[i]]:.2f}"
              for i in index]
    fig = plot_gradcam_grid(images, maps, titles, method=method,
                            title=f"{method} of the predicted class: {len(wrong_idx)} "
                                  f"{'mistake' if len(wrong_idx) == 1 else 'mistakes'}, then confident right answers")
    note = ("" if method == "Grad-CAM" else
            "<p class=note>This model has no convolution layer, so the map is a gradient saliency map: "
            "|d class score / d pixel|.</p>")
    return note + _img(figure_data_uri(fig), method)


def _label_issues_section(run_dir: Path, cfg: RunConfig | None, evaluation: Evaluation | None, n: int) -> str:
    """The top suspects of ``label_issues.csv`` as pictures, or a note saying why there are none."""
    from cnnkit.data.issues_table import LABEL_ISSUES, read_issues_file
    from cnnkit.data.sources import image_folder
    from cnnkit.visualize.label_issues import THUMBNAIL, issue_thumbnails, plot_label_issues

    path = run_dir / LABEL_ISSUES
    if not path.is_file():
        return f"<p class=note>No {LABEL_ISSUES} in this run folder (trained with --label-issues off).</p>"
    rows = read_issues_file(path)
    cv = cfg is not None and cfg.model.transfer == "features"
    how = (f"training and validation images scored by a {cfg.train.label_folds}-fold cross-validated linear head "
           "on the cached features, test images by the final model" if cv else
           "validation and test images scored by the final calibrated model (training images are scored "
           "only with --transfer features)")
    if not rows:
        return ("<p class=note>No suspected label errors: every scored image's most probable class is its label "
                f"({how}).</p>")
    top = rows[:n]
    data = evaluation.images if evaluation is not None else None
    split = evaluation.split if evaluation is not None else None
    root = image_folder(cfg.data) if cfg is not None else None  # file names in the CSV are relative to it
    size, channels = (data.image_size, data.channels) if data is not None else (THUMBNAIL, 3)
    images, found = issue_thumbnails(top, root, data, split, size, channels)
    note = (f"<p class=note>{len(rows)} images whose most probable class is not their label ({how}); "
            f"the {len(top)} most suspicious below, all in {LABEL_ISSUES}. Correct them with "
            f"<code>cnnkit relabel DATA --from {html.escape(str(path))} --top K</code> or "
            f"<code>cnnkit relabel DATA FILE --to CLASS</code>.</p>")
    return note + _img(figure_data_uri(plot_label_issues(images, top, found=found)), "suspected label errors")


def _filters_section(ckpt: Checkpoint) -> str:
    from cnnkit.visualize.filters import filter_weights, plot_filters

    try:
        weights = filter_weights(ckpt.model)
    except ConfigError as exc:  # a dense model: nothing to show, nothing wrong
        return f"<p class=note>{html.escape(str(exc))}</p>"
    return _img(figure_data_uri(plot_filters(weights)), "first-layer filters")


def _safe_checkpoint(run_dir: Path) -> Checkpoint | None:
    try:
        return load_checkpoint(run_dir)
    except CnnkitError as exc:
        log.warning("report: no checkpoint for Grad-CAM and filters (%s)", exc)
        return None


def _safe(name: str, fn, *args) -> str:
    """A section that fails becomes a note: one broken picture must not cost the whole report."""
    if any(a is None for a in args):
        return f"<p class=note>{html.escape(name)} unavailable: no readable checkpoint in the run folder</p>"
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - any failure inside matplotlib/torch only drops this section
        log.warning("report: %s section skipped (%s: %s)", name, type(exc).__name__, exc)
        return f"<p class=note>{html.escape(name)} unavailable: {html.escape(str(exc))}</p>"


# ----------------------------------------------------------------------------- the page


def _evaluate_run(run_dir: Path, cfg: RunConfig | None, data_source: str | None) -> tuple[Evaluation | None, str]:
    """Re-evaluate the run's best checkpoint; on the run's own data a failure is a note, not an error."""
    from cnnkit.evaluate.evaluate import evaluate

    source = data_source or (cfg.data.source if cfg is not None else None)
    if source is None:
        return None, "no data source recorded for this run"
    try:
        return evaluate(run_dir, source), ""
    except CnnkitError as exc:
        if data_source is not None:
            raise
        log.warning("report: cannot re-evaluate %s on %s (%s); using metrics.json", run_dir, source, exc)
        return None, f"could not re-evaluate on {source}: {exc}"


def render_report(run_dir: str | Path, data_source: str | None = None, evaluation: Evaluation | None = None,
                  n_wrong: int = 16, n_cam: int = 8) -> str:
    """The report page as an HTML string (see :func:`write_report`)."""
    from cnnkit.visualize.confusion import plot_confusion_matrix
    from cnnkit.visualize.mostwrong import most_wrong, plot_most_wrong
    from cnnkit.visualize.samples import plot_samples

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise CheckpointError(f"{run_dir}: not a run folder (no {CONFIG})")
    cfg = load_run_config(run_dir / CONFIG)
    history = json.loads((run_dir / HISTORY_JSON).read_text()) if (run_dir / HISTORY_JSON).is_file() else []
    note = ""
    if evaluation is None:
        evaluation, note = _evaluate_run(run_dir, cfg, data_source)
    metrics = evaluation.metrics if evaluation is not None else None
    if metrics is None and (run_dir / METRICS).is_file():
        metrics = json.loads((run_dir / METRICS).read_text())
    title = f"{cfg.model.name} on {Path(cfg.data.source).name}"

    parts = [f"<h1>cnnkit run: {html.escape(title)}</h1>",
             f"<p class=note>generated {datetime.datetime.now():%Y-%m-%d %H:%M} from {html.escape(str(run_dir))}</p>"]
    if metrics:
        parts.append(f"<p class=big>{html.escape(str(metrics.get('split', '')))} accuracy "
                     f"{metrics['accuracy']:.4f} on {metrics['n']} images</p>")
        if metrics.get("note"):  # e.g. no validation: metrics are training metrics
            parts.append(f"<p class=big>{html.escape(str(metrics['note']))}</p>")
    if note:
        parts.append(f"<p class=note>{html.escape(note)}</p>")
    parts += ["<h2>Run</h2>", _table(_run_rows(run_dir, cfg, history))]
    choice = _auto_choice(run_dir)  # a run planned by the automatic default says what it chose and why
    if choice:
        parts += ["<h2>Automatic choice</h2>", f"<p>{html.escape(choice['line'].removeprefix('cnnkit: auto: '))}</p>"]
        if isinstance(choice.get("candidates"), list) and choice["candidates"]:
            parts.append(_candidates_table(choice))

    curves = _curves_section(run_dir, history, title)
    if curves:
        parts += ["<h2>Training curves</h2>", curves]
    if metrics:
        parts += ["<h2>Metrics</h2>", _table(_metric_rows(metrics)), "<h3>Per class</h3>", _per_class_table(metrics),
                  "<h2>Confusion matrix</h2>",
                  _safe("confusion matrix", lambda: _img(figure_data_uri(plot_confusion_matrix(
                      np.asarray(metrics["confusion_matrix"]), metrics["classes"],
                      title=f"{metrics.get('split', '')} accuracy {metrics['accuracy']:.4f}")), "confusion matrix"))]
    ckpt = _safe_checkpoint(run_dir)
    if evaluation is not None:
        probs, data = evaluation.probs, evaluation.images
        wrong = most_wrong(probs, data.labels, n_wrong)
        parts += ["<h2>Calibration</h2>", _safe("reliability diagram", _reliability_section, probs, data.labels),
                  "<h2>Sample images</h2>",
                  _safe("samples",
                        lambda: _img(figure_data_uri(plot_samples(data, 16, title="evaluated images")), "samples")),
                  "<h2>Most-wrong images</h2>",
                  "<p class=note>Highest cross-entropy first: confident mistakes, possible label errors.</p>",
                  _safe("most-wrong images", lambda: _img(figure_data_uri(plot_most_wrong(data, wrong)), "most wrong")),
                  "<h2>Possible label errors</h2>",
                  _safe("label errors", _label_issues_section, run_dir, cfg, evaluation, n_wrong),
                  "<h2>Grad-CAM examples</h2>",
                  "<p class=note>Where the evidence for the predicted class lies (red = strongest).</p>",
                  _safe("Grad-CAM", _gradcam_section, ckpt, probs, data, wrong, n_cam)]
    parts += ["<h2>First-layer filters</h2>", _safe("filters", _filters_section, ckpt)]
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>{html.escape(title)} - cnnkit report</title>"
            f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n")


def write_report(run_dir: str | Path, data_source: str | None = None, *, evaluation: Evaluation | None = None) -> Path:
    """Write ``run_dir/report.html`` and return its path.

    ``data_source`` re-evaluates the best checkpoint on other data (default: the run's own data,
    same split as the run's final evaluation).  ``evaluation`` (an :class:`~cnnkit.evaluate.evaluate.Evaluation`) skips
    that evaluation; training passes what it has just computed.
    """
    run_dir = Path(run_dir)
    path = run_dir / REPORT
    check_writable_file(path)  # before the evaluation it renders
    page = render_report(run_dir, data_source, evaluation)
    atomic_write_text(path, page)
    return path


def _auto_choice(run_dir: Path) -> dict | None:
    """The auto.json of a run the automatic default chose (:meth:`cnnkit.run_folder.RunFolder.auto`), or None."""
    return RunFolder(run_dir).auto()
