"""What keeps a server's memory and time bounded whatever clients send.

* :class:`BodyLimit` refuses bodies over the upload limit (413) and bodies that stall or drip
  slower than a minimum rate (408), as they stream in, without reading them into memory first.
* :class:`ReadBodyFirst` reads a whole upload, within the same limits, before the request goes on
  to :class:`Admission`: a slow body holds only its own connection, never a worker or queue place.
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
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import IO, Iterator

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_IDLE_TIMEOUT = 15.0  # seconds a request body may go without a byte arriving
BODY_TOTAL_TIMEOUT = 120.0  # seconds a whole request body may take (10 MiB at ~85 KB/s)
# bytes per second a request body must average once it has had BODY_IDLE_TIMEOUT seconds: a byte
# every few seconds is never idle, and would hold its connection until the total timeout, then again
MIN_BODY_RATE = 4096
SPOOL_BYTES = 1024 * 1024  # ReadBodyFirst keeps this much of a body in memory, the rest in a temporary file
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
    def __init__(self, seconds: float, what: str, detail: str | None = None):
        super().__init__(408, detail or f"request body too slow: {what} within {seconds:g} s")


class _BodyReader:
    """``receive`` for one request body within the limits: size (413), idle time, total time and
    minimum average rate (408).  Once the body is complete it passes ``receive`` through, untimed."""

    def __init__(self, receive: Receive, max_body: int, max_upload: int, idle_timeout: float,
                 total_timeout: float, min_rate: float):
        self.receive, self.max_body, self.max_upload = receive, max_body, max_upload
        self.idle, self.total, self.min_rate = idle_timeout, total_timeout, min_rate
        self.start = time.monotonic()
        self.seen = 0
        self.done = False

    async def __call__(self) -> Message:
        if self.done:  # the body is read: later receive() calls wait for a disconnect, untimed
            return await self.receive()
        now = time.monotonic()
        # (seconds to wait, why it would be too slow) - the nearest limit decides
        waits = [(self.idle, "idle"), (max(self.start + self.total - now, 0.0), "total")]
        if self.min_rate > 0:  # by then the bytes seen so far are under the rate
            waits.append((max(self.start + max(self.idle, self.seen / self.min_rate) - now, 0.0), "rate"))
        wait, why = min(waits)
        try:
            message = await asyncio.wait_for(self.receive(), wait)
        except asyncio.TimeoutError:
            raise self._too_slow(why) from None
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.max_body:
                raise TooLarge(self.max_upload)
            self.done = not message.get("more_body", False)
            elapsed = time.monotonic() - self.start
            if not self.done and self.min_rate > 0 and elapsed > self.idle and self.seen < self.min_rate * elapsed:
                raise self._too_slow("rate")
        return message

    def _too_slow(self, why: str) -> BodyTimeout:
        if why == "idle":
            return BodyTimeout(self.idle, "no data")
        if why == "total":
            return BodyTimeout(self.total, "not complete")
        rate = f"{self.min_rate / 1024:.3g} KiB/s" if self.min_rate >= 1024 else f"{self.min_rate:g} bytes/s"
        elapsed = time.monotonic() - self.start
        return BodyTimeout(elapsed, "", f"request body too slow: {self.seen} bytes in {elapsed:.1f} s, under the "
                                        f"{rate} a body must average")


class BodyLimit:
    """Refuse request bodies over ``max_body`` bytes, or that stall, without buffering them.

    A declared Content-Length over the limit is answered at once; a chunked body is counted as
    it streams in and stopped at the first byte over.  A body that sends nothing for
    ``idle_timeout`` seconds, is not complete after ``total_timeout``, or averages under
    ``min_rate`` bytes/s once it has had ``idle_timeout`` seconds (0: no minimum) gets 408: a
    stalled or dripping upload would otherwise hold its connection (and what it was admitted to).
    """

    def __init__(self, app: ASGIApp, max_body: int, max_upload: int, idle_timeout: float = BODY_IDLE_TIMEOUT,
                 total_timeout: float = BODY_TOTAL_TIMEOUT, min_rate: float = MIN_BODY_RATE):
        self.app, self.max_body, self.max_upload = app, max_body, max_upload
        self.idle_timeout, self.total_timeout, self.min_rate = idle_timeout, total_timeout, min_rate

    def reader(self, receive: Receive) -> _BodyReader:
        return _BodyReader(receive, self.max_body, self.max_upload, self.idle_timeout, self.total_timeout,
                           self.min_rate)

    def declared_too_large(self, scope: Scope) -> bool:
        declared = dict(scope["headers"]).get(b"content-length")
        return declared is not None and declared.isdigit() and int(declared) > self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        if self.declared_too_large(scope):
            await JSONResponse({"detail": TooLarge(self.max_upload).detail}, 413)(scope, receive, send)
            return
        await self.app(scope, self.reader(receive), send)


class ReadBodyFirst(BodyLimit):
    """:class:`BodyLimit` that reads the whole body before the request goes on (to :class:`Admission`).

    So only complete uploads are admitted: however many clients send slowly, each holds its own
    connection while it sends (and is cut by the limits), never a worker or a queue place that
    good requests need.  A body is kept in memory up to ``spool_bytes`` and in a temporary file
    beyond that, then replayed to the app as it arrived.
    """

    def __init__(self, app: ASGIApp, max_body: int, max_upload: int, idle_timeout: float = BODY_IDLE_TIMEOUT,
                 total_timeout: float = BODY_TOTAL_TIMEOUT, min_rate: float = MIN_BODY_RATE,
                 spool_bytes: int = SPOOL_BYTES):
        super().__init__(app, max_body, max_upload, idle_timeout, total_timeout, min_rate)
        self.spool_bytes = spool_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        if self.declared_too_large(scope):
            await JSONResponse({"detail": TooLarge(self.max_upload).detail}, 413)(scope, receive, send)
            return
        with tempfile.SpooledTemporaryFile(max_size=self.spool_bytes) as body:
            reader = self.reader(receive)
            try:
                while not reader.done:
                    message = await reader()
                    if message["type"] == "http.disconnect":
                        return  # the client left before its body was complete: nothing to answer
                    body.write(message.get("body", b""))
            except HTTPException as exc:  # 413 or 408, said as the app would say it
                await JSONResponse({"detail": exc.detail}, exc.status_code)(scope, receive, send)
                return
            size = body.tell()
            body.seek(0)
            await self.app(scope, _replay(body, size, receive), send)


_REPLAY_CHUNK = 256 * 1024


def _replay(body: IO[bytes], size: int, receive: Receive) -> Receive:
    """``receive`` giving ``body`` (``size`` bytes) in chunks, then the client's own messages."""
    sent = 0
    finished = False

    async def replay() -> Message:
        nonlocal sent, finished
        if finished:
            return await receive()  # a disconnect, when it comes
        chunk = body.read(_REPLAY_CHUNK)
        sent += len(chunk)
        finished = sent >= size
        return {"type": "http.request", "body": chunk, "more_body": not finished}

    return replay


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
