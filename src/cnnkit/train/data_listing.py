"""The data a run trains on, as a listing committed with its epochs, so ``--resume`` notices a change.

``data_listing.json`` holds the classes and, per split, the file count and a sha256 over each
file's path (relative to the data folder), size, mtime and label; for folder data it also keeps
those rows, so a resume can say how many files changed.  Array data (named datasets, the Python
API's arrays) has no files: its digest covers the labels, the shape and a sample of the images.

A renamed, added or removed class changes what each output means: resuming on it is refused.  Added,
removed or changed files re-split the data: refused unless the caller allows it
(``--allow-data-change``), which then says how many files changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.data import DataSplits, ImageSet
from cnnkit.errors import CheckpointError
from cnnkit.run_folder import DATA_LISTING

FORMAT = "cnnkit-data-1"
_SAMPLED_IMAGES = 64  # array data: images hashed per split (all of them would be gigabytes for large sets)


def data_listing(splits: DataSplits) -> dict[str, Any]:
    """The listing of ``splits``: {"format", "classes", "splits": {name: {"files", "sha256"[, "rows"]}}}."""
    sets = {name: s for name, s in (("train", splits.train), ("val", splits.val), ("test", splits.test))
            if s is not None and len(s)}
    paths = [p for s in sets.values() if s.paths is not None for p in s.paths]
    base = os.path.commonpath(paths) if paths else ""
    base = base if not paths or os.path.isdir(base) else os.path.dirname(base)
    return {"format": FORMAT, "classes": list(splits.train.classes),
            "splits": {name: _split_entry(s, base) for name, s in sets.items()}}


def listing_bytes(listing: Mapping[str, Any]) -> bytes:
    """The file's bytes: the same data always gives the same bytes (a resume rewrites it unchanged)."""
    return (json.dumps(listing, separators=(",", ":")) + "\n").encode()


def _split_entry(images: ImageSet, base: str) -> dict[str, Any]:
    digest = hashlib.sha256()
    if images.paths is None:
        digest.update(repr((images.images.shape, len(images.classes))).encode())
        digest.update(np.ascontiguousarray(images.labels, dtype=np.int64).tobytes())
        step = max(1, len(images) // _SAMPLED_IMAGES)
        digest.update(np.ascontiguousarray(images.images[::step][:_SAMPLED_IMAGES]).tobytes())
        return {"files": len(images), "sha256": digest.hexdigest()}
    rows = sorted([os.path.relpath(p, base) if base else p, *_identity(p), int(label)]
                  for p, label in zip(images.paths, images.labels))
    for row in rows:
        digest.update(json.dumps(row).encode() + b"\n")
    return {"files": len(rows), "sha256": digest.hexdigest(), "rows": rows}


def _identity(path: str) -> tuple[int, int]:
    """(size, mtime_ns); (-1, -1) for a file that vanished since it was decoded."""
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class DataChange:
    """What differs between the committed listing and the data found now."""

    gone: tuple[str, ...] = ()  # classes
    new: tuple[str, ...] = ()
    reordered: bool = False  # the same class names in another order (indices moved)
    splits: tuple[tuple[str, int, int, int], ...] = ()  # (split, added, removed, changed) files
    differs: tuple[str, ...] = ()  # splits of array data whose content differs (no per-file rows)

    @property
    def classes_changed(self) -> bool:
        return bool(self.gone or self.new or self.reordered)

    @property
    def files(self) -> int:
        """Files that differ (added, removed or changed, in any split)."""
        return sum(a + r + c for _, a, r, c in self.splits)

    def __bool__(self) -> bool:
        return self.classes_changed or bool(self.splits) or bool(self.differs)

    def text(self) -> str:
        parts = []
        if self.gone or self.new:
            parts.append("classes changed: " + ", ".join(
                [f"{c!r} is gone" for c in self.gone] + [f"{c!r} is new" for c in self.new]))
        elif self.reordered:
            parts.append("classes changed order")
        for split, added, removed, changed in self.splits:
            counts = [f"{n} {word}" for n, word in ((added, "added"), (removed, "removed"), (changed, "changed")) if n]
            parts.append(f"{split}: {', '.join(counts)}")
        parts += [f"{split}: its images differ" for split in self.differs]
        return "; ".join(parts)


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> DataChange:
    """How the data ``new`` differs from the committed ``old`` (both :func:`data_listing` dicts)."""
    a, b = list(old.get("classes", [])), list(new.get("classes", []))
    gone, added = tuple(c for c in a if c not in b), tuple(c for c in b if c not in a)
    splits, differs = [], []
    old_splits, new_splits = old.get("splits", {}), new.get("splits", {})
    for name in dict.fromkeys([*old_splits, *new_splits]):
        o, n = old_splits.get(name, {}), new_splits.get(name, {})
        if o.get("sha256") == n.get("sha256"):
            continue
        if "rows" in o or "rows" in n:
            splits.append((name, *_row_changes(o.get("rows", []), n.get("rows", []))))
        else:
            differs.append(name)
    return DataChange(gone, added, not gone and not added and a != b, tuple(splits), tuple(differs))


def _row_changes(old: list, new: list) -> tuple[int, int, int]:
    """(added, removed, changed) files between two splits' rows [path, size, mtime_ns, label]."""
    o = {r[0]: tuple(r[1:]) for r in old}
    n = {r[0]: tuple(r[1:]) for r in new}
    added = sum(1 for p in n if p not in o)
    removed = sum(1 for p in o if p not in n)
    changed = sum(1 for p in n if p in o and n[p] != o[p])
    return added, removed, changed


def read_listing(run_dir: Path) -> dict[str, Any] | None:
    """The run's committed listing, or None (a run of an older cnnkit)."""
    path = run_dir / DATA_LISTING
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: unreadable data listing ({type(exc).__name__})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cnnkit data listing")
    return raw
