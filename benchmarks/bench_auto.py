"""The automatic default against each of its candidates run alone and the tutorial's from-scratch net.

    python benchmarks/bench_auto.py [--root .bench-data] [--work DIR] [--only NAME,...] [--time 300]
                                    [--parts default,heads,scratch,tutorial] [--json FILE]

The datasets are built offline by ``bench_datasets.py`` (``--root``, built on first use): everyday
photos (cats-dogs), small colour photos (cifar10-5k, and cifar10-full when named), tiny grey images
(mnist-5k, fashion-5k), small colour symbols a flip changes (signs32), grey photos of textures and
documents (grey-textures), a few larger colour photos (photo-patches) and upscaled digits
(digits-up).  For each one, side by side:

* **default**: ``cnnkit train FOLDER`` and nothing else, in a fresh process with an empty cache (so
  decoding is timed too): accuracy on the reported split (the test folder where there is one, else
  the validation folder), wall seconds, what it chose, and how far it went past its budget;
* **heads**: each frozen-feature candidate alone with its best setting - a logistic head on the
  features of every training image (Lite0, Lite1, Lite2 at 224 px, and their concatenation),
  scored on the same reported split; its seconds are its feature passes as measured here;
* **scratch**: the from-scratch candidate alone (``fast-cnn``, or ``fast-cnn-small`` for small grey
  images, the speed-run settings, with and without flips) with the same budget as the default,
  on images small enough for it;
* **tutorial**: the tutorial's from-scratch net for that kind of data with cnnkit's default
  optimiser, given the same budget.

It prints one table: the default against the best single candidate (the gap in points), and the
tutorial net.  Timings mean something only on a quiet machine; the load average is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_datasets import DATASETS, build  # noqa: E402

DEFAULT_ORDER = ("cats-dogs", "signs32", "cifar10-5k", "mnist-5k", "fashion-5k", "grey-textures", "photo-patches",
                 "digits-up")
# the tutorial's from-scratch net for each dataset: flags for `cnnkit train`
TUTORIAL = {
    "cats-dogs": ["--model", "simple-cnn", "--image-size", "150", "--augment", "standard", "--epochs", "30"],
    "photo-patches": ["--model", "simple-cnn", "--image-size", "150", "--augment", "standard", "--epochs", "30"],
    "grey-textures": ["--model", "simple-cnn", "--image-size", "150", "--augment", "standard", "--epochs", "30"],
    "cifar10-5k": ["--model", "cifar-cnn", "--epochs", "50"],
    "cifar10-full": ["--model", "cifar-cnn", "--epochs", "50"],
    "signs32": ["--model", "cifar-cnn", "--epochs", "50"],
    "mnist-5k": ["--model", "mnist-cnn", "--epochs", "30"],
    "digits-up": ["--model", "mnist-cnn", "--epochs", "30"],
    "fashion-5k": ["--model", "fashion-functional", "--epochs", "30"],
}


def cnnkit_train(folder: Path, flags: list[str], out: Path, cache: Path) -> dict:
    """One ``cnnkit train`` in a fresh process; accuracy on the reported split, wall seconds."""
    subprocess.run(["rm", "-rf", str(out)], check=True)
    cmd = [sys.executable, "-m", "cnnkit", "train", str(folder), "--out", str(out), "--cache-dir", str(cache),
           "--quiet", *flags]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    match = re.search(r"(\w+) accuracy ([0-9.]+) \((\d+) images\); run folder: (.+)", proc.stdout)
    row = {"flags": " ".join(flags) or "(none)", "seconds": round(seconds, 1), "rc": proc.returncode,
           "accuracy": float(match.group(2)) if match else None, "split": match.group(1) if match else None}
    if proc.returncode != 0 or match is None:
        text = (proc.stdout + proc.stderr).strip()
        row["error"] = text.splitlines()[-1] if text else f"exit {proc.returncode}"
    return row


def default_run(name: str, folder: Path, work: Path, budget: float | None) -> dict:
    out, cache = work / "runs" / f"{name}-default", work / "caches" / name
    subprocess.run(["rm", "-rf", str(cache)], check=True)  # decoding counts
    row = cnnkit_train(folder, ["--time", str(budget)] if budget else [], out, cache)
    record = json.loads((out / "auto.json").read_text()) if (out / "auto.json").is_file() else {}
    row.update({"chosen": record.get("chosen"), "reason": record.get("reason"), "budget": record.get("budget_s"),
                "elapsed": record.get("elapsed_s"), "candidates": record.get("candidates", []),
                "notes": record.get("notes", [])})
    return row


def heads_alone(name: str, folder: Path, work: Path) -> list[dict]:
    """Each backbone's logistic head on every training image's features, scored on the reported split."""
    import numpy as np
    import torch

    from cnnkit.config import ModelConfig, make_config
    from cnnkit.data import load_data
    from cnnkit.data.arrays import conform_splits
    from cnnkit.data.describe import describe
    from cnnkit.evaluate.label_issues import fit_linear_head
    from cnnkit.inference.preprocess import ImageInputs
    from cnnkit.models import build_model
    from cnnkit.train import candidates as C
    from cnnkit.train.features import cached_features

    cache = work / "caches" / name
    user = make_config(data=str(folder), cache_dir=str(cache))
    cfg = C.features_config(user, C.BACKBONES[0])
    d = describe(user.data)
    if max(d.size) <= C.SCRATCH_MAX_SIDE:  # as the race does: decoded at their own size, upscaled in memory
        own = load_data(dataclasses.replace(user.data, image_size=tuple(d.size), channels=1 if d.grey else 3))
        splits = conform_splits(own, cfg.data.image_size, 3)
    else:
        splits = load_data(cfg.data)
    arranged, _, reported = C.selection_split(splits, cfg.data.seed)
    report = arranged.test
    cpu = torch.device("cpu")
    amp = None  # bottleneck features are computed in full precision, as a training run computes them
    rows, feats = [], {}
    for backbone in C.BACKBONES:
        model = build_model(ModelConfig(name=backbone, transfer="features", pretrained=True,
                                        num_classes=len(splits.train.classes), in_channels=3,
                                        image_size=arranged.train.image_size)).eval()
        inputs = ImageInputs(*model.input_norm, cpu, False)
        runners: dict = {}
        t0 = time.perf_counter()
        parts = [cached_features(model, s, inputs, cpu, amp, cache, runners) for s in
                 (arranged.train, arranged.val, report)]
        passes = sum(info["pass_seconds"] for _, info in parts)
        cached = [info["reused"] for _, info in parts]
        f_train = np.concatenate([parts[0][0], parts[1][0]])
        y_train = np.concatenate([arranged.train.labels, arranged.val.labels])
        feats[backbone] = (f_train, parts[2][0])
        head = fit_linear_head(f_train, y_train, len(splits.train.classes))
        acc = float((head.probs(parts[2][0]).argmax(1) == report.labels).mean())
        rows.append({"setting": f"{backbone} features alone", "accuracy": acc, "split": reported,
                     "seconds": round(time.perf_counter() - t0, 1), "pass_seconds": round(passes, 1),
                     "cached": cached})
        print(json.dumps({"data": name, **rows[-1]}), flush=True)
    f_train = np.concatenate([feats[b][0] for b in C.BACKBONES], axis=1)
    f_test = np.concatenate([feats[b][1] for b in C.BACKBONES], axis=1)
    head = fit_linear_head(f_train, y_train, len(splits.train.classes))
    acc = float((head.probs(f_test).argmax(1) == report.labels).mean())
    rows.append({"setting": "lite0+lite1+lite2 features alone", "accuracy": acc, "split": reported,
                 "seconds": round(sum(r["seconds"] for r in rows), 1)})
    return rows


def scratch_alone(name: str, folder: Path, work: Path, budget: float) -> list[dict]:
    """The from-scratch candidate with the race's settings, every training image, the same budget."""
    from cnnkit.config import make_config
    from cnnkit.data.describe import describe
    from cnnkit.train import candidates as C

    d = describe(make_config(data=str(folder)).data)
    if max(d.size) > C.SCRATCH_MAX_SIDE:
        return []
    rows = []
    for flips in (True, False):
        cfg = C.scratch_config(make_config(data=str(folder)), d.grey, d.size, 1 if d.grey else 3, flips,
                               C.scratch_epochs_wanted(d.train), d.train)
        flags = ["--model", cfg.model.name, "--optimizer", cfg.optim.name, "--lr", str(cfg.optim.lr),
                 "--weight-decay", str(cfg.optim.weight_decay), "--label-smoothing", str(cfg.optim.label_smoothing),
                 "--batch-size", str(cfg.train.batch_size), "--epochs", str(cfg.train.epochs),
                 "--time", str(budget), "--image-size", str(d.size[0]), str(d.size[1]),
                 "--channels", "1" if d.grey else "3"]
        if flips:
            flags.append("--hflip")
        a = cfg.augment
        if a.width_shift_range:
            flags += ["--width-shift", str(a.width_shift_range), "--height-shift", str(a.height_shift_range),
                      "--fill-mode", a.fill_mode]
        if a.tta and a.tta != "none":
            flags += ["--tta", a.tta]
        row = cnnkit_train(folder, flags, work / "runs" / f"{name}-scratch-{flips}", work / "caches" / name)
        row["setting"] = f"{cfg.model.name} {'flips' if flips else 'no flips'} alone"
        rows.append(row)
        print(json.dumps({"data": name, **row}), flush=True)
    return rows


def tutorial(name: str, folder: Path, work: Path, budget: float) -> list[dict]:
    flags = TUTORIAL.get(name)
    if not flags:
        return []
    row = cnnkit_train(folder, [*flags, "--time", str(budget)], work / "runs" / f"{name}-tutorial",
                       work / "caches" / name)
    row["setting"] = f"tutorial net ({flags[1]})"
    print(json.dumps({"data": name, **row}), flush=True)
    return [row]


def machine() -> str:
    import torch

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu if ln.startswith("Model name")), platform.processor())
    return (f"{model}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} at start")


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def summary(results: dict) -> str:
    lines = ["| data | default | s (budget) | chose | best single candidate | gap | tutorial net |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        d = r.get("default", {})
        alone = [x for x in r.get("heads", []) + r.get("scratch", []) if x.get("accuracy") is not None]
        best = max(alone, key=lambda x: x["accuracy"], default=None)
        gap = (f"{100 * (d['accuracy'] - best['accuracy']):+.1f}" if best and d.get("accuracy") is not None
               else "-")
        tut = next(iter(r.get("tutorial", [])), {})
        budget = f" ({d['budget']:.0f})" if d.get("budget") else ""
        lines.append(f"| {name} | {pct(d.get('accuracy'))} | {d.get('seconds', '-')}{budget} | {d.get('chosen', '-')} "
                     f"| {best['setting'] + ' ' + pct(best['accuracy']) if best else '-'} | {gap} "
                     f"| {pct(tut.get('accuracy'))} in {tut.get('seconds', '-')} s |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(REPO / ".bench-data"), help="where bench_datasets.py builds the data")
    ap.add_argument("--work", default=str(REPO / ".bench-data" / "_auto"), help="run folders and caches")
    ap.add_argument("--only", default=",".join(DEFAULT_ORDER), help="comma-separated datasets")
    ap.add_argument("--time", type=float, default=300.0, help="the budget of the default and the alone runs")
    ap.add_argument("--parts", default="default,heads,scratch,tutorial")
    ap.add_argument("--json", help="write (and update) the results here")
    args = ap.parse_args()
    root, work = Path(args.root), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    print(machine(), flush=True)
    results = json.loads(Path(args.json).read_text()) if args.json and Path(args.json).is_file() else {}
    for name in args.only.split(","):
        if name not in DATASETS:
            raise SystemExit(f"unknown dataset {name!r}")
        folder = build(name, root)
        r = results.setdefault(name, {})
        if "default" in parts:
            r["default"] = default_run(name, folder, work, args.time if args.time != 300.0 else None)
            print(json.dumps({"data": name, **{k: v for k, v in r["default"].items() if k != "candidates"}}),
                  flush=True)
        if "heads" in parts:
            r["heads"] = heads_alone(name, folder, work)
        if "scratch" in parts:
            r["scratch"] = scratch_alone(name, folder, work, args.time)
        if "tutorial" in parts:
            r["tutorial"] = tutorial(name, folder, work, args.time)
        r["load_after"] = round(os.getloadavg()[0], 2)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
