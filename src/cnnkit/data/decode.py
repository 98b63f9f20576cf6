"""Decode one image file into a uint8 (H, W, C) array at a fixed size and channel count.

Every way a file can be unusable becomes a :class:`BadImage` with a short human reason, so
callers can skip-and-report or stop (``strict``) without a library traceback reaching the user.
Pillow releases the GIL while decoding and resizing, so a thread pool over these functions
uses every core without process start-up or pickling costs.  (JPEGs use Pillow's ``draft``
DCT-domain downscaling, the same trick simplejpeg offers, so no second decoder is needed.)
"""

from __future__ import annotations

import io
import os
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Callable, Iterable, Iterator, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnkit.errors import DataError

GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_ORIENTATION_TAG = 0x0112  # EXIF orientation; values 5..8 mean a 90-degree turn (width <-> height)

PILLOW_LIMIT = -1  # max_pixels: Pillow's own Image.MAX_IMAGE_PIXELS at call time
TARGET_LIMIT = -2  # max_pixels (decode's default): a cap from the target size, see decode_pixel_cap
# Decoding a picture costs memory for its full size before it is resized, and a few hundred KB
# of PNG can declare 7000x7000 RGBA (~200 MB decoded, ~1 GB through the alpha compositing).  So
# what decode() may decode is tied to what it is asked for: 256x the target's pixels (16x per
# side), never under 16 MP (any small target still takes a 4096x4096 picture).  JPEGs are
# reduced while decoding (draft), so for them the cap applies to the reduced size.
MIN_DECODE_PIXELS = 4096 * 4096
PIXELS_PER_TARGET_PIXEL = 256
# What is opened at all: the formats the folder loader lists by extension.  Pillow knows many
# more (EPS runs Ghostscript, TGA has no signature to check), which only widen what a hostile
# file can reach.  A camera's multi-picture JPEG opens through JPEG and says "MPO".
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
_DRAFTABLE = ("JPEG", "MPO")
T = TypeVar("T")
R = TypeVar("R")


class BadImage(DataError):
    """A file that cannot be used as an image; ``str(exc)`` is the reason shown to the user."""


class TooManyPixels(BadImage):
    """An image whose header declares more pixels than the cap (a decompression bomb); the message names the cap."""


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: size after EXIF rotation, and whether the pixels are grey."""

    width: int
    height: int
    grey: bool


def _byte_size(source: str | IO[bytes]) -> int:
    if isinstance(source, io.BytesIO):  # an upload held in memory (decode_bytes)
        return source.getbuffer().nbytes
    return os.path.getsize(source)


def decode_pixel_cap(size: tuple[int, int]) -> int:
    """Most pixels :func:`decode` decodes (after JPEG draft reduction) for a target of ``size`` (H, W).

    ``max(MIN_DECODE_PIXELS, PIXELS_PER_TARGET_PIXEL * H * W)``, and never above Pillow's own
    ``Image.MAX_IMAGE_PIXELS``: 16 MP for targets up to 256x256.
    """
    cap = max(MIN_DECODE_PIXELS, PIXELS_PER_TARGET_PIXEL * int(size[0]) * int(size[1]))
    return min(cap, Image.MAX_IMAGE_PIXELS) if Image.MAX_IMAGE_PIXELS else cap


def _limit(max_pixels: int | None, size: tuple[int, int] | None = None) -> int | None:
    """Resolve the PILLOW_LIMIT / TARGET_LIMIT sentinels to a number of pixels (None = no limit)."""
    if max_pixels == TARGET_LIMIT:
        return decode_pixel_cap(size) if size is not None else Image.MAX_IMAGE_PIXELS
    if max_pixels == PILLOW_LIMIT:
        return Image.MAX_IMAGE_PIXELS
    return max_pixels


def _check_pixels(im: Image.Image, max_pixels: int | None) -> None:
    if max_pixels is not None and im.width * im.height > max_pixels:
        raise TooManyPixels(f"decompression bomb: {im.width}x{im.height} pixels exceeds the limit of {max_pixels}")


def open_image(path: str | IO[bytes], max_pixels: int | None = PILLOW_LIMIT) -> Image.Image:
    """Open lazily (header only); every failure, and images over ``max_pixels``, -> BadImage."""
    max_pixels = _limit(max_pixels)
    try:
        if _byte_size(path) == 0:
            raise BadImage("empty file (0 bytes)")
        Image.init()  # registers every plugin (WEBP, TIFF) so `formats` can name them; once per process
        im = Image.open(path, formats=FORMATS)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise BadImage(f"not an image (not one of the formats read: {', '.join(FORMATS)})") from None
    except OSError as exc:
        if exc.errno is not None:  # the file system said no (permissions, vanished file, ...)
            raise BadImage(f"cannot read file: {exc.strerror or exc}") from None
        raise BadImage(f"truncated or corrupt image header: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a plugin's parser failing on hostile bytes is a property of the file
        raise BadImage(f"truncated or corrupt image header: {type(exc).__name__}: {exc}") from None
    try:
        _check_pixels(im, max_pixels)
    except BadImage:
        im.close()
        raise
    return im


def _rotated(im: Image.Image) -> bool:
    if im.format == "PNG" and "exif" not in im.info:
        # Pillow would decode every pixel to look for an eXIf chunk after the image data
        # (PngImageFile.getexif loads): a header-only look must not cost a full decode.
        return False
    try:
        return im.getexif().get(_ORIENTATION_TAG, 1) in (5, 6, 7, 8)
    except Exception:  # malformed EXIF must not make a good image unusable
        return False


def _is_grey(im: Image.Image) -> bool:
    if im.mode in GREY_MODES:
        return True
    if im.mode in ("P", "PA"):
        pal = im.getpalette() or []
        rgb = np.asarray(pal[: 3 * 256], np.int32).reshape(-1, 3)
        return bool((rgb[:, 0] == rgb[:, 1]).all() and (rgb[:, 1] == rgb[:, 2]).all())
    return False


def probe(path: str, max_pixels: int | None = PILLOW_LIMIT) -> ImageInfo:
    """Read only the header: (width, height) as displayed and greyness.  Raises BadImage."""
    im = open_image(path, max_pixels)
    try:
        w, h = im.size
        if _rotated(im):
            w, h = h, w
        return ImageInfo(w, h, _is_grey(im))
    except BadImage:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a property of the file
        raise BadImage(f"unreadable image header: {exc}") from None
    finally:
        im.close()


def _to_8bit_grey(im: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer and float greyscale -> 8-bit 'L' (scale, do not clip)."""
    arr = np.asarray(im)
    if im.mode == "F":
        arr = arr.astype(np.float32)
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:  # NaN would turn black with a numpy warning: a picture of nothing, not a dark one
            raise BadImage(f"{bad} of {arr.size} float pixels are NaN or infinite: not a usable image")
        top = float(arr.max()) if arr.size else 0.0
        arr = arr * 255.0 if top <= 1.0 else arr
    elif im.mode.startswith("I;16") or (arr.size and int(arr.max()) > 255):
        arr = arr.astype(np.float32) / 257.0  # 0..65535 -> 0..255
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")


def _on_white(im: Image.Image) -> Image.Image:
    """Composite a picture with transparency on white (what a viewer shows) -> RGB."""
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _normalise_mode(im: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode -> 'L' (channels=1) or 'RGB' (channels=3)."""
    mode = im.mode
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if mode in ("I", "F") or mode.startswith("I;16"):
        im = _to_8bit_grey(im)
    elif im.mode in ("RGBA", "LA", "La", "PA", "RGBa"):
        im = _on_white(im)
    elif im.mode not in ("L", "RGB"):  # P, 1, CMYK, YCbCr, LAB, HSV, ...
        im = im.convert("RGB") if im.mode not in ("1",) else im.convert("L")
    target = "L" if channels == 1 else "RGB"
    return im if im.mode == target else im.convert(target)


def _shrink(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Box-reduce a picture far larger than ``size`` (W, H) by whole factors, before any mode work.

    The same reduction ``resize(..., reducing_gap=3.0)`` would make, done first so that the
    conversions after it (alpha on white, 16-bit to 8-bit) copy a small picture, not a huge one.
    """
    fx, fy = max(1, int(im.width / size[0] / 3.0)), max(1, int(im.height / size[1] / 3.0))
    if (fx, fy) == (1, 1):
        return im
    if im.mode == "P":  # palette indices cannot be averaged; "1" reduces as grey
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode not in ("L", "LA", "RGB", "RGBA", "I", "F", "CMYK", "YCbCr"):
        return im  # modes reduce() does not take: resized after conversion, as before
    return im.reduce((fx, fy))


def decode(path: str | IO[bytes], size: tuple[int, int], channels: int,
           max_pixels: int | None = TARGET_LIMIT) -> np.ndarray:
    """File -> uint8 (size[0], size[1], channels): EXIF-rotated, alpha on white, resized once.

    JPEGs are decoded with ``draft`` at the smallest DCT scale (1/2, 1/4, 1/8) that is still
    at least the target size, which is most of the speed-up on large photos; other pictures
    far larger than the target are box-reduced right after decoding, and the final resize is
    Pillow's antialiased bilinear with ``reducing_gap``.

    ``max_pixels`` bounds the pixels decoded (for a JPEG, after draft reduction): a number,
    None for no limit, ``PILLOW_LIMIT`` for Pillow's own, or ``TARGET_LIMIT`` (the default) for
    :func:`decode_pixel_cap` of ``size``.  Over it, or unusable in any way: :class:`BadImage`.
    """
    h, w = size
    cap = _limit(max_pixels, size)
    im = open_image(path, None)  # checked against cap below, once a JPEG's draft size is known
    try:
        if im.format in _DRAFTABLE:
            want = (h, w) if _rotated(im) else (w, h)
            im.draft("L" if channels == 1 else "RGB", want)
        _check_pixels(im, cap)  # the size that will be decoded: after draft for a JPEG
        im.load()
        ImageOps.exif_transpose(im, in_place=True)  # in place: no full-size copy when nothing turns
        im = _shrink(im, (w, h))
        im = _normalise_mode(im, channels)
        if im.size != (w, h):
            im = im.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=3.0)
        arr = np.asarray(im, dtype=np.uint8)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(f"decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated/corrupt data as OSError("image file is truncated ..."), broken
        # PNG chunks as SyntaxError/ValueError.
        raise BadImage(f"truncated or corrupt image data: {exc}") from None
    except MemoryError:
        raise BadImage(f"too large to decode in the memory left ({im.width}x{im.height} pixels)") from None
    except Exception as exc:  # noqa: BLE001 - hostile bytes can trip any decoder step: a property of the file
        raise BadImage(f"truncated or corrupt image data: {type(exc).__name__}: {exc}") from None
    finally:
        im.close()
    return arr[..., None] if arr.ndim == 2 else arr


def decode_bytes(data: bytes, size: tuple[int, int], channels: int,
                 max_pixels: int | None = TARGET_LIMIT) -> np.ndarray:
    """In-memory bytes (an HTTP upload) -> uint8 (H, W, C), exactly as :func:`decode` does a file."""
    return decode(io.BytesIO(data), size, channels, max_pixels)


def default_workers() -> int:
    """Threads for decoding: every core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> Iterator[R]:
    """``map(fn, items)`` on a thread pool, in order, with a bounded number of items in flight.

    Bounded so that a slow file cannot make finished results pile up in memory, and so that a
    consumer that stops early (strict mode hit a bad file) cancels the rest instead of waiting
    for every file to decode.  Pillow's DecompressionBombWarning is silenced: ``open_image`` turns
    those images into a BadImage, so printing the warning as well would only be noise.
    """
    workers = workers or default_workers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if workers == 1:
            yield from map(fn, items)
            return
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cnnkit-decode")
        pending: deque[Future] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 4 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
