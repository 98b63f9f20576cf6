"""Near-duplicate pictures across splits: a 64-bit difference hash (dHash) and Hamming distance.

A resized, re-encoded or slightly recoloured copy of a training picture in the validation or
test split inflates the scores as much as an exact copy, but has other bytes.  dHash compares
neighbouring pixels of a 9x8 grey thumbnail: 64 bits that survive resizing and JPEG
re-encoding, so copies are pairs of hashes a few bits apart.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_SIDE = 8  # 8 rows of 8 left/right comparisons = 64 bits
MAX_DISTANCE = 6  # Hamming distance (of 64) up to which two pictures count as the same picture
MIN_CONTRAST = 12  # a thumbnail whose grey levels span less than this is too flat to hash


def dhash(im: Image.Image) -> int | None:
    """64-bit difference hash of a picture (any mode), or None for one too flat to tell apart."""
    grey = im.convert("L").resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.BOX)
    px = np.asarray(grey, dtype=np.int16)  # (8, 9)
    if int(px.max()) - int(px.min()) < MIN_CONTRAST:
        return None  # blank or nearly uniform: every such picture would "match" every other
    bits = (px[:, 1:] > px[:, :-1]).ravel()  # (64,) is each pixel brighter than its left neighbour
    return int(np.packbits(bits).view(">u8")[0])


def near_pairs(hashes: list[int], groups: list[str], max_distance: int = MAX_DISTANCE,
               chunk: int = 2048) -> list[tuple[int, int, int]]:
    """(i, j, distance) for i < j in different groups whose hashes differ in at most ``max_distance`` bits.

    Brute force in blocks: an XOR and a popcount per pair, (chunk, N) uint64 at a time, which
    is a few seconds even for 25,000 x 25,000 pictures.
    """
    h = np.asarray(hashes, dtype=np.uint64)  # (N,)
    g = np.unique(np.asarray(groups), return_inverse=True)[1]  # (N,) group index
    out: list[tuple[int, int, int]] = []
    for start in range(0, len(h), chunk):
        block = h[start:start + chunk, None] ^ h[None, :]  # (B, N)
        dist = np.bitwise_count(block)
        close = (dist <= max_distance) & (g[start:start + chunk, None] != g[None, :])
        for a, b in zip(*np.nonzero(close)):
            i, j = start + int(a), int(b)
            if i < j:
                out.append((i, j, int(dist[a, b])))
    return out


def similarity(distance: int) -> float:
    """Share of the 64 hash bits two pictures agree on (1.0 = the same hash)."""
    return round(1.0 - distance / (HASH_SIDE * HASH_SIDE), 4)
