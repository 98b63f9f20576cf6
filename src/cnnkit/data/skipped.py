"""How reports write file paths and reasons: one line per file, whatever its name holds.

A training run's ``skipped.txt`` and ``cnnkit inspect`` list files that cannot be used.  File
names may hold tabs, newlines or bytes that are not UTF-8; written raw they would split a line,
shift a column or fail to encode, so every path and reason goes through :func:`display_path`.
"""

from __future__ import annotations

import os

SKIPPED_HEADER = ("# file<TAB>reason, one per line; in both, a backslash is written \\\\, a tab \\t, "
                  "a newline \\n, a carriage return \\r and a byte that is not UTF-8 \\xNN\n")


def display_path(path: str) -> str:
    """A path as one printable, unambiguous line, as reports write it.

    Backslash, tab, newline and carriage return are written ``\\\\``, ``\\t``, ``\\n``, ``\\r``;
    bytes that are not UTF-8 (which reach Python as lone surrogates, see ``os.fsdecode``) are
    written ``\\xNN``.  (On Windows, where ``\\`` separates folders, it is kept as it is.)
    """
    if os.sep != "\\":
        path = path.replace("\\", "\\\\")
    path = path.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def skipped_text(skipped: list[tuple[str, str]]) -> str:
    """The text of ``skipped.txt``: a header saying how names are escaped, then ``path<TAB>reason`` lines."""
    return SKIPPED_HEADER + "".join(f"{display_path(path)}\t{display_path(why)}\n" for path, why in skipped)
