"""Errors that reach the user: each names the file or setting and what is wrong."""


class CnnkitError(Exception):
    """Base class; the CLI prints these as one clear line, without a traceback."""


class DataError(CnnkitError):
    """A dataset, folder or image file cannot be used."""


class ConfigError(CnnkitError):
    """A setting is invalid or inconsistent."""


class NotWritableError(CnnkitError):
    """A file or folder cnnkit is asked to write cannot be written there (read-only, not a folder, ...)."""


class CheckpointError(CnnkitError):
    """A checkpoint or run folder is missing, unreadable or incompatible."""


class WeightsError(CnnkitError):
    """Pretrained weights are not available (offline) or do not fit the model."""


class DiskFullError(CnnkitError):
    """A write needs more space than the disk (or the user's quota) has left.

    ``path`` is what was being written, ``needed`` / ``free`` are bytes (None when unknown).
    """

    def __init__(self, path: object, needed: int | None = None, free: int | None = None, hint: str = ""):
        self.path, self.needed, self.free = path, needed, free
        if needed is not None:
            what = f"needs {human_bytes(needed)}" + (f", {human_bytes(free)} free" if free is not None else "")
        else:
            what = "the disk is full or over quota" + (f", {human_bytes(free)} free" if free is not None else "")
        super().__init__(f"{path}: not enough disk space ({what}); free some space{hint}")


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB': sizes in error messages."""
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            if unit == "bytes":
                return f"{int(size)} bytes"
            return f"{size:.3g} {unit}" if size < 1000 else f"{size:.0f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
