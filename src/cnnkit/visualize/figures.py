"""Figure helpers that never open a window (no pyplot state, safe in servers and threads)."""

from __future__ import annotations

import functools
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.text import Text

from cnnkit.errors import ConfigError
from cnnkit.io import atomic_path


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


_CONTROL = {"\t": "\\t", "\r": "\\r"}  # newlines stay: titles use them


@functools.lru_cache(maxsize=16)
def _charmap(font_path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(font_path).get_charmap())


def _shown(text: str, chars: frozenset[int]) -> str:
    """``text`` with tabs and characters the font has no glyph for written as escapes (``\\t``,
    ``\\u732b``): a class name stays readable and distinct instead of drawing empty boxes."""
    out = []
    for ch in text:
        if ch in _CONTROL:
            out.append(_CONTROL[ch])
        elif ch == "\n" or ord(ch) in chars:
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def printable_text(fig: Figure) -> Figure:
    """Every text of ``fig`` drawable by its font (see :func:`_shown`), so that drawing it prints
    no missing-glyph warning; call before saving."""
    from matplotlib import font_manager
    from matplotlib.ticker import FuncFormatter

    def chars_of(props) -> frozenset[int] | None:
        try:
            return _charmap(font_manager.findfont(props, fallback_to_default=True))
        except (OSError, RuntimeError, ValueError):
            return None

    def plain(text: str) -> bool:
        return not text or (text.isascii() and text.isprintable())

    for t in fig.findobj(Text):
        text = t.get_text()
        chars = None if plain(text) else chars_of(t.get_fontproperties())
        if chars is not None:
            t.set_text(_shown(text, chars))
    for ax in fig.axes:  # tick labels (class names) are made by the formatter again at each draw
        for axis in (ax.xaxis, ax.yaxis):
            ticks = axis.get_ticklabels()
            fmt = axis.get_major_formatter()
            if getattr(fmt, "cnnkit_printable", False) or all(plain(t.get_text()) for t in ticks):
                continue
            chars = chars_of(ticks[0].get_fontproperties())
            if chars is not None:
                printable = FuncFormatter(lambda x, pos, fmt=fmt, chars=chars: _shown(fmt(x, pos), chars))
                printable.cnnkit_printable = True
                axis.set_major_formatter(printable)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` atomically; the format follows the suffix (png, svg, pdf)."""
    printable_text(fig)
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:  # else matplotlib's ValueError surfaces as a traceback
        raise ConfigError(f"{path}: cannot write a picture as .{fmt}; use one of "
                          f"{', '.join('.' + s for s in sorted(supported))} (e.g. .png)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=fmt)
    return path
