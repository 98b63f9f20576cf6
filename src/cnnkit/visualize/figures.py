"""Figure helpers that never open a window (no pyplot state, safe in servers and threads)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from cnnkit.errors import ConfigError
from cnnkit.io import atomic_path


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` atomically; the format follows the suffix (png, svg, pdf)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:  # else matplotlib's ValueError surfaces as a traceback
        raise ConfigError(f"{path}: cannot write a picture as .{fmt}; use one of "
                          f"{', '.join('.' + s for s in sorted(supported))} (e.g. .png)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=fmt)
    return path
