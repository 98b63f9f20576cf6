"""Figure helpers that never open a window (no pyplot state, safe in servers and threads)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from cnnkit.io import atomic_path


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` atomically; the format follows the suffix (png, svg, pdf)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    return path
