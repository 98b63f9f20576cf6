"""``--resume``: which config a resumed run uses, and the state it continues from.

A resumed run keeps its own settings (data, model, optimizer, augmentation): only the epoch
count and whether to show progress may change.  This module is the one place that decides it.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from cnnkit.config import RunConfig, load_run_config, replace
from cnnkit.errors import CheckpointError, DataError
from cnnkit.inference import checkpoint as ckpt
from cnnkit.models.custom import check_trusted
from cnnkit.run_folder import CONFIG
from cnnkit.train.callbacks import Callback
from cnnkit.train.commit import MANIFEST, Commit, commit, read_commit, recover
from cnnkit.train.data_listing import DATA_LISTING, compare, listing_bytes, read_listing
from cnnkit.train.loop import FitState


@dataclass(frozen=True)
class Resume:
    """Continue the run in ``run_dir`` with its own config.

    ``epochs`` trains to that many epochs (None: the run's own count); ``progress`` None keeps the
    run's own setting; ``ignored`` names settings the caller was also given (e.g. command-line
    flags), which the run's own config overrides: they are named once on stderr, never applied.
    ``allow_data_change`` continues on data whose files changed since the last epoch (the same
    classes only); without it such a resume is refused.
    """

    run_dir: str | Path
    epochs: int | None = None
    progress: bool | None = None
    ignored: tuple[str, ...] = ()
    allow_data_change: bool = False

    def config(self, announce: bool = True) -> RunConfig:
        if self.ignored and announce:
            print(f"cnnkit: note: a resumed run keeps its own settings; ignored: {' '.join(self.ignored)}",
                  file=sys.stderr)
        return resumed_config(self.run_dir, self.epochs, self.progress)


def as_resume(resume: str | Path | Resume | None, cfg: RunConfig | None) -> Resume | None:
    """A run folder given with a config means: that config's epoch count and progress setting."""
    if resume is None or isinstance(resume, Resume):
        return resume
    return Resume(resume, cfg.train.epochs if cfg else None, cfg.train.progress if cfg else None)


def resumed_config(run_dir: str | Path, epochs: int | None = None, progress: bool | None = None) -> RunConfig:
    """The config saved in ``run_dir``, for ``--resume``: its own epoch count unless ``epochs`` is given."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a run folder (no config.json) to resume")
    try:
        saved = load_run_config(path, named=False)  # the run's record as saved
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable run config ({exc})") from None
    check_trusted(saved.model.name, path)  # a downloaded run folder's own module runs only with --trust-code
    return dataclasses.replace(saved, train=replace(saved.train, epochs=epochs, progress=progress))


# temporary files of writes cut short by a kill: ours (cnnkit.io.atomic_path) and safetensors' own
_TEMP_FILE = re.compile(r"^\.(.+\.[A-Za-z0-9_]+\.tmp|tmp[A-Za-z0-9]{6})$")


def remove_stale_temp_files(run_dir: Path) -> None:
    """Delete what a killed run's interrupted writes left behind (as large as the model each)."""
    for p in run_dir.iterdir():
        if _TEMP_FILE.match(p.name) and p.is_file():
            p.unlink(missing_ok=True)


def check_commit(run_dir: Path) -> Commit | None:
    """Tidy ``run_dir`` and bring its last commit into place (the writing process only, before
    anyone reads it): a commit cut short after its record is finished, one cut short before it
    is dropped, and every file is checked against ``commit.json``.  None: no record (an older
    cnnkit's run), nothing to check."""
    remove_stale_temp_files(run_dir)
    return recover(run_dir)


def restore(run_dir: Path, model: Any, optimizer: Any, scheduler: Any, cbs: Sequence[Callback],
            tidy: bool = True) -> FitState:
    """Load the last commit's weights and the optimizer, scheduler and callback states.

    ``tidy`` first runs :func:`check_commit` (in DDP only rank 0 does, and the others wait for it).
    """
    record = check_commit(run_dir) if tidy else read_commit(run_dir)
    state = ckpt.load_train_state(run_dir / ckpt.STATE)
    if record is not None and state["epoch"] != record.epoch:
        raise CheckpointError(f"{run_dir / ckpt.STATE}: holds epoch {state['epoch']} but {MANIFEST} "
                              f"committed epoch {record.epoch}; the run folder was changed outside cnnkit")
    ckpt.read_metadata(run_dir / ckpt.LAST)  # a clear error if it is not a cnnkit checkpoint
    ckpt.load_weights_into(model, run_dir / ckpt.LAST)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    for cb, sd in zip(cbs, state["callbacks"]):
        cb.load_state_dict(sd)
    return FitState(epoch=state["epoch"], step=state["step"], stop_reason=state["stop_reason"],
                    logs=list(state["logs"]))


def check_data(run_dir: Path, listing: dict, allow_change: bool) -> str | None:
    """Compare the data found now (``listing``, :func:`cnnkit.train.data_listing.data_listing`) with
    the run's committed listing (after :func:`check_commit`).

    Changed classes are a DataError (each output would mean another class); changed files are one
    unless ``allow_change``, which commits the new listing and returns the note to print.
    """
    old = read_listing(run_dir)
    change = compare(old, listing) if old is not None else None
    if not change:
        return None
    if change.classes_changed:
        raise DataError(f"{run_dir}: the data changed since the run started ({change.text()}); the model's outputs "
                        f"are the run's classes, so it cannot resume on these: start a new run")
    if not allow_change:
        raise DataError(f"{run_dir}: the data changed since the last epoch ({change.text()}); restore it, or "
                        f"resume with --allow-data-change to continue on the data as it is now")
    record = read_commit(run_dir)
    commit(run_dir, record.epoch if record else 0, {DATA_LISTING: listing_bytes(listing)})
    n = change.files
    count = f"{n} file{'s' if n != 1 else ''} changed" if n else "its images changed"
    return f"cnnkit: note: --allow-data-change: continuing on the data as it is now ({count}: {change.text()})"


def resume_note(run_dir: Path, state: FitState, epochs: int) -> str:
    """The one line a resumed run prints: where it continues, and whether the folder was checked."""
    line = f"cnnkit: resuming {run_dir} after epoch {state.epoch} of {epochs}"
    if (run_dir / MANIFEST).exists():
        what = "weights, training state, history and data" if (run_dir / DATA_LISTING).exists() else \
            "weights, training state and history"
        return line + f" ({what} match {MANIFEST})"
    return line + f" (no {MANIFEST}: a run folder of an older cnnkit, not checked)"


def train_state(st: FitState, optimizer: Any, scheduler: Any, cbs: Sequence[Callback]) -> dict[str, Any]:
    """What ``train_state.pt`` holds: everything :func:`restore` needs besides the weights."""
    return {"epoch": st.epoch, "step": st.step, "stop_reason": st.stop_reason, "logs": st.logs,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "callbacks": [cb.state_dict() for cb in cbs]}
