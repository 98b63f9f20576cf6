"""Batches straight from the uint8 cache: no per-image Python work, no worker processes.

The decoded images already sit in one (N, H, W, C) uint8 array, so a batch is one fancy-index
gather.  On CUDA the whole set moves to the GPU once when it fits (as airbench does).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from cnnkit.data.types import ImageSet

_GPU_RESIDENT_FRACTION = 0.25  # keep the set on the GPU if it uses at most this share of its memory


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """Independent, reproducible RNG per (seed, epoch, stream): resuming at an epoch replays it exactly."""
    gen = torch.Generator()
    gen.manual_seed((seed * 1_000_003 + epoch * 7919 + stream * 104_729) % (2**63))
    return gen


class BatchLoader:
    """Iterate (images uint8 (B,C,H,W) channels_last view, labels int64 (B,)) on ``device``.

    ``data`` is an ImageSet or a pair (x, labels) of arrays: 4-D x is NHWC images (yielded as the
    NCHW view), any other x (e.g. cached (N, D) bottleneck features) is yielded as it is.

    With ``world > 1`` each rank takes its own strided shard of the (shared, seeded) permutation,
    so the ranks together see every sample once per epoch (DistributedSampler semantics).
    """

    def __init__(self, data: ImageSet | tuple[np.ndarray, np.ndarray], batch_size: int, device: torch.device,
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False, rank: int = 0, world: int = 1):
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank, self.world = rank, world
        x, y = (data.images, data.labels) if isinstance(data, ImageSet) else data
        # (N,H,W,C) uint8 read into RAM once (a copy: the decode cache is a read-only memmap)
        images = torch.from_numpy(np.array(x))
        labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
        if (device.type == "cuda"
                and images.numel() < _GPU_RESIDENT_FRACTION * torch.cuda.get_device_properties(device).total_memory):
            images, labels = images.to(device), labels.to(device)
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        n = self._shard_len()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _shard_len(self) -> int:
        n = len(self.labels)
        return -(-n // self.world) if self.world > 1 else n

    def _order(self, epoch: int) -> torch.Tensor:
        n = len(self.labels)
        order = torch.randperm(n, generator=epoch_generator(self.seed, epoch, 0)) if self.shuffle else torch.arange(n)
        if self.world > 1:  # pad to a multiple of world, then take every world-th index
            pad = self._shard_len() * self.world - n
            order = torch.cat([order, order[:pad]])[self.rank::self.world]
        return order

    def batches(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order(epoch)
        if self.images.device != order.device:
            order = order.to(self.images.device)
        stop = len(order) - (len(order) % self.batch_size if self.drop_last else 0)
        for i in range(0, stop, self.batch_size):
            idx = order[i:i + self.batch_size]
            x = self.images[idx]  # (B,H,W,C) uint8
            y = self.labels[idx]
            if x.device != self.device:
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
            yield (x.permute(0, 3, 1, 2) if x.ndim == 4 else x), y  # NCHW view with channels_last strides

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches(0)
