"""Time to accuracy on the CPU: MNIST >= 99.0%, Fashion-MNIST >= 92%, CIFAR-10 (JPEG copy) >= 85%.

    python benchmarks/time_to_accuracy.py [mnist fashion-mnist cifar10] [--data-dir ../shared/datasets]
        [--epochs N] [--model NAME]

Each task trains on the full training set (no validation split: every image trains) with the
settings below, then reports test accuracy and the seconds spent: data loading (the decode-once
cache already built by a first untimed load), training, and final evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from cnnkit.config import make_config
from cnnkit.data import load_data
from cnnkit.train import train

HERE = Path(__file__).resolve().parent
TASKS = {
    # name: (target, settings)
    "mnist": (0.990, dict(model="fast-cnn", epochs=1, batch_size=128, lr=4e-3, label_smoothing=0.1)),
    "fashion-mnist": (0.920, dict(model="fast-cnn", epochs=10, batch_size=128, lr=4e-3, label_smoothing=0.1,
                                  horizontal_flip=True)),
    "cifar10": (0.850, dict(model="fast-cnn", epochs=16, batch_size=256, lr=4e-3, label_smoothing=0.2,
                            horizontal_flip=True, width_shift_range=0.125, height_shift_range=0.125,
                            fill_mode="reflect", tta="flip", weight_decay=5e-4, optimizer="adamw")),
}


def run(task: str, data_dir: str, overrides: dict) -> dict:
    target, settings = TASKS[task]
    settings = {**settings, **{k: v for k, v in overrides.items() if v is not None}}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(data=task, data_dir=data_dir, val_split=0.0, out=f"{tmp}/run", progress=False,
                          report=False, **settings)
        load_data(cfg.data)  # build the decode-once cache outside the timing
        t0 = time.perf_counter()
        splits = load_data(cfg.data)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = train(cfg, splits=splits, explicit_out=True)
        t_total = time.perf_counter() - t0 + t_load
    acc = result.metrics["accuracy"]
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
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'task':<15}{'model':<12}{'epochs':>7}{'test acc':>10}{'target':>8}{'seconds':>9}{'s/epoch':>9}")
    for task in a.tasks:
        r = run(task, a.data_dir, {"epochs": a.epochs, "model": a.model})
        print(f"{r['task']:<15}{r['model']:<12}{r['epochs']:>7}{r['test_acc']:>10.4f}{r['target']:>8.3f}"
              f"{r['seconds']:>9.1f}{r['epoch_s']:>9.1f}  {'reached' if r['reached'] else 'MISSED'}", flush=True)
        if a.json:
            with open(a.json, "a") as fh:
                fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
