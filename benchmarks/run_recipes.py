"""Run tutorial recipes in full and set each tutorial's reported accuracy beside the measured one.

Usage:
    python benchmarks/run_recipes.py [NAME ...] [--data-dir DIR] [--variant tutorial|fast|both]
                                     [--epochs N] [--note TEXT] [--readme PATH | --no-readme] [--json PATH]

NAME defaults to the recipes whose data is in the shared dataset folder (MNIST, Fashion-MNIST,
the CIFAR-10 JPEG copy, cats_and_dogs_filtered) and that need no pretrained weights; pass names
to choose (``cnnkit recipes`` lists them all).  ``--data-dir`` defaults to ../shared/datasets
beside the repository.  Each recipe runs once per variant with the recipe's own epochs (``--epochs``
caps them for a quick check; the README row then says so).  Prints a table of reported vs
measured accuracy and seconds, and appends it, with machine and library versions, to
benchmarks/README.md.  A recipe that fails (missing data or weights) is reported as such and the
others still run.

Rough cost on 2 CPU cores (no GPU): mnist-mlp ~1-2 min, lenet5-mnist and fashion-mnist-functional
a few minutes, the CIFAR-10 and 150 px cats-vs-dogs recipes from tens of minutes up to hours
(cifar10-cnn6* run 50 epochs) - run those on a GPU or pass --epochs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torchvision

from cnnkit.errors import CnnkitError
from cnnkit.recipes import RECIPES, format_results, run_recipe

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
DEFAULT = ("sobel-demo", "mnist-mlp", "lenet5-mnist", "fashion-mnist-functional", "cifar10-cnn6",
           "cifar10-cnn6-augment", "cifar10-mlp-vs-cnn", "cats-dogs-scratch", "cats-dogs-augment")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                     cpu)
    except OSError:
        model = cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{model}, {cores} cores, {gpu}; Python {platform.python_version()}, torch {torch.__version__}, "
            f"torchvision {torchvision.__version__}")


def run_all(names: list[str], variants: list[str], data_dir: str, epochs: int | None,
            quiet: bool) -> tuple[list[dict], list[tuple[str, str, str]]]:
    results, failures = [], []
    for name in names:
        for variant in variants:
            overrides = {"train.progress": not quiet}
            if epochs is not None:
                overrides["train.epochs"] = epochs
            print(f"== {name} ({variant})", flush=True)
            start = time.perf_counter()
            try:
                results.append(run_recipe(name, fast=variant == "fast", data_dir=data_dir, overrides=overrides))
            except CnnkitError as exc:
                failures.append((name, variant, f"{type(exc).__name__}: {exc}"))
                print(f"   failed after {time.perf_counter() - start:.0f} s: {exc}", flush=True)
    return results, failures


def markdown(results: list[dict], failures: list[tuple[str, str, str]], note: str, data_dir: str,
             epochs: int | None, names: list[str], variant: str) -> str:
    pct = lambda v: "-" if v is None else f"{v:.2f}%"  # noqa: E731 - tiny local formatter
    lines = [f"\n## Recipes (`run_recipes.py`), {dt.date.today().isoformat()}\n",
             f"`python benchmarks/run_recipes.py {' '.join(names)}"
             f"{f' --variant {variant}' if variant != 'tutorial' else ''}"
             f" --data-dir {data_dir}{f' --epochs {epochs}' if epochs else ''}`\n",
             f"Machine: {machine()}." + (f" {note}" if note else "") + "\n",
             "| recipe | variant | model | split (n) | reported | measured | epochs | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for res in results:
        for row in res["rows"]:
            split = f"{row['split']} ({row['n']})" if row.get("split") else "-"
            lines.append(f"| {res['recipe']} | {res['variant']} | {row['label']} | {split} | {pct(row['reported'])} "
                         f"| {pct(row['measured'])} | {row['epochs']} | {row['seconds']:.0f} |")
    for name, variant, error in failures:
        lines.append(f"| {name} | {variant} | failed: {error.replace('|', '/')} | | | | | |")
    lines.append("\nReported figures and their sources: `cnnkit recipes -v`.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"recipes (default: {' '.join(DEFAULT)})")
    p.add_argument("--data-dir", default=str(SHARED), help=f"dataset folder (default {SHARED})")
    p.add_argument("--variant", choices=("tutorial", "fast", "both"), default="tutorial")
    p.add_argument("--epochs", type=int, help="cap every recipe's epochs (quick check; noted in the README)")
    p.add_argument("--note", default="", help="a sentence for the README, e.g. that the CPU was shared")
    p.add_argument("--readme", default=str(ROOT / "benchmarks" / "README.md"))
    p.add_argument("--no-readme", action="store_true", help="print only")
    p.add_argument("--json", metavar="PATH", help="also save the raw results (rows, failures, machine) as JSON")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    a = p.parse_args(argv)
    names = a.names or list(DEFAULT)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        p.error(f"unknown recipes {unknown}; known: {', '.join(RECIPES)}")
    variants = ["tutorial", "fast"] if a.variant == "both" else [a.variant]
    results, failures = run_all(names, variants, a.data_dir, a.epochs, a.quiet)
    print()
    if results:
        print(format_results(results))
    for name, variant, error in failures:
        print(f"{name} ({variant}) failed: {error}")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine(), "note": a.note, "data_dir": a.data_dir,
                                            "epochs": a.epochs, "results": results, "failures": failures}, indent=2))
    if not a.no_readme and (results or failures):
        with open(a.readme, "a", encoding="utf-8") as fh:  # append: other benchmarks write their own sections
            fh.write(markdown(results, failures, a.note, a.data_dir, a.epochs, names, a.variant))
        print(f"\nappended to {a.readme}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
