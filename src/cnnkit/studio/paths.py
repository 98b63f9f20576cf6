"""Paths a browser names, checked to lie under the studio's root (or runs folder).

The client only ever sees and sends paths relative to a base folder ("pets/train", never
"/home/..."); every one is resolved (following symlinks) and refused unless it stays inside.
A folder's listing leaves out the links in it that lead outside, and says so.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from cnnkit.errors import CnnkitError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_LISTED = 500  # folders shown per directory in the browser
MAX_PATH_CHARS = 1024  # longer client paths are refused before they reach the file system
OUTSIDE = "a link that leads outside the studio folder: left out"


class PathError(CnnkitError):
    """A client-named path is malformed, outside the allowed folder, or missing (HTTP 4xx)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def resolve_under(base: Path, relative: str, must_exist: bool = True) -> Path:
    """``base / relative`` resolved; PathError unless it is ``base`` itself or inside it."""
    text = (relative or "").replace("\\", "/").strip()
    if len(text) > MAX_PATH_CHARS:
        raise PathError(f"path of {len(text):,} characters: the limit is {MAX_PATH_CHARS:,}", 414)
    if "\0" in text:
        raise PathError("path contains a NUL byte")
    pure = PurePosixPath(text)
    if pure.is_absolute() or (pure.parts and ":" in pure.parts[0]):
        raise PathError(f"{text!r}: give a path relative to the studio folder, not an absolute one")
    if ".." in pure.parts:
        raise PathError(f"{text!r}: '..' is not allowed; paths stay inside the studio folder")
    base = base.resolve()
    try:
        target = (base / pure).resolve()
        exists = target.exists()
    except (OSError, RuntimeError) as exc:  # a name too long, a link loop
        raise PathError(f"{text!r}: cannot be opened ({getattr(exc, 'strerror', None) or exc})") from None
    if not inside(base, target):
        raise PathError(f"{text!r}: leads outside the studio folder (a symbolic link?)", 403)
    if must_exist and not exists:
        raise PathError(f"{text!r}: no such file or folder", 404)
    return target


def inside(base: Path, path: str | Path) -> bool:
    """Whether ``path``, links followed, is ``base`` or under it (``base`` already resolved)."""
    real = os.path.realpath(path)
    return real == str(base) or real.startswith(str(base).rstrip(os.sep) + os.sep)


def relative_to(base: Path, path: Path) -> str:
    """The posix path of ``path`` below ``base`` ('' for base itself)."""
    rel = Path(path).resolve().relative_to(base.resolve())
    return "" if str(rel) == "." else rel.as_posix()


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _counts(base: Path, folder: Path) -> tuple[int, int]:
    """(images, sub-folders) directly in ``folder``, leaving out links that lead outside ``base``."""
    images = folders = 0
    try:
        with os.scandir(folder) as inner:
            for f in inner:
                if _is_hidden(f.name) or (f.is_symlink() and not inside(base, f.path)):
                    continue
                if _is_dir(f):
                    folders += 1
                elif Path(f.name).suffix.lower() in IMAGE_SUFFIXES:
                    images += 1
    except OSError:
        pass
    return images, folders


def browse(base: Path, relative: str) -> dict[str, Any]:
    """One folder's sub-folders, each with its count of image files and sub-folders (one level deep).

    ``left_out`` names the links here (to folders or images) that lead outside ``base``: they
    are never listed, opened or counted."""
    base = base.resolve()
    folder = resolve_under(base, relative)
    if not folder.is_dir():
        raise PathError(f"{relative!r}: not a folder")
    entries, left_out = [], []
    with os.scandir(folder) as it:
        visible = sorted((e for e in it if not _is_hidden(e.name)), key=lambda e: e.name.lower())
    for e in visible:
        if e.is_symlink() and not inside(base, e.path) and \
                (_is_dir(e) or Path(e.name).suffix.lower() in IMAGE_SUFFIXES):
            left_out.append({"name": e.name, "why": OUTSIDE})
    subdirs = [e for e in visible if _is_dir(e) and inside(base, e.path)]
    for e in subdirs[:MAX_LISTED]:
        target = Path(os.path.realpath(e.path))
        images, folders = _counts(base, target)
        entries.append({"name": e.name, "path": relative_to(base, target), "folders": folders, "images": images})
    here = relative_to(base, folder)
    parent = None if not here else relative_to(base, folder.parent)
    return {"path": here, "parent": parent, "folders": entries, "truncated": len(subdirs) > MAX_LISTED,
            "left_out": left_out[:MAX_LISTED]}


def scrub(text: str, bases: dict[Path, str]) -> str:
    """Replace server paths in a message by client-visible ones (``{root: '', runs: 'runs'}``)."""
    for base, shown in sorted(bases.items(), key=lambda kv: -len(str(kv[0]))):
        for form in {str(base), str(base.resolve())}:
            text = text.replace(form + os.sep, f"{shown}/" if shown else "").replace(form, shown or ".")
    home = os.path.expanduser("~")
    if home not in ("", "/"):
        text = text.replace(home, "~")
    return text


def scrub_tree(obj: Any, bases: dict[Path, str]) -> Any:
    """:func:`scrub` every string in a JSON-like value (an inspect report names files by absolute path)."""
    if isinstance(obj, str):
        return scrub(obj, bases)
    if isinstance(obj, dict):
        return {k: scrub_tree(v, bases) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_tree(v, bases) for v in obj]
    return obj
