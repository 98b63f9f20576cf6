"""Near-duplicate pictures across splits: a 64-bit perceptual hash (pHash) and Hamming distance.

A resized, re-encoded or slightly recoloured copy of a training picture in the validation or
test split inflates the scores as much as an exact copy, but has other bytes.  pHash keeps the
signs of the 8x8 lowest frequencies of a 32x32 grey thumbnail's cosine transform (against
their median): 64 bits that survive resizing and JPEG re-encoding, so copies are pairs of
hashes a few bits apart.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

THUMB = 32  # side of the grey thumbnail the transform is taken of
LOW = 8  # 8x8 lowest frequencies = 64 bits
MAX_DISTANCE = 8  # Hamming distance (of 64) up to which two pictures count as the same picture
MIN_CONTRAST = 12  # a thumbnail whose grey levels span less than this is too flat to hash
HASH_DRAFT = (64, 64)  # JPEGs are hashed from a draft at least this large (DCT-domain reduction)


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II as an (n, n) matrix: ``C @ x`` transforms the columns of x."""
    k = np.arange(n)[:, None]
    c = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    return c


_DCT = _dct_matrix(THUMB)


def phash(im: Image.Image) -> int | None:
    """64-bit perceptual hash of a picture (any mode), or None for one too flat to tell apart."""
    grey = np.asarray(im.convert("L").resize((THUMB, THUMB), Image.Resampling.BOX), np.float64)  # (32, 32)
    if float(grey.max() - grey.min()) < MIN_CONTRAST:
        return None  # blank or nearly uniform: every such picture would "match" every other
    low = (_DCT @ grey @ _DCT.T)[:LOW, :LOW].ravel()  # (64,) lowest frequencies, DC first
    bits = low > np.median(low[1:])
    bits[0] = False  # the DC term is overall brightness, not structure
    return int(np.packbits(bits).view(">u8")[0])


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64 element."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    return np.unpackbits(x[..., None].view(np.uint8), axis=-1).sum(axis=-1)


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
        dist = _popcount(h[start:start + chunk, None] ^ h[None, :])  # (B, N)
        close = (dist <= max_distance) & (g[start:start + chunk, None] != g[None, :])
        for a, b in zip(*np.nonzero(close)):
            i, j = start + int(a), int(b)
            if i < j:
                out.append((i, j, int(dist[a, b])))
    return out


def similarity(distance: int) -> float:
    """Share of the 64 hash bits two pictures agree on (1.0 = the same hash)."""
    return round(1.0 - distance / (LOW * LOW), 4)
