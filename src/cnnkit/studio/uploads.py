"""An uploaded zip of images, unpacked safely under ``root/uploads/<name>/``.

Member names are checked (no absolute paths, no '..', no symbolic links, no name that is both
a file and a folder) and the unpacked bytes are counted as they are written - not taken from
the zip's own headers, which can lie - so a zip bomb stops at the cap instead of filling the
disk.  All uploads together are held to a quota (``room``: what is left of it), so posting the
same small archive again and again cannot fill the disk either.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from cnnkit.studio.paths import PathError

UPLOADS = "uploads"
DEFAULT_QUOTA = 10 * 1024 ** 3  # bytes unpacked under ROOT/uploads, all uploads together
_CHUNK = 1 << 20


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


@dataclass(frozen=True)
class ZipLimits:
    max_members: int = 50_000
    max_total_bytes: int = 2 * 1024 ** 3  # unpacked
    max_member_bytes: int = 256 * 1024 ** 2


def safe_name(text: str, fallback: str = "upload") -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(text).stem).strip("-.")
    return stem[:60] or fallback


def _member_path(name: str) -> PurePosixPath | None:
    """The member's path inside the target, or None for entries that are skipped (folders, hidden)."""
    text = name.replace("\\", "/")
    pure = PurePosixPath(text)
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise PathError(f"zip member {name!r} would unpack outside its folder; refusing the archive")
    if text.endswith("/") or not pure.parts:
        return None
    if any(p.startswith(".") or p == "__MACOSX" for p in pure.parts):
        return None
    return pure


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


def extract_zip(source: IO[bytes], root: Path, filename: str, limits: ZipLimits = ZipLimits(),
                quota: int | None = None) -> Path:
    """Unpack the zip ``source`` into a new folder ``root/uploads/<name>``; returns that folder.

    ``quota``: bytes all uploads together may hold (:class:`QuotaError` past it).  The caller
    runs one extraction at a time, so what is counted as used stays true while this one writes.
    """
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError):
        raise PathError(f"{filename}: not a zip archive") from None
    with zf:
        members = zf.infolist()
        if len(members) > limits.max_members:
            raise PathError(f"{filename}: {len(members)} entries; the limit is {limits.max_members:,}", 413)
        plan = []
        for info in members:
            if stat.S_ISLNK(info.external_attr >> 16):
                raise PathError(f"zip member {info.filename!r} is a symbolic link; refusing the archive")
            rel = _member_path(info.filename)
            if rel is not None:
                plan.append((info, rel))
        if not plan:
            raise PathError(f"{filename}: the archive holds no files")
        _check_tree(plan)
        used = used_bytes(root) if quota is not None else 0
        if quota is not None and used >= quota:
            raise QuotaError(filename, quota, used)
        room = None if quota is None else quota - used
        target = _fresh_folder(root / UPLOADS, safe_name(filename))
        partial = target.with_name(f".{target.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            _write_members(zf, plan, partial, filename, limits, room, (quota, used))
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        partial.rename(target)
    return target


def _write_members(zf: zipfile.ZipFile, plan, folder: Path, filename: str, limits: ZipLimits,
                   room: int | None, quota: tuple[int | None, int]) -> None:
    total = 0
    for info, rel in plan:
        dest = folder.joinpath(*rel.parts)
        written = 0
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    total += len(chunk)
                    if room is not None and total > room:
                        raise QuotaError(filename, quota[0], quota[1])
                    if written > limits.max_member_bytes:
                        raise PathError(f"{filename}: {info.filename!r} unpacks to more than "
                                        f"{size_words(limits.max_member_bytes)}, the limit for one file; "
                                        "refusing the archive", 413)
                    if total > limits.max_total_bytes:
                        raise PathError(f"{filename}: unpacks to more than {size_words(limits.max_total_bytes)}, "
                                        "the limit for one archive; refusing it", 413)
                    out.write(chunk)
        except PathError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, OSError, EOFError) as exc:
            # RuntimeError: encrypted members; BadZipFile: CRC mismatch
            raise PathError(f"{filename}: cannot unpack {info.filename!r} ({exc})") from None
