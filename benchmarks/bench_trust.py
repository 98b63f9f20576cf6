"""Class imbalance and calibration on a real, deliberately imbalanced subset of cats_and_dogs_filtered.

    python benchmarks/bench_trust.py [--data-dir ../shared/datasets] [--model fast-cnn] [--size 64]
                                     [--epochs 6] [--seeds 0 1] [--cat-fraction 0.1]

The training split keeps ``--cat-fraction`` of the 1,000 training cats (and all 1,000 dogs); the
1,000 validation images (500 + 500) are untouched.  For each seed it trains twice with the same
settings, ``--class-weight none`` and ``--class-weight balanced``, and reports on the validation
images: accuracy, balanced accuracy, macro-F1, the fitted temperature, and the expected
calibration error (15 bins) before and after calibration.

The run fits its temperature on the validation set and measures ECE there too, which flatters the
calibrated figure; so the script also gives a cross-fitted ECE: the temperature fitted on one half
of the validation images and the ECE measured on the other half (and the other way round, averaged).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def imbalanced_folder(data_dir: Path, work: Path, cat_fraction: float) -> Path:
    """``work/imbalanced/{train,validation}/{cats,dogs}`` with links to the extracted images."""
    src = work / "cats_and_dogs_filtered"
    if not src.is_dir():
        with zipfile.ZipFile(data_dir / "cats_and_dogs_filtered.zip") as z:
            z.extractall(work)
    out = work / f"imbalanced-{cat_fraction:g}"
    for split in ("train", "validation"):
        for cls in ("cats", "dogs"):
            files = sorted((src / split / cls).glob("*.jpg"), key=lambda p: int(p.stem.split(".")[1]))
            if split == "train" and cls == "cats":
                files = files[: round(len(files) * cat_fraction)]
            folder = out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for f in files:
                link = folder / f.name
                if not link.exists():
                    link.symlink_to(f)
    return out


def cross_fitted_ece(run_dir: Path, source: str) -> tuple[float, float]:
    """(uncalibrated ECE, ECE with T fitted on the other half) on the validation images."""
    from cnnkit.evaluate.calibration import expected_calibration_error, fit_temperature, scale_probs
    from cnnkit.evaluate.evaluate import evaluate

    metrics, probs, data = evaluate(run_dir, source, split="val")
    raw = scale_probs(probs, 1.0 / metrics["temperature"])  # undo the stored calibration
    logits = np.log(np.clip(raw, 1e-12, 1.0))
    halves = np.arange(len(raw)) % 2
    eces = []
    for fit_half in (0, 1):
        fit, test = halves == fit_half, halves != fit_half
        t = fit_temperature(logits[fit], data.labels[fit])
        eces.append(expected_calibration_error(scale_probs(raw[test], t), data.labels[test]))
    return expected_calibration_error(raw, data.labels), float(np.mean(eces))


def one_run(source: Path, out: Path, a: argparse.Namespace, seed: int, weight: str) -> dict:
    from cnnkit.commands.train import train
    from cnnkit.config import make_config

    cfg = make_config(data=str(source), model=a.model, image_size=(a.size, a.size), epochs=a.epochs,
                      batch_size=a.batch_size, seed=seed, class_weight=weight, out=str(out), report=False,
                      progress=False, cache_dir=str(out.parent / "cache"),
                      **({"transfer": a.transfer} if a.transfer else {}))
    t0 = time.perf_counter()
    result = train(cfg, explicit_out=True)
    seconds = time.perf_counter() - t0
    m = json.loads((result.run_dir / "metrics.json").read_text())
    ece_raw, ece_cross = cross_fitted_ece(result.run_dir, str(source))
    return {"seed": seed, "class_weight": weight, "accuracy": m["accuracy"],
            "balanced_accuracy": m["balanced_accuracy"], "macro_f1": m["macro_f1"],
            "temperature": m["temperature"], "ece_uncalibrated": m["ece_uncalibrated"], "ece": m["ece"],
            "ece_cross_fitted": ece_cross, "min_confidence": m.get("min_confidence"), "seconds": round(seconds, 1),
            "check_uncalibrated": ece_raw}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "datasets"),
                    help="folder holding cats_and_dogs_filtered.zip")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "cnnkit-bench-trust"))
    ap.add_argument("--model", default="fast-cnn")
    ap.add_argument("--transfer", default=None, help="e.g. features, for a pretrained backbone")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--cat-fraction", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the rows to this file")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    source = imbalanced_folder(Path(a.data_dir), work, a.cat_fraction)
    rows = []
    for seed in a.seeds:
        for weight in ("none", "balanced"):
            row = one_run(source, work / f"run-{a.model}-s{seed}-{weight}", a, seed, weight)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{a.model} {a.size}px, {a.epochs} epochs, train cats {a.cat_fraction:g} of 1000 + dogs 1000; "
          f"validation 500 + 500")
    print(f"{'loss':>9} {'seed':>4} {'acc':>6} {'bal.acc':>7} {'macroF1':>7} {'T':>5} {'ECE raw':>7} "
          f"{'ECE cal':>7} {'ECE x-fit':>9} {'time s':>7}")
    for r in rows:
        print(f"{r['class_weight']:>9} {r['seed']:>4} {r['accuracy']:6.3f} {r['balanced_accuracy']:7.3f} "
              f"{r['macro_f1']:7.3f} {r['temperature']:5.2f} {r['ece_uncalibrated']:7.3f} {r['ece']:7.3f} "
              f"{r['ece_cross_fitted']:9.3f} {r['seconds']:7.0f}")
    for weight in ("none", "balanced"):
        f1 = [r["macro_f1"] for r in rows if r["class_weight"] == weight]
        print(f"mean macro-F1 {weight:>8}: {np.mean(f1):.3f} over {len(f1)} seed(s)")
    print(f"\npython {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    try:
        print("\n".join(subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()[:10]))
    except OSError:
        pass
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
