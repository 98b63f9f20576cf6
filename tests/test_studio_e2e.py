"""The studio end to end in a real browser: pick a folder, train, open a confusion cell, try an image.

`cnnkit studio` runs in a subprocess; Playwright drives Debian's Chromium (tests/browser_driver.py).
Set CNNKIT_STUDIO_SCREENSHOTS=docs to keep the screenshot of each step there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

import browser_driver
from test_studio import make_folder

pytestmark = browser_driver.E2E


@pytest.fixture
def studio(tmp_path):
    root = tmp_path / "studio"
    make_folder(root / "shapes", n=10, size=16)
    port = browser_driver.free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "cnnkit", "studio", "--root", str(root), "--port", str(port),
           "--cache-dir", str(tmp_path / "cache")]
    with browser_driver.running_server(cmd, url + "api/info", tmp_path / "studio.log"):
        yield url, root


def _shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CNNKIT_STUDIO_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_folder_to_trained_model_to_prediction_in_the_browser(studio, tmp_path):
    url, root = studio
    shots = _shots(tmp_path)
    with browser_driver.open_page(1280, 860) as page:
        page.goto(url)
        # 1. data: the folder browser lists the generated folder; using it shows the inspection
        page.click("#folders button[data-path='shapes']")
        page.wait_for_selector("#inspection[data-state='done']")
        counts = page.evaluate("[...document.querySelectorAll('#counts tr')].map(r => r.innerText.split('\\t'))")
        assert ["bright", "10"] in counts and ["dark", "10"] in counts
        page.wait_for_function("document.getElementById('samples').complete && "
                               "document.getElementById('samples').naturalWidth > 0")
        page.screenshot(path=str(shots / "studio-1-data.png"))

        # 2. train 2 epochs; the curve gains a point per epoch while the job runs
        page.click("#to-train")
        assert page.input_value("#model") == "auto"  # the automatic default is preselected
        assert page.text_content("#model option:checked") == "auto (recommended)"
        page.select_option("#model", "mnist-cnn")
        page.fill("#epochs", "2")
        page.click("#start")
        page.wait_for_function("document.getElementById('curve-acc').dataset.points === '1'")
        run = page.text_content("#job-run")
        page.reload()  # the job lives in the server: the page reattaches and replays its curve
        page.wait_for_function(f"document.getElementById('job-run').textContent === {run!r}")
        page.wait_for_function("Number(document.getElementById('curve-acc').dataset.points) >= 1")
        page.wait_for_function("document.getElementById('curve-acc').dataset.points === '2'")
        page.wait_for_selector("#job-state[data-state='done']", timeout=60_000)
        assert "accuracy" in page.text_content("#job-state")
        page.screenshot(path=str(shots / "studio-2-train.png"))

        # 3. review: a confusion cell opens exactly its images; a thumbnail opens its Grad-CAM
        page.click("#job-review")
        page.wait_for_selector("#review-body[data-state='done']")
        cell = page.locator("#confusion td.cell").filter(has_not_text="0").first
        count = int(cell.inner_text())
        true, pred = cell.get_attribute("data-true"), cell.get_attribute("data-pred")
        cell.locator("button").click()
        page.wait_for_selector(f"#cell-images[data-cell='{true},{pred}']")
        assert page.locator("#cell-images figure").count() == count
        page.wait_for_function("[...document.querySelectorAll('#cell-images img')].every(i => i.complete && i.naturalWidth === 16)")
        page.locator("#cell-images img").first.click()
        page.wait_for_function("document.getElementById('cam-img').complete && document.getElementById('cam-img').naturalWidth > 0")
        page.screenshot(path=str(shots / "studio-3-review.png"), full_page=True)

        # 4. try: an uploaded image gets the same top classes the API gives, with its Grad-CAM
        page.click("#tabs button[data-tab='try']")
        image = next((root / "shapes" / "bright").iterdir())
        assert page.text_content("#try-title") == run
        token = page.get_attribute("meta[name=cnnkit-token]", "content")
        with httpx.Client(headers={"Origin": url.rstrip("/"), "X-Cnnkit-Token": token}) as client:
            expected = client.post(f"{url}api/runs/{run}/predict", params={"gradcam": "false"},
                                   files={"file": (image.name, image.read_bytes(), "image/png")}).json()["top"]
        page.set_input_files("#try-file", str(image))
        page.wait_for_selector("#try-status[data-state='done']")
        shown = page.evaluate("[...document.querySelectorAll('#try-results .cls')].map(e => e.textContent)")
        assert shown == [t["class"] for t in expected]
        page.wait_for_function("!document.getElementById('try-cam').hidden && document.getElementById('try-cam').naturalWidth > 0")
        assert page.get_attribute("#dl-onnx", "href").endswith("/download/onnx")
        page.screenshot(path=str(shots / "studio-4-try.png"))

        # past runs: the run is listed with its numbers
        page.click("#tabs button[data-tab='runs']")
        page.wait_for_selector(f"#runs-table tr[data-run='{run}'][data-state='done']")
        page.screenshot(path=str(shots / "studio-5-runs.png"))
