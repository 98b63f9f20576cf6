"""Training throughput: cnnkit vs a plain PyTorch loop vs a hand-tuned loop, side by side.

    python benchmarks/bench_train_speed.py [--quick]

Each variant runs in its own subprocess (the glibc allocator setting is process-wide), on the same
random images, the same model and optimizer; a variant trains one warm-up epoch, then a timed one.

- default: the loop a person writes first: float TensorDataset + DataLoader, fp32, NCHW.
- tuned:   the best hand-tuned loop: uint8 tensors sliced per batch, channels_last, bf16 autocast
           (where the CPU has native bf16), MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ set.
- cnnkit:  ``cnnkit.train.train`` with its defaults (fast path on).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

CASES = {  # name: (model, image size, images, batch size)
    "cifar-cnn@32": ("cifar-cnn", 32, 4096, 64),
    "simple-cnn@150": ("simple-cnn", 150, 512, 32),
}


def make_data(size: int, n: int):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int64)
    return x, y


def build(name: str, size: int):
    from cnnkit.config import ModelConfig
    from cnnkit.models import build_model

    return build_model(ModelConfig(name=name, num_classes=10, in_channels=3, image_size=(size, size)))


def run_default(name: str, size: int, n: int, bs: int) -> float:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x, y = make_data(size, n)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.25).contiguous()
    loader = DataLoader(TensorDataset(xt, torch.from_numpy(y)), batch_size=bs, shuffle=True)
    torch.manual_seed(0)
    model = build(name, size)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        model.train()
        for xb, yb in loader:
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return n / times[-1]


def run_tuned(name: str, size: int, n: int, bs: int) -> float:
    import torch

    from cnnkit.runtime import cpu_has_bf16

    x, y = make_data(size, n)
    xu = torch.from_numpy(x)  # (N,H,W,C) uint8
    yt = torch.from_numpy(y)
    torch.manual_seed(0)
    model = build(name, size).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    dtype = torch.bfloat16 if cpu_has_bf16() else None
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            xb = xu[idx].permute(0, 3, 1, 2).float().div_(255).sub_(0.5).div_(0.25)  # channels_last strides
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                out = model(xb)
            loss = torch.nn.functional.cross_entropy(out.float(), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return n / times[-1]


def run_cnnkit(name: str, size: int, n: int, bs: int) -> float:
    import tempfile

    from cnnkit.commands.train import train
    from cnnkit.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from cnnkit.data import DataSplits, ImageSet

    x, y = make_data(size, n)
    splits = DataSplits(train=ImageSet(x, y, tuple(str(i) for i in range(10))))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig(data=DataConfig(source="random"), model=ModelConfig(name=name),
                        optim=OptimConfig(name="adam", lr=1e-3, schedule="none"),
                        train=TrainConfig(epochs=2, batch_size=bs, out=f"{tmp}/run", progress=False))
        result = train(cfg, splits=splits, explicit_out=True)
    return n / result.history[-1]["time"]


VARIANTS = {"default": run_default, "tuned": run_tuned, "cnnkit": run_cnnkit}


def child(variant: str, case: str, quick: bool) -> None:
    name, size, n, bs = CASES[case]
    if quick:
        n = max(bs * 4, n // 4)
    print(json.dumps({"ips": VARIANTS[variant](name, size, n, bs)}))


def measure(variant: str, case: str, quick: bool) -> float:
    env = dict(os.environ)
    for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        env.pop(key, None)
    if variant == "tuned":
        env.update(MALLOC_MMAP_THRESHOLD_=str(32 << 20), MALLOC_TRIM_THRESHOLD_=str(1 << 30))
    args = [sys.executable, __file__, "--child", variant, case] + (["--quick"] if quick else [])
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["ips"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child", nargs=2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=1)
    a = p.parse_args()
    if a.child:
        child(*a.child, a.quick)
        return
    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; torch {torch.__version__}")
    print(f"{'case':<16}{'default':>10}{'tuned':>10}{'cnnkit':>10}   cnnkit/tuned  cnnkit/default  (images/s)")
    for case in CASES:
        best = {v: max(measure(v, case, a.quick) for _ in range(a.repeats)) for v in VARIANTS}
        print(f"{case:<16}{best['default']:>10.1f}{best['tuned']:>10.1f}{best['cnnkit']:>10.1f}"
              f"   {best['cnnkit'] / best['tuned']:>11.2f}x  {best['cnnkit'] / best['default']:>13.2f}x", flush=True)


if __name__ == "__main__":
    main()
