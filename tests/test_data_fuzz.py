"""Fuzzing the one function that decodes a file for training and serving (``decode`` / ``decode_bytes``).

Random bytes, and valid PNG/JPEG/GIF/BMP/WebP/TIFF files with bytes flipped, header fields
overwritten, sizes re-declared and tails cut off.  Each input must either give a uint8 array
of exactly the asked shape or raise the project's DataError, never another exception; and an
input that declares more pixels than the cap must be refused by the cap itself, before any
pixel memory is allocated (not by a decoder failing after allocating it).
"""

from __future__ import annotations

import io
import math
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnkit.data.decode import FORMATS, decode_bytes, decode_pixel_cap
from cnnkit.errors import DataError

CAP = 64 * 64  # small, so that a re-declared size is over it and nothing big is ever allocated


def _seed(fmt: str, mode: str, **kw) -> bytes:
    rng = np.random.default_rng(len(fmt) + len(mode))
    bands = len(Image.new(mode, (1, 1)).getbands())
    arr = rng.integers(0, 255, (16, 20, bands), dtype=np.uint8)
    im = Image.fromarray(arr[..., 0] if bands == 1 else arr, "L" if bands == 1 else ("RGBA" if bands == 4 else "RGB"))
    im = im.convert(mode) if im.mode != mode else im
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # turned 90 degrees: decode must swap sides
    buf = io.BytesIO()
    Image.new("RGB", (20, 16), (10, 200, 30)).save(buf, format="JPEG", exif=exif)
    return buf.getvalue()


SEEDS = {
    "png-rgba": _seed("PNG", "RGBA"),
    "png-p": _seed("PNG", "P"),
    "png-l": _seed("PNG", "L"),
    "jpeg": _seed("JPEG", "RGB", quality=80),
    "jpeg-progressive": _seed("JPEG", "L", progressive=True),
    "jpeg-exif": _exif_jpeg(),
    "gif": _seed("GIF", "P"),
    "bmp": _seed("BMP", "RGB"),
    "webp": _seed("WEBP", "RGB", quality=50),
    "webp-lossless": _seed("WEBP", "RGBA", lossless=True),
    "tiff": _seed("TIFF", "RGB", compression="tiff_lzw"),
}
EXTREMES = [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\x00\x01", b"\x00\x01\x00\x00", b"\x00\x00\x40\x00"]


def _png_claiming(seed: bytes, width: int, height: int, depth: int, colour: int) -> bytes:
    """The seed PNG with its IHDR re-declared (valid CRC), so the decoder believes the new header."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return seed[:8] + chunk + seed[8 + 25:]


@st.composite
def hostile_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["random", "mutated", "png-size"]))
    if kind == "random":
        return draw(st.binary(max_size=4096))
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    if kind == "png-size":
        data = bytearray(_png_claiming(SEEDS["png-rgba"], draw(st.integers(1, 2**31 - 1)),
                                       draw(st.integers(1, 2**31 - 1)), draw(st.sampled_from([1, 2, 4, 8, 16])),
                                       draw(st.sampled_from([0, 2, 3, 4, 6]))))
    for _ in range(draw(st.integers(0, 6))):  # flipped bytes anywhere
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):  # a header field (a size, a depth, a length) set to an extreme
        at = draw(st.integers(0, min(64, len(data) - 4)))
        data[at:at + 4] = draw(st.sampled_from(EXTREMES))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def _declared_pixels(data: bytes, size: tuple[int, int], channels: int) -> int | None:
    """Pixels the header says will be decoded (a JPEG's at its draft scale), or None if not an image."""
    try:
        im = Image.open(io.BytesIO(data), formats=FORMATS)
        if im.format in ("JPEG", "MPO"):
            w, h = im.size
            im.draft("L" if channels == 1 else "RGB", (max(size), max(size)))
            # draft keeps at least the asked size; at most 1/8 per side smaller
            return min(w * h, max(im.width * im.height, math.ceil(w / 8) * math.ceil(h / 8)))
        return im.width * im.height
    except Exception:  # noqa: BLE001 - not an image to Pillow either
        return None


def check_decode(data: bytes, size: tuple[int, int], channels: int, cap: int) -> None:
    try:
        out = decode_bytes(data, size, channels, max_pixels=cap)
    except DataError as exc:
        declared = _declared_pixels(data, size, channels)
        if declared is not None and declared > cap:
            assert "decompression bomb" in str(exc), f"over the cap but refused late: {exc}"
        return
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    assert out.shape == (size[0], size[1], channels)
    declared = _declared_pixels(data, size, channels)
    assert declared is not None and declared <= cap


_TARGETS = st.sampled_from([(8, 8), (5, 13), (16, 20)])


@settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=hostile_bytes(), size=_TARGETS, channels=st.sampled_from([1, 3]))
def test_decoding_hostile_bytes_gives_the_shape_or_a_data_error(data, size, channels):
    check_decode(data, size, channels, CAP)


def test_every_seed_decodes_as_it_is():
    for name, data in SEEDS.items():
        out = decode_bytes(data, (8, 8), 3)
        assert out.shape == (8, 8, 3), name
    assert decode_bytes(SEEDS["png-rgba"], (8, 8), 3, max_pixels=decode_pixel_cap((8, 8))).dtype == np.uint8


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=hostile_bytes(), size=_TARGETS, channels=st.sampled_from([1, 3]))
def test_decoding_hostile_bytes_long(data, size, channels):
    check_decode(data, size, channels, CAP)
