"""One atomic commit point per epoch: the run folder's checkpoint files always agree.

An epoch's files (``last.safetensors``, ``train_state.pt``, the history and, when it improved,
``best.safetensors``) are separate files, so no single write can replace them together.  They are
committed in three steps:

1. each new file is written (atomically) beside its final name as ``NAME.new``;
2. ``commit.json`` is replaced atomically: the epoch and each file's sha256 and size.  This is
   the commit point: before it the previous epoch stands, after it this one does;
3. each ``NAME.new`` is renamed onto ``NAME``.

A kill or a full disk during step 1 leaves the previous epoch's files untouched (its ``.new``
files are discarded); one during step 3 leaves ``.new`` files that :func:`recover` finishes
placing.  :func:`recover` checks every file against ``commit.json`` before a run resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

from cnnkit.errors import CheckpointError, DiskFullError
from cnnkit.io import atomic_write_bytes
from cnnkit.run_folder import COMMIT

MANIFEST = COMMIT  # the run folder's commit.json
STAGED = ".new"  # suffix of a file written for a commit that is not placed yet
FORMAT = "cnnkit-commit-1"


@dataclass(frozen=True)
class Commit:
    """What ``commit.json`` records: the committed epoch count and each file's sha256 and size."""

    epoch: int  # epochs completed
    files: Mapping[str, Mapping[str, object]]  # name -> {"sha256": hex, "size": bytes}

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "epoch": self.epoch, "files": dict(self.files)}, indent=1) + "\n"


def read_commit(run_dir: Path) -> Commit | None:
    """The folder's last commit, or None where it has none (a fresh folder, or an older cnnkit's run)."""
    path = run_dir / MANIFEST
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != FORMAT:
            raise ValueError(f"format {raw.get('format')!r}")
        return Commit(int(raw["epoch"]), {str(k): dict(v) for k, v in raw["files"].items()})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: unreadable commit record ({type(exc).__name__})") from None


def commit_steps(run_dir: Path, epoch: int, files: Mapping[str, bytes],
                 write: Callable[[Path, bytes], None] = atomic_write_bytes) -> Iterator[str]:
    """Commit ``files`` (name -> bytes) as epoch ``epoch``; yields a word after each step.

    :func:`commit` runs every step; stopping the iteration after any step leaves what a kill at
    that moment would.  Files of the previous commit that are not in ``files`` (``best`` when it
    did not improve) stay as they are and are carried into the new record.  ``write`` writes one
    file atomically.  A failed write (a full disk) removes this commit's ``.new`` files and raises
    with the previous commit intact.
    """
    previous = read_commit(run_dir)
    entries = {name: e for name, e in (previous.files.items() if previous else ()) if name not in files}
    writing = ""
    try:
        for name, data in files.items():
            writing = name
            write(run_dir / (name + STAGED), data)
            entries[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            yield f"staged {name}"
        writing = MANIFEST
        write(run_dir / MANIFEST, Commit(epoch, entries).to_json().encode())
        yield "recorded"
    except Exception as exc:
        for name in files:
            (run_dir / (name + STAGED)).unlink(missing_ok=True)
        kept = f"; {run_dir} still holds epoch {previous.epoch} (--resume continues from it)" if previous else ""
        if isinstance(exc, DiskFullError):  # name the real file, not its staging name
            raise DiskFullError(run_dir / writing, exc.needed, exc.free, kept) from None
        raise
    for name in files:
        os.replace(run_dir / (name + STAGED), run_dir / name)
        yield f"placed {name}"


def commit(run_dir: Path, epoch: int, files: Mapping[str, bytes],
           write: Callable[[Path, bytes], None] = atomic_write_bytes) -> None:
    """Run every step of :func:`commit_steps`."""
    for _ in commit_steps(run_dir, epoch, files, write):
        pass


def recover(run_dir: Path) -> Commit | None:
    """Finish a commit cut short after its record, drop one cut short before it, and check every file.

    Returns the commit now in place (None: the folder has no record); a file that differs from
    the record (changed or truncated outside cnnkit) is a :class:`CheckpointError` naming it.
    """
    record = read_commit(run_dir)
    if record is None:
        return None
    for name, entry in record.files.items():
        final, staged = run_dir / name, run_dir / (name + STAGED)
        if staged.is_file() and _matches(staged, entry):
            os.replace(staged, final)  # the commit was recorded: its file takes its place
        elif not _matches(final, entry):
            found = f"{final.stat().st_size} bytes" if final.is_file() else "missing"
            raise CheckpointError(f"{final}: does not match {MANIFEST} for epoch {record.epoch} "
                                  f"({found}, {entry['size']} recorded); the run folder was changed outside cnnkit")
    for p in run_dir.glob("*" + STAGED):  # written for an epoch that never committed
        if p.is_file():
            p.unlink()
    return record


def _matches(path: Path, entry: Mapping[str, object]) -> bool:
    if not path.is_file() or path.stat().st_size != entry.get("size"):
        return False
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == entry.get("sha256")

