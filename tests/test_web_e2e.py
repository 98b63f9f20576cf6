"""End to end in a real browser: `cnnkit serve` in a subprocess, headless Chromium uploads an image.

Chromium is driven over its DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), so no WebDriver, Playwright
browser download or websocket library is needed - only Debian's ``chromium`` package
(``.ci/install-chromium.sh``).  Without it the test is skipped.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from test_serve import make_checkpoint  # tests/ is on sys.path (pytest's rootdir-relative import)

CHROMIUM = os.environ.get("CNNKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason="headless Chromium not installed (run .ci/install-chromium.sh: apt-get install chromium)"),
]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--remote-debugging-pipe", "--window-size=900,700"]


class DevTools:
    """The smallest Chrome DevTools Protocol client: commands by id over the debugging pipe."""

    def __init__(self, user_data_dir: Path, log: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        with open(log, "wb") as out:
            actions = [(os.POSIX_SPAWN_DUP2, to_chrome_r, 3), (os.POSIX_SPAWN_DUP2, from_chrome_w, 4),
                       (os.POSIX_SPAWN_DUP2, out.fileno(), 1), (os.POSIX_SPAWN_DUP2, out.fileno(), 2)]
            argv = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"]
            self.pid = os.posix_spawn(CHROMIUM, argv, os.environ, file_actions=actions, setsid=True)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._ids = itertools.count(1)
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while chunk := os.read(self._from_chrome, 1 << 16):
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()
        with self._cond:  # Chromium went away: wake every waiter
            self._replies[-1] = {}
            self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 15) -> dict:
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        with self._cond:
            if not self._cond.wait_for(lambda: msg_id in self._replies or -1 in self._replies, timeout):
                raise TimeoutError(f"Chromium did not answer {method} within {timeout} s")
            reply = self._replies.pop(msg_id, None)
        if reply is None:
            raise RuntimeError(f"Chromium exited during {method}")
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        for _ in range(50):
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                break
            time.sleep(0.1)
        else:
            os.killpg(self.pid, signal.SIGKILL)  # its own session (setsid): the renderers go too
            os.waitpid(self.pid, 0)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


class Page:
    """One tab attached in flat mode; ``js`` evaluates an expression and returns its value."""

    def __init__(self, tools: DevTools):
        self.tools = tools
        target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "DOM"):
            self.call(f"{domain}.enable")

    def call(self, method: str, params: dict | None = None) -> dict:
        return self.tools.send(method, params, self.session)

    def js(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"page error in {expression!r}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15) -> Any:
        """Poll until ``expression`` is truthy; errors count as 'not yet' (the page may still be loading)."""
        end = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < end:
            try:
                value = self.js(expression)
            except RuntimeError as exc:
                last_error, value = exc, None
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"page never satisfied {expression!r} (last error: {last_error})")

    def upload(self, selector: str, path: Path) -> None:
        """Choose ``path`` in the file input, as a person would: the page gets its 'change' event."""
        obj = self.call("Runtime.evaluate", {"expression": f"document.querySelector({json.dumps(selector)})"})
        self.call("DOM.setFileInputFiles", {"files": [str(path)], "objectId": obj["result"]["objectId"]})

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """`cnnkit serve` on 127.0.0.1 in a subprocess; yields (base url, checkpoint)."""
    ckpt = make_checkpoint(tmp_path / "best.safetensors")
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "cnnkit", "serve", str(ckpt), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        end = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"server did not start:\n{(tmp_path / 'server.log').read_text()}")
            time.sleep(0.1)
        yield url, ckpt
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def browser(tmp_path):
    tools = DevTools(tmp_path / "chromium-profile", tmp_path / "chromium.log")
    try:
        yield Page(tools)
    finally:
        tools.close()


def test_upload_on_the_page_shows_the_predicted_class(server, browser, tmp_path):
    from cnnkit.inference import Predictor

    url, ckpt = server
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(image)
    expected = Predictor(ckpt).predict_files([image], top_k=3)[0].top

    browser.call("Page.navigate", {"url": url})
    browser.wait_for("document.getElementById('model-info').textContent.includes('4 classes')")
    browser.upload("#file", image)
    state = browser.wait_for("['done', 'error'].includes(document.getElementById('result').dataset.state)"
                             " && document.getElementById('result').dataset.state")
    assert state == "done", browser.js("document.getElementById('error').textContent")
    shown = browser.js("[...document.querySelectorAll('#results li')].map(li => "
                       "[li.querySelector('.cls').textContent, li.querySelector('.pct').textContent])")
    assert [c for c, _ in shown] == [c for c, _ in expected]
    assert shown[0][1] == f"{100 * expected[0][1]:.1f}%"
    assert browser.js("document.getElementById('status').textContent").startswith(expected[0][0])

    # Grad-CAM: tick the box, the overlay picture appears
    if browser.js("!document.getElementById('gradcam-option').hidden"):
        browser.js("document.getElementById('gradcam').click()")
        size = browser.wait_for("(() => { const c = document.getElementById('cam');"
                                " return !document.getElementById('cam-figure').hidden && c.complete && c.naturalWidth"
                                " ? [c.naturalWidth, c.naturalHeight] : null; })()")
        assert size == [64, 48]  # the upload's own shape
        assert expected[0][0] in browser.js("document.getElementById('cam-caption').textContent")
    browser.screenshot(tmp_path / "page.png")
    assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a file that is not an image: the page shows the server's reason, and the next upload still works
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    browser.upload("#file", bad)
    browser.wait_for("document.getElementById('result').dataset.state === 'error'")
    assert "not an image" in browser.js("document.getElementById('error').textContent")
    # ... and no longer shows the previous image's classes beside the new file's name
    assert browser.js("document.getElementById('result').hidden") is True
    browser.upload("#file", image)
    browser.wait_for("document.getElementById('result').dataset.state === 'done'")
    assert browser.js("document.querySelector('#results li .cls').textContent") == expected[0][0]
