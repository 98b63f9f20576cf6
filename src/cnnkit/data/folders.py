"""Finding labelled image files on disk: ``root/<class>/*`` or ``root/{train,validation,test}/<class>/*``.

Nothing here opens an image; it only lists files, so it is cheap enough to run on every load
(the file list and each file's size and mtime are what the decode cache is keyed on).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cnnkit.errors import DataError

# Extensions Pillow decodes that people actually keep photos in; compared lower-cased.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

LOOSE_IMAGE = "image outside a class folder: put it in <class>/ to use it"

# Split folder names, compared lower-cased; the key is the DataSplits field it fills.
SPLIT_NAMES = {
    "train": ("train", "training"),
    "val": ("validation", "val", "valid"),
    "test": ("test", "testing"),
}


def is_hidden(name: str) -> bool:
    """Dot files, macOS resource forks (``__MACOSX``) and Windows thumbnails are never data."""
    return name.startswith(".") or name == "__MACOSX" or name.lower() in ("thumbs.db", "desktop.ini")


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


@dataclass(frozen=True)
class FileEntry:
    """One candidate image: where it is, which split and class it belongs to, and its identity."""

    path: str
    split: str  # train | val | test
    label: int
    size: int  # bytes
    mtime_ns: int


@dataclass
class FileListing:
    """Every candidate image of a dataset, grouped by split in a fixed order (train, val, test)."""

    root: str
    classes: tuple[str, ...]
    files: list[FileEntry]
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): folders/files left out
    ignored: int = 0  # files with a non-image extension (README.txt, labels.csv, ...)

    def splits(self) -> list[str]:
        return [s for s in SPLIT_NAMES if any(f.split == s for f in self.files)]


def _scandir(folder: Path, problems: list[tuple[str, str]]) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not is_hidden(e.name)), key=lambda e: e.name)
    except OSError as exc:  # PermissionError, vanished folder, ...
        problems.append((str(folder), f"cannot read folder: {exc.strerror or exc}"))
        return []


def _walk_images(folder: Path, problems: list[tuple[str, str]]) -> tuple[list[os.DirEntry], int]:
    """All image files under ``folder`` (recursively, like Keras), sorted by relative path."""
    images: list[os.DirEntry] = []
    ignored = 0
    for entry in _scandir(folder, problems):
        if entry.is_dir():
            sub, n = _walk_images(Path(entry.path), problems)
            images.extend(sub)
            ignored += n
        elif is_image_name(entry.name):
            images.append(entry)
        elif entry.is_file():
            ignored += 1
    return images, ignored


def _split_dirs(root: Path) -> dict[str, Path]:
    """``{split: folder}`` for the split folders directly under ``root`` (case-insensitive names)."""
    found: dict[str, Path] = {}
    try:
        entries = [e for e in os.scandir(root) if e.is_dir() and not is_hidden(e.name)]
    except OSError:
        return found
    by_name = {e.name.lower(): Path(e.path) for e in entries}
    for split, names in SPLIT_NAMES.items():
        for name in names:
            if name in by_name:
                found[split] = by_name[name]
                break
    return found


def find_root(root: Path) -> Path:
    """Step through wrapper folders such as ``extracted/cats_and_dogs_filtered/``.

    A folder with no image files and exactly one sub-folder that itself holds folders is a
    wrapper (what unzipping an archive usually leaves).  A single-class tree ``root/cats/*.jpg``
    is not stepped into, so it still fails later with a clear "only one class" message.
    """
    for _ in range(4):
        if "train" in _split_dirs(root):
            return root
        try:
            entries = [e for e in os.scandir(root) if not is_hidden(e.name)]
        except OSError:
            return root
        dirs = [e for e in entries if e.is_dir()]
        if len(dirs) != 1 or any(e.is_file() and is_image_name(e.name) for e in entries):
            return root
        inner = Path(dirs[0].path)
        try:
            if not any(e.is_dir() and not is_hidden(e.name) for e in os.scandir(inner)):
                return root
        except OSError:
            return root
        root = inner
    return root


def layout(root: str | Path) -> dict[str, Path]:
    """``{split: folder of class folders}``; a single class tree is ``{"train": root}``."""
    root = find_root(Path(root))
    splits = _split_dirs(root)
    return splits if "train" in splits else {"train": root}


def list_split_folders(folders: dict[str, Path], root: str | Path | None = None) -> FileListing:
    """List ``folder/<class>/**`` image files for each split; classes are the sorted union."""
    problems: list[tuple[str, str]] = []
    per_split: dict[str, dict[str, list[os.DirEntry]]] = {}
    ignored = 0
    for split in SPLIT_NAMES:
        if split not in folders:
            continue
        classes: dict[str, list[os.DirEntry]] = {}
        for entry in _scandir(Path(folders[split]), problems):
            if entry.is_dir():
                images, n = _walk_images(Path(entry.path), problems)
                classes[entry.name] = images
                ignored += n
            elif entry.is_file() and is_image_name(entry.name):
                problems.append((entry.path, LOOSE_IMAGE))
        per_split[split] = classes
    names = sorted({c for classes in per_split.values() for c in classes})
    kept = []
    for name in names:
        if any(per_split[s].get(name) for s in per_split):
            kept.append(name)
        else:
            for s, classes in per_split.items():
                if name in classes:
                    problems.append((str(Path(folders[s]) / name), "empty class folder: no images"))
    files: list[FileEntry] = []
    for split, classes in per_split.items():
        for label, name in enumerate(kept):
            for entry in classes.get(name, []):
                try:
                    st = entry.stat()
                except OSError as exc:
                    problems.append((entry.path, f"cannot read file: {exc.strerror or exc}"))
                    continue
                files.append(FileEntry(entry.path, split, label, st.st_size, st.st_mtime_ns))
    base = str(root if root is not None else next(iter(folders.values())))
    return FileListing(base, tuple(kept), files, problems, ignored)


def list_images(root: str | Path) -> FileListing:
    """Scan a dataset folder in either layout; raise :class:`DataError` if it is not one."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    listing = list_split_folders(layout(root), root)
    if not listing.files and not listing.classes:
        loose = sum(1 for _, why in listing.problems if why == LOOSE_IMAGE)
        if loose:
            raise DataError(
                f"{root}: {loose} image files directly in the folder but no class folders; put them in "
                f"{root}/<class>/, or sort names like cat.1.jpg into class folders with "
                f"`cnnkit organize {root} DST`"
            )
        raise DataError(
            f"{root}: no images found; expected {root}/<class>/*.jpg or "
            f"{root}/train/<class>/*.jpg (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return listing
