"""`cnnkit predict` on image files vs the model's own forward-only throughput at the same size.

Writes ``--n`` JPEG files (default 2,000) at ``--size`` (default 224) px, builds an untrained
model (``--model``, default fast-cnn; inference costs the same as a trained one), then measures:

* **model**: images/s of ``predictor.probs`` on pre-decoded uint8 batches (normalisation and the
  forward pass, nothing else), the ceiling for any file-based prediction;
* **predict**: images/s of ``cnnkit predict FOLDER --format csv -o FILE`` in a subprocess (decode,
  batch, predict, write), timed from the first result line to the end so that interpreter start
  and model loading are left out, and its whole wall time and peak RSS beside it.

The goal is predict >= 0.9x model: decoding overlaps the model calls.

    python benchmarks/bench_predict.py
    python benchmarks/bench_predict.py --n 500 --model catdog-cnn --size 150
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SRC = str(Path(__file__).resolve().parents[1] / "src")


def make_checkpoint(folder: Path, model: str, size: int) -> Path:
    import torch

    from cnnkit.config import ModelConfig, Preprocess
    from cnnkit.inference.checkpoint import save_checkpoint
    from cnnkit.models import build_model

    torch.manual_seed(0)
    cfg = ModelConfig(name=model, num_classes=10, in_channels=3, image_size=(size, size))
    pre = Preprocess(classes=tuple(f"c{i}" for i in range(10)), image_size=(size, size), channels=3,
                     mean=(0.5,) * 3, std=(0.25,) * 3, model=model)
    path = folder / "best.safetensors"
    save_checkpoint(path, build_model(cfg), pre, cfg)
    return path


def make_images(folder: Path, n: int, size: int) -> list[Path]:
    """n photos-like JPEGs (smooth gradients plus noise) at size x size."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    files = []
    for i in range(n):
        a, b = rng.uniform(50, 200, 2)
        base = np.stack([a * xx + b * (1 - yy), b * xx, a * yy], -1) + rng.normal(0, 12, (size, size, 3))
        f = folder / f"img_{i:05d}.jpg"
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(f, quality=90)
        files.append(f)
    return files


def model_throughput(ckpt: Path, files: list[Path], batch: int, device: str) -> float:
    from cnnkit.inference.load import load_predictor

    p = load_predictor(ckpt, device)
    images = np.stack([p.read(f) for f in files])  # (N, H, W, 3) uint8, decoded before the clock starts
    p.probs(images[:batch], batch)  # warm-up
    start = time.perf_counter()
    p.probs(images, batch)
    return len(files) / (time.perf_counter() - start)


def predict_throughput(ckpt: Path, folder: Path, out: Path, batch: int, device: str) -> tuple[float, float, float]:
    """(images/s from first result to last, whole wall seconds, peak RSS MiB) of `cnnkit predict`."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-c", "import resource, sys\nfrom cnnkit.cli import main\nrc = main(sys.argv[1:])\n"
           "print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(rc)",
           "predict", str(ckpt), str(folder), "--format", "jsonl", "--batch-size", str(batch), "--device", device]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first, n = None, 0
    with out.open("w") as fh:
        for line in proc.stdout:  # streamed: one JSON line per image as its batch finishes
            if first is None:
                first = time.perf_counter()
            fh.write(line)
            n += 1
    end = time.perf_counter()
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise SystemExit(f"cnnkit predict failed:\n{err}")
    rss = next(int(line.split()[1]) for line in err.splitlines() if line.startswith("maxrss_kb")) / 1024
    # the first line arrives after the first batch: count the images after it over the time after it
    return (n - batch) / (end - first), end - start, rss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="image files (default 2000)")
    ap.add_argument("--size", type=int, default=224, help="image and model input side (default 224)")
    ap.add_argument("--model", default="fast-cnn", help="registry model (default fast-cnn)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        images = tmp_path / "images"
        images.mkdir()
        ckpt = make_checkpoint(tmp_path, a.model, a.size)
        files = make_images(images, a.n, a.size)
        model_ips = model_throughput(ckpt, files, a.batch_size, a.device)
        pred_ips, wall, rss = predict_throughput(ckpt, images, tmp_path / "pred.jsonl", a.batch_size, a.device)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; device {a.device}")
    print(f"{a.n} JPEG files, {a.size}x{a.size}, {a.model}, batch {a.batch_size}")
    print(f"model forward only (pre-decoded):  {model_ips:8.1f} images/s")
    print(f"cnnkit predict (files, streamed):  {pred_ips:8.1f} images/s  = {pred_ips / model_ips:.2f}x the model")
    print(f"cnnkit predict whole run: {wall:.1f} s wall (start-up and model load included), peak RSS {rss:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
