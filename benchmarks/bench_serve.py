"""Load test of `cnnkit serve`: throughput and latency of POST /predict on 127.0.0.1.

Starts the server as a subprocess (``python -m cnnkit serve``, access log off) once per
configuration - the PyTorch checkpoint and its ONNX export, with the library's default
threads per model call or one - and sends the same bounded load to each, side by side in one run:
``--requests`` uploads (default 2,000) with ``--concurrency`` in flight (default 16) from one
httpx.AsyncClient, after 50 warm-up requests.  Every non-200 answer or transport error counts as a failure;
the script exits 1 if there is any.

    python benchmarks/bench_serve.py                      # untrained lenet5, 28x28 grey, 10 classes
    python benchmarks/bench_serve.py --checkpoint runs/x  # a real run folder or checkpoint

Traffic goes to 127.0.0.1 only.  Client and server share the machine's cores, so on a small
machine the numbers are a lower bound for the server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_checkpoint(folder: Path) -> Path:
    """Untrained lenet5 for 28x28 greyscale, 10 classes: inference costs the same as a trained one."""
    import torch

    from cnnkit.config import ModelConfig, Preprocess
    from cnnkit.inference.checkpoint import save_checkpoint
    from cnnkit.models import build_model

    torch.manual_seed(0)
    cfg = ModelConfig(name="lenet5", num_classes=10, in_channels=1, image_size=(28, 28))
    pre = Preprocess(classes=tuple(str(i) for i in range(10)), image_size=(28, 28), channels=1,
                     mean=(0.13,), std=(0.31,), model="lenet5")
    path = folder / "best.safetensors"
    save_checkpoint(path, build_model(cfg), pre, cfg)
    return path


def payloads(size: tuple[int, int], channels: int, n: int = 8) -> list[bytes]:
    """PNG uploads at twice the model's input size (so the server decodes and resizes, as in real use)."""
    rng = np.random.default_rng(0)
    shape = (2 * size[0], 2 * size[1]) + ((3,) if channels == 3 else ())
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


class Server:
    """`python -m cnnkit serve MODEL` on a free 127.0.0.1 port, for the duration of a with-block."""

    def __init__(self, model: Path, threads: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        extra = [] if threads == "auto" else ["--threads", threads]
        self.proc = subprocess.Popen([sys.executable, "-m", "cnnkit", "serve", str(model), "--host", "127.0.0.1",
                                      "--port", str(self.port), "--log-level", "warning", *extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def __enter__(self) -> "Server":
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode(errors='replace')}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("server did not start within 60 s")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def load(url: str, uploads: list[bytes], n: int, concurrency: int, timeout: float) -> dict:
    """``n`` POST /predict with ``concurrency`` workers; latencies of successes, count of failures."""
    latencies: list[float] = []
    failures: list[str] = []
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:

        async def worker() -> None:
            for i in counter:
                start = time.perf_counter()
                try:
                    r = await client.post("/predict", files={"file": (f"{i}.png", uploads[i % len(uploads)])})
                    ok = r.status_code == 200 and bool(r.json()["top"])
                    if not ok:
                        failures.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if ok:
                    latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {
        "requests": n, "failures": len(failures), "first_failure": failures[0] if failures else "",
        "wall_s": wall, "throughput": n / wall,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "max_ms": float(lat.max()) if lat.size else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="checkpoint or run folder (default: an untrained lenet5 28x28x1)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat every configuration, interleaved, and report the median (for busy machines)")
    ap.add_argument("--configs", default="pytorch:auto,pytorch:1,onnx:auto",
                    help="backend:threads pairs to compare (`cnnkit serve --threads`; auto = the library's default)")
    args = ap.parse_args()

    import fastapi
    import onnxruntime
    import torch
    import uvicorn

    from cnnkit.inference.checkpoint import load_checkpoint, resolve_checkpoint
    from cnnkit.serve.export import export_model

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = resolve_checkpoint(args.checkpoint) if args.checkpoint else tiny_checkpoint(Path(tmp))
        pre = load_checkpoint(ckpt).preprocess
        models = {"pytorch": ckpt}
        if "onnx" in args.configs:
            models["onnx"] = export_model(ckpt, "onnx", Path(tmp) / "model.onnx").path
        uploads = payloads(tuple(pre.image_size), pre.channels)
        print(f"model {pre.model} {pre.image_size[0]}x{pre.image_size[1]}x{pre.channels}, {len(pre.classes)} classes; "
              f"uploads {len(uploads[0])} B PNG at 2x input size; {args.requests} requests, concurrency "
              f"{args.concurrency}")
        print(f"python {platform.python_version()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
              f"fastapi {fastapi.__version__}, uvicorn {uvicorn.__version__}, {platform.machine()} "
              f"{len(os.sched_getaffinity(0))} cores")
        runs: dict[str, list[dict]] = {name: [] for name in args.configs.split(",")}
        for _ in range(args.rounds):  # interleaved, so a burst of load elsewhere hits every configuration alike
            for name in runs:
                backend, threads = name.split(":")
                with Server(models[backend], threads) as server:
                    asyncio.run(load(server.url, uploads, 50, min(args.concurrency, 8), args.timeout))  # warm-up
                    runs[name].append(asyncio.run(load(server.url, uploads, args.requests, args.concurrency,
                                                       args.timeout)))
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'backend:threads':<16}{'requests':>9}{'failed':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          + ("   (median of rounds; req/s of each)" if args.rounds > 1 else ""))
    results = {}
    for name, rs in runs.items():
        r = {k: float(np.median([x[k] for x in rs])) for k in ("throughput", "p50_ms", "p99_ms", "max_ms")}
        r.update(requests=sum(x["requests"] for x in rs), failures=sum(x["failures"] for x in rs),
                 first_failure=next((x["first_failure"] for x in rs if x["failures"]), ""))
        results[name] = r
        each = "   " + " ".join(f"{x['throughput']:.0f}" for x in rs) if args.rounds > 1 else ""
        print(f"{name:<16}{r['requests']:>9}{r['failures']:>8}{r['throughput']:>9.1f}{r['p50_ms']:>9.1f}"
              f"{r['p99_ms']:>9.1f}{r['max_ms']:>9.1f}{each}")
        if r["failures"]:
            print(f"  first failure: {r['first_failure']}")
    base = next(iter(results))
    for name in list(results)[1:]:
        print(f"{name} / {base} throughput: {results[name]['throughput'] / results[base]['throughput']:.2f}x")
    return 1 if any(r["failures"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
