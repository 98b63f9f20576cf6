"""What keeps a server's memory and time bounded whatever clients send.

* :class:`BodyLimit` refuses bodies over the upload limit (413) and bodies that stall (408), as
  they stream in, without reading them into memory first.
* :class:`WorkGate` admits a bounded number of uploads at once (the rest get 503 with
  ``Retry-After``) and lets only a few of them decode and run the model at the same time: each
  decode holds a full-size picture for a moment, so the number of them at once is the memory bound.
* :class:`HeadAsGet` answers HEAD on every GET route like GET, without the body.
* :func:`release_memory` hands freed heap pages back to the system after a large request.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import platform
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_IDLE_TIMEOUT = 15.0  # seconds a request body may go without a byte arriving
BODY_TOTAL_TIMEOUT = 120.0  # seconds a whole request body may take (10 MiB at ~85 KB/s)
QUEUE = 16  # uploads that may wait for a worker beyond those working
RETRY_AFTER = 1  # seconds, in the 503's Retry-After header


def default_workers() -> int:
    """Decodes and model calls at once: the cores, between 2 and 4 (more only adds memory)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(2, min(4, cores))


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.3g} MiB" if n >= 1024 * 1024 else f"{n / 1024:.3g} KiB"


class TooLarge(HTTPException):
    """Raised from inside body reading; an HTTPException so FastAPI's form parser lets it through."""

    def __init__(self, limit: int):
        super().__init__(413, f"upload too large: the limit is {_mib(limit)} ({limit} bytes)")


class BodyTimeout(HTTPException):
    def __init__(self, seconds: float, what: str):
        super().__init__(408, f"request body too slow: {what} within {seconds:g} s")


class BodyLimit:
    """Refuse request bodies over ``max_body`` bytes, or that stall, without buffering them.

    A declared Content-Length over the limit is answered at once; a chunked body is counted as
    it streams in and stopped at the first byte over.  A body that sends nothing for
    ``idle_timeout`` seconds, or is not complete after ``total_timeout``, gets 408: a stalled
    upload would otherwise hold its connection and its place in the queue for ever.
    """

    def __init__(self, app: ASGIApp, max_body: int, max_upload: int, idle_timeout: float = BODY_IDLE_TIMEOUT,
                 total_timeout: float = BODY_TOTAL_TIMEOUT):
        self.app, self.max_body, self.max_upload = app, max_body, max_upload
        self.idle_timeout, self.total_timeout = idle_timeout, total_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await JSONResponse({"detail": TooLarge(self.max_upload).detail}, 413)(scope, receive, send)
            return
        seen = 0
        deadline = time.monotonic() + self.total_timeout
        done = False

        async def counted() -> Message:
            nonlocal seen, done
            if done:  # the body is read: later receive() calls wait for a disconnect, untimed
                return await receive()
            left = deadline - time.monotonic()
            wait, what = ((self.idle_timeout, "no data") if self.idle_timeout < left
                          else (max(left, 0.0), "not complete"))
            try:
                message = await asyncio.wait_for(receive(), wait)
            except asyncio.TimeoutError:
                limit = self.idle_timeout if what == "no data" else self.total_timeout
                raise BodyTimeout(limit, what) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise TooLarge(self.max_upload)
                done = not message.get("more_body", False)
            return message

        await self.app(scope, counted, send)


class WorkGate:
    """At most ``workers`` decodes + model calls at once, and at most ``queue`` more waiting.

    ``admit()`` is non-blocking (the event loop must never wait): False means the server is full
    and the request should get 503.  ``work()`` is entered in the worker thread and blocks there
    until a worker slot is free.
    """

    def __init__(self, workers: int | None = None, queue: int = QUEUE):
        self.workers = default_workers() if workers is None else workers
        if self.workers < 1 or queue < 0:
            raise ValueError(f"workers must be >= 1 and queue >= 0, got {self.workers} and {queue}")
        self.capacity = self.workers + queue
        self._lock = threading.Lock()
        self._inside = 0
        self._slots = threading.BoundedSemaphore(self.workers)

    @property
    def inside(self) -> int:
        return self._inside

    def admit(self) -> bool:
        with self._lock:
            if self._inside >= self.capacity:
                return False
            self._inside += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._inside -= 1

    @contextmanager
    def work(self) -> Iterator[None]:
        with self._slots:
            yield


class Admission:
    """ASGI middleware: uploads (POST) pass ``gate.admit()`` before their body is read, else 503."""

    def __init__(self, app: ASGIApp, gate: WorkGate):
        self.app, self.gate = app, gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if not self.gate.admit():
            busy = JSONResponse({"detail": f"server busy: {self.gate.capacity} uploads in progress; "
                                           f"retry in {RETRY_AFTER} s"}, 503,
                                headers={"Retry-After": str(RETRY_AFTER)})
            await busy(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.gate.leave()


class HeadAsGet:
    """ASGI middleware: HEAD runs the GET route and sends its status and headers only."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {"type": "http.response.body", "body": b"", "more_body": False}
                if sent_end:
                    return
                sent_end.append(True)
            await send(message)

        sent_end: list[bool] = []
        await self.app({**scope, "method": "GET"}, receive, headers_only)


def _trim_function():
    if platform.system() != "Linux":
        return None
    try:
        fn = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl and other libcs: no malloc_trim
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


_TRIM = _trim_function()


def release_memory() -> bool:
    """Return freed heap pages to the system (glibc ``malloc_trim(0)``); False where unsupported.

    glibc keeps the memory a large decode freed in its arenas, so without this a server's RSS
    stays at its peak after one big picture.
    """
    return bool(_TRIM and _TRIM(0) >= 0)
