"""Unpacking a zip or tar archive safely: the one function for every archive cnnkit extracts (a data
archive given to the CLI, an upload to the studio).

Member names are checked (no absolute paths, no '..', no links) and the unpacked bytes are counted
as they are written - not taken from the archive's own headers, which can lie - so a bomb stops
at the cap instead of filling the disk.  The caps: entries, bytes per member, bytes in all, and
bytes per byte of archive (image archives unpack to about their own size; a zip bomb to a
thousand times it), the last with a floor so that small archives are never refused for it.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from cnnkit.errors import DataError, human_bytes

_CHUNK = 1 << 20


class UnpackError(DataError):
    """An archive that cannot or may not be unpacked; ``too_large`` when a cap stopped it (HTTP 413)."""

    def __init__(self, message: str, too_large: bool = False):
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True)
class UnpackLimits:
    """Caps of one unpack (see the module docstring)."""

    max_members: int = 50_000
    max_total_bytes: int = 2 * 1024 ** 3
    max_member_bytes: int = 256 * 1024 ** 2
    max_ratio: float = 200.0  # unpacked bytes per archive byte ...
    min_allowed_bytes: int = 64 * 1024 ** 2  # ... once past this many

    def allowed_total(self, archive_bytes: int) -> int:
        return min(self.max_total_bytes, max(self.min_allowed_bytes, int(self.max_ratio * archive_bytes)))


# the studio's uploads: its caps as they were
UPLOAD_LIMITS = UnpackLimits()
# a data archive given to the CLI (CIFAR-10 as JPEGs is 60,000 files): more entries and bytes, the same ratio cap
DATA_LIMITS = UnpackLimits(max_members=2_000_000, max_total_bytes=256 * 1024 ** 3)


def member_path(name: str, archive: str) -> PurePosixPath | None:
    """The member's path inside the target, or None for entries that are skipped (folders, hidden files)."""
    text = name.replace("\\", "/")
    pure = PurePosixPath(text)
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise UnpackError(f"{archive}: unsafe path {name!r} (it would unpack outside its folder); refusing the archive")
    if text.endswith("/") or not pure.parts:
        return None
    if any(p.startswith(".") or p == "__MACOSX" for p in pure.parts):
        return None
    return pure


def unpack(source: str | Path | IO[bytes], dest: str | Path, name: str | None = None,
           limits: UnpackLimits = UPLOAD_LIMITS) -> int:
    """Unpack the zip or tar ``source`` (a path or a binary file object) into the new folder ``dest``.

    Returns the bytes written.  ``name`` names the archive in errors (default: its path).  Any
    failure (:class:`UnpackError`, a :class:`DataError` subclass, for a cap, a bad member or a
    damaged archive) removes ``dest`` again, so nothing of a refused archive stays on disk.
    """
    name = name or str(source)
    dest = Path(dest)
    size = _size(source)
    allowed = limits.allowed_total(size)
    cap = (f"{human_bytes(allowed)}, the limit" if allowed >= limits.max_total_bytes else
           f"{human_bytes(allowed)}: {limits.max_ratio:g} times the archive's {human_bytes(size)}, at least "
           f"{human_bytes(limits.min_allowed_bytes)}")
    dest.mkdir(parents=True)
    try:
        with _open(source, name) as members:
            total = _write(members, dest, name, limits, allowed, cap)
            members.verify_tail()
            return total
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _size(source: str | Path | IO[bytes]) -> int:
    if isinstance(source, (str, Path)):
        return os.stat(source).st_size
    here = source.tell()
    end = source.seek(0, os.SEEK_END)
    source.seek(here)
    return end


class _Members:
    """(member path, readable stream opener, declared name) of a zip or a tar, links refused."""

    def __init__(self, kind: str, archive: zipfile.ZipFile | tarfile.TarFile, name: str):
        self.kind, self.archive, self.name = kind, archive, name

    def count(self) -> int:
        return len(self.archive.infolist()) if self.kind == "zip" else len(self.archive.getmembers())

    def __iter__(self) -> Iterator[tuple[PurePosixPath, object, str]]:
        if self.kind == "zip":
            for info in self.archive.infolist():
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise UnpackError(f"{self.name}: member {info.filename!r} is a symbolic link; refusing the archive")
                rel = member_path(info.filename, self.name)
                if rel is not None:
                    yield rel, info, info.filename
            return
        for info in self.archive.getmembers():
            if info.issym() or info.islnk():
                raise UnpackError(f"{self.name}: member {info.name!r} is a link; refusing the archive")
            if not (info.isfile() or info.isdir()):
                raise UnpackError(f"{self.name}: member {info.name!r} is not a file or folder; refusing the archive")
            rel = member_path(info.name + ("/" if info.isdir() else ""), self.name)
            if rel is not None:
                yield rel, info, info.name

    def verify_tail(self) -> None:
        """A compressed tar read to its end, so the checksum in its trailer is checked."""
        if self.kind == "tar":
            try:
                verify_compressed_tail(self.archive)
            except (OSError, EOFError, zlib.error) as exc:
                raise UnpackError(f"{self.name}: damaged archive ({exc})") from None

    def open(self, info: object) -> IO[bytes]:
        if self.kind == "zip":
            return self.archive.open(info)
        stream = self.archive.extractfile(info)
        if stream is None:
            raise UnpackError(f"{self.name}: member {info.name!r} cannot be read")
        return stream


class _open:
    """Context manager: the archive's :class:`_Members` (zip first, then any tar compression)."""

    def __init__(self, source: str | Path | IO[bytes], name: str):
        self.source, self.name, self.archive = source, name, None

    def __enter__(self) -> _Members:
        if zipfile.is_zipfile(self.source):
            self.archive = zipfile.ZipFile(self.source)
            return _Members("zip", self.archive, self.name)
        if not isinstance(self.source, (str, Path)):
            self.source.seek(0)
        try:
            self.archive = (tarfile.open(self.source) if isinstance(self.source, (str, Path))
                            else tarfile.open(fileobj=self.source))
        except (tarfile.TarError, OSError, EOFError):
            raise UnpackError(f"{self.name}: not a zip or tar archive") from None
        return _Members("tar", self.archive, self.name)

    def __exit__(self, *exc: object) -> None:
        if self.archive is not None:
            self.archive.close()


def _write(members: _Members, dest: Path, name: str, limits: UnpackLimits, allowed: int, cap: str) -> int:
    n = members.count()
    if n > limits.max_members:
        raise UnpackError(f"{name}: {n} entries; the limit is {limits.max_members}", too_large=True)
    total = 0
    found = False
    for rel, info, member in members:
        target = dest.joinpath(*rel.parts)
        if isinstance(info, tarfile.TarInfo) and info.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        found = True
        written = 0
        try:
            with members.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    total += len(chunk)
                    _check(name, written, total, limits, allowed, cap)
                    out.write(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, RuntimeError, EOFError) as exc:
            # RuntimeError: an encrypted member; BadZipFile: a CRC mismatch
            raise UnpackError(f"{name}: cannot unpack {member!r} ({exc})") from None
    if not found:
        raise UnpackError(f"{name}: the archive holds no files")
    return total


def _check(name: str, written: int, total: int, limits: UnpackLimits, allowed: int, cap: str) -> None:
    if written > limits.max_member_bytes:
        raise UnpackError(f"{name}: a member unpacks to more than {limits.max_member_bytes} bytes "
                          f"({human_bytes(limits.max_member_bytes)}); refusing the archive", too_large=True)
    if total > allowed:
        raise UnpackError(f"{name}: unpacks to more than {cap}; refusing the archive", too_large=True)


def verify_compressed_tail(tf: tarfile.TarFile) -> None:
    """Read a .tar.gz/.bz2/.xz to its end so the checksum in its trailer is checked.

    tarfile stops at the end-of-archive blocks, before gzip's CRC32, so a bit flipped inside
    the compressed data would otherwise extract "successfully" into damaged files.
    Raises gzip.BadGzipFile / OSError / EOFError on a mismatch.
    """
    stream = tf.fileobj
    if stream is not None and hasattr(stream, "read") and type(stream).__module__ in ("gzip", "bz2", "lzma"):
        while stream.read(_CHUNK):
            pass
