"""The automatic default against the best explicit setting and the tutorial's from-scratch net.

    python benchmarks/bench_auto.py [--data-dir ../shared/datasets] [--work DIR]
                                    [--only cats-dogs,cifar10-5k,mnist-5k,fashion-5k] [--per-class N]
                                    [--settings default,best,fast,tutorial]

For each dataset it runs, one after another in fresh processes, ``cnnkit train FOLDER`` three ways:

* **default**: no model named - the automatic choice within its default 5-minute budget;
* **best explicit**: the best setting known for that data, written out in flags (for the CIFAR-10
  subset also the fast net from scratch with the speed-run settings, which needs more images);
* **tutorial net**: the tutorial's from-scratch network (``simple-cnn`` for cats vs dogs,
  ``cifar-cnn`` for CIFAR-10, ``mnist-cnn`` for MNIST, ``fashion-functional`` for Fashion-MNIST)
  with cnnkit's default optimiser and a short epoch count (named in the table);

and prints validation accuracy and wall seconds side by side (process start to end, image decoding
included: every run gets a fresh, empty ``--cache-dir``).  The data:

* ``cats-dogs``: cats_and_dogs_filtered (2,000 train / 1,000 validation JPEGs), extracted from
  ``cats_and_dogs_filtered.zip`` into the work folder;
* ``cifar10-5k``: 500 images per class from ``cifar10-jpeg.zip``'s train folder, and 100 per class
  from its test folder as validation (5,000 / 1,000 32x32 JPEGs);
* ``mnist-5k`` / ``fashion-5k``: the same counts written as PNG class folders from the IDX files in
  ``mnist/`` and ``fashion-mnist/``.

First it times one feature pass of each EfficientNet-Lite at its own input size (64 random images,
PyTorch and ONNX Runtime): the per-image costs behind ``cnnkit.auto``'s choice of backbone.

``--per-class N`` shrinks every training subset to N images per class (validation to N/5) for a
quick check of the script itself; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FASHION = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot")

# dataset -> [(label, extra flags)]: the best explicit setting known, then the tutorial net (short run)
SETTINGS = {
    "cats-dogs": [
        ("best explicit", ["--model", "efficientnet_lite0", "--transfer", "features", "--head-dropout", "0.2",
                           "--epochs", "10"]),
        ("tutorial net (simple-cnn, 150 px, 5 epochs)", ["--model", "simple-cnn", "--image-size", "150",
                                                          "--epochs", "5", "--augment", "standard"]),
    ],
    "cifar10-5k": [
        ("best explicit", ["--model", "efficientnet_lite0", "--transfer", "features", "--head-dropout", "0.2",
                           "--epochs", "10"]),
        ("fast net from scratch (cifar10-speedrun settings, 50 epochs)",
         ["--model", "fast-cnn", "--epochs", "50", "--batch-size", "128", "--optimizer", "adamw",
                           "--lr", "4e-3", "--weight-decay", "5e-4", "--label-smoothing", "0.2", "--hflip",
                           "--width-shift", "0.125", "--height-shift", "0.125", "--fill-mode", "reflect",
                           "--tta", "flip-shift"]),
        ("tutorial net (cifar-cnn, 20 epochs)", ["--model", "cifar-cnn", "--epochs", "20"]),
    ],
    "mnist-5k": [
        ("best explicit", ["--model", "fast-cnn-small", "--epochs", "50", "--batch-size", "128",
                           "--label-smoothing", "0.1", "--lr", "4e-3"]),
        ("tutorial net (mnist-cnn, 12 epochs)", ["--model", "mnist-cnn", "--epochs", "12"]),
    ],
    "fashion-5k": [
        ("best explicit", ["--model", "fast-cnn-small", "--epochs", "50", "--batch-size", "128",
                           "--label-smoothing", "0.1", "--lr", "4e-3", "--hflip"]),
        ("tutorial net (fashion-functional, 10 epochs)", ["--model", "fashion-functional", "--epochs", "10"]),
    ],
}


# ----------------------------------------------------------------------------- data


def _read_idx(path: Path):
    import numpy as np

    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _write_pngs(images, labels, classes, folder: Path, per_class: int) -> None:
    from PIL import Image

    taken = {c: 0 for c in range(len(classes))}
    for i, (img, label) in enumerate(zip(images, labels)):
        label = int(label)
        if taken[label] >= per_class:
            continue
        out = folder / classes[label]
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(out / f"{i:05d}.png")
        taken[label] += 1
        if all(n >= per_class for n in taken.values()):
            break


def prepare_idx(name: str, source: Path, work: Path, per_class: int) -> Path:
    folder = work / f"{name}-{per_class}"
    if (folder / "validation").is_dir():
        return folder
    classes = tuple(str(i) for i in range(10)) if name == "mnist-5k" else FASHION
    for split, prefix, n in (("train", "train", per_class), ("validation", "t10k", max(1, per_class // 5))):
        images = _read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
        labels = _read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
        _write_pngs(images, labels, classes, folder / split, n)
    return folder


def prepare_cifar(archive: Path, work: Path, per_class: int) -> Path:
    folder = work / f"cifar10-5k-{per_class}"
    if (folder / "validation").is_dir():
        return folder
    with zipfile.ZipFile(archive) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".jpg"))
        for split, out, n in (("train", "train", per_class), ("test", "validation", max(1, per_class // 5))):
            taken: dict[str, int] = {}
            for name in names:
                parts = name.split("/")  # cifar10-jpeg/<split>/<class>/NNNN.jpg
                if parts[1] != split or taken.get(parts[2], 0) >= n:
                    continue
                taken[parts[2]] = taken.get(parts[2], 0) + 1
                dest = folder / out / parts[2] / parts[3]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(zf.read(name))
    return folder


def prepare_cats(archive: Path, work: Path, per_class: int) -> Path:
    full = work / "cats_and_dogs_filtered"
    if not full.is_dir():
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(work)
    if per_class >= 1000:
        return full
    small = work / f"cats-dogs-{per_class}"  # a quick check: the first N per class (N/5 validation)
    if not small.is_dir():
        for split, n in (("train", per_class), ("validation", max(1, per_class // 5))):
            for cls in ("cats", "dogs"):
                (small / split / cls).mkdir(parents=True)
                for f in sorted((full / split / cls).iterdir())[:n]:
                    os.link(f, small / split / cls / f.name)
    return small


def prepare(name: str, data_dir: Path, work: Path, per_class: int | None) -> Path:
    if name == "cats-dogs":
        return prepare_cats(data_dir / "cats_and_dogs_filtered.zip", work, per_class or 1000)
    if name == "cifar10-5k":
        return prepare_cifar(data_dir / "cifar10-jpeg.zip", work, per_class or 500)
    source = data_dir / ("mnist" if name == "mnist-5k" else "fashion-mnist")
    return prepare_idx(name, source, work, per_class or 500)


# ----------------------------------------------------------------------------- runs


def run_one(folder: Path, flags: list[str], work: Path, tag: str) -> dict:
    """One ``cnnkit train`` in a fresh process with an empty cache; accuracy, seconds, the auto line."""
    out, cache = work / "runs" / tag, work / "caches" / tag
    for path in (out, cache):
        if path.exists():
            subprocess.run(["rm", "-rf", str(path)], check=True)
    cmd = [sys.executable, "-m", "cnnkit", "train", str(folder), "--out", str(out), "--cache-dir", str(cache),
           "--quiet", *flags]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    text = proc.stdout + proc.stderr
    match = re.search(r"(\w+) accuracy ([0-9.]+) \((\d+) images\); run folder: (.+)", proc.stdout)
    auto = next((line for line in text.splitlines() if line.startswith("cnnkit: auto:")), "")
    row = {"flags": " ".join(flags) or "(none)", "seconds": round(seconds, 1), "rc": proc.returncode,
           "accuracy": float(match.group(2)) if match else None, "n": int(match.group(3)) if match else None,
           "run_dir": match.group(4).strip() if match else None, "auto": auto}
    if proc.returncode != 0 or match is None:
        row["error"] = text.strip().splitlines()[-1] if text.strip() else f"exit {proc.returncode}"
    elif auto:
        chosen = json.loads((Path(row["run_dir"]) / "config.json").read_text())
        row["chosen"] = f"{chosen['model']['name']} {chosen['model']['transfer']}, {chosen['train']['epochs']} epochs"
    return row


def backbone_costs(n: int = 64) -> list[dict]:
    """Seconds per image of one feature pass, per Lite variant and engine (after one warm-up batch)."""
    import numpy as np
    import torch

    from cnnkit.config import ModelConfig
    from cnnkit.data import ImageSet
    from cnnkit.models import build_model
    from cnnkit.models.efficientnet_lite import LITE_VARIANTS
    from cnnkit.train.features import _compute
    from cnnkit.inference.preprocess import ImageInputs

    rows = []
    cpu = torch.device("cpu")
    for name, (_, side, _) in LITE_VARIANTS.items():
        model = build_model(ModelConfig(name=name, num_classes=2, image_size=(side, side), transfer="features"))
        model.to(memory_format=torch.channels_last)
        images = ImageSet(np.random.default_rng(0).integers(0, 255, (n, side, side, 3), dtype=np.uint8),
                          np.zeros(n, np.int64), ("a", "b"))
        inputs = ImageInputs(*model.input_norm, cpu, channels_last=True)
        row = {"backbone": name, "side": side}
        for engine in ("torch", "onnxruntime"):
            runners: dict = {}  # one ONNX Runtime session for both calls, as a training run keeps it
            _compute(model, ImageSet(images.images[:8], images.labels[:8], images.classes), inputs, cpu, None, 64,
                     engine, runners)  # warm-up (and, for ONNX Runtime, its export: not timed)
            start = time.perf_counter()
            _compute(model, images, inputs, cpu, None, 64, engine, runners)
            row[engine] = round((time.perf_counter() - start) / n * 1000, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def machine() -> str:
    import torch

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu if ln.startswith("Model name")), platform.processor())
    return (f"{model}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} at start")


def table(results: list[dict]) -> str:
    lines = ["| data | setting | chosen / flags | val accuracy | wall s |", "|---|---|---|---|---|"]
    for r in results:
        acc = f"{100 * r['accuracy']:.2f}%" if r.get("accuracy") is not None else f"failed: {r.get('error', '')}"
        what = r.get("chosen") or r["flags"]
        lines.append(f"| {r['data']} | {r['setting']} | {what} | {acc} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "datasets"))
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "bench-auto"),
                    help="extracted data, run folders and caches (default: bench-auto in the temp folder)")
    ap.add_argument("--only", default=",".join(SETTINGS), help="comma-separated datasets")
    ap.add_argument("--per-class", type=int, help="training images per class (a quick check of the script)")
    ap.add_argument("--settings", help="only the settings whose label starts with one of these (comma-separated: "
                    "default, best, fast, tutorial); a rerun of part of the table")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--no-costs", action="store_true", help="skip timing the backbones' feature passes")
    args = ap.parse_args()
    work, data_dir = Path(args.work), Path(args.data_dir)
    work.mkdir(parents=True, exist_ok=True)
    print(machine(), flush=True)
    costs = [] if args.no_costs else backbone_costs()
    results = []
    for name in args.only.split(","):
        folder = prepare(name, data_dir, work, args.per_class)
        for setting, flags in [("default", []), *SETTINGS[name]]:
            if args.settings and not setting.startswith(tuple(args.settings.split(","))):
                continue
            row = {"data": name, "setting": setting,
                   **run_one(folder, flags, work, f"{name}-{len(results)}")}
            results.append(row)
            print(json.dumps(row), flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if costs:
        print("| backbone | input | PyTorch ms/image | ONNX Runtime ms/image |\n|---|---|---|---|")
        for c in costs:
            print(f"| {c['backbone']} | {c['side']} px | {c['torch']} | {c['onnxruntime']} |")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"costs": costs, "runs": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
