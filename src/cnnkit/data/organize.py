"""``cnnkit organize``: a flat folder of labelled file names -> ``DST/{train,validation,test}/<class>/``.

Kaggle-style downloads name each file after its class (``cat.123.jpg``, ``dog.7.jpg``,
``great_pyrenees_12.jpg``).  This sorts them into the class-folder layout every loader (and
Keras' ``flow_from_directory``) expects, with a stratified, seeded split.  ``SRC`` is only ever
read; ``DST`` is built in a temporary folder beside it and renamed into place when complete.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from cnnkit.data.arrays import stratified_split
from cnnkit.data.folders import entry_is_dir, is_hidden, is_image_name
from cnnkit.errors import ConfigError, DataError

SPLIT_FOLDERS = ("train", "validation", "test")
MODES = ("copy", "hardlink", "symlink")
_PREFIX = re.compile(r"^(.*?)[\s._-]*\d")  # label = text before the first digit, minus separators


def label_from_name(name: str, label_from: str = "name-prefix") -> str | None:
    """The class of a file name, or None when the rule finds none.

    ``name-prefix``: the file name (without extension) up to its first digit, trailing
    separators removed: ``cat.123.jpg`` -> ``cat``, ``golden_retriever_12.png`` ->
    ``golden_retriever``; a name without digits is all label (``cat.jpg`` -> ``cat``).
    Anything else is a regular expression searched in the file name; its group ``label``, else
    its first group, else the whole match is the class.
    """
    if label_from == "name-prefix":
        stem = name.rsplit(".", 1)[0] if "." in name else name
        m = _PREFIX.match(stem)
        label = (m.group(1) if m else stem).strip(" ._-")
        return label or None
    try:
        rx = re.compile(label_from)
    except re.error as exc:
        raise ConfigError(f"--label-from {label_from!r}: not a regular expression ({exc})") from None
    m = rx.search(name)
    if not m:
        return None
    if "label" in rx.groupindex:
        label = m.group("label")
    else:
        label = m.group(1) if rx.groups else m.group(0)
    return label or None


def _place(src: Path, dst: Path, mode: str) -> None:
    if mode == "copy":
        shutil.copy2(src, dst)
    elif mode == "hardlink":
        os.link(src, dst)
    else:
        os.symlink(src.resolve(), dst)


def organize(src: str | Path, dst: str | Path, val: float = 0.2, test: float = 0.0,
             label_from: str = "name-prefix", mode: str = "copy", seed: int = 0) -> dict:
    """Sort ``src``'s image files into ``dst/{train,validation[,test]}/<class>/``.

    Returns ``{"dst", "classes", "counts": {split: {class: n}}, "skipped": [(path, reason)]}``.
    Raises :class:`DataError` if ``dst`` exists and is not empty, or fewer than two classes are
    found; :class:`ConfigError` for bad fractions, mode or regex.
    """
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ConfigError(f"--val {val} / --test {test}: each in [0, 1) and together below 1")
    if not src.is_dir():
        raise DataError(f"{src}: not a folder")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise DataError(f"{dst}: already exists and is not empty; choose a new destination")
    if dst.resolve().is_relative_to(src.resolve()):
        raise DataError(f"{dst}: must not be inside the source folder {src} (the source is never modified)")

    files, labels, skipped = [], [], []
    try:
        entries = sorted((e for e in os.scandir(src) if not is_hidden(e.name)), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"{src}: cannot read folder: {exc.strerror or exc}") from None
    for e in entries:
        if entry_is_dir(e):
            skipped.append((e.path, "sub-folder ignored: organize sorts a flat folder of files"))
        elif not is_image_name(e.name):
            skipped.append((e.path, "not an image file name (extension)"))
        elif (label := label_from_name(e.name, label_from)) is None:
            skipped.append((e.path, f"no class label found in the name with {label_from!r}"))
        else:
            files.append(Path(e.path))
            labels.append(label)
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise DataError(f"{src}: found {len(classes)} class(es) {classes} from file names with "
                        f"--label-from {label_from!r}; need at least two")
    y = np.asarray([classes.index(label) for label in labels], np.int64)
    parts = stratified_split(y, [val, test], seed)  # train, validation, test index arrays

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    counts: dict[str, dict[str, int]] = {}
    try:
        for split, idx in zip(SPLIT_FOLDERS, parts):
            if split != "train" and not len(idx):
                continue
            counts[split] = dict(Counter(classes[y[i]] for i in idx))
            for c in classes:
                (tmp / split / c).mkdir(parents=True, exist_ok=True)
            for i in idx:
                _place(files[i], tmp / split / classes[y[i]] / files[i].name, mode)
        if dst.exists():
            dst.rmdir()  # empty (checked above)
        os.rename(tmp, dst)
    except OSError as exc:
        hint = " (hard links need SRC and DST on the same file system; try --mode copy)" if mode == "hardlink" else ""
        raise DataError(f"organizing {src} into {dst} failed: {exc.strerror or exc}{hint}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {"dst": str(dst), "classes": classes, "counts": counts, "skipped": skipped}
