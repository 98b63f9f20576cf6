"""Finding labelled image files on disk: ``root/<class>/*`` or ``root/{train,validation,test}/<class>/*``.

Nothing here opens an image; it only lists files, so it is cheap enough to run on every load
(the file list and each file's size and mtime are what the decode cache is keyed on).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

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


# (real path of the folder, its name in messages) while a within() block runs
_WITHIN: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("cnnkit_data_within", default=None)


@contextlib.contextmanager
def within(root: str | Path, name: str | None = None) -> Iterator[None]:
    """List only what lies under ``root`` once links are followed, in this block (this thread/context).

    A link to a file or folder outside is left out and reported like any other skipped file;
    a dataset folder that is itself outside lists nothing.  The studio wraps the work it does
    for a page in this, so a link inside a chosen folder cannot reach past its ``--root``.
    """
    token = _WITHIN.set((os.path.realpath(root), name or str(root)))
    try:
        yield
    finally:
        _WITHIN.reset(token)


def _outside(path: str | Path) -> str | None:
    """Why ``path`` is left out (a link leading outside the within() folder), or None."""
    limit = _WITHIN.get()
    if limit is None:
        return None
    real, root = os.path.realpath(path), limit[0]
    if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
        return None
    return f"a link that leads outside {limit[1]}: left out"


def _decodable(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 (surrogate-escaped by os.scandir)
        return False
    return True


def entry_is_dir(entry: os.DirEntry) -> bool:
    """``entry.is_dir()`` that is False, not an OSError, for a link loop or an unreadable link."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def entry_is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


@dataclass
class _Walk:
    """State of one listing's walk: what went wrong, and which real folders were already entered."""

    problems: list[tuple[str, str]] = field(default_factory=list)
    seen_dirs: set[tuple[int, int]] = field(default_factory=set)  # (st_dev, st_ino) of entered folders
    ignored: int = 0
    class_dirs: dict[str, str] = field(default_factory=dict)  # real path of each class folder -> its class

    def other_class(self, entry: os.DirEntry, own: str) -> str | None:
        """The class whose folder a link ``entry`` really points into, when that is not ``own``."""
        if not entry.is_symlink():
            return None
        real = os.path.realpath(entry.path)
        for folder, name in self.class_dirs.items():
            if name != own and (real == folder or real.startswith(folder + os.sep)):
                return name
        return None

    def enter(self, folder: Path) -> bool:
        """Mark ``folder`` as entered; False if this real folder was entered before (a loop or a second link)."""
        try:
            st = folder.stat()
        except OSError:
            return True  # _scandir reports why it cannot be read
        key = (st.st_dev, st.st_ino)
        if key in self.seen_dirs:
            return False
        self.seen_dirs.add(key)
        return True


def _scandir(folder: Path, walk: _Walk) -> list[os.DirEntry]:
    """Visible entries of ``folder`` sorted by name; names that are not UTF-8 are reported and left out."""
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if not is_hidden(e.name)]
    except OSError as exc:  # PermissionError, vanished folder, ...
        walk.problems.append((str(folder), f"cannot read folder: {exc.strerror or exc}"))
        return []
    good = []
    for e in entries:
        if not _decodable(e.name):
            walk.problems.append((e.path, "name is not valid UTF-8: left out (rename it to use it)"))
        elif e.is_symlink() and _outside(e.path):
            walk.problems.append((e.path, _outside(e.path)))
        else:
            good.append(e)
    return sorted(good, key=lambda e: e.name)


_LOOP = "link to a folder that is already listed (a loop, or a second way in): not followed"


def _walk_images(folder: Path, walk: _Walk, own: str = "") -> list[tuple[str, os.stat_result]]:
    """(path, stat) of every image file under ``folder`` of class ``own`` (recursively, like Keras),
    sorted by path.

    Links are followed (stat, not lstat), but each real folder is entered once, so a link to
    ``..`` or to a sibling folder cannot make the walk go round.  A link into another class's
    folder is not followed: a file's class is the class folder it really lives in.
    """
    images: list[tuple[str, os.stat_result]] = []
    for entry in _scandir(folder, walk):
        other = walk.other_class(entry, own)
        if other is not None:
            why = (f"link into class folder {other!r}: not followed (a file's class is the class folder it "
                   f"really lives in)")
            walk.problems.append((entry.path, why))
            continue
        try:
            st = entry.stat()  # follows links
        except OSError as exc:  # a link to itself (ELOOP), a dangling link, a vanished file
            if is_image_name(entry.name):
                walk.problems.append((entry.path, f"cannot read file: {exc.strerror or exc}"))
            continue
        if stat.S_ISDIR(st.st_mode):
            if walk.enter(Path(entry.path)):
                images.extend(_walk_images(Path(entry.path), walk, own))
            else:
                walk.problems.append((entry.path, _LOOP))
        elif not stat.S_ISREG(st.st_mode):
            continue  # sockets, FIFOs, devices: never data
        elif is_image_name(entry.name):
            images.append((entry.path, st))
        else:
            walk.ignored += 1
    return images


def _split_dirs(root: Path, unused: list[tuple[str, str]] | None = None) -> dict[str, Path]:
    """``{split: folder}`` for the split folders directly under ``root`` (case-insensitive names).

    Where two folders name the same split (``validation/`` and ``val/``), the first name of
    :data:`SPLIT_NAMES` is used; the others go to ``unused`` as (path, why), to be said.
    """
    found: dict[str, Path] = {}
    try:
        entries = [e for e in os.scandir(root) if entry_is_dir(e) and not is_hidden(e.name) and _decodable(e.name)]
    except OSError:
        return found
    by_name: dict[str, list[Path]] = {}
    for e in sorted(entries, key=lambda e: e.name):
        by_name.setdefault(e.name.lower(), []).append(Path(e.path))
    for split, names in SPLIT_NAMES.items():
        present = [p for name in names for p in by_name.get(name, [])]
        if not present:
            continue
        found[split] = present[0]
        for other in present[1:]:
            if unused is not None:
                used = present[0].name
                unused.append((str(other), f"a second {split} folder beside {used}/: not used (only {used}/ is read)"))
    return found


def _holds_folders(folder: Path) -> bool:
    try:
        return any(entry_is_dir(e) and not is_hidden(e.name) for e in os.scandir(folder))
    except OSError:
        return True  # unreadable: left to the listing, which reports it


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
        dirs = [e for e in entries if entry_is_dir(e)]
        if len(dirs) != 1 or any(entry_is_file(e) and is_image_name(e.name) for e in entries):
            return root
        inner = Path(dirs[0].path)
        try:
            if not any(entry_is_dir(e) and not is_hidden(e.name) for e in os.scandir(inner)):
                return root
        except OSError:
            return root
        root = inner
    return root


def layout(root: str | Path, unused: list[tuple[str, str]] | None = None) -> dict[str, Path]:
    """``{split: folder of class folders}``; a single class tree is ``{"train": root}``.

    A ``train/`` that holds no folders (only pictures) is a class of a single tree (pictures of
    trains), not the training split.  Split folders left unused are added to ``unused``.
    """
    root = find_root(Path(root))
    notes: list[tuple[str, str]] = []
    splits = _split_dirs(root, notes)
    if "train" not in splits or not _holds_folders(splits["train"]):
        return {"train": root}
    if unused is not None:
        unused.extend(notes)
    return splits


def list_split_folders(folders: dict[str, Path], root: str | Path | None = None) -> FileListing:
    """List ``folder/<class>/**`` image files for each split; classes are the sorted union.

    Every real file is listed once: a second path to a file already listed (a symbolic or hard
    link, in any split) is left out and reported, as are link loops and names that are not UTF-8.
    """
    walk = _Walk()
    base = str(root if root is not None else next(iter(folders.values())))
    outside = {s: _outside(f) for s, f in folders.items() if _outside(f)}
    walk.problems.extend((str(folders[s]), why) for s, why in outside.items())
    folders = {s: f for s, f in folders.items() if s not in outside}
    for folder in [root, *folders.values()] if root is not None else folders.values():
        walk.enter(Path(folder))  # a link back up to a split folder or the root is a loop
    per_split: dict[str, dict[str, list[tuple[str, os.stat_result]]]] = {}
    entries = {split: _scandir(Path(folders[split]), walk) for split in SPLIT_NAMES if split in folders}
    walk.class_dirs = {os.path.realpath(e.path): e.name for listed in entries.values() for e in listed
                       if entry_is_dir(e)}
    for split, listed in entries.items():
        classes: dict[str, list[tuple[str, os.stat_result]]] = {}
        for entry in listed:
            if entry_is_dir(entry):
                if walk.enter(Path(entry.path)):
                    classes[entry.name] = _walk_images(Path(entry.path), walk, entry.name)
                else:
                    walk.problems.append((entry.path, _LOOP))
            elif entry_is_file(entry) and is_image_name(entry.name):
                walk.problems.append((entry.path, LOOSE_IMAGE))
        per_split[split] = classes
    kept = _kept_classes(per_split, folders, walk.problems)
    files: list[FileEntry] = []
    first_path: dict[tuple[int, int], str] = {}  # (st_dev, st_ino) -> the path that listed it
    for split, classes in per_split.items():
        for label, name in enumerate(kept):
            for path, st in classes.get(name, []):
                key = (st.st_dev, st.st_ino)
                if key in first_path:
                    walk.problems.append((path, f"same file as {first_path[key]} "
                                                              f"(a link): listed once"))
                    continue
                first_path[key] = path
                files.append(FileEntry(path, split, label, st.st_size, st.st_mtime_ns))
    return FileListing(base, tuple(kept), files, walk.problems, walk.ignored)


def _kept_classes(per_split: dict[str, dict[str, list]], folders: dict[str, Path],
                  problems: list[tuple[str, str]]) -> list[str]:
    """Sorted class names with at least one image in some split; empty class folders are reported."""
    kept = []
    for name in sorted({c for classes in per_split.values() for c in classes}):
        if any(per_split[s].get(name) for s in per_split):
            kept.append(name)
        else:
            for s, classes in per_split.items():
                if name in classes:
                    problems.append((str(Path(folders[s]) / name), "empty class folder: no images"))
    return kept


def list_images(root: str | Path) -> FileListing:
    """Scan a dataset folder in either layout; raise :class:`DataError` if it is not one."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    unused: list[tuple[str, str]] = []
    listing = list_split_folders(layout(root, unused), root)
    listing.problems[:0] = unused  # first: the warning about what was left out names it
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
