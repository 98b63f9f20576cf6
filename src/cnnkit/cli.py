"""Command line: each subcommand parses its flags, builds a config and makes one library call."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from cnnkit import config as C
from cnnkit.augment.cli_args import add_augment_args, augment_config_from_args
from cnnkit.errors import CnnkitError

MAIN_DEFAULT = "mnist-mini"


# ----------------------------------------------------------------------------- helpers


def _size(values: Sequence[int] | None) -> tuple[int, int] | None:
    if not values:
        return None
    if len(values) > 2:
        raise CnnkitError("--image-size takes one number (square) or two (height width)")
    return (values[0], values[-1])


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--image-size", type=int, nargs="+", metavar="N", help="target size: N (square) or H W")
    g.add_argument("--channels", type=int, choices=(1, 3), help="1 = greyscale, 3 = RGB (default: the data's own)")
    g.add_argument("--val-split", type=float, help="validation fraction when the data has no validation split")
    g.add_argument("--test-split", type=float, help="test fraction split off when the data has no test split")
    g.add_argument("--data-dir", help="folder holding (or receiving) named datasets")
    g.add_argument("--cache-dir", help="decode-once image cache (default ~/.cache/cnnkit)")
    g.add_argument("--strict", action="store_true", default=None, help="stop at the first unreadable image")


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", help=f"dataset name or image folder (default: {MAIN_DEFAULT})")
    p.add_argument("--config", help="JSON run config (e.g. a run's config.json); flags override it")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last epoch, with its own settings "
                                                 "(--epochs N trains to N instead of the run's own count)")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="model name (see `cnnkit models`; default auto: chosen from the data and --time)")
    m.add_argument("--dropout", type=float, help="override the model's dropout rate")
    _add_transfer_flags(m)
    o = p.add_argument_group("optimisation")
    o.add_argument("--optimizer", choices=("sgd", "rmsprop", "adam", "adamw"))
    o.add_argument("--lr", type=float, help="learning rate")
    o.add_argument("--momentum", type=float)
    o.add_argument("--nesterov", action="store_true", default=None)
    o.add_argument("--decay", type=float, help="Keras-style time decay: lr / (1 + decay * step)")
    o.add_argument("--weight-decay", type=float)
    o.add_argument("--schedule", choices=("none", "cosine", "onecycle", "step"))
    o.add_argument("--warmup", type=float, dest="warmup_epochs", help="linear warm-up epochs")
    o.add_argument("--step-size", type=int, help="--schedule step: epochs between rate cuts (default 10)")
    o.add_argument("--gamma", type=float, help="--schedule step: factor of each cut (default 0.1)")
    o.add_argument("--label-smoothing", type=float)
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int)
    t.add_argument("--time", type=float, metavar="SECONDS", help="wall-clock budget of the whole run: stops at an "
                   "epoch's end when the next would not fit, keeping the best checkpoint (default: none; 300 with auto)")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--out", help="run folder (default runs/<data>-<model>, numbered if taken)")
    t.add_argument("--patience", type=int, help="early stopping patience in epochs (default: off)")
    t.add_argument("--monitor", help="metric for early stopping and the best checkpoint; a,b breaks ties of a with b "
                   "(default val_acc,val_loss)")
    t.add_argument("--min-delta", type=float)
    t.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    t.add_argument("--amp", choices=("auto", "off", "bf16", "fp16"), help="mixed precision (default auto)")
    t.add_argument("--compile", choices=("auto", "on", "off"), help="torch.compile (default: on CUDA only)")
    t.add_argument("--no-fast", dest="fast", action="store_false", default=None,
                   help="turn off channels_last, autocast and allocator tuning")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.add_argument("--no-report", dest="report", action="store_false", default=None, help="skip report.html")
    _add_data_flags(p)
    add_augment_args(p)


def _add_transfer_flags(m: argparse._ArgumentGroup) -> None:
    m.add_argument("--transfer", choices=("none", "features", "head", "finetune"),
                   help="pretrained backbones: features = frozen, head trained on features computed once; "
                        "head = frozen, head trained on (augmented) images; finetune = also the top "
                        "--finetune-blocks blocks at 0.1x the learning rate; none = train every layer")
    m.add_argument("--cut", metavar="LAYER", help="backbone layer to cut after (e.g. Mixed_6e or Keras' mixed7, "
                   "layer3, features.7; an unknown name lists them)")
    m.add_argument("--head", type=int, nargs="+", metavar="N", help="hidden sizes of the dense head, e.g. 1024 "
                   "(0 = none: pooled features straight to the output layer)")
    m.add_argument("--head-dropout", type=float, help="dropout in the head (e.g. 0.2)")
    m.add_argument("--finetune-blocks", type=int, metavar="N", help="--transfer finetune: top N backbone blocks to train")
    m.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="load the backbone's ImageNet weights (default: on with --transfer)")
    m.add_argument("--weights", metavar="PATH", help="backbone weights from a local state_dict file "
                   "(.pth/.pt/.safetensors of the torchvision network)")


def _transfer_model_config(model: C.ModelConfig, a: argparse.Namespace) -> C.ModelConfig:
    head = tuple(h for h in a.head if h > 0) if a.head is not None else None
    model = C.replace(model, transfer=a.transfer, cut=a.cut, head=head, head_dropout=a.head_dropout,
                      finetune_blocks=a.finetune_blocks, pretrained=a.pretrained, weights=a.weights)
    if a.pretrained is None and model.transfer != "none" and not model.weights:
        model = C.replace(model, pretrained=True)  # a transfer mode means pretrained weights unless --no-pretrained
    return model


def run_config_from_args(a: argparse.Namespace) -> C.RunConfig:
    """Defaults <- --config file <- flags given on the command line."""
    cfg = C.load_run_config(a.config) if a.config else C.RunConfig()
    data = C.replace(cfg.data, source=a.data, image_size=_size(a.image_size), channels=a.channels,
                     val_split=a.val_split, test_split=a.test_split, data_dir=a.data_dir, cache_dir=a.cache_dir,
                     strict=a.strict, seed=a.seed)
    model = _transfer_model_config(C.replace(cfg.model, name=a.model, dropout=a.dropout), a)
    optim = C.replace(cfg.optim, name=a.optimizer, lr=a.lr, momentum=a.momentum, nesterov=a.nesterov, decay=a.decay,
                      weight_decay=a.weight_decay, schedule=a.schedule, warmup_epochs=a.warmup_epochs,
                      step_size=a.step_size, gamma=a.gamma,
                      label_smoothing=a.label_smoothing)
    train = C.replace(cfg.train, epochs=a.epochs, batch_size=a.batch_size, seed=a.seed, out=a.out, patience=a.patience,
                      monitor=a.monitor, min_delta=a.min_delta, device=a.device, amp=a.amp, compile=a.compile, fast=a.fast,
                      progress=False if a.quiet else None, report=a.report, time=a.time)
    augment = augment_config_from_args(a, cfg.augment)
    return C.RunConfig(data=data, model=model, optim=optim, train=train, augment=augment)


# ----------------------------------------------------------------------------- commands


def _explicit_flags(a: argparse.Namespace, command: str, keep: Sequence[str] = ()) -> list[str]:
    """The options of ``command`` given on this command line (set to something other than their default)."""
    sub = next(act for act in build_parser()._actions if isinstance(act, argparse._SubParsersAction))
    given = []
    for act in sub.choices[command]._actions:
        if act.dest in keep or not act.option_strings or act.dest == "help":
            continue
        if getattr(a, act.dest, act.default) != act.default:
            given.append(act.option_strings[0])
    return given


def cmd_train(a: argparse.Namespace) -> int:
    from cnnkit.train import train

    from cnnkit.runtime import distributed_from_env

    cfg = run_config_from_args(a)
    if a.resume:  # the run's own settings; only --epochs (default: the run's own) and --quiet apply
        from cnnkit.train.run import resumed_config

        cfg = resumed_config(a.resume, a.epochs, cfg.train.progress)
        ignored = _explicit_flags(a, "train", keep=("data", "resume", "epochs", "quiet"))
        if ignored:
            print(f"cnnkit: note: a resumed run keeps its own settings; ignored: {' '.join(ignored)}", file=sys.stderr)
    with distributed_from_env() as (rank, _):
        result = train(cfg, resume=a.resume, explicit_out=a.out is not None)
    if rank != 0:
        return 0
    if result.metrics:
        m = result.metrics
        print(f"{m['split']} accuracy {m['accuracy']:.4f} ({m['n']} images); run folder: {result.run_dir}")
    else:
        print(f"run folder: {result.run_dir}")
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from cnnkit.evaluate.evaluate import evaluate
    from cnnkit.evaluate.metrics import format_report
    from cnnkit.train.run import write_evaluation

    source = a.data or _run_source(a.checkpoint)
    metrics, _, _ = evaluate(a.checkpoint, source, split=a.split, tta=a.tta, device=a.device or "auto",
                             data_dir=a.data_dir)
    print(format_report(metrics))
    out = Path(a.out) if a.out else (Path(a.checkpoint) if Path(a.checkpoint).is_dir() else Path(a.checkpoint).parent)
    write_evaluation(out, metrics, prefix=f"eval_{metrics['split']}_")
    print(f"wrote {out / ('eval_' + metrics['split'] + '_metrics.json')} and the confusion matrix")
    return 0


def _run_source(checkpoint: str) -> str:
    from cnnkit.train.checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint)
    if ck.run_config is None:
        raise CnnkitError(f"{checkpoint}: name the data to evaluate on (the checkpoint does not record it)")
    return ck.run_config.data.source


def cmd_predict(a: argparse.Namespace) -> int:
    from cnnkit.serve.predict import format_predictions, predict

    preds = predict(a.checkpoint, a.inputs, top_k=a.top_k, device=a.device or "cpu")
    text = format_predictions(preds, a.format)
    if a.output:
        from cnnkit.io import atomic_write_text

        atomic_write_text(a.output, text if text.endswith("\n") else text + "\n")
        print(f"wrote {len(preds)} predictions to {a.output}")
    else:
        print(text)
    return 1 if any(p.error for p in preds) and not any(p.top for p in preds) else 0


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

    data = C.replace(C.DataConfig(source=a.data), image_size=_size(a.image_size), channels=a.channels,
                     val_split=a.val_split, test_split=a.test_split, data_dir=a.data_dir, cache_dir=a.cache_dir,
                     strict=a.strict)
    out = write_augment_preview(data, augment_config_from_args(a), a.out, n_aug=a.n_aug, n_images=a.n_images,
                                seed=a.seed)
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


def cmd_inspect(a: argparse.Namespace) -> int:
    from cnnkit.data.inspection import inspect_command

    inspect_command(a.data, samples=a.samples, n=a.n, data_dir=a.data_dir, cache_dir=a.cache_dir, json_out=a.json)
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

    if a.max_upload_mb <= 0:
        raise CnnkitError(f"--max-upload-mb must be positive, got {a.max_upload_mb}")
    serve(a.checkpoint, host=a.host, port=a.port, max_upload_bytes=int(a.max_upload_mb * 1024 * 1024),
          device=a.device or "cpu", log_level=a.log_level, threads=a.threads)
    return 0


def _save_picture(fig, out: str) -> int:
    from cnnkit.visualize.figures import save_figure

    print(f"wrote {save_figure(fig, out)}")
    return 0


def cmd_explain_sobel(a: argparse.Namespace) -> int:
    from cnnkit.explain import sobel_figure

    return _save_picture(sobel_figure(a.image), a.out)


def cmd_explain_filters(a: argparse.Namespace) -> int:
    from cnnkit.explain import filters_figure

    return _save_picture(filters_figure(a.checkpoint), a.out)


def cmd_explain_features(a: argparse.Namespace) -> int:
    from cnnkit.explain import features_figure

    return _save_picture(features_figure(a.checkpoint, a.image, a.layer), a.out)


def cmd_explain_gradcam(a: argparse.Namespace) -> int:
    from cnnkit.explain import gradcam_figure

    return _save_picture(gradcam_figure(a.checkpoint, a.image, a.class_name), a.out)


def cmd_explain_most_wrong(a: argparse.Namespace) -> int:
    from cnnkit.explain import most_wrong_figure

    return _save_picture(most_wrong_figure(a.checkpoint, a.data, n=a.n, split=a.split, data_dir=a.data_dir), a.out)


def cmd_report(a: argparse.Namespace) -> int:
    from cnnkit.visualize.report import write_report

    print(f"wrote {write_report(a.run, a.data)}")
    return 0


def cmd_recipes(a: argparse.Namespace) -> int:
    from cnnkit.recipes import format_recipe_list

    print(format_recipe_list(verbose=a.verbose))
    return 0


def _recipe_overrides(a: argparse.Namespace) -> dict:
    given = {"train.epochs": a.epochs, "train.batch_size": a.batch_size, "data.image_size": _size(a.image_size),
             "model.weights": a.weights, "train.out": a.out, "train.device": a.device, "data.cache_dir": a.cache_dir,
             "train.seed": a.seed, "data.seed": a.seed, "train.progress": False if a.quiet else None}
    return {k: v for k, v in given.items() if v is not None}


def cmd_recipe(a: argparse.Namespace) -> int:
    from cnnkit.recipes import format_results, run_recipe

    result = run_recipe(a.name, fast=a.fast, data_dir=a.data_dir, overrides=_recipe_overrides(a))
    print(format_results([result]))
    return 0


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnkit", description="Train, evaluate, explain and serve CNN image classifiers.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model on a dataset or image folder")
    _add_train_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy, per-class report and confusion matrix of a checkpoint")
    p.add_argument("checkpoint", help="checkpoint file or run folder")
    p.add_argument("data", nargs="?", help="dataset name or folder (default: the run's own data)")
    p.add_argument("--split", default="auto", choices=("auto", "test", "val", "train"))
    p.add_argument("--tta", choices=("flip", "flip-shift"), help="average predictions over flipped/shifted views")
    p.add_argument("--out", help="folder for metrics and pictures (default: beside the checkpoint)")
    p.add_argument("--device")
    p.add_argument("--data-dir")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="top-k classes of image files or folders")
    p.add_argument("checkpoint", help="checkpoint file, run folder or .onnx export")
    p.add_argument("inputs", nargs="+", help="image files and/or folders")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--output", "-o", help="write to this file instead of the terminal")
    p.add_argument("--device")
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
    p.add_argument("--seed", type=int, default=0)
    _add_data_flags(p)
    add_augment_args(p, tta=False, preset_alias=True)
    p.set_defaults(func=cmd_augment_preview)

    p = sub.add_parser("export", help="export a checkpoint to ONNX or TorchScript, checked against PyTorch")
    p.add_argument("checkpoint", help="checkpoint file or run folder")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out", help="output file (default: beside the checkpoint: best.onnx or best.pt)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference allowed vs PyTorch (default 1e-4)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="web page and JSON API that classify uploaded images")
    p.add_argument("checkpoint", help="checkpoint file, run folder or .onnx export")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted upload in MiB (default 10)")
    p.add_argument("--device", help="cpu (default) | cuda | mps (PyTorch checkpoints only)")
    p.add_argument("--threads", type=int, help="threads per model call (default: torch/ONNX Runtime's own, one per core)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn log level; 'warning' drops the per-request access log (default info)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("explain", help="pictures that explain images and models (sobel, filters, features, gradcam, most-wrong)")
    ex = p.add_subparsers(dest="what", required=True)
    e = ex.add_parser("sobel", help="Sobel dx, dy and gradient magnitude of an image, computed as a convolution")
    e.add_argument("image", nargs="?", help="image file (default: scikit-image's cat photo)")
    e.add_argument("--out", default="sobel.png", help="picture file (default sobel.png)")
    e.set_defaults(func=cmd_explain_sobel)
    e = ex.add_parser("filters", help="the first convolution layer's learned filters as a grid")
    e.add_argument("checkpoint", help="checkpoint file or run folder")
    e.add_argument("--out", default="filters.png", help="picture file (default filters.png)")
    e.set_defaults(func=cmd_explain_filters)
    e = ex.add_parser("features", help="feature maps of one layer for one image")
    e.add_argument("checkpoint", help="checkpoint file or run folder")
    e.add_argument("image", help="image file")
    e.add_argument("--layer", required=True, help="dotted layer name as in model.named_modules(), e.g. features.3 "
                   "(an unknown name lists them)")
    e.add_argument("--out", default="features.png", help="picture file (default features.png)")
    e.set_defaults(func=cmd_explain_features)
    e = ex.add_parser("gradcam", help="Grad-CAM heat map of a class over an image (gradient saliency for dense models)")
    e.add_argument("checkpoint", help="checkpoint file or run folder")
    e.add_argument("image", help="image file")
    e.add_argument("--class", dest="class_name", help="class name to explain (default: the predicted class)")
    e.add_argument("--out", default="gradcam.png", help="picture file (default gradcam.png)")
    e.set_defaults(func=cmd_explain_gradcam)
    e = ex.add_parser("most-wrong", help="the highest-loss images of an evaluation with true/predicted class")
    e.add_argument("checkpoint", help="checkpoint file or run folder")
    e.add_argument("data", nargs="?", help="dataset name or folder (default: the run's own data)")
    e.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    e.add_argument("--split", default="auto", choices=("auto", "test", "val", "train"))
    e.add_argument("--data-dir")
    e.add_argument("--out", default="most_wrong.png", help="picture file (default most_wrong.png)")
    e.set_defaults(func=cmd_explain_most_wrong)

    p = sub.add_parser("report", help="write report.html in a run folder: curves, metrics, confusion matrix, "
                       "most-wrong images, Grad-CAM")
    p.add_argument("run", help="run folder")
    p.add_argument("data", nargs="?", help="evaluate on this dataset or folder (default: the run's own data)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("organize", help="sort a flat folder of labelled file names (cat.1.jpg) into train/validation/<class>/")
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

    p = sub.add_parser("inspect", help="counts per class and split, sizes, unreadable files, leakage, imbalance")
    p.add_argument("data", help="dataset name, image folder or archive")
    p.add_argument("--samples", metavar="PNG", help="also save a grid of sample images with their labels")
    p.add_argument("-n", type=int, default=16, help="images in the sample grid (default 16)")
    p.add_argument("--json", metavar="FILE", help="also save the report as JSON")
    p.add_argument("--data-dir", help="folder holding (or receiving) named datasets")
    p.add_argument("--cache-dir", help="decode-once image cache (default ~/.cache/cnnkit)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("recipes", help="list the tutorial recipes and the accuracy each tutorial reported")
    p.add_argument("-v", "--verbose", action="store_true", help="also what each does, its source and the data it needs")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("recipe", help="run a tutorial recipe end to end; print reported vs measured accuracy")
    p.add_argument("name", help="recipe name (see `cnnkit recipes`)")
    p.add_argument("--fast", action="store_true", help="modern settings (Adam one-cycle, batch-norm net, fewer epochs)")
    p.add_argument("--data-dir", help="folder holding the recipe's dataset (default: $CNNKIT_DATA_DIR or the cache)")
    p.add_argument("--weights", metavar="PATH", help="local backbone weights (state_dict file) for transfer recipes")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    p.add_argument("--image-size", type=int, nargs="+", metavar="N", help="override the image size: N or H W")
    p.add_argument("--out", help="run folder (default runs/recipes/<name>, numbered if taken)")
    p.add_argument("--cache-dir", help="decode-once image cache (default ~/.cache/cnnkit)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--seed", type=int)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_recipe)

    p = sub.add_parser("models", help="list the models by name")
    p.set_defaults(func=cmd_models)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, docker stop, a batch scheduler's time limit): stop as Ctrl-C does."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        return args.func(args)
    except CnnkitError as exc:
        print(f"cnnkit: error: {exc}", file=sys.stderr)
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
