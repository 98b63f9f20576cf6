"""CIFAR-10 time to 94% on one CUDA GPU: cnnkit beside airbench (PyPI), on the same GPU and data, in one run.

    pip install airbench==0.1.8       # where the GPU machine has no network: pip download it here,
                                      # carry the file and `pip install --no-deps airbench-0.1.8.tar.gz`
    python benchmarks/gpu_cifar10_airbench.py [--runs 3] [--epochs 10,15,20,30,40]
                                              [--data-dir ../shared/datasets] [--json results.jsonl]
    python benchmarks/gpu_cifar10_airbench.py --smoke     # seconds on a CPU: the harness, not the numbers

Data.  Both sides read the same images: the CIFAR-10 JPEG copy in ../shared/datasets, decoded once
by cnnkit.  airbench's CifarLoader gets them as the ``cifar10/train.pt`` and ``test.pt`` it would
otherwise build from torchvision's download (uint8 (N,32,32,3) images, int64 labels), written to
a temporary folder, so neither side needs a network.  The JPEG copy is slightly lossy, so both
accuracies may sit a little below the ones published for the original pixels.

Timing.  Wall clock of a whole training run and its test evaluation, the GPU synchronised at both
ends, after one untimed warm-up run of each (cuDNN autotuning, torch.compile's first compilation):
- airbench: ``train94(verbose=False)`` (its own data loading from the .pt files, whitening
  initialisation, 9.9 epochs, lookahead) plus ``evaluate(model, test_loader, tta_level=2)``;
- cnnkit: ``cnnkit.train`` on the recipe ``cifar10-gpu-speedrun`` with the images already in memory
  (as airbench's are once loaded), everything a real run does included: moving the set to the GPU,
  a checkpoint per epoch, history, the final evaluation with flip+shift TTA, metrics and the
  confusion-matrix picture (the HTML report is off).  The sum of epoch times is printed too.
cnnkit's epoch budget is swept (``--epochs``) and its time to 94% is that of the smallest budget
whose mean test accuracy over ``--runs`` runs reaches 94%.  Prints the GPU's name, versions, a
table, and the ratio of the two times to 94%; results go in benchmarks/README.md by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cnnkit.commands.train import train
from cnnkit.data import DataSplits, load_data
from cnnkit.recipes import RECIPES

HERE = Path(__file__).resolve().parent
RECIPE = "cifar10-gpu-speedrun"
TARGET = 0.94


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def write_airbench_files(splits: DataSplits, folder: Path) -> Path:
    """``folder/cifar10/{train,test}.pt`` in the format airbench's CifarLoader builds from torchvision."""
    root = folder / "cifar10"
    root.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", splits.train), ("test", splits.test)):
        torch.save({"images": torch.from_numpy(np.ascontiguousarray(part.images)),  # uint8 (N,32,32,3)
                    "labels": torch.from_numpy(part.labels.astype(np.int64)),
                    "classes": list(part.classes)}, root / f"{name}.pt")
    return root


@contextlib.contextmanager
def working_directory(folder: Path):
    """contextlib.chdir, which needs Python 3.11."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def airbench_run(folder: Path, warmup: bool = False) -> dict:
    """One airbench94 training (CifarLoader reads ./cifar10 relative to the working directory)."""
    import airbench

    with working_directory(folder):
        sync()
        t0 = time.perf_counter()
        if warmup:
            airbench.warmup94(verbose=False)
            return {}
        model = airbench.train94(verbose=False)
        test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
        acc = airbench.evaluate(model, test_loader, tta_level=2)
        sync()
    return {"side": "airbench94", "epochs": 9.9, "test_acc": float(acc), "seconds": time.perf_counter() - t0}


def cnnkit_run(splits: DataSplits, epochs: int, seed: int, device: str, out: Path) -> dict:
    cfg = RECIPES[RECIPE].config
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs, seed=seed, device=device,
                                                             out=str(out), progress=False, report=False))
    sync()
    t0 = time.perf_counter()
    result = train(cfg, splits=splits, explicit_out=True)
    sync()
    return {"side": f"cnnkit {cfg.model.name}", "epochs": epochs, "test_acc": result.metrics["accuracy"],
            "seconds": time.perf_counter() - t0, "epoch_s": sum(r["time"] for r in result.history)}


def smoke_splits(splits: DataSplits, n: int = 2048) -> DataSplits:
    """A random slice (the sets are stored class by class) so --smoke checks the harness in seconds on a CPU."""
    rng = np.random.default_rng(0)
    return DataSplits(train=splits.train.subset(np.sort(rng.choice(len(splits.train), n, replace=False))), val=None,
                      test=splits.test.subset(np.sort(rng.choice(len(splits.test), n // 2, replace=False))))


def summarise(rows: list[dict]) -> dict:
    accs = [r["test_acc"] for r in rows]
    return {"side": rows[0]["side"], "epochs": rows[0]["epochs"], "runs": len(rows),
            "mean_acc": statistics.fmean(accs), "min_acc": min(accs),
            "mean_s": statistics.fmean(r["seconds"] for r in rows),
            "epoch_s": statistics.fmean(r.get("epoch_s", float("nan")) for r in rows)}


def print_row(s: dict) -> None:
    flag = "reached" if s["mean_acc"] >= TARGET else "missed"
    print(f"{s['side']:<24}{s['epochs']:>7}{s['runs']:>6}{s['mean_acc']:>10.4f}{s['min_acc']:>10.4f}"
          f"{s['mean_s']:>10.2f}{s['epoch_s']:>10.2f}  {flag}", flush=True)


def machine() -> str:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    try:
        from importlib.metadata import version

        import airbench  # noqa: F401
        ab = f"airbench {version('airbench')}"
    except ImportError:
        ab = "airbench not installed"
    return (f"{gpu}; {platform.machine()}, {os.cpu_count()} cpus; Python {platform.python_version()}, "
            f"torch {torch.__version__}, CUDA {torch.version.cuda}; {ab}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="timed runs per setting (after one warm-up)")
    p.add_argument("--epochs", default="10,15,20,30,40", help="cnnkit epoch budgets to sweep, ascending")
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "datasets"))
    p.add_argument("--json", help="append every run as a JSON line to this file")
    p.add_argument("--smoke", action="store_true", help="CPU, 2,048 images, 2 epochs, no airbench: checks the harness")
    p.add_argument("--skip-airbench", action="store_true")
    a = p.parse_args()
    budgets = [int(e) for e in a.epochs.split(",")]
    device = "cpu" if a.smoke else "cuda"
    if not a.smoke and not torch.cuda.is_available():
        sys.exit("this benchmark needs a CUDA GPU (or --smoke to check the harness on a CPU)")

    where = machine()
    print(where)
    data_cfg = dataclasses.replace(RECIPES[RECIPE].config.data, data_dir=a.data_dir)
    splits = load_data(data_cfg)
    if a.smoke:
        splits, budgets, a.runs, a.skip_airbench = smoke_splits(splits), [2], 1, True
    print(f"CIFAR-10: {len(splits.train)} training and {len(splits.test)} test images (JPEG copy, {a.data_dir})")
    print(f"{'':<24}{'epochs':>7}{'runs':>6}{'mean acc':>10}{'min acc':>10}{'seconds':>10}{'epoch s':>10}")

    def record(row: dict) -> dict:
        if a.json:
            with open(a.json, "a") as fh:
                fh.write(json.dumps({**row, "machine": where}) + "\n")
        return row

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results = {}
        if not a.skip_airbench:
            write_airbench_files(splits, tmp)
            airbench_run(tmp, warmup=True)
            results["airbench"] = summarise([record(airbench_run(tmp)) for _ in range(a.runs)])
            print_row(results["airbench"])
        cnnkit_run(splits, budgets[0], seed=999, device=device, out=tmp / "warmup")  # compile + cuDNN warm-up
        for epochs in budgets:
            rows = [record(cnnkit_run(splits, epochs, seed=i, device=device, out=tmp / f"e{epochs}-{i}"))
                    for i in range(a.runs)]
            results["cnnkit"] = summarise(rows)
            print_row(results["cnnkit"])
            if results["cnnkit"]["mean_acc"] >= TARGET:
                break
    ours, theirs = results.get("cnnkit"), results.get("airbench")
    if ours and theirs and ours["mean_acc"] >= TARGET and theirs["mean_acc"] >= TARGET:
        print(f"time to {TARGET:.0%}: cnnkit {ours['mean_s']:.2f} s, airbench {theirs['mean_s']:.2f} s "
              f"-> cnnkit takes {ours['mean_s'] / theirs['mean_s']:.2f}x airbench's time")
    elif ours and theirs:
        print(f"no time-to-{TARGET:.0%} ratio: a side did not reach it (raise --epochs for cnnkit)")


if __name__ == "__main__":
    main()
