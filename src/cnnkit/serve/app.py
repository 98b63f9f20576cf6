"""A small web service around one model: JSON API plus a page where a person drops an image.

``create_app(model)`` takes a checkpoint file, a run folder, an ``.onnx`` export or an already
loaded predictor; everything it needs (classes, preprocessing) comes from that file.

Endpoints::

    GET  /          the HTML page (no external resources: works offline)
    GET  /health    {"status": "ok"}
    GET  /info      model name, backend, classes, input size, channels, mean/std, upload limit
    POST /predict   multipart field ``file`` (+ ``?top_k=``, + ``?min_confidence=`` P or ``auto``, also a
                    form field) -> {"top": [{"class", "probability"}], ...}; with a threshold also
                    ``"class"``: the top class, or ``"unknown"`` when its probability is below P
    POST /gradcam   multipart field ``file`` (+ ``?class=``, default the predicted one) -> PNG overlay of
                    the Grad-CAM map (gradient saliency for dense models) on the image; PyTorch
                    checkpoints only (an ONNX export has no gradients: 501)

Every bad request gets a 4xx with ``{"detail": "<one clear sentence>"}``; nothing a client
sends can stop the server.  Decoding and inference run in Starlette's thread pool, so the
event loop keeps answering while a model works; a few at a time (the rest wait in a short
queue, and beyond it get 503 with ``Retry-After``), so memory stays bounded under any load
(see :mod:`cnnkit.serve.limits`).  HEAD works on every GET route.  Concurrent predictions
share the model (an eval-mode forward pass under ``no_grad`` changes no state, and an ONNX
Runtime session is thread-safe); Grad-CAM hooks a model, so it runs on its own copy, one
request at a time.
"""

from __future__ import annotations

import copy
import io
import threading
import time
from contextlib import contextmanager
from importlib import resources, util
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import numpy as np
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from cnnkit.errors import CnnkitError
from cnnkit.inference.calibrated import resolve_min_confidence
from cnnkit.inference.predictor import answer, warm_up
from cnnkit.serve.limits import (
    BODY_IDLE_TIMEOUT,
    BODY_TOTAL_TIMEOUT,
    MIN_BODY_RATE,
    QUEUE,
    Admission,
    HeadAsGet,
    ReadBodyFirst,
    TooLarge,
    WorkGate,
    release_memory,
)

FIELD = "file"  # the multipart field that carries the image
DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file in a multipart body
MAX_TOP_K = 1000
GRADCAM_SIDE = 384  # longest side of the Grad-CAM overlay picture (the upload, scaled down)
# Pixels one upload may decode to at most, whatever the model.  Each model lowers it further to
# what its input size needs (decode_pixel_cap: 16 MP for inputs up to 256x256): a 200 KB PNG can
# declare 7000x7000 RGBA, about 200 MB decoded.  JPEGs count after their DCT-domain reduction.
DEFAULT_MAX_PIXELS = 50_000_000
# After a request whose picture had this many pixels, freed heap pages go back to the system.
TRIM_PIXELS = 1_000_000

MIN_CONFIDENCE_DOC = "answer 'unknown' below this top probability (0-1, or auto: the model's suggested one)"


def answer_fields(top: list[tuple[str, float]], min_confidence: float | None) -> dict:
    """With a threshold: ``class`` (the top class or ``unknown``) and the ``min_confidence`` used."""
    if min_confidence is None:
        return {}
    return {"class": answer(top, min_confidence), "min_confidence": min_confidence}


class ModelService:
    """The loaded model plus what the endpoints need: decode, predict, explain, describe."""

    def __init__(self, predictor: Any, max_upload_bytes: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                 gate: WorkGate | None = None):
        from cnnkit.data.decode import decode_pixel_cap

        self.predictor = predictor
        self.max_upload_bytes = max_upload_bytes
        self.gate = gate or WorkGate()
        # Grad-CAM puts a forward hook on the model it explains; a hook on the shared model would
        # also see concurrent /predict passes, so it gets a private copy (made on first use).
        self._explain_lock = threading.Lock()
        self._explain_model: Any = None
        pre = predictor.preprocess
        self.size, self.channels = tuple(pre.image_size), int(pre.channels)
        self.max_pixels = min(max_pixels, decode_pixel_cap(self.size))
        # Grad-CAM needs gradients: a PyTorch model (an ONNX session has none)
        self.gradcam = (hasattr(predictor, "model") and hasattr(predictor, "inputs")
                        and util.find_spec("cnnkit.visualize.gradcam") is not None)

    def info(self) -> dict:
        pre = self.predictor.preprocess
        return {
            "model": pre.model,
            "backend": getattr(self.predictor, "backend", ""),
            "classes": list(pre.classes),
            "num_classes": len(pre.classes),
            "image_size": list(pre.image_size),
            "channels": pre.channels,
            "mean": list(pre.mean),
            "std": list(pre.std),
            "max_upload_bytes": self.max_upload_bytes,
            "upload_field": FIELD,
            "gradcam": self.gradcam,
            "temperature": getattr(self.predictor, "temperature", 1.0),
            "min_confidence": getattr(self.predictor, "suggested_min_confidence", None),
        }

    def decode(self, data: bytes, name: str) -> np.ndarray:
        """Upload bytes -> uint8 (H, W, C); HTTP 400 with the reason when they are not a usable image,
        413 (Payload Too Large, naming the cap) when they declare more pixels than it."""
        from cnnkit.data.decode import decode_bytes

        with _as_http(name):
            return decode_bytes(data, self.size, self.channels, max_pixels=self.max_pixels)

    @contextmanager
    def bounded(self, data: bytes) -> Iterator[None]:
        """Hold a worker slot for a decode and a model call; afterwards give a big picture's memory back."""
        with self.gate.work():
            try:
                yield
            finally:
                if _header_pixels(data) >= TRIM_PIXELS:
                    release_memory()

    def threshold(self, value: str | None) -> float | None:
        """``min_confidence`` as a number (``auto``: the model's suggested one); 422 when unusable."""
        try:
            return resolve_min_confidence(value, getattr(self.predictor, "suggested_min_confidence", None))
        except CnnkitError as exc:
            raise HTTPException(422, str(exc).replace("--min-confidence", "min_confidence")) from None

    def predict(self, data: bytes, name: str, top_k: int, min_confidence: float | None = None) -> dict:
        """Runs in a worker thread; Pillow, torch and ONNX Runtime release the GIL while they work."""
        with self.bounded(data):
            return self._predict(data, name, top_k, min_confidence)

    def _predict(self, data: bytes, name: str, top_k: int, min_confidence: float | None) -> dict:
        start = time.perf_counter()
        batch = np.stack([self.decode(data, name)])  # (1, H, W, C); a writable copy (Pillow's array is read-only)
        probs = self.predictor.probs(batch)
        top = self.predictor.top_k(probs, top_k)[0]
        return {
            "filename": name,
            "model": self.predictor.preprocess.model,
            **answer_fields(top, min_confidence),
            "top": [{"class": c, "probability": p} for c, p in top],
            "time_ms": round((time.perf_counter() - start) * 1000, 3),
        }

    def class_index(self, name: str | None) -> int | None:
        from cnnkit.data.types import class_index

        try:
            return class_index(self.predictor.preprocess.classes, name)
        except CnnkitError as exc:
            raise HTTPException(422, str(exc)) from None

    def gradcam_png(self, data: bytes, name: str, class_name: str | None) -> tuple[bytes, str, str]:
        """Upload -> (PNG of the class map over the image, explained class, method); in a worker thread."""
        with self.bounded(data):
            return self._gradcam_png(data, name, class_name)

    def _gradcam_png(self, data: bytes, name: str, class_name: str | None) -> tuple[bytes, str, str]:
        import torch
        import torch.nn.functional as F
        from PIL import Image

        from cnnkit.data.decode import BadImage, probe
        from cnnkit.visualize.gradcam import class_map, overlay

        target = self.class_index(class_name)
        image = self.decode(data, name)  # (H, W, C) at the model's size: raises 400 if unusable
        try:  # the picture shown: the upload itself, scaled down to GRADCAM_SIDE
            info = probe(io.BytesIO(data), self.max_pixels)  # type: ignore[arg-type] - takes in-memory files
            scale = min(1.0, GRADCAM_SIDE / max(info.width, info.height, 1))
            shown = (max(1, round(info.height * scale)), max(1, round(info.width * scale)))
        except BadImage:
            shown = self.size
        picture = self._decode_rgb(data, name, shown)  # colour even for a greyscale model
        p = self.predictor
        x = p.inputs(np.stack([image]), layout="NHWC")  # (1, C, H, W) normalised
        cls = int(np.argmax(p.probs(np.stack([image]))[0])) if target is None else target
        with self._explain_lock:
            if self._explain_model is None:
                self._explain_model = copy.deepcopy(p.model).eval()
            cam, method = class_map(self._explain_model, x, cls)
        cam_t = torch.from_numpy(np.ascontiguousarray(cam[0]))[None, None]
        cam_big = F.interpolate(cam_t, size=shown, mode="bilinear", align_corners=False)[0, 0].numpy()
        rgb = (overlay(picture, cam_big) * 255).round().astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "PNG")
        return buf.getvalue(), p.preprocess.classes[cls], method

    def _decode_rgb(self, data: bytes, name: str, size: tuple[int, int]) -> np.ndarray:
        from cnnkit.data.decode import decode_bytes

        with _as_http(name):
            return decode_bytes(data, size, 3, max_pixels=self.max_pixels)


@contextmanager
def _as_http(name: str) -> Iterator[None]:
    """A decode failure as the client's error: 413 over the pixel cap, 400 for any other unusable image."""
    from cnnkit.data.decode import BadImage, TooManyPixels

    try:
        yield
    except TooManyPixels as exc:
        raise HTTPException(413, f"{name}: {exc}") from None
    except BadImage as exc:
        raise HTTPException(400, f"{name}: {exc}") from None


def _header_pixels(data: bytes) -> int:
    """Width x height that the upload's header declares (0 when it has no readable header)."""
    from cnnkit.data.decode import BadImage, open_image

    try:
        im = open_image(io.BytesIO(data), None)  # type: ignore[arg-type] - takes in-memory files
    except BadImage:
        return 0
    with im:
        return im.width * im.height


def _load(model: Any, device: str) -> Any:
    if isinstance(model, (str, Path)):
        from cnnkit.inference.load import load_predictor

        return load_predictor(model, device)
    return model


def _page() -> str:
    return resources.files("cnnkit.serve").joinpath("static/index.html").read_text(encoding="utf-8")


def _validation_message(exc: RequestValidationError) -> str:
    """FastAPI's error list -> one sentence that names the parameter or field."""
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query")]
        where = ".".join(loc) or "request"
        if where == FIELD:
            parts.append(f"'{FIELD}' must be an uploaded image file (multipart/form-data file part)")
        else:
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _upload_bytes(request: Request, file: UploadFile | None, limit: int) -> tuple[bytes, str]:
    """The uploaded file's bytes and name, or the 4xx that says what the client did wrong."""
    if file is None:
        form = await request.form()  # already parsed (and cached) by FastAPI
        fields = sorted(set(form.keys()))
        if fields:
            raise HTTPException(422, f"no field '{FIELD}' in the upload: send the image as the multipart "
                                     f"field '{FIELD}' (got: {', '.join(repr(f) for f in fields)})")
        raise HTTPException(400, f"no file uploaded: POST the image as multipart/form-data in the field '{FIELD}'")
    data = await file.read(limit + 1)
    await file.close()
    if len(data) > limit:
        raise TooLarge(limit)
    return data, file.filename or "upload"


def create_app(model: Any, max_upload_bytes: int = DEFAULT_MAX_UPLOAD, device: str = "cpu",
               max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None, queue: int = QUEUE,
               body_idle_timeout: float = BODY_IDLE_TIMEOUT, body_timeout: float = BODY_TOTAL_TIMEOUT,
               body_min_rate: float = MIN_BODY_RATE) -> FastAPI:
    """The web app for ``model`` (checkpoint, run folder, ``.onnx`` or a loaded predictor).

    ``max_upload_bytes`` bounds the uploaded file (413 above it); the whole request body may
    be a little larger for multipart framing.  ``max_pixels`` bounds what an upload may decode
    to (413 "decompression bomb", naming the cap, above it), lowered to what the model's input size needs.
    ``workers`` uploads decode and run the model at once (default: the cores, 2 to 4) and
    ``queue`` more wait; beyond that a request gets 503 with ``Retry-After``.  A request body
    that sends nothing for ``body_idle_timeout`` seconds, takes over ``body_timeout``, or averages under
    ``body_min_rate`` bytes/s after ``body_idle_timeout`` seconds, gets 408.  A body is read whole
    before the request is admitted, so slow uploads never hold the places good requests need.
    The API is described at ``/openapi.json``; there is no ``/docs`` page, which would load its
    scripts from the internet.
    """
    if max_upload_bytes < 1:
        raise CnnkitError(f"max upload size must be positive, got {max_upload_bytes} bytes")
    if workers is not None and workers < 1:
        raise CnnkitError(f"workers must be at least 1, got {workers}")
    if queue < 0:
        raise CnnkitError(f"queue must be 0 or more, got {queue}")
    gate = WorkGate(workers, queue)
    service = ModelService(_load(model, device), max_upload_bytes, max_pixels, gate)
    warm_up(service.predictor)  # a model that cannot answer never reports healthy
    name = service.predictor.preprocess.model or "model"
    app = FastAPI(title=f"cnnkit: {name}", description="Image classification with a cnnkit model.",
                  docs_url=None, redoc_url=None)
    app.state.service = service
    # outermost last: HEAD -> GET, then the whole body read within its limits, then admission (503)
    app.add_middleware(Admission, gate=gate)
    app.add_middleware(ReadBodyFirst, max_body=max_upload_bytes + MULTIPART_SLACK, max_upload=max_upload_bytes,
                       idle_timeout=body_idle_timeout, total_timeout=body_timeout, min_rate=body_min_rate)
    app.add_middleware(HeadAsGet)
    page = _page()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/info")
    def info() -> dict:
        return service.info()

    @app.post("/predict")
    async def predict(request: Request, file: UploadFile | None = File(None, description="the image"),
                      top_k: int = Query(3, ge=1, le=MAX_TOP_K, description="how many classes to return"),
                      min_confidence: str | None = Query(None, description=MIN_CONFIDENCE_DOC),
                      min_confidence_field: str | None = Form(None, alias="min_confidence",
                                                              description=MIN_CONFIDENCE_DOC)) -> dict:
        threshold = service.threshold(min_confidence if min_confidence is not None else min_confidence_field)
        data, filename = await _upload_bytes(request, file, service.max_upload_bytes)
        return await run_in_threadpool(service.predict, data, filename, top_k, threshold)

    @app.post("/gradcam", response_class=Response,
              responses={200: {"content": {"image/png": {}}, "description": "the class map over the image"}})
    async def gradcam(request: Request, file: UploadFile | None = File(None, description="the image"),
                      class_name: str | None = Query(None, alias="class",
                                                     description="class to explain (default: the predicted one)")
                      ) -> Response:
        if not service.gradcam:
            raise HTTPException(501, "Grad-CAM needs a PyTorch checkpoint: this server runs "
                                     f"{getattr(service.predictor, 'backend', 'a model')} without gradients")
        data, filename = await _upload_bytes(request, file, service.max_upload_bytes)
        png, cls, method = await run_in_threadpool(service.gradcam_png, data, filename, class_name)
        # headers are latin-1: percent-encode class names such as 'café' or '猫'
        return Response(png, media_type="image/png", headers={"X-Cnnkit-Class": quote(cls), "X-Cnnkit-Method": method})

    return app


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 8000, max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
          device: str = "cpu", log_level: str = "info", threads: int | None = None) -> None:
    """Load ``model`` and serve it with uvicorn until interrupted.

    ``threads`` is the intra-op thread count of each model call (torch or ONNX Runtime);
    None keeps the library's default (one per core).  Requests already run in parallel in the
    thread pool, so fewer threads per call can help many small requests on a big machine;
    ``benchmarks/bench_serve.py`` compares settings side by side.
    """
    import uvicorn

    if threads is not None and threads < 1:
        raise CnnkitError(f"threads must be at least 1, got {threads}")
    if not 0 <= port <= 65535:  # else asyncio's OverflowError, after the model has loaded
        raise CnnkitError(f"--port must be 0-65535, got {port}")
    from cnnkit.inference.load import load_predictor

    # this process is the server: torch's process-wide thread setting is right here
    app = create_app(load_predictor(model, device, threads=threads), max_upload_bytes)
    info = app.state.service.info()
    print(f"cnnkit: serving {info['model'] or 'model'} ({info['num_classes']} classes, {info['backend']}) "
          f"on http://{host}:{port}/  (Ctrl+C stops)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
