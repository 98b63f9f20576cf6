"""``cnnkit inspect``: what is in a dataset, and what is wrong with it, before training on it.

:func:`inspect_data` computes a plain dict (counts per class and split, image size spread,
unreadable files, exact and near duplicates across splits, class imbalance); :func:`render_inspection`
prints it with rich (``cnnkit inspect``'s sample grid is drawn one layer up, by
:mod:`cnnkit.commands.inspect`).  Folders are inspected file by file (every file is opened and decoded, and
its bytes hashed); named datasets are inspected as the arrays ``load_data`` returns.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cnnkit.config import DataConfig
from cnnkit.data.decode import BadImage, open_image, parallel_map
from cnnkit.data.folders import FileEntry, FileListing, list_images
from cnnkit.data.neardup import HASH_DRAFT, near_pairs, phash, similarity
from cnnkit.data.skipped import display_path
from cnnkit.data.sources import folder_listing, folder_of, load_data
from cnnkit.data.types import DataSplits

IMBALANCE_WARN = 1.5  # largest / smallest class count above which a split is called imbalanced
SPLIT_ORDER = ("train", "val", "test")


def _check_file(f: FileEntry) -> tuple[str | None, int, int, str, str | None, int | None]:
    """(sha256 of bytes, width, height, mode, problem, pHash) - decodes the pixels to catch truncation."""
    try:
        with open(f.path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
    except OSError as exc:
        return None, 0, 0, "", f"cannot read file: {exc.strerror or exc}", None
    try:
        im = open_image(f.path, Image.MAX_IMAGE_PIXELS)
    except BadImage as exc:
        return digest, 0, 0, "", str(exc), None
    try:
        w, h, mode = im.width, im.height, im.mode
        if im.format == "JPEG":
            im.draft(im.mode, HASH_DRAFT)  # a DCT-reduced decode: still reads every byte, far less work
        im.load()
        return digest, w, h, mode, None, phash(im)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a property of the file
        return digest, w, h, mode, f"truncated or corrupt image data: {exc}", None
    finally:
        im.close()


def _near_duplicates(files: list[FileEntry], hashes: list[int | None],
                     digests: list[str | None]) -> list[dict[str, Any]]:
    """Pairs of pictures in different splits whose pHashes are close (exact copies are reported apart)."""
    keep = [i for i, h in enumerate(hashes) if h is not None]
    pairs = near_pairs([hashes[i] for i in keep], [files[i].split for i in keep])
    out = []
    for a, b, dist in sorted(pairs, key=lambda p: (p[2], p[0], p[1])):
        i, j = keep[a], keep[b]
        if digests[i] == digests[j]:
            continue  # the same bytes: already an exact duplicate
        out.append({"a": display_path(files[i].path), "a_split": files[i].split,
                    "b": display_path(files[j].path), "b_split": files[j].split, "similarity": similarity(dist)})
    return out


def _size_stats(sizes: list[tuple[int, int]]) -> dict[str, Any]:
    if not sizes:
        return {"distinct": 0}
    arr = np.asarray(sizes)
    common = Counter(sizes).most_common(5)
    # the smallest, median and largest image by pixels: per side, 1x20000 and 20000x1 would make "20000x20000"
    by_area = arr[np.argsort(arr[:, 0] * arr[:, 1], kind="stable")]
    return {
        "distinct": len(set(sizes)),
        "min_hw": [int(v) for v in by_area[0]],
        "median_hw": [int(v) for v in by_area[len(by_area) // 2]],
        "max_hw": [int(v) for v in by_area[-1]],
        "most_common": [[h, w, n] for (h, w), n in common],
    }


def _imbalance(counts: dict[str, dict[str, int]], classes: list[str]) -> dict[str, float | None]:
    out = {}
    for split, per_class in counts.items():
        values = [per_class.get(c, 0) for c in classes]
        if values and min(values) > 0:
            out[split] = round(max(values) / min(values), 3)
        elif values and max(values) > 0:
            out[split] = None  # a class is missing: reported as its own warning (JSON has no inf)
    return out


def _finish(report: dict[str, Any]) -> dict[str, Any]:
    """Add the human-readable warnings that the numbers imply."""
    warnings = []
    for split, ratio in report["imbalance"].items():
        if ratio is not None and ratio > IMBALANCE_WARN:
            warnings.append(f"{split}: classes are imbalanced (largest/smallest = {ratio:g}); "
                            f"consider class weights or resampling, and judge by per-class metrics")
    for split, per_class in report["counts"].items():
        missing = [c for c in report["classes"] if per_class.get(c, 0) == 0]
        if missing:
            warnings.append(f"{split}: no images of {', '.join(missing)}")
    if report["duplicates"]["across_splits"]:
        n = len(report["duplicates"]["across_splits"])
        warnings.append(f"{n} image(s) appear in more than one split (leakage: evaluation scores "
                        f"will be optimistic); remove the copies")
    if report.get("near_duplicates"):
        warnings.append(f"{len(report['near_duplicates'])} pair(s) of near-identical pictures (resized or "
                        f"re-encoded copies) in different splits (leakage); check and remove the copies")
    if report["unreadable"]:
        warnings.append(f"{len(report['unreadable'])} file(s)/folder(s) cannot be used and will be skipped")
    if report["sizes"].get("distinct", 0) > 1:
        warnings.append("images have different sizes: they are resized to one size (150x150 unless "
                        "image_size is set)")
    if len(report["classes"]) < 2:
        warnings.append("fewer than two classes: nothing to classify")
    report["warnings"] = warnings
    return report


def inspect_folder(root: str | Path, workers: int | None = None, listing: FileListing | None = None) -> dict[str, Any]:
    """File-level report for ``root/<class>/*`` or ``root/{train,validation,test}/<class>/*`` (or for
    ``listing``, the folder's files as a labels table lists them)."""
    listing = listing if listing is not None else list_images(root)
    classes = list(listing.classes)
    counts: dict[str, Counter] = defaultdict(Counter)
    by_digest: dict[str, list[FileEntry]] = defaultdict(list)
    unreadable = list(listing.problems)
    sizes, modes = [], Counter()
    hashes: list[int | None] = []
    digests: list[str | None] = []
    for f, (digest, w, h, mode, problem, picture_hash) in zip(listing.files,
                                                              parallel_map(_check_file, listing.files, workers)):
        hashes.append(picture_hash)
        digests.append(digest)
        if digest:
            by_digest[digest].append(f)
        if problem:
            unreadable.append((f.path, problem))
            continue
        counts[f.split][classes[f.label]] += 1
        sizes.append((h, w))
        modes[mode] += 1
    across = [[g.path for g in group] for group in by_digest.values()
              if len(group) > 1 and len({g.split for g in group}) > 1]
    within = sum(len(group) - 1 for group in by_digest.values()
                 if len(group) > 1 and len({g.split for g in group}) == 1)
    count_dict = {s: {c: counts[s].get(c, 0) for c in classes} for s in SPLIT_ORDER if s in counts}
    report = {
        "source": str(listing.root),
        "kind": "folder",
        "classes": classes,
        "counts": count_dict,
        "totals": {s: sum(v.values()) for s, v in count_dict.items()},
        "sizes": _size_stats(sizes),
        "modes": dict(modes),
        "unreadable": [[display_path(p), display_path(why)] for p, why in unreadable],  # one line each
        "ignored_files": listing.ignored,
        "duplicates": {"across_splits": across, "within_split": within},
        "near_duplicates": _near_duplicates(listing.files, hashes, digests),
        "imbalance": _imbalance(count_dict, classes),
    }
    return _finish(report)


def inspect_splits(splits: DataSplits, source: str = "") -> dict[str, Any]:
    """Array-level report for already loaded data (named datasets)."""
    classes = list(splits.classes)
    count_dict, sizes, owners = {}, [], defaultdict(set)
    within = 0
    for split in SPLIT_ORDER:
        s = getattr(splits, split)
        if s is None:
            continue
        bincount = np.bincount(s.labels, minlength=len(classes))
        count_dict[split] = {c: int(bincount[i]) for i, c in enumerate(classes)}
        sizes.extend([s.image_size] * len(s))
        seen = set()
        for i in range(len(s)):
            d = hashlib.blake2b(np.ascontiguousarray(s.images[i]).tobytes(), digest_size=16).digest()
            within += d in seen
            seen.add(d)
            owners[d].add(split)
    across = sum(1 for o in owners.values() if len(o) > 1)
    report = {
        "source": source,
        "kind": "arrays",
        "classes": classes,
        "counts": count_dict,
        "totals": {s: sum(v.values()) for s, v in count_dict.items()},
        "sizes": _size_stats(sizes),
        "modes": {},
        "unreadable": [[display_path(p), display_path(why)] for p, why in splits.skipped],
        "ignored_files": 0,
        "duplicates": {"across_splits": [["(identical pixels)"]] * across, "within_split": within},
        "imbalance": _imbalance(count_dict, classes),
    }
    return _finish(report)


def inspect_data(source: str, data_dir: str | None = None, cache_dir: str | None = None,
                 workers: int | None = None, data: DataConfig | None = None) -> dict[str, Any]:
    """Report on a folder, an archive of one, or a dataset name (see ``cnnkit.data.load_data``).

    ``data``: the data settings where they say more than the source - a labels table
    (``data.labels`` and its columns) that labels the folder.
    """
    folder = folder_of(source, cache_dir)
    if folder is not None:
        table = data is not None and data.labels is not None
        return inspect_folder(folder, workers, folder_listing(replace(data, source=source, cache_dir=cache_dir))
                              if table else None)
    if data is not None:
        folder_listing(replace(data, source=source))  # a labels table for a dataset name: the one error
    cfg = DataConfig(source=source, data_dir=data_dir, cache_dir=cache_dir)
    return inspect_splits(load_data(replace(cfg, val_split=0.0, test_split=0.0)), source)


def render_inspection(report: dict[str, Any], console: Any = None) -> None:
    """Print the report as rich tables (counts, sizes, problems, warnings)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    splits = list(report["counts"])
    table = Table(title=f"{report['source']}: {len(report['classes'])} classes")
    table.add_column("class")
    for s in splits:
        table.add_column(s, justify="right")
    for c in report["classes"]:
        table.add_row(c, *(str(report["counts"][s].get(c, 0)) for s in splits))
    table.add_row("[bold]total", *(f"[bold]{report['totals'][s]}" for s in splits))
    console.print(table)
    sz = report["sizes"]
    if sz.get("distinct"):
        common = ", ".join(f"{h}x{w} ({n})" for h, w, n in sz["most_common"])
        console.print(f"image sizes (HxW): {sz['distinct']} distinct; smallest {sz['min_hw'][0]}x{sz['min_hw'][1]}, "
                      f"median {sz['median_hw'][0]}x{sz['median_hw'][1]}, largest {sz['max_hw'][0]}x{sz['max_hw'][1]} "
                      f"(by pixels); "
                      f"most common: {common}")
    if report["modes"]:
        console.print("pixel modes: " + ", ".join(f"{m} ({n})" for m, n in report["modes"].items()))
    if report["imbalance"]:
        console.print("class imbalance (largest/smallest): " +
                      ", ".join(f"{s} {r:g}" if r is not None else f"{s} n/a (a class is missing)"
                                for s, r in report["imbalance"].items()))
    dup = report["duplicates"]
    console.print(f"exact duplicates: {len(dup['across_splits'])} across splits, {dup['within_split']} within a split")
    for group in dup["across_splits"][:10]:
        if group and group[0] != "(identical pixels)":
            console.print("  [yellow]same bytes:[/] " + "  ==  ".join(group))
    if "near_duplicates" in report:
        near = report["near_duplicates"]
        console.print(f"near duplicates across splits (pHash): {len(near)}")
        if near:
            pairs = Table(title=f"near-identical pictures in different splits ({len(near)})")
            for col in ("picture", "split", "near copy", "split", "similarity"):
                pairs.add_column(col, overflow="fold")
            for p in near[:20]:
                pairs.add_row(p["a"], p["a_split"], p["b"], p["b_split"], f"{p['similarity']:.3f}")
            console.print(pairs)
    if report["unreadable"]:
        bad = Table(title=f"cannot be used ({len(report['unreadable'])})")
        bad.add_column("file or folder", overflow="fold")
        bad.add_column("why", overflow="fold")
        for path, reason in report["unreadable"][:50]:
            bad.add_row(path, reason)
        console.print(bad)
    for w in report["warnings"]:
        console.print(f"[bold yellow]warning:[/] {w}")
