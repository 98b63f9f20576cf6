"""The learning-rate range test: how steady its suggestion is, and how it trains against a grid of rates.

    python benchmarks/bench_lr_find.py [--data-dir ../shared/datasets] [--work DIR] [--seeds 5]
                                       [--only mnist-5k,cats-dogs] [--per-class N]

For each dataset, in one process (the images are decoded once and shared by every run):

1. **steadiness**: the range test (3 sweeps, each over its own batch order) with seeds 0..S-1 -
   a new initialisation and batch order each - and the suggestion of each rule read off the same
   curves: *valley* (the middle of the longest descent of the smoothed loss, one sweep: what
   ``--lr auto`` uses), *valley, median of 3 sweeps* (``cnnkit lr-find --sweeps 3``), *steepest*
   (the steepest fall, one sweep) and *minimum / 10*; the spread is max/min over the seeds;
2. **accuracy**: a short training (seed 0) at each rate of a grid and at the suggestion of seed 0
   (what ``--lr auto`` would train at), validation accuracy side by side.

The data (extracted into the work folder as ``bench_auto.py`` does):

* ``mnist-5k``: 500 training PNGs per class from the MNIST IDX files (5,000), 100 per class of its test
  images as validation; ``--model fast-cnn-small``, batch 128, 5 epochs;
* ``cats-dogs``: cats_and_dogs_filtered (2,000 train / 1,000 validation JPEGs); ``--model
  efficientnet_lite0 --transfer features`` (the head on features cached after the first run), 10 epochs.

``--per-class N`` shrinks the training sets (a quick check of the script; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from bench_auto import machine, prepare  # noqa: E402  (the shared datasets, extracted the same way)

GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
SETTINGS = {
    "mnist-5k": dict(model="fast-cnn-small", batch_size=128, epochs=5),
    "cats-dogs": dict(model="efficientnet_lite0", transfer="features", pretrained=True, batch_size=64, epochs=10),
}
RULES = ("valley", "valley, median of 3 sweeps", "steepest", "minimum / 10")


def config(name: str, folder: Path, work: Path, seed: int, lr: float | str = "auto"):
    from cnnkit.config import make_config

    return make_config(data=str(folder), seed=seed, lr=lr, cache_dir=str(work / "cache"), progress=False,
                       report=False, out=str(work / "runs" / name), **SETTINGS[name])


def steadiness(name: str, folder: Path, work: Path, splits, seeds: int) -> list[dict]:
    """Per seed: each rule's suggestion and the seconds of the test."""
    from cnnkit.train.lr_find import geometric_median, suggest_lr
    from cnnkit.train.run import find_lr

    rows = []
    for seed in range(seeds):
        start = time.perf_counter()
        found, _ = find_lr(config(name, folder, work, seed), splits, sweeps=3, progress=False)
        seconds = time.perf_counter() - start
        first = found.sweeps[0]
        row = {"seed": seed, "seconds": round(seconds, 1), "steps": len(first.lrs), "stopped": first.stopped,
               "valley": first.suggestion, "valley, median of 3 sweeps": geometric_median(
                   [s.suggestion for s in found.sweeps]),
               "steepest": suggest_lr(first.lrs, first.losses, "steepest")[0],
               "minimum / 10": suggest_lr(first.lrs, first.losses, "minimum")[0]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def accuracy(name: str, folder: Path, work: Path, splits, lr: float, tag: str) -> dict:
    from cnnkit.train.run import train

    cfg = config(name, folder, work, 0, lr)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, out=str(work / "runs" / f"{name}-{tag}")))
    start = time.perf_counter()
    result = train(cfg, splits=splits, explicit_out=True)
    row = {"lr": lr, "tag": tag, "accuracy": result.metrics.get("accuracy"), "split": result.metrics.get("split"),
           "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(row), flush=True)
    return row


def load(name: str, folder: Path, work: Path):
    from cnnkit.data import load_data
    from cnnkit.train.run import model_input_config

    return load_data(model_input_config(config(name, folder, work, 0)).data)


def tables(name: str, seeds: list[dict], grid: list[dict]) -> str:
    transfer = f" {SETTINGS[name]['transfer']}" if "transfer" in SETTINGS[name] else ""
    out = [f"**{name}** ({SETTINGS[name]['model']}{transfer}):",
           "", "| rule | " + " | ".join(f"seed {r['seed']}" for r in seeds) + " | spread (max/min) |",
           "|---|" + "---|" * (len(seeds) + 1)]
    for rule in RULES:
        values = [r[rule] for r in seeds]
        out.append(f"| {rule} | " + " | ".join(f"{v:.1e}" for v in values) + f" | {max(values) / min(values):.2f}x |")
    secs = np.mean([r["seconds"] / 3 for r in seeds])
    out += ["", f"One sweep: {seeds[0]['steps']} steps, {secs:.1f} s on average.", "",
            "| lr | " + " | ".join(r["tag"] for r in grid) + " |", "|---|" + "---|" * len(grid),
            "| value | " + " | ".join(f"{r['lr']:.1e}" for r in grid) + " |",
            "| val accuracy | " + " | ".join(f"{100 * r['accuracy']:.2f}%" for r in grid) + " |"]
    best = max((r for r in grid if r["tag"] != "suggested"), key=lambda r: r["accuracy"])
    suggested = next(r for r in grid if r["tag"] == "suggested")
    out += ["", f"Best grid rate {best['lr']:.0e}: {100 * best['accuracy']:.2f}%; the suggestion "
                f"{suggested['lr']:.1e}: {100 * suggested['accuracy']:.2f}% "
                f"({100 * (suggested['accuracy'] - best['accuracy']):+.2f} points)."]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "datasets"))
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "bench-lr-find"),
                    help="extracted data, run folders and the caches (default: bench-lr-find in the temp folder)")
    ap.add_argument("--only", default=",".join(SETTINGS), help="comma-separated datasets")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--per-class", type=int, help="training images per class (a quick check of the script)")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    work, data_dir = Path(args.work), Path(args.data_dir)
    work.mkdir(parents=True, exist_ok=True)
    print(machine(), flush=True)
    report, record = [], {}
    for name in args.only.split(","):
        folder = prepare(name, data_dir, work, args.per_class)
        splits = load(name, folder, work)
        seeds = steadiness(name, folder, work, splits, args.seeds)
        grid = [accuracy(name, folder, work, splits, lr, f"{lr:.0e}") for lr in GRID]
        grid.append(accuracy(name, folder, work, splits, seeds[0]["valley"], "suggested"))
        record[name] = {"seeds": seeds, "grid": grid}
        report.append(tables(name, seeds, grid))
        print(report[-1], flush=True)  # each dataset's tables as soon as they are complete
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print("\n\n".join(report))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
