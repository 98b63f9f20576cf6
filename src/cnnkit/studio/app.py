"""``cnnkit studio``: data, training, review, trying and shipping a model on one local page.

``create_studio_app(root)`` serves the page (plain HTML/JS/CSS from ``studio/static``, no
network needed) and a JSON API under ``/api``.  Every path a client names is relative to the
root (data) or the runs folder and is checked to stay inside; every bad request gets a 4xx
with ``{"detail": "<one sentence>"}``.

Data:     GET  /api/info, /api/browse?path=, /api/samples.png?...   POST /api/inspect, /api/upload (zip)
Train:    POST /api/jobs (settings), /api/jobs/{id}/stop, /api/runs/{run}/resume
          GET  /api/jobs, /api/jobs/{id}, /api/jobs/{id}/events (Server-Sent Events)
Review:   GET  /api/runs, /api/runs/{run}, .../evaluation, .../cell?true=&pred=, .../most-wrong?n=,
               .../images/{i}.png, .../gradcam/{i}.png
Try/ship: POST /api/runs/{run}/predict (image)   GET .../download/checkpoint, .../download/onnx
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from base64 import b64encode
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from cnnkit.io import finite_json
from cnnkit.serve.limits import BodyLimit
from cnnkit.studio import engine
from cnnkit.studio.guard import Guard, new_token
from cnnkit.studio.paths import PathError, relative_to, scrub_tree
from cnnkit.studio.runs import details, list_runs, open_run
from cnnkit.studio.service import Studio
from cnnkit.studio.uploads import DEFAULT_QUOTA, ZipLimits, safe_name

MAX_IMAGE_UPLOAD = 10 * 1024 * 1024
MAX_ZIP_UPLOAD = 512 * 1024 * 1024
ZIP_UPLOAD_TIMEOUT = 900.0  # seconds a zip upload may take to arrive (512 MiB at ~0.6 MB/s)
MULTIPART_SLACK = 64 * 1024
MAX_JSON_DEPTH = 32  # nesting a job request never needs; deeper is refused before it is walked
STATIC = {"studio.js": "text/javascript", "studio.css": "text/css", "favicon.svg": "image/svg+xml"}
SSE_WAIT_S = 10.0
SHUTDOWN_WAIT_S = 30.0  # longest wait for a new event before a keep-alive comment


class StudioJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(finite_json(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _error(status: int, detail: str) -> StudioJSON:
    return StudioJSON({"detail": detail}, status_code=status)


class RouteBodyLimits:
    """serve's :class:`~cnnkit.serve.limits.BodyLimit` with a limit per route: a zip may be larger
    than an image, and may take longer to arrive."""

    def __init__(self, app: ASGIApp, limits: dict[str, tuple[int, float]], default: int):
        self.by_path = {path: BodyLimit(app, n + MULTIPART_SLACK, n, total_timeout=seconds)
                        for path, (n, seconds) in limits.items()}
        self.default = BodyLimit(app, default + MULTIPART_SLACK, default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.by_path.get(scope.get("path", ""), self.default) if scope["type"] == "http" else self.default
        await limit(scope, receive, send)


def _static(name: str) -> str:
    return resources.files("cnnkit.studio").joinpath(f"static/{name}").read_text(encoding="utf-8")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        parts.append(f"{'.'.join(loc) or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _depth(text: bytes) -> int:
    """The deepest nesting of brackets in a JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (byte == 0x5C, byte != 0x22)
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; 415 unless sent as ``application/json`` (an HTML form on another
    site can send text/plain without asking, never application/json), 400 if it is not one object."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise PathError(f"send the body as Content-Type: application/json (got {kind or 'none'!r})", 415)
    raw = await request.body()
    if _depth(raw) > MAX_JSON_DEPTH:
        raise PathError(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep", 400)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise PathError("the request body must be a JSON object", 400) from None
    if not isinstance(body, dict):
        raise PathError("the request body must be a JSON object", 400)
    return body


async def _read_upload(file: UploadFile | None, limit: int, what: str) -> tuple[bytes, str]:
    if file is None:
        raise PathError(f"no file uploaded: POST the {what} as multipart/form-data in the field 'file'", 400)
    data = await file.read(limit + 1)
    await file.close()
    if len(data) > limit:
        raise PathError(f"upload too large: the limit is {limit / 1024 ** 2:.3g} MiB", 413)
    return data, safe_name(file.filename or "upload", "upload") + Path(file.filename or "").suffix.lower()


def create_studio_app(root: str | Path, runs_dir: str | Path | None = None, cache_dir: str | None = None,
                      data_dir: str | None = None, max_upload_bytes: int = MAX_IMAGE_UPLOAD,
                      max_zip_bytes: int = MAX_ZIP_UPLOAD, zip_limits: ZipLimits = ZipLimits(),
                      host: str = "127.0.0.1", port: int | None = None,
                      upload_quota: int = DEFAULT_QUOTA) -> FastAPI:
    """The studio for data under ``root`` and runs under ``runs_dir`` (default ``root/runs``).

    It answers only to ``host`` (and 127.0.0.1, localhost, [::1]) on ``port`` (None: any port),
    and changes nothing unless asked by its own page (:mod:`cnnkit.studio.guard`).  Uploads
    together may unpack to ``upload_quota`` bytes under ``root/uploads``.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise engine.ConfigError(f"--root {root}: no such folder")
    if upload_quota <= 0:
        raise engine.ConfigError(f"--upload-quota must be more than 0, got {upload_quota / 1024 ** 3:g} GiB")
    runs = Path(runs_dir).expanduser() if runs_dir is not None else root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    studio = Studio(root, runs, cache_dir, data_dir, max_upload_bytes, zip_limits, upload_quota)
    token = new_token()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        # a running job stops at its next step (its run keeps the last whole epoch, resumable);
        # letting the process exit under a training thread would abort inside torch
        studio.jobs.close()
        await run_in_threadpool(studio.jobs.join, SHUTDOWN_WAIT_S)

    # no /docs or /redoc: they load Swagger from a CDN, and the studio works offline
    app = FastAPI(title="cnnkit studio", docs_url=None, redoc_url=None, openapi_url=None,
                  default_response_class=StudioJSON, lifespan=lifespan)
    app.state.studio, app.state.token = studio, token
    app.add_middleware(RouteBodyLimits, limits={"/api/upload": (max_zip_bytes, ZIP_UPLOAD_TIMEOUT)},
                       default=max_upload_bytes)
    app.add_middleware(Guard, token=token, host=host, port=port)  # outermost: refused before a body is read
    _add_error_handlers(app, studio)
    _add_page_routes(app, token)
    _add_data_routes(app, studio)
    _add_job_routes(app, studio)
    _add_run_routes(app, studio)
    return app


def _add_error_handlers(app: FastAPI, studio: Studio) -> None:
    @app.exception_handler(PathError)
    async def _path(request: Request, exc: PathError) -> StudioJSON:
        return _error(exc.status, studio.scrub(str(exc)))

    @app.exception_handler(engine.CnnkitError)
    async def _cnnkit(request: Request, exc: engine.CnnkitError) -> StudioJSON:
        status = 422 if isinstance(exc, engine.ConfigError) else 400
        return _error(status, studio.scrub(str(exc)))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> StudioJSON:
        return _error(422, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> StudioJSON:
        return _error(exc.status_code, studio.scrub(str(exc.detail)))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> StudioJSON:
        return _error(500, f"internal error ({type(exc).__name__}); the studio's log has the details")


def _add_page_routes(app: FastAPI, token: str) -> None:
    # the page carries the session token its script sends back (X-Cnnkit-Token); never cached
    page = _static("index.html").replace("{{token}}", token)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                           "Referrer-Policy": "no-referrer"})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC:
            raise PathError(f"{name!r}: no such file", 404)
        return Response(_static(name), media_type=f"{STATIC[name]}; charset=utf-8")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(_static("favicon.svg"), media_type="image/svg+xml")


def _add_data_routes(app: FastAPI, studio: Studio) -> None:
    @app.get("/api/info")
    def info() -> dict:
        return {"root": studio.root.name, "runs": studio.bases[studio.runs_dir],
                "models": [engine.AUTO, *engine.model_names()], "default_model": engine.default_model(),
                "default_epochs": engine.default_epochs(), "auto_time": engine.AUTO_TIME,
                "augment": engine.augment_presets(), "datasets": engine.dataset_names(),
                "offline_datasets": list(engine.OFFLINE_DATASETS), "max_upload_bytes": studio.max_upload_bytes,
                "upload_quota_bytes": studio.upload_quota,
                "curves": engine.curves()}

    @app.get("/api/browse")
    def browse_folder(path: str = "") -> dict:
        return studio.browse(path)

    @app.post("/api/inspect")
    async def inspect(request: Request) -> dict:
        source, label = studio.source((await _json_body(request)).get("source") or {})
        report = await run_in_threadpool(engine.inspect, source, studio.cache_dir, studio.data_dir, studio.root)
        return {**scrub_tree(report, studio.bases), "label": label, "training_size": engine.training_size(report)}

    @app.get("/api/samples.png", response_class=Response)
    async def samples(kind: str = "folder", path: str = "", name: str = "") -> Response:
        source, _ = studio.source({"kind": kind, "path": path, "name": name})
        png = await run_in_threadpool(engine.sample_grid_png, source, 16, studio.cache_dir, studio.data_dir,
                                      studio.root)
        return Response(png, media_type="image/png")

    @app.post("/api/upload")
    async def upload(file: UploadFile | None = File(None)) -> dict:
        if file is None:
            raise PathError("no file uploaded: POST a .zip of class folders in the multipart field 'file'", 400)
        name = file.filename or "upload.zip"
        spool = file.file  # Starlette spooled it (to disk past 1 MiB); the body limit bounds its size
        folder = await run_in_threadpool(studio.unpack, spool, name)
        await file.close()
        return {"path": relative_to(studio.root, folder), "name": folder.name}


def _add_job_routes(app: FastAPI, studio: Studio) -> None:
    @app.get("/api/jobs")
    def jobs() -> list:
        return studio.jobs.jobs()

    @app.post("/api/jobs")
    async def start(request: Request) -> dict:
        body = await _json_body(request)
        return await run_in_threadpool(studio.start_training, body)

    def job_or_404(job_id: int):
        job = studio.jobs.get(job_id)
        if job is None:
            raise PathError(f"no job {job_id}", 404)
        return job

    @app.get("/api/jobs/{job_id}")
    def job(job_id: int) -> dict:
        return {**job_or_404(job_id).public(), "position": studio._position(job_id)}

    @app.post("/api/jobs/{job_id}/stop")
    def stop(job_id: int) -> dict:
        job_or_404(job_id)
        studio.jobs.stop(job_id)
        return {**job_or_404(job_id).public(), "position": studio._position(job_id)}

    @app.get("/api/jobs/{job_id}/events", response_class=StreamingResponse)
    async def events(request: Request, job_id: int, after: int = Query(0, ge=0)) -> StreamingResponse:
        job_or_404(job_id)
        last_id = request.headers.get("last-event-id", "")
        start = int(last_id) if last_id.isdigit() else after  # EventSource reconnects with Last-Event-ID

        async def stream():
            seen = start
            yield "retry: 1000\n\n"
            while True:
                batch, ended = await run_in_threadpool(studio.jobs.events, job_id, seen, SSE_WAIT_S)
                for event in batch:
                    seen = event["n"]
                    yield f"id: {seen}\ndata: {json.dumps(finite_json(event), allow_nan=False)}\n\n"
                if ended and not batch:
                    yield "event: end\ndata: {}\n\n"
                    return
                if not batch:
                    yield ": keep-alive\n\n"
                    await asyncio.sleep(0)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _add_run_routes(app: FastAPI, studio: Studio) -> None:
    def run(name: str) -> Path:
        return open_run(studio.runs_dir, name)

    @app.get("/api/runs")
    def runs() -> list:
        return list_runs(studio.runs_dir, studio.root, studio.jobs.active_run_dirs())

    @app.get("/api/runs/{name}")
    def run_details(name: str) -> dict:
        return details(run(name), studio.root, studio.jobs.active_run_dirs())

    @app.delete("/api/runs/{name}")
    def delete_run(name: str) -> dict:
        return studio.delete_run(name)

    @app.post("/api/runs/{name}/resume")
    async def resume(request: Request, name: str) -> dict:
        body = await _json_body(request) if await request.body() else {}
        return await run_in_threadpool(studio.resume, name, body)

    @app.get("/api/runs/{name}/evaluation")
    async def evaluation(name: str) -> dict:
        ev = await run_in_threadpool(studio.cache.evaluation, run(name))
        keep = ("split", "n", "accuracy", "loss", "macro_f1", "per_class", "confusion_matrix", "classes")
        return {k: ev.metrics[k] for k in keep if k in ev.metrics}

    @app.get("/api/runs/{name}/cell")
    async def cell(name: str, true: int = Query(..., ge=0), pred: int = Query(..., ge=0)) -> dict:
        ev = await run_in_threadpool(studio.cache.evaluation, run(name))
        return ev.cell(true, pred)

    @app.get("/api/runs/{name}/most-wrong")
    async def most_wrong(name: str, n: int = Query(16, ge=1, le=200)) -> list:
        ev = await run_in_threadpool(studio.cache.evaluation, run(name))
        return ev.most_wrong(n)

    @app.get("/api/runs/{name}/images/{index}.png", response_class=Response)
    async def image(name: str, index: int) -> Response:
        ev = await run_in_threadpool(studio.cache.evaluation, run(name))
        return Response(engine.png_bytes(ev.image(index)), media_type="image/png",
                        headers={"Cache-Control": "no-cache"})

    @app.get("/api/runs/{name}/gradcam/{index}.png", response_class=Response)
    async def gradcam(name: str, index: int, class_name: str | None = Query(None, alias="class")) -> Response:
        run_dir = run(name)
        ev = await run_in_threadpool(studio.cache.evaluation, run_dir)
        service = await run_in_threadpool(studio.cache.service, run_dir)
        png, cls, method = await run_in_threadpool(service.gradcam_png, engine.png_bytes(ev.image(index)),
                                                   f"image {index}", class_name)
        return Response(png, media_type="image/png",
                        headers={"X-Cnnkit-Class": _header(cls), "X-Cnnkit-Method": method})

    @app.post("/api/runs/{name}/predict")
    async def predict(name: str, file: UploadFile | None = File(None), top_k: int = Query(3, ge=1, le=100),
                      gradcam: bool = True) -> dict:
        run_dir = run(name)
        data, filename = await _read_upload(file, studio.max_upload_bytes, "image")
        service = await run_in_threadpool(studio.cache.service, run_dir)
        too_large = await run_in_threadpool(engine.pixel_limit_error, data, service.max_pixels)
        if too_large:
            raise PathError(f"{filename}: {too_large}", 413)
        result = await run_in_threadpool(service.predict, data, filename, top_k)
        if gradcam and service.gradcam:
            png, cls, method = await run_in_threadpool(service.gradcam_png, data, filename, None)
            result["gradcam"] = {"png": "data:image/png;base64," + b64encode(png).decode(), "class": cls,
                                 "method": method}
        return result

    @app.get("/api/runs/{name}/download/checkpoint")
    def download_checkpoint(name: str) -> FileResponse:
        path = engine.checkpoint_file(run(name))
        return FileResponse(path, media_type="application/octet-stream", filename=f"{name}.safetensors")

    export_lock = threading.Lock()

    @app.get("/api/runs/{name}/download/onnx")
    async def download_onnx(name: str) -> FileResponse:
        run_dir = run(name)

        def export() -> Path:
            with export_lock:
                ckpt = engine.checkpoint_file(run_dir)
                out = ckpt.with_suffix(".onnx")
                if out.is_file() and out.stat().st_mtime_ns >= ckpt.stat().st_mtime_ns:
                    return out
                return engine.export_onnx(run_dir)

        path = await run_in_threadpool(export)
        return FileResponse(path, media_type="application/octet-stream", filename=f"{name}.onnx")


def _header(text: str) -> str:
    from urllib.parse import quote

    return quote(text)


def serve_studio(root: str | Path, host: str = "127.0.0.1", port: int = 8765, runs_dir: str | Path | None = None,
                 cache_dir: str | None = None, data_dir: str | None = None, log_level: str = "warning",
                 upload_quota_gb: float | None = None) -> None:
    """Run the studio with uvicorn until interrupted (a running job keeps its last whole epoch)."""
    import uvicorn

    from cnnkit.settings import check_number

    if not 0 <= port <= 65535:
        raise engine.ConfigError(f"--port must be 0-65535, got {port}")
    quota = DEFAULT_QUOTA
    if upload_quota_gb is not None:
        check_number("--upload-quota", upload_quota_gb, "(0, 1e6]")
        quota = int(upload_quota_gb * 1024 ** 3)
    app = create_studio_app(root, runs_dir, cache_dir, data_dir, host=host, port=port, upload_quota=quota)
    studio = app.state.studio
    print(f"cnnkit studio: http://{host}:{port}/  (data under {studio.root}, runs in {studio.runs_dir}; "
          "Ctrl+C stops)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)

