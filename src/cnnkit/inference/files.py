"""Image files for prediction: which files a list of paths names, and one file -> uint8 pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from cnnkit.data.folders import is_hidden, is_image_name
from cnnkit.errors import DataError


def read_image(source: str | Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """Decode one image file to uint8 (H, W, C) at ``size`` with ``channels``; DataError if unusable."""
    from cnnkit.data.decode import BadImage, decode

    try:
        return decode(str(source), tuple(size), channels)
    except BadImage as exc:
        raise DataError(f"{source}: {exc}") from None


def expand_inputs(items: Iterable[str | Path]) -> list[Path]:
    """Files stay; folders become their image files (recursively, sorted, hidden files skipped)."""
    items = list(items)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and is_image_name(f.name)
                          and not any(is_hidden(part) for part in f.relative_to(p).parts))
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    if not out:
        raise DataError(f"no image files found in {', '.join(map(str, items))}")
    return out
