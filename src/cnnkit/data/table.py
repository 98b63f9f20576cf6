"""Labels from a table: a folder of images plus a CSV naming each image's class.

The Kaggle layout (Keras' ``flow_from_dataframe``, fastai's ``from_csv``)::

    images/                train.csv
      a1.jpg               id,label          <- the first two columns unless named
      a2.jpg               a1,cat            <- a file relative to the folder, extension optional
      more/b7.png          more/b7.png,dog   <- sub-folders allowed; a bare stem or name found anywhere
                                                 under the folder works when it is unique

An optional split column (``train``, ``validation``/``val``/``valid``, ``test``; a column named
``split`` is used when no other is chosen) puts rows in a split; without one, validation and test
are split off by ``DataConfig.val_split`` / ``test_split`` as for a class-folder tree.  Images of
the folder the table does not name are left out (a test set without labels belongs in a folder of
its own, for ``cnnkit predict``).

The table becomes a :class:`~cnnkit.data.folders.FileListing`, so decoding, the decode-once cache,
the label map (``label_map.csv`` in the image folder), label issues and the report work unchanged.
Reading it opens no image (:func:`table_counts` gives the classes and per-split counts cheaply).
A bad table is one :class:`DataError` naming the file and the row.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cnnkit.config import DataConfig
from cnnkit.data.folders import SPLIT_NAMES, FileEntry, FileListing, is_hidden, is_image_name
from cnnkit.data.images import load_listing
from cnnkit.data.label_map import apply_folder_map
from cnnkit.data.types import DataSplits
from cnnkit.errors import ConfigError, DataError

log = logging.getLogger("cnnkit.data")

SPLIT_COLUMN = "split"  # the column used for splits when none is named
_SPLIT_OF = {name: split for split, names in SPLIT_NAMES.items() for name in names}  # "validation" -> "val"


@dataclass(frozen=True)
class TableRow:
    path: str  # the image file, absolute
    label: str  # the class name as written
    split: str  # train | val | test
    line: int  # 1-based line in the table (the header is line 1)


@dataclass
class LabelTable:
    """A parsed labels table whose rows were matched to the image files under ``root``."""

    path: Path
    root: Path
    columns: tuple[str, str, str | None]  # file, label, split (None: no split column)
    rows: list[TableRow]
    unlisted: int = 0  # image files under root the table does not name (left out)
    files: dict[str, os.stat_result] = field(default_factory=dict, repr=False)  # every image under root

    @property
    def classes(self) -> tuple[str, ...]:
        """Sorted class names; numerically when every name is a whole number (``2`` before ``10``)."""
        names = {r.label for r in self.rows}
        if all(n.isdigit() for n in names):
            return tuple(sorted(names, key=int))
        return tuple(sorted(names))

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: images}}`` in split order (train, val, test), every class in each split named."""
        tally = Counter((r.split, r.label) for r in self.rows)
        splits = [s for s in SPLIT_NAMES if any(r.split == s for r in self.rows)]
        return {s: {c: tally[(s, c)] for c in self.classes} for s in splits}


# ----------------------------------------------------------------------------- the image files


def image_files(root: Path) -> dict[str, os.stat_result]:
    """Every image file under ``root`` (recursively; hidden files and folders skipped) -> its stat.

    Keys are paths relative to ``root`` with forward slashes.  Links to files are followed; links
    to folders are not (a link loop cannot make the walk go round).
    """
    out: dict[str, os.stat_result] = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not is_hidden(d))
        for name in sorted(names):
            if is_hidden(name) or not is_image_name(name):
                continue
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:
                continue  # a dangling link: a row naming it is reported as missing
            out[os.path.relpath(path, root).replace(os.sep, "/")] = st
    return out


class _Index:
    """Finds the file a table's id names: the relative path, without its extension, or a unique name/stem."""

    def __init__(self, files: dict[str, os.stat_result]) -> None:
        self.files = files
        self.by: dict[str, dict[str, list[str]]] = {"stem_path": {}, "name": {}, "stem": {}}
        for rel in files:
            name = rel.rpartition("/")[2]
            stem = os.path.splitext(name)[0]
            for kind, key in (("stem_path", os.path.splitext(rel)[0]), ("name", name), ("stem", stem)):
                self.by[kind].setdefault(key, []).append(rel)

    def find(self, ident: str) -> tuple[str | None, list[str]]:
        """(the relative path, None when not found or ambiguous; the candidates when ambiguous)."""
        key = ident.replace("\\", "/").removeprefix("./")
        if key in self.files:
            return key, []
        for kind in ("stem_path", "name", "stem"):
            found = self.by[kind].get(key, [])
            if len(found) == 1:
                return found[0], []
            if found:
                return None, found
        return None, []


# ----------------------------------------------------------------------------- reading


def _column(header: list[str], name: str, what: str, path: Path, flag: str) -> int:
    """The index of column ``name``; a DataError naming the header row and the columns when absent."""
    if name not in header:
        raise DataError(f"{path}: row 1: no column {name!r} ({what}, {flag}); the columns are {', '.join(header)}")
    return header.index(name)


def _columns(header: list[str], path: Path, file_column: str | None, label_column: str | None,
             split_column: str | None) -> tuple[int, int, int | None]:
    """(file, label, split or None) column indices: named ones, else the first two and a column named split."""
    if (file_column is None or label_column is None) and len(header) < 2:
        raise DataError(f"{path}: row 1: the table needs a file column and a label column, found "
                        f"{len(header)} column(s): {', '.join(header) or '(none)'}")
    f = _column(header, file_column, "the image files", path, "--file-column") if file_column is not None else 0
    lab = _column(header, label_column, "the labels", path, "--label-column") if label_column is not None else 1
    if split_column is not None:
        return f, lab, _column(header, split_column, "the splits", path, "--split-column")
    return f, lab, next((i for i, h in enumerate(header) if h.lower() == SPLIT_COLUMN and i not in (f, lab)), None)


def _split_of(value: str, path: Path, line: int) -> str:
    if not value:
        return "train"  # an empty split cell: a training image
    split = _SPLIT_OF.get(value.lower())
    if split is None:
        raise DataError(f"{path}: row {line}: split {value!r} is not one of train, validation (val, valid), test")
    return split


def _read_rows(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the labels table ({exc})") from None
    try:
        return [[c.strip() for c in cells] for cells in csv.reader(io.StringIO(text))]
    except csv.Error as exc:
        raise DataError(f"{path}: not a CSV table ({exc})") from None


def read_table(path: str | os.PathLike, root: str | os.PathLike, file_column: str | None = None,
               label_column: str | None = None, split_column: str | None = None) -> LabelTable:
    """Parse the labels table at ``path`` and match each row to an image file under ``root``.

    Opens no image: only the table and the folder's listing are read.  Raises one
    :class:`DataError` naming the table and the row for: an unknown column, an empty label, an id
    that names no image (or several), an unknown split, and one image given two labels.
    """
    path, root = Path(path).expanduser(), Path(os.path.abspath(Path(root).expanduser()))
    rows = _read_rows(path)
    if not rows or not any(rows[0]):
        raise DataError(f"{path}: empty table; expected a header row (e.g. id,label) and one row per image")
    header = rows[0]
    f_col, l_col, s_col = _columns(header, path, file_column, label_column, split_column)
    files = image_files(root)
    index = _Index(files)
    if index.find(header[f_col])[0] is not None:  # else the first image's row would be lost as a header
        raise DataError(f"{path}: row 1 names an image ({header[f_col]}), not the columns; add a header row "
                        f"such as file,label")
    seen: dict[str, TableRow] = {}
    for line, cells in enumerate(rows[1:], start=2):
        if not any(cells):
            continue  # a blank line
        cells = cells + [""] * (len(header) - len(cells))
        ident, label = cells[f_col], cells[l_col]
        if not ident:
            raise DataError(f"{path}: row {line}: empty file name (column {header[f_col]!r})")
        if not label:
            raise DataError(f"{path}: row {line}: {ident}: empty label (column {header[l_col]!r})")
        rel, candidates = index.find(ident)
        if rel is None:
            if candidates:
                raise DataError(f"{path}: row {line}: {ident!r} names several images under {root} "
                                f"({', '.join(candidates[:3])}); write the path relative to the folder")
            raise DataError(f"{path}: row {line}: {ident!r}: no such image file under {root}")
        split = _split_of(cells[s_col], path, line) if s_col is not None else "train"
        row = TableRow(str(root / rel), label, split, line)
        first = seen.get(rel)
        if first is not None:
            if (first.label, first.split) != (label, split):
                raise DataError(f"{path}: row {line}: {ident!r} is {label!r} ({split}) here but {first.label!r} "
                                f"({first.split}) in row {first.line}; give each image one label")
            continue  # the same row twice
        seen[rel] = row
    if not seen:
        raise DataError(f"{path}: no rows; expected one row per image after the header")
    columns = (header[f_col], header[l_col], header[s_col] if s_col is not None else None)
    return LabelTable(path, root, columns, list(seen.values()), len(files) - len(seen), files)


def table_of(cfg: DataConfig, root: str | os.PathLike) -> LabelTable:
    """The labels table ``cfg.labels`` read against the image folder ``root`` with ``cfg``'s columns."""
    if cfg.labels is None:
        raise ConfigError("data.labels: no labels table given")
    path = Path(cfg.labels).expanduser()
    if not path.is_file():
        raise ConfigError(f"--labels {cfg.labels}: no such file")
    return read_table(path, root, cfg.file_column, cfg.label_column, cfg.split_column)


def table_listing(table: LabelTable) -> FileListing:
    """The table as the file listing a class-folder tree gives: grouped by split, then by class."""
    classes = table.classes
    if len(classes) < 2:
        raise DataError(f"{table.path}: only the class {classes[0]!r}; a classifier needs at least two labels")
    label = {c: i for i, c in enumerate(classes)}
    order = {s: i for i, s in enumerate(SPLIT_NAMES)}
    files = []
    for r in sorted(table.rows, key=lambda r: (order[r.split], label[r.label], r.path)):
        st = table.files[os.path.relpath(r.path, table.root).replace(os.sep, "/")]
        files.append(FileEntry(r.path, r.split, label[r.label], st.st_size, st.st_mtime_ns))
    return FileListing(str(table.root), classes, files)


def load_table(root: str | os.PathLike, cfg: DataConfig) -> DataSplits:
    """A folder labelled by ``cfg.labels`` -> its splits, through the decode cache, with the folder's
    label map (``label_map.csv`` or ``cfg.label_map``) applied after the split."""
    table = table_of(cfg, root)
    if table.unlisted:
        log.info("%s: %d image file(s) under %s are not in the table: left out", table.path, table.unlisted, root)
    return apply_folder_map(load_listing(table_listing(table), cfg), root, cfg.label_map)


def table_counts(cfg: DataConfig, root: str | os.PathLike) -> tuple[tuple[str, ...], dict[str, dict[str, int]]]:
    """(classes, ``{split: {class: images}}``) of a table-labelled folder, without decoding a pixel.

    The splits are the table's own (all ``train`` without a split column: validation and test
    are split off that when the data loads).
    """
    table = table_of(cfg, root)
    return table.classes, table.counts()


__all__ = ["LabelTable", "TableRow", "image_files", "load_table", "read_table", "table_counts", "table_listing",
           "table_of"]
