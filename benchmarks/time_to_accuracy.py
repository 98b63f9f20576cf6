"""Time to accuracy on the CPU: MNIST >= 99.0%, Fashion-MNIST >= 92%, CIFAR-10 (JPEG copy) >= 85%.

    python benchmarks/time_to_accuracy.py [mnist fashion-mnist cifar10] [--data-dir ../shared/datasets]
        [--epochs N] [--model NAME]

Each task trains on the full training set (no validation split: every image trains) with the
settings of cnnkit's speed-run recipes (`cnnkit recipe mnist-speedrun` etc., in cnnkit/recipes/catalogue.py),
then reports test accuracy and the seconds spent: data loading (the decode-once
cache already built by a first untimed load), training, and final evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from cnnkit.commands.train import train
from cnnkit.data import load_data
from cnnkit.recipes import RECIPES

HERE = Path(__file__).resolve().parent
TASKS = {"mnist": "mnist-speedrun", "fashion-mnist": "fashion-mnist-speedrun", "cifar10": "cifar10-speedrun"}


def run(task: str, data_dir: str, epochs: int | None = None, model: str | None = None) -> dict:
    """Train the task's speed-run recipe (cnnkit.recipes) and time it."""
    recipe = RECIPES[TASKS[task]]
    cfg = recipe.config
    with tempfile.TemporaryDirectory() as tmp:
        cfg = replace(cfg, data=replace(cfg.data, data_dir=data_dir),
                      model=replace(cfg.model, name=model or cfg.model.name),
                      train=replace(cfg.train, epochs=epochs or cfg.train.epochs, out=f"{tmp}/run", progress=False,
                                    report=False))
        load_data(cfg.data)  # build the decode-once cache outside the timing
        t0 = time.perf_counter()
        splits = load_data(cfg.data)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = train(cfg, splits=splits, explicit_out=True)
        t_total = time.perf_counter() - t0 + t_load
    acc = result.metrics["accuracy"]
    target = recipe.target / 100
    return {"task": task, "model": cfg.model.name, "epochs": cfg.train.epochs, "test_acc": acc, "target": target,
            "reached": acc >= target, "seconds": round(t_total, 1), "load_s": round(t_load, 1),
            "epoch_s": round(sum(r["time"] for r in result.history) / len(result.history), 1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("tasks", nargs="*", default=list(TASKS))
    p.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "datasets"))
    p.add_argument("--epochs", type=int)
    p.add_argument("--model")
    p.add_argument("--json", help="append results as JSON lines to this file")
    a = p.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    print(f"{'task':<15}{'model':<12}{'epochs':>7}{'test acc':>10}{'target':>8}{'seconds':>9}{'s/epoch':>9}")
    for task in a.tasks:
        r = run(task, a.data_dir, a.epochs, a.model)
        print(f"{r['task']:<15}{r['model']:<12}{r['epochs']:>7}{r['test_acc']:>10.4f}{r['target']:>8.3f}"
              f"{r['seconds']:>9.1f}{r['epoch_s']:>9.1f}  {'reached' if r['reached'] else 'MISSED'}", flush=True)
        if a.json:
            with open(a.json, "a") as fh:
                fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
