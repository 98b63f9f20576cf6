"""How well ``label_issues.csv`` finds labels flipped on purpose in real photos (cats_and_dogs_filtered).

    python benchmarks/bench_label_issues.py [--data-dir ../shared/datasets] [--flip 0.05] [--seed 0]
                                            [--epochs 15] [--threads 2] [--json FILE]

cats_and_dogs_filtered (2,000 train / 1,000 validation JPEGs) is extracted into a work folder; a
known random ``--flip`` fraction of the *training* images gets the other class through a
``label_map.csv`` in the data folder (written with ``cnnkit.data.label_map.relabel``, the library
call of ``cnnkit relabel``: no file is copied or moved).  Then one ordinary run trains
``--model efficientnet_lite0 --transfer features --pretrained`` on it, which writes the run folder's
``label_issues.csv``: train and validation images scored by a 5-fold cross-validated linear head
on the cached features.

Printed: precision@k of the ranked rows for k = 25, 50, 100 (flipped images among the first k rows,
over k or over the rows there are when fewer), the recall of the flipped set within the first
2 x (flipped count) rows, and the top suspects that were *not* flipped - candidates for genuinely
wrong (or ambiguous) originals - with a picture of them (``unflipped_suspects.png`` in the run
folder) to look at.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def extracted(data_dir: Path, work: Path) -> Path:
    src = work / "cats_and_dogs_filtered"
    if not src.is_dir():
        with zipfile.ZipFile(data_dir / "cats_and_dogs_filtered.zip") as z:
            z.extractall(work)
    return src


def flip_labels(root: Path, fraction: float, seed: int) -> set[str]:
    """Write ``root/label_map.csv`` giving a seeded random ``fraction`` of the training images the other
    class; returns their file names relative to ``root``."""
    from cnnkit.data.label_map import LABEL_MAP, relabel

    (root / LABEL_MAP).unlink(missing_ok=True)  # a fresh map: only this run's flips
    files = sorted(str(p.relative_to(root)) for p in (root / "train").glob("*/*.jpg"))
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(files), round(len(files) * fraction), replace=False))
    other = {"cats": "dogs", "dogs": "cats"}
    flips = [(files[i], other[Path(files[i]).parent.name]) for i in chosen]
    relabel(root, flips)
    return {f for f, _ in flips}


def precision_at(rows: list, flipped: set[str], k: int) -> tuple[int, int]:
    top = rows[:k]
    return sum(r.file in flipped for r in top), len(top)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "datasets"),
                    help="folder holding cats_and_dogs_filtered.zip")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "cnnkit-bench-labels"))
    ap.add_argument("--flip", type=float, default=0.05, help="fraction of the training images flipped")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args()

    import torch

    from cnnkit.commands.train import train
    from cnnkit.config import make_config
    from cnnkit.data import load_data
    from cnnkit.evaluate.label_issues import out_of_fold_probs
    from cnnkit.visualize.figures import save_figure
    from cnnkit.visualize.label_issues import issue_thumbnails, plot_label_issues

    torch.set_num_threads(a.threads)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    root = extracted(Path(a.data_dir), work)
    flipped = flip_labels(root, a.flip, a.seed)
    out = work / f"run-s{a.seed}"
    cfg = make_config(data=str(root), model="efficientnet_lite0", transfer="features", pretrained=True,
                      epochs=a.epochs, seed=a.seed, out=str(out), cache_dir=str(work / "cache"))
    t0 = time.perf_counter()
    result = train(cfg, explicit_out=True)
    seconds = time.perf_counter() - t0
    rows = result.label_issues

    # the cross-validated head alone, again on the cached features: what label_issues costs a run
    info = json.loads((result.run_dir / "features.json").read_text())
    splits = load_data(result.config.data)  # the decode cache: the labels as the run had them
    feats = np.concatenate([np.load(info["splits"][s]["path"]) for s in ("train", "val")])
    labels = np.concatenate([splits.train.labels, splits.val.labels])
    t1 = time.perf_counter()
    out_of_fold_probs(feats, labels, 2, cfg.train.label_folds, a.seed)
    cv_seconds = time.perf_counter() - t1

    n = len(flipped)
    figures = {"flipped": n, "rows": len(rows), "val_accuracy": result.metrics["accuracy"],
               "run_seconds": round(seconds, 1), "cv_seconds": round(cv_seconds, 1)}
    for k in (25, 50, 100):
        hit, of = precision_at(rows, flipped, k)
        figures[f"precision@{k}"] = round(hit / of, 3) if of else None
        figures[f"hits@{k}"] = f"{hit}/{of}"
    found, _ = precision_at(rows, flipped, 2 * n)
    figures[f"recall@{2 * n}"] = round(found / n, 3) if n else None
    unflipped = [r for r in rows[: 2 * n] if r.file not in flipped]
    figures["unflipped_in_top"] = len(unflipped)
    print(json.dumps(figures, indent=1))
    print(f"\ntop suspects not flipped on purpose ({len(unflipped)} in the first {2 * n} rows):")
    for r in unflipped[:24]:
        print(f"  {r.score:.3f}  {r.split:<5} {r.file}  given {r.given} -> suggested {r.suggested}")
    if unflipped:
        shown = unflipped[:24]
        images, ok = issue_thumbnails(shown, root, size=(128, 128))
        save_figure(plot_label_issues(images, shown, found=ok, title="top suspects that were not flipped"),
                    result.run_dir / "unflipped_suspects.png")
        print(f"picture: {result.run_dir / 'unflipped_suspects.png'}")
    print(f"\npython {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs")
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
