"""Decode-once cache vs decoding every epoch, on cats_and_dogs_filtered at 150x150.

Side by side in one run:

* cnnkit  - an "epoch" is ``load_data`` (epoch 1 decodes the 3,000 JPEGs into the uint8 cache;
            later epochs only list the folder and memory-map the cache) and then iterating all
            images as uint8 torch batches of 64 (``torch.from_numpy(images[i:i+64])``);
* torchvision - ``ImageFolder`` + ``DataLoader`` (2 workers, ``Resize((150, 150))`` +
            ``ToTensor()``), which decodes and resizes every image in every epoch, as the
            Keras ``flow_from_directory`` tutorials do.

The cnnkit consumer copies each batch into a preallocated uint8 tensor so that every byte is
really read from the memory map (as a gather or ``.to(device)`` would); torchvision's batches
arrive already materialised.
Prints the per-epoch times and the ratio for the later epochs (target: cnnkit >= 10x faster).

    python benchmarks/bench_data_cache.py [--zip ../shared/datasets/cats_and_dogs_filtered.zip]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
import torch
import torchvision
from torch.utils.data import ConcatDataset, DataLoader
from torchvision import datasets, transforms

from cnnkit.config import DataConfig
from cnnkit.data import load_data
from cnnkit.data.download import extract
from cnnkit.data.folders import find_root

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ZIP = REPO.parent / "shared" / "datasets" / "cats_and_dogs_filtered.zip"
SIZE = (150, 150)
BATCH = 64


def cnnkit_epoch(root: Path, cache: Path) -> tuple[float, int]:
    t = time.perf_counter()
    splits = load_data(DataConfig(source=str(root), image_size=SIZE, cache_dir=str(cache), val_split=0.0))
    n = 0
    buf = torch.empty((BATCH, *SIZE, 3), dtype=torch.uint8)
    for part in (splits.train, splits.val):
        images = part.images
        for i in range(0, len(images), BATCH):
            x = torch.from_numpy(images[i:i + BATCH])  # (B, 150, 150, 3) uint8 view of the memmap
            buf[:len(x)].copy_(x)  # materialise it (reads every byte), as a gather / .to(device) would
            n += len(x)
    return time.perf_counter() - t, n


def torchvision_loader(root: Path, workers: int) -> DataLoader:
    tf = transforms.Compose([transforms.Resize(SIZE), transforms.ToTensor()])
    parts = [datasets.ImageFolder(str(root / split), transform=tf) for split in ("train", "validation")]
    return DataLoader(ConcatDataset(parts), batch_size=BATCH, shuffle=False, num_workers=workers)


def torchvision_epoch(loader: DataLoader) -> tuple[float, int]:
    t = time.perf_counter()
    n = 0
    for x, _ in loader:  # (B, 3, 150, 150) float in [0, 1], already materialised by the workers
        n += len(x)
    return time.perf_counter() - t, n


def versions() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{cpu}, {cores} cores; Python {platform.python_version()}, torch {torch.__version__}, "
            f"torchvision {torchvision.__version__}, Pillow {PIL.__version__}, numpy {np.__version__}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zip", type=Path, default=DEFAULT_ZIP)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per pipeline (default 3)")
    ap.add_argument("--workers", type=int, default=2, help="torchvision DataLoader workers (default 2)")
    args = ap.parse_args(argv)
    if not args.zip.is_file():
        print(f"{args.zip} not found; pass --zip", file=sys.stderr)
        return 1
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="cnnkit-bench-"))
    try:
        root = find_root(extract(args.zip, work / "extract"))
        print(f"machine: {versions()}")
        print(f"data: {root} (3,000 JPEGs of varying size) -> {SIZE[0]}x{SIZE[1]}x3; batches of {BATCH}\n")
        cache = work / "cache"
        ck = [cnnkit_epoch(root, cache) for _ in range(args.epochs)]
        loader = torchvision_loader(root, args.workers)
        tv = [torchvision_epoch(loader) for _ in range(args.epochs)]
        assert all(n == ck[0][1] for _, n in ck + tv), "both pipelines must see every image"
        print(f"{'epoch':<7}{'cnnkit (s)':>12}{'torchvision (s)':>17}{'ratio':>9}")
        for e, ((c, _), (t, _)) in enumerate(zip(ck, tv), 1):
            note = "  (cnnkit decodes and writes the cache)" if e == 1 else ""
            print(f"{e:<7}{c:>12.3f}{t:>17.3f}{t / c:>8.1f}x{note}")
        later_ck = np.median([c for c, _ in ck[1:]])
        later_tv = np.median([t for t, _ in tv[1:]])
        print(f"\nlater epochs (median): cnnkit {later_ck:.3f} s, torchvision {later_tv:.3f} s -> "
              f"cnnkit {later_tv / later_ck:.1f}x faster (target >= 10x)")
        print(f"epoch 1: cnnkit {ck[0][0]:.2f} s vs torchvision {tv[0][0]:.2f} s "
              f"({tv[0][0] / ck[0][0]:.2f}x); cache size "
              f"{sum(p.stat().st_size for p in (cache / 'decoded').glob('*.npy')) / 1e6:.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
