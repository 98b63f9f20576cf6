"""Starting a server for a test or a benchmark: ``cnnkit serve`` in a subprocess, or an app under uvicorn
in a thread of this process.  Both listen on a free port of 127.0.0.1 and are stopped on leaving.

Plain Python (no pytest), so that ``benchmarks/soak_serve.py`` imports it too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import httpx

SRC = str(Path(__file__).resolve().parents[1] / "src")  # this tree's package, ahead of an installed one


class ServerDidNotStart(RuntimeError):
    """The server exited, or did not answer, before it was ready."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_subprocess(args: Sequence[str], timeout: float = 60.0,
                     **popen: Any) -> Iterator[tuple[subprocess.Popen, str]]:
    """``python -m cnnkit serve ARGS --host 127.0.0.1 --port P`` with this tree's ``src`` first on the path.

    Yields (the process, its base URL) once ``/health`` answers 200; :class:`ServerDidNotStart` if it
    exits or does not answer within ``timeout`` seconds.  ``popen``: extra ``subprocess.Popen``
    arguments (``stdout``, ``stderr``).  The server is terminated on leaving.
    """
    port = free_port()
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "cnnkit", "serve", *args, "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(cmd, env=env, **popen)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None:
                raise ServerDidNotStart(f"the server did not start: it exited with status {server.returncode}")
            if time.monotonic() > end:
                raise ServerDidNotStart(f"the server did not answer /health within {timeout:g} s")
            time.sleep(0.1)
        yield server, url
    finally:
        server.terminate()
        server.wait(15)


@contextmanager
def serve_in_thread(app: Any, timeout: float = 20.0) -> Iterator[int]:
    """``app`` (an ASGI app) under uvicorn in a daemon thread; yields its port once it has started
    (:class:`ServerDidNotStart` if it does not within ``timeout`` seconds)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        end = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > end:
                raise ServerDidNotStart("uvicorn did not start")
            time.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
