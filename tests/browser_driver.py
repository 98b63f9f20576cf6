"""The one browser driver of the end-to-end tests: Playwright for Python on Debian's Chromium.

Playwright's own browser download is never used (no ``playwright install``): it launches the
``chromium`` package that ``.ci/install-chromium.sh`` installs.  Tests that use it are marked
``e2e`` and skipped when Chromium or the ``playwright`` package is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, Sequence

import httpx
import pytest

CHROMIUM = os.environ.get("CNNKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
HAVE_PLAYWRIGHT = importlib.util.find_spec("playwright") is not None

# for a test module: pytestmark = browser_driver.E2E
E2E = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason="headless Chromium not installed "
                              "(run .ci/install-chromium.sh: apt-get install chromium)"),
    pytest.mark.skipif(not HAVE_PLAYWRIGHT, reason="playwright not installed (pip install -e '.[test]')"),
]


@contextlib.contextmanager
def open_page(width: int = 900, height: int = 700) -> Iterator["object"]:
    """A fresh headless Chromium tab (a Playwright sync ``Page``); closed with its browser afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(cmd: Sequence[str], health_url: str, log_path: Path,
                   timeout: float = 60) -> Iterator[subprocess.Popen]:
    """Start ``cmd``, wait until ``health_url`` answers 200, and terminate it afterwards."""
    log = open(log_path, "wb")
    proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(health_url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
