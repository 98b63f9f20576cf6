"""Augmentation throughput: cnnkit's whole-batch BatchAugment vs torchvision v2 per image.

Both sides turn the same uint8 images into shuffled, augmented float batches in [0, 1] with
the 'standard' preset's settings (rotation 15 deg, shifts 0.1, zoom 0.1, horizontal flip,
bilinear, edge fill):

  torchvision  RandomAffine(15, translate=(0.1, 0.1), scale=(0.9, 1.1), BILINEAR) +
               RandomHorizontalFlip, per image in a Dataset, DataLoader(num_workers=2)
  cnnkit       BatchAugment(AugmentConfig(preset="standard")) on each whole batch, in the
               training process, on --device (one affine_grid + grid_sample per batch)

Usage:  python benchmarks/bench_augment.py [--n 2000] [--size 150] [--batch 64] [--epochs 3]
                                           [--device cpu|cuda] [--cats-dogs]
Prints images/s of each (median over timed epochs, after a warm-up epoch) and the ratio.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from cnnkit.augment import BatchAugment
from cnnkit.config import AugmentConfig

CATS_DOGS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "cats_and_dogs_filtered.zip"


def random_images(n: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def cats_dogs_images(n: int, size: int) -> np.ndarray:
    """The first n training JPEGs of cats_and_dogs_filtered, resized to size x size (PIL)."""
    from PIL import Image

    out = []
    with zipfile.ZipFile(CATS_DOGS) as zf:
        names = sorted(m for m in zf.namelist() if "/train/" in m and m.endswith(".jpg"))[:n]
        for name in names:
            img = Image.open(BytesIO(zf.read(name))).convert("RGB").resize((size, size), Image.BILINEAR)
            out.append(np.asarray(img))
    return np.stack(out)


class PerImage(Dataset):
    """torchvision v2 augmentation of one uint8 CHW image per __getitem__ (the classic way)."""

    def __init__(self, images: np.ndarray):
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2)  # (N,3,H,W) uint8 view
        self.tf = v2.Compose([
            v2.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1),
                            interpolation=v2.InterpolationMode.BILINEAR),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.tf(self.images[i]), 0


def time_torchvision(images: np.ndarray, batch: int, epochs: int) -> float:
    loader = DataLoader(PerImage(images), batch_size=batch, shuffle=True, num_workers=2, persistent_workers=True)
    rates = []
    for epoch in range(epochs + 1):  # epoch 0 warms up (worker start-up)
        t0 = time.perf_counter()
        for x, _ in loader:
            pass
        if epoch:
            rates.append(len(images) / (time.perf_counter() - t0))
    return statistics.median(rates)


def time_batch_augment(images: np.ndarray, batch: int, epochs: int, device: torch.device) -> float:
    aug = BatchAugment(AugmentConfig(preset="standard"), num_classes=2)
    data = torch.from_numpy(images).to(device)  # uint8 (N,H,W,C), indexed like cnnkit's BatchLoader
    labels = torch.zeros(len(images), dtype=torch.int64, device=device)
    gen = torch.Generator().manual_seed(0)
    rates = []
    for epoch in range(epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(len(images), generator=gen).to(device)
        for start in range(0, len(images), batch):
            idx = order[start : start + batch]
            # as cnnkit's training loop does: uint8 batch -> float [0, 1] in channels_last memory
            x = data[idx].permute(0, 3, 1, 2).float().div_(255.0)  # (B,C,H,W), channels_last strides
            x, _ = aug(x, labels[idx], gen)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if epoch:
            rates.append(len(images) / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=150)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--cats-dogs", action="store_true", help="use cats_and_dogs_filtered images if present")
    a = ap.parse_args()

    use_real = a.cats_dogs and CATS_DOGS.exists()
    images = cats_dogs_images(a.n, a.size) if use_real else random_images(a.n, a.size)
    device = torch.device(a.device)
    print(f"{len(images)} {'cats_and_dogs_filtered' if use_real else 'random'} {a.size}x{a.size} RGB images, "
          f"batch {a.batch}, {a.epochs} timed epochs")
    print(f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}")
    tv = time_torchvision(images, a.batch, a.epochs)
    print(f"torchvision v2 per image, DataLoader(2 workers):   {tv:8.0f} images/s")
    # on the CPU, also with one thread: each DataLoader worker runs one torch thread, and on a
    # busy machine extra intra-op threads can cost more than they give
    threads = sorted({1, torch.get_num_threads()}) if device.type == "cpu" else [torch.get_num_threads()]
    default_threads = torch.get_num_threads()
    for n in threads:
        torch.set_num_threads(n)
        ours = time_batch_augment(images, a.batch, a.epochs, device)
        print(f"cnnkit BatchAugment whole batch, {device.type}, {n} thread(s): {ours:8.0f} images/s   "
              f"ratio cnnkit / torchvision: {ours / tv:.2f}x")
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
