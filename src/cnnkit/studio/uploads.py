"""An uploaded zip of images, unpacked safely under ``root/uploads/<name>/``.

Member names are checked (no absolute paths, no '..', no symbolic links) and the unpacked
bytes are counted as they are written - not taken from the zip's own headers, which can lie -
so a zip bomb stops at the cap instead of filling the disk.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from cnnkit.studio.paths import PathError

UPLOADS = "uploads"
_CHUNK = 1 << 20


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


def extract_zip(source: IO[bytes], root: Path, filename: str, limits: ZipLimits = ZipLimits()) -> Path:
    """Unpack the zip ``source`` into a new folder ``root/uploads/<name>``; returns that folder."""
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError):
        raise PathError(f"{filename}: not a zip archive") from None
    with zf:
        members = zf.infolist()
        if len(members) > limits.max_members:
            raise PathError(f"{filename}: {len(members)} entries; the limit is {limits.max_members}", 413)
        plan = []
        for info in members:
            if stat.S_ISLNK(info.external_attr >> 16):
                raise PathError(f"zip member {info.filename!r} is a symbolic link; refusing the archive")
            rel = _member_path(info.filename)
            if rel is not None:
                plan.append((info, rel))
        if not plan:
            raise PathError(f"{filename}: the archive holds no files")
        target = _fresh_folder(root / UPLOADS, safe_name(filename))
        partial = target.with_name(f".{target.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            _write_members(zf, plan, partial, filename, limits)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        partial.rename(target)
    return target


def _write_members(zf: zipfile.ZipFile, plan, folder: Path, filename: str, limits: ZipLimits) -> None:
    total = 0
    for info, rel in plan:
        dest = folder.joinpath(*rel.parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        try:
            with zf.open(info) as src, open(dest, "wb") as out:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    total += len(chunk)
                    if written > limits.max_member_bytes or total > limits.max_total_bytes:
                        cap = limits.max_member_bytes if written > limits.max_member_bytes else limits.max_total_bytes
                        raise PathError(f"{filename}: unpacks to more than {cap} bytes; refusing the archive", 413)
                    out.write(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, OSError, EOFError) as exc:
            # RuntimeError: encrypted members; BadZipFile: CRC mismatch
            raise PathError(f"{filename}: cannot unpack {info.filename!r} ({exc})") from None
