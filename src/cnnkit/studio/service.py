"""What the studio's endpoints share: its folders, the job queue, cached evaluations and models.

Turning a client's request into library calls happens here (through ``engine``); the web
plumbing (routes, errors, uploads, streams) is in ``app``.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from cnnkit.run_folder import STATE
from cnnkit.studio import engine
from cnnkit.studio.jobs import JobQueue
from cnnkit.studio.paths import PathError, browse, inside, relative_to, resolve_under, scrub
from cnnkit.studio.runs import RunCache, data_label, open_run, summary
from cnnkit.studio.uploads import DEFAULT_QUOTA, UPLOADS, ZipLimits, extract_zip

FIELDS = ("source", *engine.FORM_SETTINGS)  # what a job request may hold


class Studio:
    """What the endpoints share: folders, the job queue, cached evaluations and models."""

    def __init__(self, root: Path, runs_dir: Path, cache_dir: str | None, data_dir: str | None,
                 max_upload_bytes: int, zip_limits: ZipLimits, upload_quota: int = DEFAULT_QUOTA):
        self.root, self.runs_dir = root.resolve(), runs_dir.resolve()
        self.cache_dir, self.data_dir = cache_dir, data_dir
        self.max_upload_bytes, self.zip_limits, self.upload_quota = max_upload_bytes, zip_limits, upload_quota
        self.bases = {self.root: "", self.runs_dir: self._runs_label()}
        self.jobs = JobQueue(scrub=self.scrub)
        self.cache = RunCache(max_upload_bytes, self.root)
        self._names_lock = threading.Lock()
        self._upload_lock = threading.Lock()  # one unpacking at a time: the quota counts what is on disk

    def _runs_label(self) -> str:
        try:
            return relative_to(self.root, self.runs_dir) or "."
        except ValueError:
            return "runs"

    def scrub(self, text: str) -> str:
        return scrub(text, self.bases)

    # ------------------------------------------------------------------ data sources
    def source(self, spec: Any) -> tuple[str, str]:
        """A client's ``{"kind": "folder", "path": ...}`` or ``{"kind": "named", "name": ...}``
        -> (library source string, label shown and used in run names)."""
        if not isinstance(spec, dict) or not all(isinstance(spec.get(k, ""), str) for k in ("kind", "path", "name")):
            raise PathError("source: give {'kind': 'folder', 'path': ...} or {'kind': 'named', 'name': ...} "
                            "(text values)", 422)
        kind = spec.get("kind")
        if kind == "named":
            name = str(spec.get("name") or "")
            if name not in engine.dataset_names():
                raise PathError(f"dataset {name!r} is unknown; choose one of {', '.join(engine.dataset_names())}", 422)
            return name, name
        if kind == "folder":
            folder = resolve_under(self.root, str(spec.get("path") or ""))
            if not folder.is_dir():
                raise PathError(f"{spec.get('path')!r}: not a folder", 422)
            return str(folder), relative_to(self.root, folder) or self.root.name
        raise PathError("source: give {'kind': 'folder', 'path': ...} or {'kind': 'named', 'name': ...}", 422)

    def browse(self, relative: str) -> dict[str, Any]:
        """A folder's listing for the page: the runs folder is left out (runs are not data), and
        ``uploads/`` is marked as a folder of datasets rather than one (``"dataset": false``)."""
        listing = browse(self.root, relative)
        runs = self.bases[self.runs_dir] if inside(self.root, self.runs_dir) else None
        listing["folders"] = [{**f, "dataset": f["path"] != UPLOADS} for f in listing["folders"] if f["path"] != runs]
        return listing

    def unpack(self, spool: Any, filename: str) -> Path:
        """An uploaded zip unpacked under ``uploads/``, within the per-archive limits and the quota."""
        with self._upload_lock:
            return extract_zip(spool, self.root, filename, self.zip_limits, self.upload_quota)

    def new_run_dir(self, label: str, model: str) -> Path:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(label).name or "data").strip("-.") or "data"
        base = f"{stem}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', model).strip('-')}-{time.strftime('%Y%m%d-%H%M%S')}"
        with self._names_lock:
            taken = {j["run"] for j in self.jobs.jobs()}
            name, n = base, 2
            while (self.runs_dir / name).exists() or name in taken:
                name, n = f"{base}-{n}", n + 1
            return self.runs_dir / name

    # ------------------------------------------------------------------ jobs
    def start_training(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise engine.ConfigError(f"unknown field {unknown[0]!r}; a job takes {', '.join(FIELDS)}")
        source, label = self.source(body.get("source") or {})
        settings = self._settings(body)
        budget = settings.pop("time_budget", None)
        if budget is not None:
            settings["time"] = budget  # the run's own --time: the library's TimeBudget keeps it
        run_dir = self.new_run_dir(label, settings.get("model") or engine.default_model())
        cfg = engine.build_config(source, out=run_dir, cache_dir=self.cache_dir, data_dir=self.data_dir, **settings)
        planned = cfg.model.name == engine.AUTO and "epochs" not in settings  # auto chooses the epochs
        auto = cfg.model.name == engine.AUTO
        shown = {"data": label, "model": cfg.model.name, "epochs": None if planned else cfg.train.epochs,
                 "augment": None if auto and "augment" not in settings else cfg.augment.preset, "time_budget": budget}
        job = self.jobs.submit("train", run_dir, run_dir.name, shown, lambda cbs: engine.train(cfg, cbs, self.root))
        return {**job.public(), "position": self._position(job.id)}

    def resume(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - {"epochs"})
        if unknown:
            raise engine.ConfigError(f"unknown field {unknown[0]!r}; resuming takes only epochs")
        run_dir = open_run(self.runs_dir, name)
        if not (run_dir / STATE).is_file():
            raise PathError(f"run {name!r} has no saved training state to resume (it stopped before its first "
                            "epoch ended)", 409)
        epochs = body.get("epochs")
        if epochs in (None, ""):
            epochs = None
        else:
            engine.check_form_value("epochs", epochs)
        saved = engine.saved_settings(run_dir)
        shown = {"data": self.data_label(saved.get("source", "")), "model": saved.get("model"),
                 "epochs": epochs or saved.get("epochs"), "augment": saved.get("augment"),
                 "time_budget": saved.get("time_budget"), "resume": True}
        job = self.jobs.submit("resume", run_dir, name, shown,
                               lambda cbs: engine.resume(run_dir, cbs, epochs, self.root))
        return {**job.public(), "position": self._position(job.id)}

    def data_label(self, source: str) -> str:
        """A run's data as the page names it: a dataset name, or a folder's path under the root."""
        return data_label(source, self.root)

    def delete_run(self, name: str) -> dict[str, Any]:
        """Remove a run that never finished an epoch (no checkpoint, nothing to resume, no job on it)."""
        run_dir = open_run(self.runs_dir, name)
        state = summary(run_dir, self.root, self.jobs.active_run_dirs())["state"]
        if state != "incomplete":
            raise PathError(f"run {name!r} is {state}: only a run that never finished an epoch is deleted here", 409)
        shutil.rmtree(run_dir)
        return {"deleted": name}

    def _position(self, job_id: int) -> int:
        return next((j["position"] for j in self.jobs.jobs() if j["id"] == job_id), -1)

    @staticmethod
    def _settings(body: dict[str, Any]) -> dict[str, Any]:
        """The form's filled-in fields, each checked against its setting as the CLI checks its flag
        (an empty field means the default); keyed by the flat names ``make_config`` takes."""
        out: dict[str, Any] = {}
        for field in engine.FORM_SETTINGS:
            value = body.get(field)
            if value is None or value == "":
                continue
            engine.check_form_value(field, value)
            out[field] = value
        return out
