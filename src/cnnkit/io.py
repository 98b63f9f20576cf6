"""Atomic file writes: a crash mid-write never leaves a half-written checkpoint or cache.

A full disk (or quota) is one :class:`~cnnkit.errors.DiskFullError` naming the file and the
space it needs, never a library traceback, and leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

from cnnkit.errors import DiskFullError, NotWritableError

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# What libraries that wrap the OS error in their own exception (torch.save's RuntimeError,
# safetensors' SafetensorError) keep of it in their message.
_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded", "os error 28", "os error 122",
                   "storagefull", "quotaexceeded")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$CNNKIT_CACHE_DIR``, else ``~/.cache/cnnkit``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("CNNKIT_CACHE_DIR") or "~/.cache/cnnkit").expanduser()


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc``, or an exception it was raised from, says the disk or quota is full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return True
        if any(t in str(exc).lower() for t in _DISK_FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(path: str | Path) -> int | None:
    """Bytes free to this user on the disk holding ``path`` (or its nearest existing parent)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def ensure_free_space(path: str | Path, needed: int, hint: str = "") -> None:
    """Raise :class:`DiskFullError` before writing ``needed`` bytes to ``path`` if the disk has less free."""
    free = free_bytes(path)
    if free is not None and needed > free:
        raise DiskFullError(path, needed, free, hint)


def reserve(fd: int, size: int, path: str | Path, hint: str = "") -> None:
    """Allocate ``size`` bytes of the open file ``fd`` on disk now, not page by page later.

    A memory-mapped file written past the space its disk has dies with SIGBUS and no message;
    with the blocks allocated up front, a full disk is a :class:`DiskFullError` here instead.
    File systems without ``posix_fallocate`` keep the check :func:`ensure_free_space` made.
    """
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise DiskFullError(path, size, free_bytes(path), hint) from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, errno.ENODEV):
            raise

def check_writable_folder(folder: str | Path, hint: str = "") -> None:
    """:class:`NotWritableError` (one line naming ``folder``) unless files can be created in it, or,
    where it does not exist yet, in the folder it would be made in.  Checked by creating (and
    removing) a file there: permissions, read-only mounts and pseudo file systems (``/proc``) all
    answer that truthfully, for root too.  Call it before long work whose results go there."""
    _check_folder(Path(folder), Path(folder), hint)


def _check_folder(folder: Path, shown: Path, hint: str) -> None:
    """:func:`check_writable_folder` naming ``shown`` (the file or folder asked for) in its error."""
    if folder.exists() and not folder.is_dir():
        raise NotWritableError(f"{shown}: {'' if folder == shown else f'{folder} '}exists and is not a folder{hint}")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotWritableError(f"{shown}: {existing} is a file, not a folder{hint}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".cnnkit-write-check.", dir=existing)
    except OSError as exc:
        where = "there" if existing == shown else f"in {existing}"
        raise NotWritableError(f"{shown}: cannot write {where} ({exc.strerror or exc}){hint}") from None
    os.close(fd)
    os.unlink(probe)


def check_writable_file(path: str | Path, hint: str = "") -> None:
    """:class:`NotWritableError` unless ``path`` can be written as cnnkit writes files: a new file
    beside it renamed onto it (so a folder, ``/dev/null`` or another special file is refused)."""
    path = Path(path)
    if path.is_dir():
        raise NotWritableError(f"{path}: is a folder; name a file to write{hint}")
    if path.exists() and not path.is_file():
        raise NotWritableError(f"{path}: not a regular file; cnnkit writes a new file and renames it into place, "
                               f"so name a file{hint}")
    _check_folder(path.parent, path, hint)


@contextlib.contextmanager
def atomic_path(path: str | Path, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path in the same folder; on success it replaces ``path``.

    Same folder means same filesystem, so ``os.replace`` is atomic.  On error the
    temporary file is removed and ``path`` is left as it was.  ``size`` (bytes, when the caller
    knows it) is checked against the free space first; a write that fills the disk raises
    :class:`DiskFullError` naming ``path``.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, a device such as /dev/null, a FIFO: never replaced
        raise NotWritableError(f"{path}: not a regular file; cnnkit writes a new file and renames it into place, "
                               f"so name a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    if size is not None:
        ensure_free_space(path.parent, size)
    # the writer's host and pid in the name: remove_orphaned_temps can tell a killed write from a live one
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner()}.", suffix=".tmp", dir=path.parent)
    try:  # mkstemp makes the file 0600; the result should have the mode any new file gets (umask)
        os.fchmod(fd, 0o666 & ~_umask())
    except (AttributeError, OSError):  # Windows has no fchmod; a file system without modes keeps its own
        pass
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except DiskFullError:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise DiskFullError(path, size, free_bytes(path.parent)) from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    """The process umask (read by setting it, then restored at once: there is no getter before 3.13)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _owner(pid: int | None = None) -> str:
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid() if pid is None else pid}"


_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_orphaned_temps(folder: str | Path) -> list[Path]:
    """Delete temporary files in ``folder`` that atomic_path writes left when their process was killed.

    Only files written on this host whose process is gone are removed, so a write in progress
    (here, or on another machine sharing the folder) is never touched.  Returns what was removed.
    """
    host = _owner(0).rsplit("-", 1)[0]
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMP.match(p.name)
        if m and m["host"] == host and not _alive(int(m["pid"])) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path, len(data)) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def finite_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, inf) as None, for strict JSON (which has neither):
    an undefined metric or a diverged loss is written as null.  Walks dicts, lists and tuples;
    numpy scalars become Python numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # numpy scalars
        return finite_json(obj.item())
    return obj
