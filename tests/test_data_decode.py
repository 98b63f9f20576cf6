"""Decoding single files: formats, modes, EXIF rotation, and every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.data.decode import BadImage, decode, parallel_map, probe


def save(path: Path, arr: np.ndarray, mode: str | None = None, **kw) -> Path:
    im = Image.fromarray(arr, mode) if mode else Image.fromarray(arr)
    im.save(path, **kw)
    return path


def test_rgb_png_resized_to_requested_size(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    out = decode(str(save(tmp_path / "a.png", arr)), (10, 10), 3)
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    assert tuple(out[5, 1]) == (255, 0, 0) and tuple(out[5, 8]) == (0, 0, 0)


@pytest.mark.parametrize("ext,kw", [(".jpg", {"quality": 95}), (".JPEG", {"format": "JPEG"}), (".bmp", {}),
                                    (".gif", {}), (".webp", {"lossless": True}), (".tiff", {}),
                                    (".PNG", {"format": "PNG"})])
def test_all_accepted_formats_decode(tmp_path, ext, kw):
    arr = np.full((12, 12, 3), 200, np.uint8)
    out = decode(str(save(tmp_path / f"x{ext}", arr, **kw)), (12, 12), 3)
    assert out.shape == (12, 12, 3)
    assert abs(int(out.mean()) - 200) <= 3


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., 0] = 255  # red, but fully transparent on the left half
    arr[:, 4:, 3] = 255
    out = decode(str(save(tmp_path / "t.png", arr, "RGBA")), (8, 8), 3)
    assert tuple(out[0, 0]) == (255, 255, 255)  # transparent -> white, not black
    assert tuple(out[0, 7]) == (255, 0, 0)


def test_la_and_palette_transparency_on_white_grey(tmp_path):
    la = np.zeros((6, 6, 2), np.uint8)  # black, fully transparent
    out = decode(str(save(tmp_path / "la.png", la, "LA")), (6, 6), 1)
    assert out.shape == (6, 6, 1) and int(out.min()) == 255
    p = Image.new("P", (6, 6), 0)
    p.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    p.info["transparency"] = 0
    p.save(tmp_path / "p.png", transparency=0)
    out = decode(str(tmp_path / "p.png"), (6, 6), 3)
    assert tuple(out[0, 0]) == (255, 255, 255)


def test_palette_cmyk_and_bilevel_convert(tmp_path):
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    p.save(tmp_path / "p.gif")
    assert tuple(decode(str(tmp_path / "p.gif"), (4, 4), 3)[0, 0]) == (0, 255, 0)
    Image.new("CMYK", (4, 4), (0, 0, 0, 0)).save(tmp_path / "c.jpg")  # no ink = white
    assert decode(str(tmp_path / "c.jpg"), (4, 4), 3).min() >= 250
    Image.new("1", (4, 4), 1).save(tmp_path / "b.png")
    assert decode(str(tmp_path / "b.png"), (4, 4), 1).min() == 255


def test_16bit_grey_is_scaled_not_clipped(tmp_path):
    arr = np.full((5, 5), 32768, np.uint16)  # mid-grey in 16 bits
    Image.fromarray(arr).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = decode(str(tmp_path / "g16.png"), (5, 5), 1)
    assert 126 <= int(out[0, 0, 0]) <= 129
    assert probe(str(tmp_path / "g16.png")).grey


def test_channel_conversion_both_ways(tmp_path):
    grey = save(tmp_path / "g.png", np.full((4, 4), 77, np.uint8))
    rgb = save(tmp_path / "c.png", np.full((4, 4, 3), (255, 0, 0), np.uint8))
    assert decode(str(grey), (4, 4), 3).shape == (4, 4, 3)
    assert tuple(decode(str(grey), (4, 4), 3)[0, 0]) == (77, 77, 77)
    assert decode(str(rgb), (4, 4), 1)[0, 0, 0] == 76  # ITU-R 601 luma of pure red
    assert probe(str(grey)).grey and not probe(str(rgb)).grey


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)  # wide, left half white
    arr[:, :10] = 255
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    info = probe(str(tmp_path / "r.jpg"))
    assert (info.width, info.height) == (10, 20)  # displayed size is tall
    out = decode(str(tmp_path / "r.jpg"), (20, 10), 3)
    assert out.shape == (20, 10, 3)
    assert out[2, 5].mean() > 200 and out[17, 5].mean() < 50  # white half is now on top


def test_large_jpeg_uses_draft_and_matches_full_decode(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(base).resize((800, 600), Image.Resampling.BILINEAR))
    path = save(tmp_path / "big.jpg", big, quality=95)
    fast = decode(str(path), (60, 80), 3).astype(int)
    # Same resize from a full-resolution decode: draft (1/8-scale DCT) must change almost nothing.
    full = np.asarray(Image.open(path).convert("RGB").resize((80, 60), Image.Resampling.BILINEAR,
                                                             reducing_gap=3.0)).astype(int)
    assert np.abs(fast - full).mean() < 3


@pytest.mark.parametrize("make,reason", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(b"this is not an image at all"), "not an image"),
])
def test_bad_files_raise_badimage_with_reason(tmp_path, make, reason):
    p = tmp_path / "bad.jpg"
    make(p)
    with pytest.raises(BadImage, match=reason):
        decode(str(p), (8, 8), 3)
    with pytest.raises(BadImage, match=reason):
        probe(str(p))


def test_truncated_jpeg_and_png(tmp_path):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for name in ("t.jpg", "t.png"):
        good = save(tmp_path / name, arr)
        data = good.read_bytes()
        good.write_bytes(data[: len(data) // 2])
        probe(str(good))  # the header is intact...
        with pytest.raises(BadImage, match="truncated or corrupt"):
            decode(str(good), (8, 8), 3)  # ...the pixels are not


def test_decompression_bomb_is_bad(tmp_path):
    p = save(tmp_path / "huge.png", np.zeros((50, 50), np.uint8))
    with pytest.raises(BadImage, match="decompression bomb"):
        decode(str(p), (8, 8), 1, max_pixels=1000)
    with pytest.raises(BadImage, match="decompression bomb"):
        probe(str(p), max_pixels=1000)
    assert decode(str(p), (8, 8), 1, max_pixels=None).shape == (8, 8, 1)


def test_parallel_map_keeps_order_and_stops_early():
    assert list(parallel_map(lambda x: x * x, range(50), workers=2)) == [x * x for x in range(50)]
    done = []

    def slow(x):
        done.append(x)
        if x == 3:
            raise ValueError("stop")
        return x

    with pytest.raises(ValueError):
        list(parallel_map(slow, range(10_000), workers=2))
    assert len(done) < 100  # bounded window: the rest was never started
