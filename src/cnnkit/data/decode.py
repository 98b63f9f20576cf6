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

GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_ORIENTATION_TAG = 0x0112  # EXIF orientation; values 5..8 mean a 90-degree turn (width <-> height)

PILLOW_LIMIT = -1  # max_pixels default: Pillow's own Image.MAX_IMAGE_PIXELS at call time
T = TypeVar("T")
R = TypeVar("R")


class BadImage(Exception):
    """A file that cannot be used as an image; ``str(exc)`` is the reason shown to the user."""


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


def open_image(path: str | IO[bytes], max_pixels: int | None = PILLOW_LIMIT) -> Image.Image:
    """Open lazily (header only); every failure, and images over ``max_pixels``, -> BadImage."""
    if max_pixels == PILLOW_LIMIT:
        max_pixels = Image.MAX_IMAGE_PIXELS
    try:
        if _byte_size(path) == 0:
            raise BadImage("empty file (0 bytes)")
        im = Image.open(path)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage(f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise BadImage("not an image (Pillow cannot identify the format)") from None
    except OSError as exc:
        if exc.errno is not None:  # the file system said no (permissions, vanished file, ...)
            raise BadImage(f"cannot read file: {exc.strerror or exc}") from None
        raise BadImage(f"truncated or corrupt image header: {exc}") from None
    if max_pixels is not None and im.width * im.height > max_pixels:
        im.close()
        raise BadImage(f"decompression bomb: {im.width}x{im.height} pixels exceeds the limit of {max_pixels}")
    return im


def _rotated(im: Image.Image) -> bool:
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


def decode(path: str | IO[bytes], size: tuple[int, int], channels: int,
           max_pixels: int | None = PILLOW_LIMIT) -> np.ndarray:
    """File -> uint8 (size[0], size[1], channels): EXIF-rotated, alpha on white, resized once.

    JPEGs are decoded with ``draft`` at the smallest DCT scale (1/2, 1/4, 1/8) that is still
    at least the target size, which is most of the speed-up on large photos; the final
    resize is Pillow's antialiased bilinear with ``reducing_gap`` (fast box pre-reduction).
    """
    h, w = size
    im = open_image(path, max_pixels)
    try:
        if im.format == "JPEG":
            want = (h, w) if _rotated(im) else (w, h)
            im.draft("L" if channels == 1 else "RGB", want)
        im.load()
        im = ImageOps.exif_transpose(im)
        im = _normalise_mode(im, channels)
        if im.size != (w, h):
            im = im.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=3.0)
        arr = np.asarray(im, dtype=np.uint8)
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage(f"decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated/corrupt data as OSError("image file is truncated ..."), broken
        # PNG chunks as SyntaxError/ValueError.
        raise BadImage(f"truncated or corrupt image data: {exc}") from None
    finally:
        im.close()
    return arr[..., None] if arr.ndim == 2 else arr


def decode_bytes(data: bytes, size: tuple[int, int], channels: int,
                 max_pixels: int | None = PILLOW_LIMIT) -> np.ndarray:
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
