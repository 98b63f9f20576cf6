"""An uploaded zip of images, unpacked safely under ``root/uploads/<name>/``.

The unpacking is :func:`cnnkit.data.unpack.unpack`, the one every archive cnnkit extracts goes
through: member names are checked (no absolute paths, no '..', no links) and the unpacked bytes
are counted as they are written - not taken from the zip's own headers, which can lie - so a zip
bomb stops at the cap instead of filling the disk.  Here, before it, no name may be both a file
and a folder, and all uploads together are held to a quota (``room``: what is left of it), so
posting the same small archive again and again cannot fill the disk either.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from cnnkit.data.unpack import UPLOAD_LIMITS, UnpackError, UnpackLimits, member_path, unpack
from cnnkit.studio.paths import PathError

UPLOADS = "uploads"
DEFAULT_QUOTA = 10 * 1024 ** 3  # bytes unpacked under ROOT/uploads, all uploads together
ZipLimits = UnpackLimits  # the caps of one upload: entries, bytes per member, in all, per byte of archive


def size_words(n: float) -> str:
    """Bytes for people: '512 MiB', '10 GiB', '900 KiB'."""
    for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def used_bytes(root: Path) -> int:
    """Bytes of the files under ``root/uploads`` (links not followed: a link counts as itself)."""
    total = 0
    for folder, _dirs, files in os.walk(root / UPLOADS):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass  # removed while we counted
    return total


class QuotaError(PathError):
    """The uploads folder would pass its quota (HTTP 507 Insufficient Storage)."""

    def __init__(self, filename: str, quota: int, used: int):
        left = size_words(max(0, quota - used))
        super().__init__(f"{filename}: uploads are full: it unpacks to more than the {left} left of the "
                         f"{size_words(quota)} upload quota (uploads/ already holds {size_words(used)}); delete "
                         "folders under uploads/, or start the studio with a larger --upload-quota", 507)


def safe_name(text: str, fallback: str = "upload") -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(text).stem).strip("-.")
    return stem[:60] or fallback


def _fresh_folder(parent: Path, name: str) -> Path:
    target, n = parent / name, 2
    while target.exists():
        target, n = parent / f"{name}-{n}", n + 1
    return target


def _check_tree(plan: list[tuple[zipfile.ZipInfo, PurePosixPath]]) -> None:
    """PathError when one member's path is another's folder (``a/b`` then ``a/b/c.png``) or repeats."""
    files = {rel.as_posix().lower(): info.filename for info, rel in plan}  # lower: case-insensitive disks
    if len(files) < len(plan):
        raise PathError("the archive names one file twice (or twice in different letter case); refusing it")
    for info, rel in plan:
        for parent in rel.parents:
            if parent.as_posix().lower() in files:
                raise PathError(f"zip member {files[parent.as_posix().lower()]!r} is a file and also the folder of "
                                f"{info.filename!r}; refusing the archive")


def extract_zip(source: IO[bytes], root: Path, filename: str, limits: ZipLimits = UPLOAD_LIMITS,
                quota: int | None = None) -> Path:
    """Unpack the zip ``source`` into a new folder ``root/uploads/<name>``; returns that folder.

    ``quota``: bytes all uploads together may hold (:class:`QuotaError` past it).  The caller
    runs one extraction at a time, so what is counted as used stays true while this one writes.
    A refused archive is a PathError (413 when a cap stopped it) and leaves nothing behind.
    """
    try:
        with zipfile.ZipFile(source) as zf:
            members = zf.infolist()
            if len(members) > limits.max_members:
                raise PathError(f"{filename}: {len(members)} entries; the limit is {limits.max_members:,}", 413)
            plan = [(info, rel) for info in members if (rel := member_path(info.filename, filename)) is not None]
    except (zipfile.BadZipFile, OSError):
        raise PathError(f"{filename}: not a zip archive") from None
    except UnpackError as exc:
        raise PathError(str(exc), 413 if exc.too_large else 400) from None
    if not plan:
        raise PathError(f"{filename}: the archive holds no files")
    _check_tree(plan)
    used = used_bytes(root) if quota is not None else 0
    room = None if quota is None else quota - used
    # what the headers declare is checked first (an honest archive past the quota writes nothing); the
    # bytes actually written are held to the room too, in case the headers lie
    if room is not None and (room <= 0 or sum(info.file_size for info, _ in plan) > room):
        raise QuotaError(filename, quota, used)
    capped = limits if room is None else dataclasses.replace(limits, max_total_bytes=min(limits.max_total_bytes, room))
    target = _fresh_folder(root / UPLOADS, safe_name(filename))
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        unpack(source, partial, name=filename, limits=capped)
    except UnpackError as exc:
        size = source.seek(0, os.SEEK_END)
        if exc.too_large and room is not None and room < limits.allowed_total(size):
            raise QuotaError(filename, quota, used) from None
        raise PathError(str(exc), 413 if exc.too_large else 400) from None
    except OSError as exc:  # unpack has removed what it wrote
        raise PathError(f"{filename}: cannot unpack ({exc.strerror or exc})") from None
    partial.rename(target)
    return target
