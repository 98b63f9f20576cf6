"""A run folder is locked while a run writes it: a second training into it is a clear error.

The lock is an ``fcntl.flock`` on ``RUN/.lock``, which names its holder (pid and host).  The
operating system drops it when the holder exits, however it exits, so a killed run's folder is
never left locked.  Two opens in one process conflict too, so two threads are kept apart as well.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from cnnkit.errors import ConfigError
from cnnkit.run_folder import LOCK

try:
    import fcntl
except ImportError:  # Windows: no flock; folders are not locked there
    fcntl = None



class RunLock:
    """Held from :func:`lock_run_folder` until :meth:`release` (or the process ends)."""

    def __init__(self, folder: Path, fd: int | None):
        self.folder, self._fd = folder, fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class FolderBusy(ConfigError):
    """Another run holds the folder's lock."""


def lock_run_folder(folder: Path) -> RunLock:
    """Create ``folder`` if needed and lock it; :class:`FolderBusy` names the holder if another run has it."""
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        return RunLock(folder, None)
    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise FolderBusy(f"{folder}: another training is writing this run folder ({holder}); "
                         "wait for it to finish or choose another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return RunLock(folder, fd)
