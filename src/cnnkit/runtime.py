"""Device choice and the CPU/GPU fast path (threads, allocator, channels_last, autocast)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import random
from typing import Iterator

import numpy as np
import torch

from cnnkit.errors import ConfigError

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MALLOC_TUNED = False


def tune_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Keep freed activation memory in the heap instead of returning it to the OS every step.

    glibc serves large blocks with mmap and unmaps them on free, so each training step pays for
    page faults on fresh zeroed pages.  Raising the mmap threshold (32 MiB is glibc's maximum)
    and the trim threshold keeps that memory.  This is the runtime form of the
    ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` environment settings; returns False
    where there is no glibc.  Respects the variables when the user has set them.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    if platform.system() != "Linux" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
        ok = (libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1) and ok
    except (OSError, AttributeError):
        return False
    _MALLOC_TUNED = ok
    return ok


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def select_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; a named device must exist (a clear error if not)."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"--device {spec!r} is not a device: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"--device {spec}: no CUDA GPU is available here (torch {torch.__version__}); "
                              f"use --device cpu or auto")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"--device {spec}: there are only {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    if device.type == "mps" and not _mps_available():
        raise ConfigError(f"--device {spec}: Apple's MPS backend is not available here; use --device cpu or auto")
    return device


def cpu_has_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is slower."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def amp_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype for ``amp`` (auto|off|bf16|fp16) on ``device``; None = full precision."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return None


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def set_threads() -> int:
    """Use every core we are allowed to (affinity-aware), one intra-op thread per core."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def prepare(device: torch.device, fast: bool) -> None:
    """Process-wide settings for training/inference on ``device``."""
    if fast and device.type == "cpu":
        tune_malloc()
        set_threads()
    if fast and device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


@contextlib.contextmanager
def distributed_from_env() -> Iterator[tuple[int, int]]:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1); yield (rank, world).

    gloo on CPU, nccl on CUDA (one GPU per process, chosen by LOCAL_RANK).
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        yield 0, 1
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        dist.destroy_process_group()
