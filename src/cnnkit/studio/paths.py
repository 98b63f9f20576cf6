"""Paths a browser names, checked to lie under the studio's root (or runs folder).

The client only ever sees and sends paths relative to a base folder ("pets/train", never
"/home/..."); every one is resolved (following symlinks) and refused unless it stays inside.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from cnnkit.errors import CnnkitError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_LISTED = 500  # folders shown per directory in the browser


class PathError(CnnkitError):
    """A client-named path is malformed, outside the allowed folder, or missing (HTTP 4xx)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def resolve_under(base: Path, relative: str, must_exist: bool = True) -> Path:
    """``base / relative`` resolved; PathError unless it is ``base`` itself or inside it."""
    text = (relative or "").replace("\\", "/").strip()
    if "\0" in text:
        raise PathError("path contains a NUL byte")
    pure = PurePosixPath(text)
    if pure.is_absolute() or (pure.parts and ":" in pure.parts[0]):
        raise PathError(f"{text!r}: give a path relative to the studio folder, not an absolute one")
    if ".." in pure.parts:
        raise PathError(f"{text!r}: '..' is not allowed; paths stay inside the studio folder")
    base = base.resolve()
    target = (base / pure).resolve()
    if target != base and base not in target.parents:
        raise PathError(f"{text!r}: leads outside the studio folder (a symbolic link?)", 403)
    if must_exist and not target.exists():
        raise PathError(f"{text!r}: no such file or folder", 404)
    return target


def relative_to(base: Path, path: Path) -> str:
    """The posix path of ``path`` below ``base`` ('' for base itself)."""
    rel = Path(path).resolve().relative_to(base.resolve())
    return "" if str(rel) == "." else rel.as_posix()


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def browse(base: Path, relative: str) -> dict[str, Any]:
    """One folder's sub-folders, each with its count of image files and sub-folders (one level deep)."""
    folder = resolve_under(base, relative)
    if not folder.is_dir():
        raise PathError(f"{relative!r}: not a folder")
    entries = []
    with os.scandir(folder) as it:
        subdirs = sorted((e for e in it if not _is_hidden(e.name) and e.is_dir()), key=lambda e: e.name.lower())
    for e in subdirs[:MAX_LISTED]:
        try:
            target = resolve_under(base, relative_to(base, folder / e.name))
        except (PathError, ValueError):
            continue  # a link out of the root is not shown at all
        images = folders = 0
        try:
            with os.scandir(target) as inner:
                for f in inner:
                    if _is_hidden(f.name):
                        continue
                    if f.is_dir():
                        folders += 1
                    elif Path(f.name).suffix.lower() in IMAGE_SUFFIXES:
                        images += 1
        except OSError:
            pass
        entries.append({"name": e.name, "path": relative_to(base, target), "folders": folders, "images": images})
    here = relative_to(base, folder)
    parent = None if not here else relative_to(base, folder.parent)
    return {"path": here, "parent": parent, "folders": entries, "truncated": len(subdirs) > MAX_LISTED}


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
