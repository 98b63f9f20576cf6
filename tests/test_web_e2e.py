"""End to end in a real browser: `cnnkit serve` in a subprocess, headless Chromium uploads an image.

The browser is driven with Playwright (``tests/browser_driver.py``) on Debian's ``chromium``
package (``.ci/install-chromium.sh``); without Chromium or the ``playwright`` package the test is
skipped.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

import browser_driver
from test_serve import make_checkpoint  # tests/ is on sys.path (pytest's rootdir-relative import)

pytestmark = browser_driver.E2E


@pytest.fixture
def server(tmp_path):
    """`cnnkit serve` on 127.0.0.1 in a subprocess; yields (base url, checkpoint)."""
    ckpt = make_checkpoint(tmp_path / "best.safetensors")
    port = browser_driver.free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "cnnkit", "serve", str(ckpt), "--host", "127.0.0.1", "--port", str(port)]
    with browser_driver.running_server(cmd, url + "health", tmp_path / "server.log", timeout=30):
        yield url, ckpt


@pytest.fixture
def browser():
    with browser_driver.open_page(900, 700) as page:
        yield page


def test_upload_on_the_page_shows_the_predicted_class(server, browser, tmp_path):
    from cnnkit.inference import Predictor

    url, ckpt = server
    page = browser
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(image)
    expected = Predictor(ckpt).predict_files([image], top_k=3)[0].top

    page.goto(url)
    page.wait_for_function("document.getElementById('model-info').textContent.includes('4 classes')")
    page.set_input_files("#file", str(image))
    page.wait_for_function("['done', 'error'].includes(document.getElementById('result').dataset.state)")
    state = page.get_attribute("#result", "data-state")
    assert state == "done", page.text_content("#error")
    shown = page.evaluate("[...document.querySelectorAll('#results li')].map(li => "
                          "[li.querySelector('.cls').textContent, li.querySelector('.pct').textContent])")
    assert [c for c, _ in shown] == [c for c, _ in expected]
    assert shown[0][1] == f"{100 * expected[0][1]:.1f}%"
    assert page.text_content("#status").startswith(expected[0][0])

    # Grad-CAM: tick the box, the overlay picture appears
    if page.evaluate("!document.getElementById('gradcam-option').hidden"):
        page.click("#gradcam")
        size = page.wait_for_function(
            "(() => { const c = document.getElementById('cam');"
            " return !document.getElementById('cam-figure').hidden && c.complete && c.naturalWidth"
            " ? [c.naturalWidth, c.naturalHeight] : null; })()").json_value()
        assert size == [64, 48]  # the upload's own shape
        assert expected[0][0] in page.text_content("#cam-caption")
    page.screenshot(path=str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a file that is not an image: the page shows the server's reason, and the next upload still works
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    page.set_input_files("#file", str(bad))
    page.wait_for_function("document.getElementById('result').dataset.state === 'error'")
    assert "not an image" in page.text_content("#error")
    # ... and no longer shows the previous image's classes beside the new file's name
    assert page.evaluate("document.getElementById('result').hidden") is True
    page.set_input_files("#file", str(image))
    page.wait_for_function("document.getElementById('result').dataset.state === 'done'")
    assert page.text_content("#results li .cls") == expected[0][0]
