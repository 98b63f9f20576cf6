"""Soak test of `cnnkit serve`: many mixed good and bad uploads, watching failures, latency and memory.

Starts ``python -m cnnkit serve`` as a subprocess on a free port of 127.0.0.1 (nothing leaves
the machine) and sends ``--requests`` uploads (default 10,000) with ``--concurrency`` in flight
(default 16): good PNG and JPEG photos, and bad ones (random bytes, truncated images, an empty
file, a wrong field name, a body over the upload limit, a small PNG that declares 7000x7000
pixels).  Meanwhile ``--drips`` connections (default 18) each send an upload's headers and then
drip its body a byte every ``--drip-seconds`` (default 8), reconnecting whenever the server cuts
them off: slow bodies must never cost good requests their answer.  It stops by itself after
``--max-seconds`` (default 900) whatever is left.  It prints the good requests that failed
(anything but 200), the status counts per kind, how the drips were answered, p50/p99 latency,
and the server's RSS sampled every half second (start, peak, end).  Exit status 1 if any good
request failed.

    python benchmarks/soak_serve.py
    python benchmarks/soak_serve.py --requests 2000 --checkpoint runs/x
    python benchmarks/soak_serve.py --requests 300 --drips 18 --drip-seconds 1 --max-seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_serve import tiny_checkpoint  # noqa: E402 - beside this script
from serve_helpers import ServerDidNotStart, serve_subprocess  # noqa: E402 - tests/serve_helpers.py

UPLOAD_LIMIT_MB = 1


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _declared_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height RGBA (its data is one short row)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def uploads(rng: np.random.Generator) -> dict[str, list[tuple[str, bytes, int]]]:
    """kind -> [(field, bytes, expected status)]: 'good' ones must answer 200."""
    photos = [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for s in (40, 64, 300)]
    good = [("file", _png(p), 200) for p in photos] + [("file", _jpeg(p), 200) for p in photos]
    ok = good[0][1]
    return {
        "good": good,
        "not an image": [("file", rng.bytes(2000), 400)],
        "truncated": [("file", ok[: len(ok) // 2], 400)],
        "empty": [("file", b"", 400)],
        "wrong field": [("image", ok, 422)],
        "too large": [("file", b"\0" * (UPLOAD_LIMIT_MB * 1024 * 1024 + 10), 413)],
        "pixel bomb": [("file", _declared_png(7000, 7000), 413)],
    }


async def drip(url: str, interval: float, stop: asyncio.Event, answers: Counter) -> None:
    """One slow client: an upload's headers, then a byte every ``interval`` s until the server
    answers (counted by status line) or ``stop``; then again, on a new connection."""
    host, port = url.removeprefix("http://").split(":")
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n--b\r\n")
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError as exc:
            answers[type(exc).__name__] += 1
            await asyncio.sleep(interval)
            continue
        try:
            writer.write(head)
            await writer.drain()
            while not stop.is_set():
                try:
                    line = await asyncio.wait_for(reader.readline(), interval)
                except asyncio.TimeoutError:
                    writer.write(b"x")
                    await writer.drain()
                    continue
                answers[line.decode("latin-1").split(" ")[1] if line else "closed"] += 1
                break
        except OSError as exc:
            answers[type(exc).__name__] += 1
        finally:
            writer.close()


async def soak(url: str, pid: int, n: int, concurrency: int, max_seconds: float, seed: int,
               drips: int = 0, drip_seconds: float = 8.0) -> int:
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    kinds = uploads(rng)
    # 80% good uploads, the rest spread over the bad kinds
    plan = [("good" if pick.random() < 0.8 else pick.choice([k for k in kinds if k != "good"])) for _ in range(n)]
    status: dict[str, Counter] = {k: Counter() for k in kinds}
    latencies: list[float] = []
    failed_good: list[str] = []
    rss: list[tuple[float, float]] = [(0.0, rss_mib(pid))]
    start = time.monotonic()
    deadline = start + max_seconds
    queue: asyncio.Queue = asyncio.Queue()
    for i, kind in enumerate(plan):
        queue.put_nowait((i, kind))

    async def sample() -> None:
        while True:
            await asyncio.sleep(0.5)
            rss.append((time.monotonic() - start, rss_mib(pid)))

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            try:
                i, kind = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            field, data, _ = pick.choice(kinds[kind])
            t0 = time.perf_counter()
            try:
                r = await client.post(f"{url}/predict", files={field: (f"{i}.img", data)})
                code = str(r.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            latencies.append(time.perf_counter() - t0)
            status[kind][code] += 1
            if kind == "good" and code != "200":
                failed_good.append(f"request {i}: {code}")

    sampler = asyncio.create_task(sample())
    stop, dripped = asyncio.Event(), Counter()
    dripping = [asyncio.create_task(drip(url, drip_seconds, stop, dripped)) for _ in range(drips)]
    await asyncio.sleep(min(2 * drip_seconds, 2.0) if drips else 0.0)  # the drips are in before the good uploads
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    stop.set()
    await asyncio.gather(*dripping)
    sampler.cancel()
    elapsed = time.monotonic() - start
    await asyncio.sleep(1.0)  # let the server settle, then its memory at rest
    rss.append((time.monotonic() - start, rss_mib(pid)))

    done = sum(sum(c.values()) for c in status.values())
    lat = np.array(latencies) * 1000
    print(f"{done} of {n} requests in {elapsed:.1f} s ({done / elapsed:.0f} req/s), concurrency {concurrency}"
          + ("  (stopped at --max-seconds)" if done < n else ""))
    print(f"failed good requests: {len(failed_good)}" + "".join(f"\n  {f}" for f in failed_good[:20]))
    for kind, counts in status.items():
        want = kinds[kind][0][2]
        print(f"  {kind:13s} expected {want}: " + ", ".join(f"{c} x{k}" for c, k in sorted(counts.items())))
    if drips:
        print(f"  {drips} dripping uploads (a byte every {drip_seconds:g} s) were answered: "
              + (", ".join(f"{c} x{k}" for k, c in sorted(dripped.items())) or "not yet"))
    print(f"latency ms: p50 {np.percentile(lat, 50):.1f}  p99 {np.percentile(lat, 99):.1f}  max {lat.max():.1f}")
    values = [v for _, v in rss]
    print(f"server RSS MiB: start {values[0]:.0f}  peak {max(values):.0f}  end {values[-1]:.0f}  "
          f"({len(values)} samples)")
    quarter = max(1, len(values) // 4)
    print("RSS by quarter of the run (mean MiB): "
          + "  ".join(f"{np.mean(values[i:i + quarter]):.0f}" for i in range(0, len(values), quarter)))
    return 1 if failed_good else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="run folder, checkpoint or .onnx (default: an untrained lenet5)")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-seconds", type=float, default=900.0, help="hard stop (default 900 s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--drips", type=int, default=18, help="connections dripping a body meanwhile (default 18)")
    ap.add_argument("--drip-seconds", type=float, default=8.0, help="seconds between their bytes (default 8)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = a.checkpoint or str(tiny_checkpoint(Path(tmp)))
        args = [ckpt, "--log-level", "warning", "--max-upload-mb", str(UPLOAD_LIMIT_MB)]
        try:
            with serve_subprocess(args, timeout=120) as (server, url):
                for _ in range(20):  # warm-up: the first model calls allocate
                    httpx.post(f"{url}/predict", files={"file": ("w.png", _png(np.zeros((40, 40, 3), np.uint8)))})
                return asyncio.run(soak(url, server.pid, a.requests, a.concurrency, a.max_seconds, a.seed,
                                        a.drips, a.drip_seconds))
        except ServerDidNotStart as exc:
            raise SystemExit(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
