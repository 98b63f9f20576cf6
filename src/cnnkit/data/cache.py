"""Decode once: a folder of image files becomes one uint8 ``.npy`` on disk, memory-mapped later.

The first load decodes every file (threads, see :mod:`cnnkit.data.decode`) straight into an
``np.lib.format.open_memmap`` file, already resized and converted to the wanted channels.  Later
loads - later epochs, later runs - only list the folder, compare each file's (path, size,
mtime_ns) with the signature stored next to the array, and map the array: no image is opened.

Layout under the cache root (``DataConfig.cache_dir``, else ``$CNNKIT_CACHE_DIR``, else
``~/.cache/cnnkit``)::

    decoded/<entry>.npy    (N, H, W, C) uint8, rows grouped by split (train, val, test)
    decoded/<entry>.json   signature, size, channels, classes, the files left out and why

``<entry>`` names the dataset folder and the *requested* size/channels, so another size is
another entry while a changed file rebuilds (and replaces) the same entry.  Both files are
written atomically and the JSON last, so an interrupted build is never mistaken for a cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnkit.data.decode import TARGET_LIMIT, BadImage, ImageInfo, decode, parallel_map, probe
from cnnkit.data.folders import FileEntry, FileListing
from cnnkit.errors import DataError, NotWritableError
from cnnkit.io import (
    atomic_path,
    atomic_write_text,
    cache_root,
    check_writable_folder,
    ensure_free_space,
    remove_orphaned_temps,
    reserve,
)
from cnnkit.phases import phase

log = logging.getLogger("cnnkit.data")

CACHE_VERSION = 1
MIXED_SIZE_DEFAULT = (150, 150)  # the Keras cats-vs-dogs tutorials' size


@dataclass
class Decoded:
    """The cached array plus what each row is."""

    images: np.ndarray  # (N, H, W, C) uint8 memmap (copy-on-write: writable, never written back)
    files: list[FileEntry]  # row i came from files[i]
    classes: tuple[str, ...]
    skipped: list[tuple[str, str]]
    built: bool  # True when this call decoded the files (a cache miss)

    def split_range(self, split: str) -> tuple[int, int] | None:
        rows = [i for i, f in enumerate(self.files) if f.split == split]
        return (rows[0], rows[-1] + 1) if rows else None


def _signature(listing: FileListing) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(list(listing.classes)).encode())
    for f in listing.files:  # a path's own bytes: names that are not UTF-8 must not crash this
        h.update(os.fsencode(f.path) + f"\t{f.split}\t{f.label}\t{f.size}\t{f.mtime_ns}\n".encode())
    return h.hexdigest()


def _entry_name(listing: FileListing, size: tuple[int, int] | None, channels: int | None) -> str:
    ident = json.dumps([CACHE_VERSION, os.path.abspath(listing.root), list(size) if size else None, channels])
    stem = Path(listing.root).name or "data"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:40]
    return f"{safe}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"


def array_bytes(shape: tuple[int, ...]) -> int:
    """Bytes a uint8 ``.npy`` of ``shape`` takes on disk (its header is at most a few KiB)."""
    return int(np.prod(shape, dtype=np.int64)) + 4096


CACHE_HINT = ", or set cache_dir / CNNKIT_CACHE_DIR to a folder on a disk with room"


def new_array(path: Path, shape: tuple[int, ...], name: Path | None = None) -> np.ndarray:
    """A new uint8 ``.npy`` memmap of ``shape`` at ``path``, its disk space allocated before use.

    Checked against the free space first, then reserved with ``posix_fallocate``, so a disk that
    fills up is a :class:`DiskFullError` naming the file (``name``, else ``path``) and the size,
    not a SIGBUS mid-decode.  Nothing is left at ``path`` when it raises.
    """
    name = name or path
    ensure_free_space(name, array_bytes(shape), CACHE_HINT)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    try:
        with open(path, "rb+") as fh:
            reserve(fh.fileno(), os.fstat(fh.fileno()).st_size, name, CACHE_HINT)
    except BaseException:
        del out
        path.unlink(missing_ok=True)
        raise
    return out


def _report_bad(path: str, reason: str, strict: bool, skipped: list[tuple[str, str]]) -> None:
    if strict:
        raise DataError(f"{path}: {reason} (strict mode stops at the first bad file; "
                        f"without --strict it would be skipped and reported)")
    skipped.append((path, reason))


def resolve_shape(infos: list[ImageInfo], size: tuple[int, int] | None,
                  channels: int | None) -> tuple[tuple[int, int], int]:
    """Fill in what the config left open: the common size (else 150x150), grey (1) or colour (3)."""
    if size is None:
        sizes = Counter((i.height, i.width) for i in infos)
        if len(sizes) == 1:
            size = next(iter(sizes))
        else:
            size = MIXED_SIZE_DEFAULT
            log.warning("images have %d different sizes (e.g. %s); resizing all to %dx%d - set "
                        "image_size to choose another size", len(sizes),
                        ", ".join(f"{h}x{w}" for (h, w), _ in sizes.most_common(3)), *size)
    if channels is None:
        channels = 1 if infos and all(i.grey for i in infos) else 3
    return (int(size[0]), int(size[1])), int(channels)


def _probe_all(files: list[FileEntry], strict: bool, skipped: list[tuple[str, str]],
               max_pixels: int | None, workers: int | None) -> tuple[list[FileEntry], list[ImageInfo]]:
    def one(f: FileEntry) -> ImageInfo | str:
        try:
            return probe(f.path, max_pixels)
        except BadImage as exc:
            return str(exc)

    good, infos = [], []
    with phase("reading image sizes", total=len(files), unit="images") as step:
        for f, res in zip(files, parallel_map(one, files, workers)):
            step()
            if isinstance(res, str):
                _report_bad(f.path, res, strict, skipped)
            else:
                good.append(f)
                infos.append(res)
    return good, infos


def _decode_into(path: Path, files: list[FileEntry], size: tuple[int, int], channels: int,
                 strict: bool, skipped: list[tuple[str, str]], max_pixels: int | None,
                 workers: int | None, name: Path | None = None) -> list[FileEntry]:
    """Decode ``files`` into a new .npy at ``path`` (shown as ``name``); returns the files that made it, in row
    order."""
    shape = (len(files), size[0], size[1], channels)
    out = new_array(path, shape, name)

    def one(i: int) -> str | None:
        try:
            out[i] = decode(files[i].path, size, channels, max_pixels)  # noqa: F821 - runs before the `del out` below
            return None
        except BadImage as exc:
            return str(exc)

    bad = []
    with phase("decoding", total=len(files), unit="images") as step:
        for i, reason in enumerate(parallel_map(one, range(len(files)), workers)):
            step()
            if reason is not None:
                _report_bad(files[i].path, reason, strict, skipped)
                bad.append(i)
    if not bad:
        out.flush()
        del out
        return files
    # Rare path: drop the failed rows by copying the good ones into a right-sized file.
    keep = np.setdiff1d(np.arange(len(files)), np.asarray(bad))
    if not len(keep):
        del out
        raise DataError(f"none of the {len(files)} image files could be decoded "
                        f"(first: {files[bad[0]].path}: {skipped[-len(bad)][1]})")
    compact_path = path.with_name(path.name + ".compact")
    try:
        compact = new_array(compact_path, (len(keep),) + shape[1:], name)
        for start in range(0, len(keep), 1024):
            idx = keep[start:start + 1024]
            compact[start:start + len(idx)] = out[idx]
        compact.flush()
        del compact, out
        os.replace(compact_path, path)
    finally:
        if compact_path.exists():
            compact_path.unlink()
    return [files[i] for i in keep]


def _load_entry(npy: Path, meta_path: Path, listing: FileListing, signature: str) -> Decoded | None:
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != CACHE_VERSION or meta.get("signature") != signature:
        return None
    skipped = [tuple(s) for s in meta.get("skipped", [])]
    bad = {p for p, _ in skipped}
    files = [f for f in listing.files if f.path not in bad]
    try:
        images = np.load(npy, mmap_mode="c")
    except (OSError, ValueError):
        return None
    expected = (len(files), meta["size"][0], meta["size"][1], meta["channels"])
    if images.shape != expected or images.dtype != np.uint8:
        return None
    return Decoded(images, files, listing.classes, list(listing.problems) + skipped, built=False)


def decoded(listing: FileListing, size: tuple[int, int] | None = None, channels: int | None = None,
            cache_dir: str | None = None, strict: bool = False, workers: int | None = None,
            max_pixels: int | None = TARGET_LIMIT) -> Decoded:
    """The listing's images as one uint8 array: read from the cache, or decoded once and cached.

    ``size`` (H, W) / ``channels`` None mean "from the data" (see :func:`resolve_shape`).
    Bad files are skipped and returned in ``Decoded.skipped`` or, with ``strict``, raise
    :class:`DataError` naming the file.
    """
    folder = cache_root(cache_dir) / "decoded"
    name = _entry_name(listing, size, channels)
    npy, meta_path = folder / f"{name}.npy", folder / f"{name}.json"
    signature = _signature(listing)
    if npy.exists() and meta_path.exists():
        hit = _load_entry(npy, meta_path, listing, signature)
        if hit is not None:
            cached_bad = hit.skipped[len(listing.problems):]  # files an earlier lenient load skipped
            if strict and cached_bad:
                path, reason = cached_bad[0]
                _report_bad(path, reason, strict, [])
            return hit
    try:
        check_writable_folder(folder, " (the image cache: give --cache-dir, or set CNNKIT_CACHE_DIR to, a writable "
                                      "folder)")
        folder.mkdir(parents=True, exist_ok=True)
    except NotWritableError as exc:
        raise DataError(str(exc)) from None
    except OSError as exc:
        raise DataError(f"cannot create the image cache folder {folder}: {exc.strerror or exc} "
                        f"(set cache_dir / CNNKIT_CACHE_DIR to a writable folder)") from None

    for orphan in remove_orphaned_temps(folder):  # a build killed mid-way leaves up to the whole set's size
        log.info("removed %s, left by an interrupted cache build", orphan)
    skipped: list[tuple[str, str]] = []
    files = list(listing.files)
    if size is None or channels is None:
        files, infos = _probe_all(files, strict, skipped, max_pixels, workers)
        size, channels = resolve_shape(infos, size, channels)
    if not files:
        raise DataError(f"{listing.root}: none of the image files could be read "
                        f"(first problem: {skipped[0][0]}: {skipped[0][1]})" if skipped
                        else f"{listing.root}: no image files")
    log.info("decoding %d images from %s to %dx%dx%d (once; later loads read the cache %s)",
             len(files), listing.root, size[0], size[1], channels, npy)
    with atomic_path(npy) as tmp:
        files = _decode_into(tmp, files, size, channels, strict, skipped, max_pixels, workers, npy)
    meta = {"version": CACHE_VERSION, "signature": signature, "root": listing.root, "size": list(size),
            "channels": channels, "classes": list(listing.classes), "count": len(files),
            "skipped": [list(s) for s in skipped]}
    atomic_write_text(meta_path, json.dumps(meta, indent=1) + "\n")
    images = np.load(npy, mmap_mode="c")
    return Decoded(images, files, listing.classes, list(listing.problems) + skipped, built=True)
