"""Label corrections without moving files: ``label_map.csv`` relabels or excludes images.

The file has a header ``file,label`` and one row per corrected image::

    file,label
    train/cats/cat.17.jpg,dogs
    validation/dogs/dog.2043.jpg,exclude

``file`` is relative to the data folder (or absolute); ``label`` is a class name or ``exclude``.
Loading an image folder reads ``label_map.csv`` from the folder itself when present, or the
file ``DataConfig.label_map`` (``--label-map FILE``) names; ``--label-map none`` ignores it.
The map is applied after the split assignment, so an image never changes split, and after the
decode cache (which stores pixels, never labels), so a changed map takes effect at once.  A row
whose class is unknown, or whose file is not in the data, is a :class:`DataError` naming the
map file and the row.  When several rows name one file, the last one counts.

:func:`relabel` writes the map (``cnnkit relabel``): rows are added or updated, never removed
except where an image is given its folder's own label back; image files are never touched.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from cnnkit.data.folders import FileListing, list_images
from cnnkit.data.issues_table import ARRAY_NAME, read_issues_file
from cnnkit.data.types import DataSplits, ImageSet
from cnnkit.errors import ConfigError, DataError
from cnnkit.io import atomic_write_text

log = logging.getLogger("cnnkit.data")

LABEL_MAP = "label_map.csv"
EXCLUDE = "exclude"
HEADER = ("file", "label")
NO_MAP = "none"  # --label-map none: ignore the data folder's label_map.csv


def _key(path: str | os.PathLike) -> str:
    """The form two names of one file are compared in: absolute and normalised (not link-resolved)."""
    return os.path.normpath(os.path.abspath(os.fspath(path)))


@dataclass(frozen=True)
class MapRow:
    file: str  # as written in the map
    label: str  # a class name or "exclude"
    line: int  # 1-based line in the file (the header is line 1)


@dataclass
class LabelMap:
    """A parsed ``label_map.csv``: rows in file order and the data folder their files are relative to."""

    path: Path
    root: Path
    rows: list[MapRow] = field(default_factory=list)

    def entries(self) -> dict[str, MapRow]:
        """{absolute normalised file: row}; a later row for the same file replaces an earlier one."""
        return {_key(self.root / r.file): r for r in self.rows}


@dataclass(frozen=True)
class MapSummary:
    """What applying a map did: shown as ``label map: N relabelled, M excluded (FILE)``."""

    path: str
    relabelled: int
    excluded: int

    def line(self) -> str:
        return f"label map: {self.relabelled} relabelled, {self.excluded} excluded ({self.path})"


# ----------------------------------------------------------------------------- reading


def read_label_map(path: str | os.PathLike, root: str | os.PathLike) -> LabelMap:
    """Parse ``path`` (files relative to ``root``); a row that is not ``file,label`` is a DataError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the label map ({exc})") from None
    rows = []
    for line, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        if line == 1 and tuple(c.lower() for c in cells) == HEADER:
            continue
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise DataError(f"{path}: row {line}: expected file,label (label = a class name or {EXCLUDE}), "
                            f"got {','.join(cells)!r}")
        rows.append(MapRow(cells[0], cells[1], line))
    return LabelMap(path, Path(os.path.abspath(root)), rows)


def find_label_map(root: str | os.PathLike, setting: str | None) -> Path | None:
    """The map file a folder load uses: ``setting`` (a file; ``none`` = no map), else ``root/label_map.csv`` if any."""
    if setting is not None:
        if setting.lower() == NO_MAP:
            return None
        path = Path(setting).expanduser()
        if not path.is_file():
            raise ConfigError(f"--label-map {setting}: no such file")
        return path
    path = Path(root) / LABEL_MAP
    return path if path.is_file() else None


# ----------------------------------------------------------------------------- applying


def _class_of(lmap: LabelMap, row: MapRow, classes: Sequence[str]) -> int | None:
    """The class index a row gives (None = exclude); an unknown name is a DataError naming the row."""
    if row.label.lower() == EXCLUDE:
        return None
    if row.label not in classes:
        raise DataError(f"{lmap.path}: row {row.line}: {row.label!r} is not a class of the data "
                        f"({', '.join(classes)}) nor {EXCLUDE}")
    return list(classes).index(row.label)


def apply_label_map(splits: DataSplits, lmap: LabelMap) -> tuple[DataSplits, MapSummary]:
    """``splits`` with the map's images relabelled or dropped, each in the split it was assigned.

    Every row must name an image of the data (an image the decoder skipped is ignored) and a
    known class; otherwise a DataError names the map file and the row.
    """
    entries = lmap.entries()
    for row in entries.values():  # unknown classes fail before anything else, in file order
        _class_of(lmap, row, splits.classes)
    found: set[str] = set()
    relabelled = excluded = 0

    def one(data: ImageSet | None) -> ImageSet | None:
        nonlocal relabelled, excluded
        if data is None:
            return None
        if data.paths is None:
            raise ConfigError(f"{lmap.path}: a label map applies to image folders, not to array datasets")
        labels = data.labels.copy()
        keep = np.ones(len(data), bool)
        for i, p in enumerate(data.paths):
            row = entries.get(_key(p))
            if row is None:
                continue
            found.add(_key(p))
            new = _class_of(lmap, row, data.classes)
            if new is None:
                keep[i] = False
                excluded += 1
            elif new != labels[i]:
                labels[i] = new
                relabelled += 1
        out = ImageSet(data.images, labels, data.classes, data.paths)
        return out if keep.all() else out.subset(np.flatnonzero(keep))

    train, val, test = one(splits.train), one(splits.val), one(splits.test)
    skipped = {_key(p) for p, _ in splits.skipped}
    missing = [r for k, r in entries.items() if k not in found and k not in skipped]
    if missing:
        row = min(missing, key=lambda r: r.line)
        raise DataError(f"{lmap.path}: row {row.line}: {row.file} is not an image of {lmap.root}")
    if train is None or not len(train):
        raise DataError(f"{lmap.path}: excludes every training image")
    summary = MapSummary(str(lmap.path), relabelled, excluded)
    log.info("%s", summary.line())
    return DataSplits(train, val, test, list(splits.skipped), label_map=summary), summary


def apply_folder_map(splits: DataSplits, root: str | os.PathLike, setting: str | None) -> DataSplits:
    """``splits`` of the folder ``root`` with its label map applied (see :func:`find_label_map`), if any."""
    path = find_label_map(root, setting)
    if path is None:
        return splits
    return apply_label_map(splits, read_label_map(path, root))[0]


# ----------------------------------------------------------------------------- writing


def data_relative(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """A file as the label map and ``label_issues.csv`` name it: relative to the data folder ``root``
    (forward slashes) where it lies under it, else absolute - one rule, so a CSV's names read back."""
    p, base = os.path.abspath(path), os.path.abspath(root)
    if p == base or p.startswith(base.rstrip(os.sep) + os.sep):
        return os.path.relpath(p, base).replace(os.sep, "/")
    return p


@dataclass(frozen=True)
class RelabelResult:
    path: Path  # the map written
    changed: int  # rows added or updated
    removed: int  # rows dropped because the image got its folder's own label back
    rows: int  # rows in the map now


def _resolve_file(name: str, root: Path, known: dict[str, int]) -> str:
    """A file named on the command line or in a CSV -> its listed path: absolute, relative to the data
    folder, or relative to the current folder; a DataError when it is none of the data's images."""
    for candidate in ([name] if os.path.isabs(name) else [root / name, name]):
        if _key(candidate) in known:
            return _key(candidate)
    raise DataError(f"{name}: not an image of {root}")


def suggestions(issues_csv: str | os.PathLike, top: int | None = None) -> list[tuple[str, str]]:
    """(file, suggested) of the first ``top`` rows (all when None) of a run's ``label_issues.csv``."""
    rows = read_issues_file(issues_csv)
    rows = rows if top is None else rows[: max(0, top)]
    for line, r in enumerate(rows, start=2):
        if ARRAY_NAME.fullmatch(r.file):
            raise DataError(f"{issues_csv}: row {line}: {r.file} is an array image; "
                            f"a label map applies to image folders")
    return [(r.file, r.suggested) for r in rows]


def relabel(data: str | os.PathLike, changes: Iterable[tuple[str, str]], map_path: str | os.PathLike | None = None,
            listing: FileListing | None = None) -> RelabelResult:
    """Add or update rows ``(file, class name or "exclude")`` of the label map of the image folder ``data``.

    The map is ``data/label_map.csv`` unless ``map_path`` names another file; it is written
    atomically and its other rows are kept.  Every file must be an image of ``data`` and every
    label one of its classes (or ``exclude``), else a DataError names it and nothing is written.
    Giving an image its folder's own class back removes its row.  No image file is moved or deleted.
    ``listing``: the folder's files with their classes when a labels table, not class folders, gives them
    (:func:`cnnkit.data.sources.folder_listing`).
    """
    root = Path(os.path.abspath(Path(data).expanduser()))
    listing = listing if listing is not None else list_images(root)
    known = {_key(f.path): f.label for f in listing.files}
    path = Path(map_path) if map_path is not None else root / LABEL_MAP
    existing = read_label_map(path, root) if path.is_file() else LabelMap(path, root)
    rows = {_key(root / r.file): (r.file, r.label) for r in existing.rows}  # file order kept, last row wins
    changed = removed = 0
    for name, label in changes:
        file = _resolve_file(name, root, known)
        if label.lower() != EXCLUDE and label not in listing.classes:
            raise DataError(f"{label!r} is not a class of {root} ({', '.join(listing.classes)}) nor {EXCLUDE}")
        if label.lower() != EXCLUDE and listing.classes.index(label) == known[file]:
            removed += rows.pop(file, None) is not None  # back to its folder's class: no row needed
            continue
        written = rows[file][0] if file in rows else data_relative(file, root)
        changed += rows.get(file) != (written, label)
        rows[file] = (written, label)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows.values())
    atomic_write_text(path, buf.getvalue())
    return RelabelResult(path, changed, removed, len(rows))


def relabel_command(data: str | os.PathLike, files: Sequence[str] = (), to: str | None = None, exclude: bool = False,
                    from_csv: str | os.PathLike | None = None, top: int | None = None,
                    map_path: str | os.PathLike | None = None, listing: FileListing | None = None) -> RelabelResult:
    """``cnnkit relabel``: ``files`` ``--to CLASS`` or ``--exclude``, or ``--from label_issues.csv [--top K]``
    (``listing``: see :func:`relabel`)."""
    if top is not None and (from_csv is None or top < 1):
        raise ConfigError("--top K (K at least 1) goes with --from RUN/label_issues.csv")
    if from_csv is not None:
        if files:
            raise ConfigError("relabel --from takes its files from the CSV: drop the FILE arguments")
        return relabel(data, suggestions(from_csv, top), map_path, listing)
    if not files:
        raise ConfigError("relabel: name the image files (or use --from RUN/label_issues.csv)")
    if (to is None) == (not exclude):
        raise ConfigError("relabel: give either --to CLASS or --exclude")
    return relabel(data, [(f, EXCLUDE if exclude else to) for f in files], map_path, listing)


__all__ = ["EXCLUDE", "LABEL_MAP", "LabelMap", "MapRow", "MapSummary", "RelabelResult",
           "apply_folder_map", "apply_label_map", "data_relative", "find_label_map", "read_label_map", "relabel",
           "relabel_command", "suggestions"]
