"""Command line: each subcommand parses its flags, builds a config and makes one library call."""

from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from cnnkit import config as C
from cnnkit import settings
from cnnkit.errors import CnnkitError

MAIN_DEFAULT = "mnist-mini"


# ----------------------------------------------------------------------------- settings flags
# The settings' flags, help, choices and ranges are declared once, on the config fields
# (cnnkit.config, cnnkit.augment.transforms); cnnkit.settings derives the argparse groups.

PREVIEW_SKIP = ("model.", "optim.", "train.", "data.source", "augment.tta")
TABLE_KEYS = ("data.labels", "data.file_column", "data.label_column", "data.split_column")  # a labels table
RECIPE_KEYS = ("model.weights", "train.epochs", "train.batch_size", "data.image_size", "train.out", "data.cache_dir",
               "train.device", "data.seed", "train.seed", "train.progress")


def _size(values: Sequence[int] | None) -> tuple[int, int] | None:
    try:
        return C.image_pair(list(values)) if values else None
    except ValueError as exc:
        raise CnnkitError(f"--image-size {' '.join(map(str, values))}: {exc}") from None


TRUST_HELP = ("let a model named by import path (module:function) import and run that module; "
              "only for run folders and checkpoints you trust")


def _add_trust_flag(p: argparse.ArgumentParser) -> None:
    """The one --trust-code flag of every command that loads a checkpoint or a run's config."""
    p.add_argument("--trust-code", action="store_true", help=TRUST_HELP)


def _add_train_flags(p: argparse.ArgumentParser, config: type, resume: bool = True) -> None:
    p.add_argument("data", nargs="?", help=f"dataset name or image folder (default: {MAIN_DEFAULT})")
    p.add_argument("--config", help="JSON run config (e.g. a run's config.json); flags override it")
    if resume:
        p.add_argument("--resume", metavar="RUN",
                       help="continue the run in this folder from its last epoch, with its own settings "
                            "(--epochs N trains to N instead of the run's own count)")
        p.add_argument("--allow-data-change", action="store_true", help="--resume: continue although files of the "
                       "data were added, removed or changed since the last epoch (the same classes only)")
    _add_trust_flag(p)
    settings.add_flags(p, config, skip=("data.source",))


def _build(base, given: settings.Given, extra: dict | None = None):
    """``base`` with the flags given (and ``extra`` keys) applied once, checked; errors name the flag.

    Every key set joins the config's ``given`` (:func:`cnnkit.config.configure`), whatever its value.
    """
    try:
        return C.configure(base, {**given.values, **(extra or {})})
    except settings.SettingError as exc:
        raise exc.named(given.flags) from None


def run_config_from_args(a: argparse.Namespace) -> C.RunConfig:
    """Defaults <- --config file <- flags given on the command line."""
    return _train_config(a)[0]


def _train_config(a: argparse.Namespace) -> tuple[C.RunConfig, settings.Given]:
    """The run config of ``train`` / ``lr-find`` and the flags that made it: defaults <- --config file
    (its settings count as given) <- the data named and the flags given."""
    cls = a.run_config
    given = settings.given(a, cls)
    base = C.load_run_config(a.config, cls) if a.config else cls()
    return _build(base, given, {"data.source": a.data} if a.data is not None else None), given


def _checked(a: argparse.Namespace, cfg: C.RunConfig, given: settings.Given) -> None:
    """What a new run says and checks before it starts: the flags that change nothing for this model,
    and a model builder named only by a --config file (imported only with --trust-code)."""
    _note_ineffective(cfg, given)
    if a.config and "model.name" not in given.values:  # the builder comes from a file, not from the user
        from cnnkit.models.custom import check_trusted

        check_trusted(cfg.model.name, a.config)


def _note_ineffective(cfg, given: settings.Given) -> None:
    """One line per group of flags given that change nothing for this model (never silently ignored)."""
    from cnnkit.models.transfer import BACKBONES  # after parsing, never for --help: it loads torch

    by_reason: dict[str, list[str]] = {}
    conditions = {"backbone": lambda c: c.model.name in BACKBONES}
    for key, reason in settings.ineffective(cfg, given.values, conditions):
        by_reason.setdefault(reason, []).append(given.flags[key])
    for reason, flags in by_reason.items():
        print(f"cnnkit: note: {' '.join(dict.fromkeys(flags))} has no effect with --model {cfg.model.name}: {reason}",
              file=sys.stderr)


# ----------------------------------------------------------------------------- commands


def cmd_train(a: argparse.Namespace) -> int:
    from cnnkit.commands.train import train
    from cnnkit.runtime import distributed_from_env
    from cnnkit.train import Resume

    cfg, given = _train_config(a)
    resume = None
    if a.resume:  # the run's own settings; only --epochs (default: the run's own) and --quiet apply
        kept = {"--epochs", "--quiet"}
        ignored = (["--config"] if a.config else []) + [f for f in given.order if f not in kept]
        resume = Resume(a.resume, given.values.get("train.epochs"), cfg.train.progress, tuple(ignored),
                        a.allow_data_change)
    else:
        _checked(a, cfg, given)
    with distributed_from_env() as (rank, _):
        try:
            result = train(cfg, resume=resume, explicit_out="train.out" in given.values)
        except settings.SettingError as exc:
            raise exc.named(given.flags) from None
    if result.diverged:  # every rank stopped; the run folder keeps the last finite epoch
        if rank == 0:
            print(f"cnnkit: error: {result.stop_reason}; run folder: {result.run_dir}", file=sys.stderr)
        return 1
    if rank != 0:
        return 0
    if result.metrics:
        m = result.metrics
        note = f"; {m['note']}" if m.get("note") else ""
        print(f"{m['split']} accuracy {m['accuracy']:.4f} ({m['n']} images{note}); run folder: {result.run_dir}")
    else:
        print(f"run folder: {result.run_dir}")
    return 0


def cmd_lr_find(a: argparse.Namespace) -> int:
    from cnnkit.commands.train import LR_FIND_PNG, lr_find

    cfg, given = _train_config(a)
    _checked(a, cfg, given)
    if a.sweeps < 1:
        raise CnnkitError(f"--sweeps {a.sweeps}: must be at least 1")
    try:
        found, folder = lr_find(cfg, out=cfg.train.out if "train.out" in given.values else None, sweeps=a.sweeps,
                                progress=cfg.train.progress)
    except settings.SettingError as exc:
        raise exc.named(given.flags) from None
    lr = f"{found.suggestion:.1e}"
    print(f"cnnkit: lr-find: suggested lr {lr} ({found.method}; curve in {folder / LR_FIND_PNG}); "
          f"use --lr {lr} or --lr auto")
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from cnnkit.commands.train import write_evaluation
    from cnnkit.evaluate.evaluate import evaluate
    from cnnkit.evaluate.metrics import format_report
    from cnnkit.io import check_writable_folder

    out = Path(a.out) if a.out else (Path(a.checkpoint) if Path(a.checkpoint).is_dir() else Path(a.checkpoint).parent)
    check_writable_folder(out, " (--out another folder)")  # before the evaluation, not after it
    source = a.data or _run_source(a.checkpoint)
    metrics, _, _ = evaluate(a.checkpoint, source, split=a.split, tta=a.tta, device=a.device or "auto",
                             data_dir=a.data_dir)
    print(format_report(metrics))
    if metrics.get("note"):  # e.g. the run's training images: never reported as held out
        print(f"note: {metrics['note']}")
    write_evaluation(out, metrics, prefix=f"eval_{metrics['split']}_")
    print(f"wrote {out / ('eval_' + metrics['split'] + '_metrics.json')} and the confusion matrix")
    return 0


def _run_source(checkpoint: str) -> str:
    from cnnkit.inference.checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint)
    if ck.run_config is None:
        raise CnnkitError(f"{checkpoint}: name the data to evaluate on (the checkpoint does not record it)")
    return ck.run_config.data.source


def cmd_predict(a: argparse.Namespace) -> int:
    import contextlib

    from cnnkit.inference.files import expand_inputs
    from cnnkit.inference.load import load_predictor
    from cnnkit.serve.predict import write_predictions

    if a.output:
        from cnnkit.io import check_writable_file

        check_writable_file(a.output)
    predictor = load_predictor(a.checkpoint, a.device or "cpu")
    files = expand_inputs(a.inputs)
    preds = predictor.iter_predictions(files, top_k=a.top_k, batch_size=a.batch_size,
                                       min_confidence=a.min_confidence)
    k = min(a.top_k, len(predictor.classes))
    with contextlib.ExitStack() as stack:
        preds = _with_progress(stack, preds, len(files))
        if a.output:
            from cnnkit.io import atomic_path

            # written as the predictions come, into a temporary file that replaces --output at the end
            tmp = stack.enter_context(atomic_path(a.output))
            out = stack.enter_context(open(tmp, "w", newline="", encoding="utf-8"))
        else:
            out = sys.stdout  # after _with_progress: its bar keeps printed lines above itself
        tally = write_predictions(preds, out, a.format, top_k=k, answered=a.min_confidence is not None)
    if a.output:
        print(f"wrote {tally.written} predictions to {a.output}")
    return 1 if tally.errors and tally.errors == tally.written else 0


def _with_progress(stack, items, total: int):
    """``items`` counted by a rich progress bar on stderr when it is a terminal; as they are otherwise."""
    if not sys.stderr.isatty():
        return items
    from rich.console import Console
    from rich.progress import Progress

    progress = stack.enter_context(Progress(console=Console(file=sys.stderr), transient=True))
    return progress.track(items, total=total, description="predicting")


def cmd_summary(a: argparse.Namespace) -> int:
    from cnnkit.models import build_model
    from cnnkit.models.summary import format_summary, summarize

    size = _size(a.image_size) or (32, 32)
    cfg = C.ModelConfig(name=a.model, num_classes=a.classes, in_channels=a.channels, image_size=size)
    model = build_model(cfg)
    print(format_summary(summarize(model, (a.channels, *size)), title=a.model))
    return 0


def cmd_augment_preview(a: argparse.Namespace) -> int:
    from cnnkit.visualize.augment_preview import write_augment_preview

    cfg = _build(a.run_config(), settings.given(a, a.run_config), {"data.source": a.data})
    out = write_augment_preview(cfg.data, cfg.augment, a.out, n_aug=a.n_aug, n_images=a.n_images, seed=a.seed)
    print(f"wrote {out}")
    return 0


def cmd_organize(a: argparse.Namespace) -> int:
    from cnnkit.data.organize import organize

    r = organize(a.src, a.dst, val=a.val, test=a.test, label_from=a.label_from, mode=a.mode, seed=a.seed)
    for split, counts in r["counts"].items():
        print(f"{split:<10} " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    for path, reason in r["skipped"]:
        print(f"skipped {path}: {reason}")
    print(f"wrote {r['dst']} ({len(r['classes'])} classes)")
    return 0


def cmd_relabel(a: argparse.Namespace) -> int:
    from cnnkit.data.label_map import relabel_command
    from cnnkit.data.sources import folder_listing

    given = settings.given(a, a.run_config)  # --labels and its columns: the folder's classes come from a table
    listing = None
    if given.values:
        listing = folder_listing(_build(a.run_config(data=C.DataConfig(source=a.data)), given).data)
    r = relabel_command(a.data, a.files, to=a.to, exclude=a.exclude, from_csv=a.from_csv, top=a.top,
                        map_path=a.label_map, listing=listing)
    print(f"wrote {r.path}: {r.changed} rows added or updated, {r.removed} removed, {r.rows} in all "
          f"(image files are not moved; the next load applies it)")
    return 0


def cmd_inspect(a: argparse.Namespace) -> int:
    from cnnkit.commands.inspect import inspect_command

    given = settings.given(a, a.run_config)  # --labels and its columns
    data = _build(a.run_config(), given).data if given.values else None
    inspect_command(a.data, samples=a.samples, n=a.n, data_dir=a.data_dir, cache_dir=a.cache_dir, json_out=a.json,
                    data=data)
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    from cnnkit.models import MODELS, model_names

    for name in model_names():
        doc = (MODELS[name].__doc__ or "").strip().splitlines()[0] if name in MODELS else "pretrained backbone"
        print(f"{name:<22} {doc}")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from cnnkit.serve.export import export_model

    r = export_model(a.checkpoint, a.format, a.out, tolerance=a.tolerance)
    print(f"parity with PyTorch: max abs difference {r.max_abs_diff:.3g} in probabilities, "
          f"{r.logits_max_abs_diff:.3g} in logits (max |logit| {r.logits_scale:.3g}; tolerance {r.tolerance:g})")
    print(f"wrote {r.path} ({r.format}; input: float32 NCHW in [0, 1], normalisation inside)")
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from cnnkit.serve.app import serve

    settings.check_number("--max-upload-mb", a.max_upload_mb, "(0, 4096]")
    serve(a.checkpoint, host=a.host, port=a.port, max_upload_bytes=int(a.max_upload_mb * 1024 * 1024),
          device=a.device or "cpu", log_level=a.log_level, threads=a.threads)
    return 0


def cmd_studio(a: argparse.Namespace) -> int:
    from cnnkit.studio.app import serve_studio

    serve_studio(a.root, host=a.host, port=a.port, runs_dir=a.runs, cache_dir=a.cache_dir, data_dir=a.data_dir,
                 upload_quota_gb=a.upload_quota)
    return 0


def _save_picture(draw, out: str) -> int:
    """``draw()`` -> Figure saved at ``out``, which is checked first (drawing may take a while)."""
    from cnnkit.io import check_writable_file
    from cnnkit.visualize.figures import save_figure

    check_writable_file(out)
    print(f"wrote {save_figure(draw(), out)}")
    return 0


def cmd_explain_sobel(a: argparse.Namespace) -> int:
    from cnnkit.commands.explain import sobel_figure

    return _save_picture(lambda: sobel_figure(a.image), a.out)


def cmd_explain_filters(a: argparse.Namespace) -> int:
    from cnnkit.commands.explain import filters_figure

    return _save_picture(lambda: filters_figure(a.checkpoint), a.out)


def cmd_explain_features(a: argparse.Namespace) -> int:
    from cnnkit.commands.explain import features_figure

    return _save_picture(lambda: features_figure(a.checkpoint, a.image, a.layer), a.out)


def cmd_explain_gradcam(a: argparse.Namespace) -> int:
    from cnnkit.commands.explain import gradcam_figure

    return _save_picture(lambda: gradcam_figure(a.checkpoint, a.image, a.class_name), a.out)


def cmd_explain_most_wrong(a: argparse.Namespace) -> int:
    from cnnkit.commands.explain import most_wrong_figure

    return _save_picture(lambda: most_wrong_figure(a.checkpoint, a.data, n=a.n, split=a.split, data_dir=a.data_dir),
                         a.out)


def cmd_report(a: argparse.Namespace) -> int:
    from cnnkit.visualize.report import write_report

    print(f"wrote {write_report(a.run, a.data)}")
    return 0


def cmd_recipes(a: argparse.Namespace) -> int:
    from cnnkit.recipes import format_recipe_list

    print(format_recipe_list(verbose=a.verbose))
    return 0


def cmd_recipe(a: argparse.Namespace) -> int:
    from cnnkit.recipes import format_results, run_recipe

    given = settings.given(a, a.run_config)
    try:
        result = run_recipe(a.name, fast=a.fast, data_dir=a.data_dir, overrides=given.values)
    except settings.SettingError as exc:
        raise exc.named(given.flags) from None
    print(format_results([result]))
    return 0


# ----------------------------------------------------------------------------- parser


def build_parser(config: type = C.RunConfig) -> argparse.ArgumentParser:
    """The ``cnnkit`` parser; ``config`` is the run config class whose settings become flags
    (a subclass adds its own settings to ``train``, ``augment-preview`` and ``recipe``)."""
    parser = argparse.ArgumentParser(prog="cnnkit",
                                     description="Train, evaluate, explain and serve CNN image classifiers.")
    parser.set_defaults(run_config=config)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model on a dataset or image folder")
    _add_train_flags(p, config)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("lr-find", help="learning-rate range test: loss against an exponentially rising rate, "
                       "a suggested --lr, lr_find.png")
    _add_train_flags(p, config, resume=False)  # the settings of `train`: the test runs on what it would train
    p.add_argument("--sweeps", type=int, default=1, metavar="N", help="repeat the sweep over N batch orders and "
                   "suggest the geometric median of theirs (default 1)")
    p.set_defaults(func=cmd_lr_find)

    p = sub.add_parser("evaluate", help="accuracy, per-class report and confusion matrix of a checkpoint")
    p.add_argument("checkpoint", help="checkpoint file or run folder")
    p.add_argument("data", nargs="?", help="dataset name or folder (default: the run's own data)")
    p.add_argument("--split", default="auto", choices=("auto", "test", "val", "train"))
    p.add_argument("--tta", choices=("flip", "flip-shift"), help="average predictions over flipped/shifted views")
    p.add_argument("--out", help="folder for metrics and pictures (default: beside the checkpoint)")
    p.add_argument("--device")
    p.add_argument("--data-dir")
    _add_trust_flag(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="top-k classes of image files or folders")
    p.add_argument("checkpoint", help="checkpoint file, run folder or .onnx export")
    p.add_argument("inputs", nargs="+", help="image files and/or folders")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--format", choices=("table", "csv", "json", "jsonl"), default="table",
                   help="table | csv | json (one array) | jsonl (one object per line); rows are written as they come")
    p.add_argument("--min-confidence", metavar="P", help="answer 'unknown' for images whose top (calibrated) "
                   "probability is below P (0-1); auto = the threshold stored with the run, if any")
    p.add_argument("--output", "-o", help="write to this file instead of the terminal")
    p.add_argument("--batch-size", type=int, default=64, help="images per model call (default 64)")
    p.add_argument("--device")
    _add_trust_flag(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("summary", help="Keras-style table of a model's layers, output shapes and parameters")
    p.add_argument("model")
    p.add_argument("--image-size", type=int, nargs="+", metavar="N", help="N or H W (default 32)")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--classes", type=int, default=10)
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("augment-preview", help="picture of images and augmented copies of them")
    p.add_argument("data", help="dataset name or image folder")
    p.add_argument("--out", default="augment_preview.png", help="picture file (default augment_preview.png)")
    p.add_argument("--n-aug", type=int, default=7, help="augmented copies per image (default 7)")
    p.add_argument("--n-images", type=int, default=4, help="images, one per row (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the augmentation draws (default 0)")
    settings.add_flags(p, config, skip=PREVIEW_SKIP)
    p.set_defaults(func=cmd_augment_preview)

    p = sub.add_parser("export", help="export a checkpoint to ONNX or TorchScript, checked against PyTorch")
    p.add_argument("checkpoint", help="checkpoint file or run folder")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out", help="output file (default: beside the checkpoint: best.onnx or best.pt)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference allowed vs PyTorch (default 1e-4)")
    _add_trust_flag(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="web page and JSON API that classify uploaded images")
    p.add_argument("checkpoint", help="checkpoint file, run folder or .onnx export")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted upload in MiB (default 10)")
    p.add_argument("--device", help="cpu (default) | cuda | mps (PyTorch checkpoints only)")
    p.add_argument("--threads", type=int,
                   help="threads per model call (default: torch/ONNX Runtime's own, one per core)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn log level; 'warning' drops the per-request access log (default info)")
    _add_trust_flag(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("studio", help="the whole workflow in a local browser page: data, training, review, try, export")
    p.add_argument("--root", default=".",
                   help="folder whose data the page may open, upload into and train on (default: here)")
    p.add_argument("--runs", help="run folder to list and write (default ROOT/runs)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--data-dir", help="folder holding (or receiving) named datasets")
    p.add_argument("--cache-dir", help="decode-once image cache (default ~/.cache/cnnkit)")
    p.add_argument("--upload-quota", type=float, metavar="GIB",
                   help="GiB that uploaded zips may unpack to under ROOT/uploads, all together (default 10)")
    p.set_defaults(func=cmd_studio)

    p = sub.add_parser("explain",
                       help="pictures that explain images and models (sobel, filters, features, gradcam, most-wrong)")
    ex = p.add_subparsers(dest="what", required=True)
    e = ex.add_parser("sobel", help="Sobel dx, dy and gradient magnitude of an image, computed as a convolution")
    e.add_argument("image", nargs="?", help="image file (default: scikit-image's cat photo)")
    e.add_argument("--out", default="sobel.png", help="picture file (default sobel.png)")
    e.set_defaults(func=cmd_explain_sobel)
    e = ex.add_parser("filters", help="the first convolution layer's learned filters as a grid")
    e.add_argument("checkpoint", help="checkpoint file or run folder")
    e.add_argument("--out", default="filters.png", help="picture file (default filters.png)")
    _add_trust_flag(e)
    e.set_defaults(func=cmd_explain_filters)
    e = ex.add_parser("features", help="feature maps of one layer for one image")
    e.add_argument("checkpoint", help="checkpoint file or run folder")
    e.add_argument("image", help="image file")
    e.add_argument("--layer", required=True, help="dotted layer name as in model.named_modules(), e.g. features.3 "
                   "(an unknown name lists them)")
    e.add_argument("--out", default="features.png", help="picture file (default features.png)")
    _add_trust_flag(e)
    e.set_defaults(func=cmd_explain_features)
    e = ex.add_parser("gradcam", help="Grad-CAM heat map of a class over an image (gradient saliency for dense models)")
    e.add_argument("checkpoint", help="checkpoint file or run folder")
    e.add_argument("image", help="image file")
    e.add_argument("--class", dest="class_name", help="class name to explain (default: the predicted class)")
    e.add_argument("--out", default="gradcam.png", help="picture file (default gradcam.png)")
    _add_trust_flag(e)
    e.set_defaults(func=cmd_explain_gradcam)
    e = ex.add_parser("most-wrong", help="the highest-loss images of an evaluation with true/predicted class")
    e.add_argument("checkpoint", help="checkpoint file or run folder")
    e.add_argument("data", nargs="?", help="dataset name or folder (default: the run's own data)")
    e.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    e.add_argument("--split", default="auto", choices=("auto", "test", "val", "train"))
    e.add_argument("--data-dir")
    e.add_argument("--out", default="most_wrong.png", help="picture file (default most_wrong.png)")
    _add_trust_flag(e)
    e.set_defaults(func=cmd_explain_most_wrong)

    p = sub.add_parser("report", help="write report.html in a run folder: curves, metrics, confusion matrix, "
                       "most-wrong images, Grad-CAM")
    p.add_argument("run", help="run folder")
    p.add_argument("data", nargs="?", help="evaluate on this dataset or folder (default: the run's own data)")
    _add_trust_flag(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("organize",
                       help="sort a flat folder of labelled file names (cat.1.jpg) into train/validation/<class>/")
    p.add_argument("src", help="flat folder of images; only read, never changed")
    p.add_argument("dst", help="new folder to create: DST/{train,validation[,test]}/<class>/")
    p.add_argument("--val", type=float, default=0.2, help="validation fraction, stratified (default 0.2)")
    p.add_argument("--test", type=float, default=0.0, help="test fraction (default 0: no test folder)")
    p.add_argument("--label-from", default="name-prefix",
                   help="name-prefix (text before the first digit: cat.123.jpg -> cat) or a regex whose "
                        "group 'label' / first group is the class")
    p.add_argument("--mode", choices=("copy", "hardlink", "symlink"), default="copy")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_organize)

    p = sub.add_parser("relabel", help="correct labels without moving files: write label_map.csv rows that "
                       "relabel or exclude images (read by every later load of the folder)")
    p.add_argument("data", help="image folder")
    p.add_argument("files", nargs="*", help="image files (relative to the data folder or to here, or absolute)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--to", metavar="CLASS", help="give the files this class")
    what.add_argument("--exclude", action="store_true", help="leave the files out of every split")
    what.add_argument("--from", dest="from_csv", metavar="CSV",
                      help="accept the suggested labels of a run's label_issues.csv (most suspicious first)")
    p.add_argument("--top", type=int, metavar="K", help="with --from: only the first K rows (default: all)")
    p.add_argument("--label-map", metavar="FILE", help="the map to update (default DATA/label_map.csv)")
    settings.add_flags(p, config, keys=TABLE_KEYS)
    p.set_defaults(func=cmd_relabel)

    p = sub.add_parser("inspect", help="counts per class and split, sizes, unreadable files, leakage, imbalance")
    p.add_argument("data", help="dataset name, image folder or archive")
    p.add_argument("--samples", metavar="PNG", help="also save a grid of sample images with their labels")
    p.add_argument("-n", type=int, default=16, help="images in the sample grid (default 16)")
    p.add_argument("--json", metavar="FILE", help="also save the report as JSON")
    p.add_argument("--data-dir", help="folder holding (or receiving) named datasets")
    p.add_argument("--cache-dir", help="decode-once image cache (default ~/.cache/cnnkit)")
    settings.add_flags(p, config, keys=TABLE_KEYS)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("recipes", help="list the tutorial recipes and the accuracy each tutorial reported")
    p.add_argument("-v", "--verbose", action="store_true", help="also what each does, its source and the data it needs")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("recipe", help="run a tutorial recipe end to end; print reported vs measured accuracy")
    p.add_argument("name", help="recipe name (see `cnnkit recipes`)")
    p.add_argument("--fast", action="store_true", help="modern settings (Adam one-cycle, batch-norm net, fewer epochs)")
    p.add_argument("--data-dir", help="folder holding the recipe's dataset (default: $CNNKIT_DATA_DIR or the cache)")
    settings.add_flags(p, config, keys=RECIPE_KEYS)  # each overrides the recipe's own value
    p.set_defaults(func=cmd_recipe)

    p = sub.add_parser("models", help="list the models by name")
    p.set_defaults(func=cmd_models)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, docker stop, a batch scheduler's time limit): stop as Ctrl-C does."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _trusting(trust: bool) -> contextlib.AbstractContextManager:
    """--trust-code: loads in this command may import a model's module (imported only then: it loads torch)."""
    if not trust:
        return contextlib.nullcontext()
    from cnnkit.models.custom import trusted_code

    return trusted_code()


def main(argv: Sequence[str] | None = None, config: type = C.RunConfig) -> int:
    """Run one ``cnnkit`` command; ``config``: a RunConfig subclass whose extra settings get flags."""
    parser = build_parser(config)
    args = parser.parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        with _trusting(getattr(args, "trust_code", False)):
            return args.func(args)
    except CnnkitError as exc:
        print(f"cnnkit: error: {exc}", file=sys.stderr)
        return 2
    except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:  # a place cnnkit may not write
        print(f"cnnkit: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno != errno.EROFS:
            raise
        print(f"cnnkit: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except RecursionError:  # JSON (or other input) nested deeper than Python's stack
        print("cnnkit: error: an input is nested too deeply to read (thousands of [ or { levels)", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # checkpoints are written atomically at each epoch's end, so nothing saved is lost
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"cnnkit: {how}; `cnnkit train --resume RUN` continues from the last saved epoch", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)  # main() may be called in-process (tests, notebooks)


if __name__ == "__main__":
    sys.exit(main())
