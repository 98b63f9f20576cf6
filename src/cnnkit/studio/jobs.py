"""Training jobs: one at a time in a worker thread of the studio process, the rest in a queue.

A job's state and its list of progress events live here, in the server, so a reloaded page
reattaches (``events(after=n)``) and closing the browser stops nothing.  The worker calls
``engine.train`` - the library's own training run, as ``cnnkit train`` does - with callbacks
that only observe:

* :class:`LiveProgress` turns the loop's callbacks into events (step, epoch, done);
* a time budget is the run's own ``--time`` setting (``cfg.train.time``), kept by the library's
  :class:`~cnnkit.train.callbacks.TimeBudget` as in ``cnnkit train``;
* the named phases of the work (decoding, the feature pass, evaluation, the report: see
  :mod:`cnnkit.phases`) become ``phase`` events, so the page shows what is happening, with a
  bar and the time left, before and after the epochs;
* a stop request is honoured at the next training step, or at the next progress of a phase
  before training starts, by raising :class:`StopRequested`, the way Ctrl+C interrupts
  ``cnnkit train``: the run folder keeps its last whole epoch and ``train(..., resume=run)``
  continues it exactly (a Signal-stopped run counts as finished).  A new run stopped before
  its first epoch ended has nothing to resume: its folder is removed, and the job says so.
  The automatic default (``model: auto``) races candidates in ``RUN/candidates/<name>/`` and
  moves the chosen one to the top level only at its end: a race stopped in any of its phases
  (decoding, a feature pass, a candidate's epochs) cannot be resumed, so its whole folder is
  removed and the job says so; once the choice is in place, the records and report finish.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from cnnkit.phases import PhaseEvent, listen
from cnnkit.run_folder import BEST, STATE
from cnnkit.studio import engine

log = logging.getLogger("cnnkit.studio")

STEP_EVERY_S = 0.5  # seconds between step events (reading the running means syncs the device)
ACTIVE = ("queued", "running", "stopping")


class StopRequested(BaseException):
    """Raised inside the work at the next step after the user pressed stop.

    A BaseException, as Ctrl+C's KeyboardInterrupt is: no ``except Exception`` in the work it
    interrupts (a phase's listener guard included) may swallow it."""


@dataclass
class Job:
    id: int
    kind: str  # "train" | "resume"
    run_dir: Path
    run: str  # run name shown to the client (folder name under the runs folder)
    settings: dict[str, Any]
    start: Callable[[list], Any]  # callbacks -> RunResult
    state: str = "queued"  # queued | running | stopping | done | stopped | cancelled | error
    created: float = field(default_factory=time.time)
    events: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    stop_requested: bool = False

    @property
    def race(self) -> bool:
        """A new run of the automatic default: candidates raced, the chosen one moved in at the end."""
        return self.kind == "train" and self.settings.get("model") == engine.AUTO

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "run": self.run, "state": self.state, "settings": self.settings,
                "created": self.created, "message": self.message, "events": len(self.events)}


class LiveProgress(engine.Callback):
    """Observes the loop and appends events to the job; raises StopRequested once asked to stop."""

    def __init__(self, job: Job, emit: Callable[[Job, dict], None]):
        self.job, self.emit = job, emit
        self._epochs = 0
        self._epoch = 0
        self._last = 0.0
        self.training = False  # between the first step and the end of the epochs
        self._trained = False  # the epochs are over: evaluation and the report finish even when stopped

    def on_train_begin(self, info: dict[str, Any]) -> None:
        self.training, self._trained = True, False
        self._epochs = int(info.get("epochs", 0))
        self.emit(self.job, {"type": "begin", "epochs": self._epochs, "steps": info.get("steps")})

    def on_epoch_begin(self, epoch: int, steps: int) -> None:
        self._check_stop()
        self._epoch = epoch
        self.emit(self.job, {"type": "epoch_begin", "epoch": epoch + 1, "epochs": self._epochs, "steps": steps})

    def on_batch_end(self, step: int, logs: Mapping[str, float]) -> None:
        self._check_stop()
        now = time.monotonic()
        if now - self._last >= STEP_EVERY_S:
            self._last = now
            means = dict(logs)
            self.emit(self.job, {"type": "step", "epoch": self._epoch + 1, "step": step + 1,
                                 "loss": means.get("loss"), "acc": means.get("acc")})

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> engine.Signal | None:
        self.emit(self.job, {"type": "epoch", "epoch": epoch + 1, "epochs": self._epochs,
                             **{k: float(v) for k, v in logs.items()}})
        return None

    def on_train_end(self, logs: dict[str, Any]) -> None:
        self.training, self._trained = False, True

    @property
    def trained(self) -> bool:
        """Only the records and the report are left: a stop from here on is not honoured.  A race trains
        several candidates: it is over once its choice is the run folder's top level (checkpoint there)."""
        if self.job.race:
            return (self.job.run_dir / BEST).is_file()
        return self._trained

    def _check_stop(self) -> None:
        if self.job.stop_requested:
            raise StopRequested()

    def on_phase(self, event: PhaseEvent) -> None:
        """A named phase's start, progress or end -> a ``phase`` event (the page's bar and time left).

        A stop asked for before the epochs start is honoured here, at the phase's next progress."""
        if event.kind == "advance" and self.job.stop_requested and not self.trained:
            raise StopRequested()
        eta = event.eta
        self.emit(self.job, {"type": "phase", "name": event.name, "kind": event.kind, "done": event.done,
                             "total": event.total, "unit": event.unit, "elapsed": round(event.elapsed, 2),
                             "eta": None if eta is None else round(eta, 1), "depth": event.depth})


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, (int, float)) else value


class JobQueue:
    """FIFO of jobs with one worker thread; all state behind one condition variable."""

    def __init__(self, scrub: Callable[[str], str] = lambda s: s):
        self._cond = threading.Condition()
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._worker: threading.Thread | None = None
        self._scrub = scrub
        self._closed = False

    # ------------------------------------------------------------------ client side
    def submit(self, kind: str, run_dir: Path, run: str, settings: dict[str, Any], start: Callable[[list], Any]) -> Job:
        """Queue a job; ``settings`` are shown to the client (``start`` holds what the run uses)."""
        with self._cond:
            if any(j.run_dir == run_dir and j.state in ACTIVE for j in self._jobs.values()):
                raise engine.ConfigError(f"run {run!r} already has a job queued or running")
            job = Job(next(self._ids), kind, run_dir, run, dict(settings), start)
            self._jobs[job.id] = job
            self._emit(job, {"type": "queued", "position": self._position(job)})
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="cnnkit-studio-train", daemon=True)
                self._worker.start()
            self._cond.notify_all()
            return job

    def get(self, job_id: int) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def jobs(self) -> list[dict[str, Any]]:
        with self._cond:
            return [{**j.public(), "position": self._position(j)} for j in self._jobs.values()]

    def stop(self, job_id: int) -> Job:
        """Queued: cancelled now.  Running: stops at the next training step (resumable)."""
        with self._cond:
            job = self._jobs[job_id]
            if job.state == "queued":
                job.state = "cancelled"
                self._emit(job, {"type": "cancelled"})
            elif job.state == "running":
                job.stop_requested = True
                job.state = "stopping"
                self._emit(job, {"type": "stopping"})
            self._cond.notify_all()
            return job

    def events(self, job_id: int, after: int, timeout: float) -> tuple[list[dict[str, Any]], bool]:
        """Events numbered > ``after`` (waits up to ``timeout`` s for some); and whether the job has ended."""
        with self._cond:
            job = self._jobs[job_id]
            self._cond.wait_for(lambda: len(job.events) > after or job.state not in ACTIVE or self._closed, timeout)
            return list(job.events[after:]), job.state not in ACTIVE

    def wait(self, job_id: int, timeout: float) -> Job:
        with self._cond:
            job = self._jobs[job_id]
            self._cond.wait_for(lambda: job.state not in ACTIVE, timeout)
            return job

    def active_run_dirs(self) -> dict[Path, str]:
        with self._cond:
            return {j.run_dir: j.state for j in self._jobs.values() if j.state in ACTIVE}

    def close(self) -> None:
        """Ask a running job to stop and cancel the queue (server shutdown)."""
        with self._cond:
            self._closed = True
            for job in self._jobs.values():
                if job.state == "queued":
                    job.state = "cancelled"
                elif job.state == "running":
                    job.stop_requested = True
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait for the worker to end after :meth:`close`; False if it is still running."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        return worker is None or not worker.is_alive()

    # ------------------------------------------------------------------ worker side
    def _position(self, job: Job) -> int:
        """0 = running; n = n-th in the queue; -1 = ended."""
        if job.state in ("running", "stopping"):
            return 0
        if job.state != "queued":
            return -1
        queued = sorted(j.id for j in self._jobs.values() if j.state == "queued")
        return queued.index(job.id) + 1

    def _emit(self, job: Job, event: dict[str, Any]) -> None:
        with self._cond:
            job.events.append({"n": len(job.events) + 1, "t": time.time(), **event})
            self._cond.notify_all()

    def _next(self) -> Job | None:
        with self._cond:
            while not self._closed:
                queued = [j for j in self._jobs.values() if j.state == "queued"]
                if queued:
                    job = min(queued, key=lambda j: j.id)
                    job.state = "running"
                    self._emit(job, {"type": "running"})
                    for other in queued:
                        if other is not job:
                            self._emit(other, {"type": "queued", "position": self._position(other)})
                    return job
                self._cond.wait()
            return None

    def _work(self) -> None:
        while (job := self._next()) is not None:
            self._run(job)

    def _run(self, job: Job) -> None:
        live = LiveProgress(job, self._emit)  # the run itself writes its TensorBoard logs
        try:
            with listen(live.on_phase):
                result = job.start([live])
        except StopRequested:
            if job.race:  # its candidates' folders are no run of their own, and a race does not resume
                shutil.rmtree(job.run_dir, ignore_errors=True)
                self._finish(job, "stopped", "stopped during the automatic default's race: there is nothing to "
                             "resume (a race starts again from the beginning), so the unfinished run was removed",
                             {"resumable": False})
            elif job.kind == "train" and not (job.run_dir / STATE).is_file():
                # a new run with no whole epoch: nothing to resume, so no half-made run is left behind
                shutil.rmtree(job.run_dir, ignore_errors=True)
                self._finish(job, "stopped", "stopped before the first epoch ended: there is nothing to resume, "
                             "so the empty run was removed", {"resumable": False})
            else:
                self._finish(job, "stopped", "stopped; resume continues from the last whole epoch",
                             {"resumable": True})
        except engine.CnnkitError as exc:
            self._finish(job, "error", self._scrub(str(exc)), {})
        except Exception as exc:  # noqa: BLE001 - the studio keeps serving; the log has the traceback
            log.exception("training job %s failed", job.id)
            self._finish(job, "error", f"training failed: {type(exc).__name__}: {self._scrub(str(exc))}", {})
        else:
            metrics = {k: _number(v) for k, v in result.metrics.items() if k in ("split", "accuracy", "loss", "n")}
            self._finish(job, "done", "finished", {"metrics": metrics, "epochs_run": len(result.history)})

    def _finish(self, job: Job, state: str, message: str, extra: dict[str, Any]) -> None:
        with self._cond:
            job.state, job.message = state, message
            self._emit(job, {"type": state, "message": message, **extra})
