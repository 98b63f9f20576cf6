"""What decoding may cost: a pixel cap tied to the target size, JPEG draft counted, early reduction."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cnnkit.data.decode import MIN_DECODE_PIXELS, BadImage, decode, decode_bytes, decode_pixel_cap, probe
from cnnkit.errors import DataError


def huge_blank_png(width: int, height: int) -> bytes:
    """A real, valid RGBA PNG of width x height, all transparent, built row by row (~200 KB for 7000x7000)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # Deflate each block of 100 identical rows after a full flush: the compressed unit repeats,
    # so 196 MB of pixels compress in a fraction of a second; the checksum is over all of them.
    assert height % 100 == 0
    block = (b"\x00" * (1 + 4 * width)) * 100  # filter byte + RGBA per row
    z = zlib.compressobj(9)
    head = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    unit = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    tail = z.flush()[:-4]  # the final block, without the (too short) Adler-32 of two blocks
    adler = 1
    for _ in range(height // 100):
        adler = zlib.adler32(block, adler)
    idat = head + unit * (height // 100 - 1) + tail + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class ReadCounter(io.BytesIO):
    """In-memory bytes that remember how far into them anything has read."""

    furthest = 0

    def read(self, n=-1):
        data = super().read(n)
        self.furthest = max(self.furthest, self.tell())
        return data


def test_the_cap_follows_the_target_size():
    assert decode_pixel_cap((150, 150)) == MIN_DECODE_PIXELS == 4096 * 4096
    assert decode_pixel_cap((512, 512)) == min(256 * 512 * 512, Image.MAX_IMAGE_PIXELS)
    assert decode_pixel_cap((4000, 4000)) == Image.MAX_IMAGE_PIXELS  # never above Pillow's own


def test_a_small_png_that_declares_7000x7000_rgba_is_refused_before_decoding():
    data = huge_blank_png(7000, 7000)
    assert len(data) < 400_000
    f = ReadCounter(data)
    info = probe(f)
    assert (info.width, info.height) == (7000, 7000)  # a valid file...
    assert f.furthest < 1000  # ...whose header alone was read: probing never decodes the pixels
    with pytest.raises(BadImage, match="7000x7000 pixels exceeds the limit of 16777216"):
        decode_bytes(data, (150, 150), 3)  # the default cap for this target
    with pytest.raises(DataError):  # BadImage is the project's DataError
        decode_bytes(data, (150, 150), 3, max_pixels=1000)


def test_a_jpeg_is_capped_at_its_draft_size_other_formats_at_their_own(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (600, 800, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "big.jpg", quality=90)
    Image.fromarray(arr).save(tmp_path / "big.png")
    cap = 100 * 100  # the JPEG decodes at 1/8 scale (100x75) for a 60x80 target: within it
    assert decode(str(tmp_path / "big.jpg"), (60, 80), 3, max_pixels=cap).shape == (60, 80, 3)
    with pytest.raises(BadImage, match="800x600 pixels exceeds the limit of 10000"):
        decode(str(tmp_path / "big.png"), (60, 80), 3, max_pixels=cap)


def test_early_reduction_matches_resizing_after_compositing(tmp_path):
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 255, (300, 400, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = decode(str(tmp_path / "a.png"), (30, 40), 3).astype(int)
    white = Image.new("RGBA", (400, 300), (255, 255, 255, 255))
    ref = Image.alpha_composite(white, Image.fromarray(rgba, "RGBA")).convert("RGB")
    ref = np.asarray(ref.resize((40, 30), Image.Resampling.BILINEAR, reducing_gap=3.0)).astype(int)
    assert np.abs(out - ref).mean() < 1.0 and np.abs(out - ref).max() <= 4


def test_formats_outside_the_listed_ones_are_not_opened(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png", format="PPM")  # a PPM named .png
    Image.new("RGB", (4, 4)).save(tmp_path / "y.png", format="TGA")
    for name in ("x.png", "y.png"):
        with pytest.raises(BadImage, match="not an image"):
            decode(str(tmp_path / name), (4, 4), 3)
