"""The studio's JSON API on a tiny generated folder (2 classes x 10 images of 16x16), through TestClient."""

from __future__ import annotations

import io
import json
import os
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient  # noqa: E402

from cnnkit.studio.app import create_studio_app  # noqa: E402
from cnnkit.studio.uploads import ZipLimits  # noqa: E402


def make_folder(folder: Path, n: int = 10, size: int = 16, seed: int = 0) -> Path:
    """folder/{bright,dark}/*.png: bright squares on noise vs plain dark noise."""
    rng = np.random.default_rng(seed)
    for label, cls in enumerate(("bright", "dark")):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 40, (size, size, 3)).astype(np.int16)
            if label == 0:
                o = int(rng.integers(0, size // 2))
                img[o:o + size // 2, o:o + size // 2] += 200
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / cls / f"{cls}{i:02d}.png")
    return folder


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


FOLDER = {"kind": "folder", "path": "shapes"}
BASE = "http://127.0.0.1:8765"  # the studio answers only to the address it is bound to


def page_token(html: str) -> str:
    """The session token the studio writes into its page (what the page's script sends back)."""
    match = re.search(r'<meta name="cnnkit-token" content="([^"]+)">', html)
    assert match, "the page carries no session token"
    return match.group(1)


def studio_client(root: Path, cache: Path, **kwargs) -> TestClient:
    """A client that talks as the studio's own page does: its Origin, and the token read from the page."""
    client = TestClient(create_studio_app(root, cache_dir=str(cache), **kwargs), base_url=BASE)
    client.headers.update({"Origin": BASE, "X-Cnnkit-Token": page_token(client.get("/").text)})
    return client


def events_of(client: TestClient, job_id: int) -> list[dict]:
    """Read the job's Server-Sent Events stream to its end."""
    out = []
    with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data:") and line != "data: {}":
                out.append(json.loads(line[5:]))
    return out


def wait_state(client: TestClient, job_id: int, states: tuple[str, ...], timeout: float = 120) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {states}: {job}")


@pytest.fixture
def root(tmp_path) -> Path:
    make_folder(tmp_path / "root" / "shapes")
    return tmp_path / "root"


@pytest.fixture
def client(root, tmp_path):
    with studio_client(root, tmp_path / "cache") as c:
        yield c


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished 2-epoch run shared by the review tests: (client, root, run name, its events)."""
    base = tmp_path_factory.mktemp("studio")
    root = make_folder(base / "root" / "shapes").parent
    with studio_client(root, base / "cache") as c:
        job = c.post("/api/jobs", json={"source": FOLDER, "model": "mnist-cnn", "epochs": 2}).json()
        events = events_of(c, job["id"])
        yield c, root, job["run"], events


# ------------------------------------------------------------------ data


def test_browse_lists_folders_and_refuses_paths_outside_the_root(client, root, tmp_path):
    listing = client.get("/api/browse").json()
    shapes = next(f for f in listing["folders"] if f["name"] == "shapes")
    assert shapes == {"name": "shapes", "path": "shapes", "folders": 2, "images": 0, "dataset": True}
    inner = client.get("/api/browse", params={"path": "shapes"}).json()
    assert inner["parent"] == "" and [f["images"] for f in inner["folders"]] == [10, 10]

    outside = tmp_path / "secret"
    outside.mkdir()
    os.symlink(outside, root / "escape")
    assert "escape" not in [f["name"] for f in client.get("/api/browse").json()["folders"]]
    for bad, status in (("../", 400), ("shapes/../../", 400), ("/etc", 400), ("escape", 403), ("nope", 404)):
        r = client.get("/api/browse", params={"path": bad})
        assert r.status_code == status, (bad, r.text)
        assert str(tmp_path) not in r.json()["detail"]
    r = client.post("/api/inspect", json={"source": {"kind": "folder", "path": "escape"}})
    assert r.status_code == 403


def test_inspect_reports_counts_and_a_sample_grid_without_server_paths(client, tmp_path):
    r = client.post("/api/inspect", json={"source": FOLDER})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["classes"] == ["bright", "dark"]
    assert report["counts"]["train"] == {"bright": 10, "dark": 10}
    assert report["source"] == "shapes" and str(tmp_path) not in r.text
    grid = client.get("/api/samples.png", params={"kind": "folder", "path": "shapes"})
    assert grid.status_code == 200 and grid.content[:8] == b"\x89PNG\r\n\x1a\n"
    bad = client.post("/api/inspect", json={"source": {"kind": "named", "name": "no-such-set"}})
    assert bad.status_code == 422 and "unknown" in bad.json()["detail"]


def test_inspect_shows_near_duplicates_across_splits_by_root_relative_path(tmp_path):
    rng = np.random.default_rng(5)
    root = tmp_path / "root"
    for split in ("train", "validation"):
        for cls in ("a", "b"):
            (root / "pairs" / split / cls).mkdir(parents=True)
    pictures = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1) for _ in range(4)]
    for i, pic in enumerate(pictures):
        Image.fromarray(pic).save(root / "pairs" / "train" / "ab"[i % 2] / f"{i}.png")
    Image.fromarray(pictures[0]).resize((48, 48)).save(root / "pairs" / "validation" / "a" / "copy.png")  # resized copy
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "pairs" / "validation" / "b" / "x.png")
    with studio_client(root, tmp_path / "cache") as c:
        r = c.post("/api/inspect", json={"source": {"kind": "folder", "path": "pairs"}})
    assert r.status_code == 200, r.text
    near = r.json().get("near_duplicates")
    if near is None:
        pytest.skip("this library's inspect report has no near-duplicates")
    assert {(p["a"], p["b"]) for p in near} & {("pairs/train/a/0.png", "pairs/validation/a/copy.png"),
                                                ("pairs/validation/a/copy.png", "pairs/train/a/0.png")}
    assert str(tmp_path) not in r.text


def test_uploaded_zip_is_unpacked_under_the_root_and_unsafe_ones_are_refused(root, tmp_path):
    def zipped(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        return buf.getvalue()

    image = png(np.zeros((8, 8, 3), np.uint8))
    good = zipped({"pets/cat/a.png": image, "pets/dog/b.png": image, "__MACOSX/._x": b"junk"})
    with studio_client(root, tmp_path / "cache", zip_limits=ZipLimits(max_total_bytes=4096)) as c:
        r = c.post("/api/upload", files={"file": ("my pets.zip", good, "application/zip")})
        assert r.status_code == 200, r.text
        assert r.json()["path"] == "uploads/my-pets"
        assert sorted(p.name for p in (root / "uploads" / "my-pets" / "pets").iterdir()) == ["cat", "dog"]
        assert not (root / "uploads" / "my-pets" / "__MACOSX").exists()
        assert c.post("/api/inspect", json={"source": {"kind": "folder", "path": "uploads/my-pets"}}).status_code == 200

        evil = zipped({"ok.png": image, "../../evil.txt": b"x"})
        r = c.post("/api/upload", files={"file": ("evil.zip", evil)})
        assert r.status_code == 400 and "outside" in r.json()["detail"]
        link = zipfile.ZipInfo("cat/link.png")
        link.external_attr = (0o120777 << 16)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(link, "/etc/passwd")
        assert c.post("/api/upload", files={"file": ("link.zip", buf.getvalue())}).status_code == 400
        bomb = zipped({"a/big.png": b"\0" * 100_000})  # compresses to ~100 bytes, unpacks past the cap
        r = c.post("/api/upload", files={"file": ("bomb.zip", bomb)})
        assert r.status_code == 413
        assert c.post("/api/upload", files={"file": ("x.zip", b"not a zip")}).status_code == 400
    assert not (tmp_path / "evil.txt").exists() and not (root.parent / "evil.txt").exists()
    assert sorted(p.name for p in (root / "uploads").iterdir()) == ["my-pets"]  # nothing left of the refused ones


# ------------------------------------------------------------------ train


def test_training_job_streams_epochs_then_done_and_writes_tensorboard_logs(trained):
    from cnnkit.train.tensorboard import read_scalars

    client, root, run, events = trained
    types = [e["type"] for e in events if e["type"] != "phase"]
    assert types[:4] == ["queued", "running", "begin", "epoch_begin"]
    # the work before and after the epochs is named, with progress: decoding, then evaluation and the report
    phases = [(e["name"], e["kind"]) for e in events if e["type"] == "phase"]
    names = list(dict.fromkeys(name for name, _ in phases))
    assert names[0] == "reading image sizes" and "decoding" in names and names[-2:] == ["evaluation", "report"]
    decoding = [e for e in events if e["type"] == "phase" and e["name"] == "decoding"]
    assert decoding[0]["kind"] == "start" and decoding[-1]["kind"] == "end" and decoding[-1]["done"] == 20
    assert decoding[-1]["total"] == 20 and decoding[-1]["unit"] == "images" and decoding[-1]["eta"] == 0
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2]
    assert types[-1] == "done" and events[-1]["epochs_run"] == 2
    assert [e["n"] for e in events] == list(range(1, len(events) + 1))
    epoch = next(e for e in events if e["type"] == "epoch")
    assert {"loss", "acc", "val_loss", "val_acc", "lr"} <= set(epoch)

    logs = list((root / "runs" / run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(logs) == 1
    scalars = read_scalars(logs[0])
    assert [s for s, tag, _ in scalars if tag == "val_acc"] == [1, 2]
    epochs = [e for e in events if e["type"] == "epoch"]
    assert next(v for s, tag, v in scalars if tag == "loss" and s == 2) == pytest.approx(epochs[1]["loss"], rel=1e-6)

    # a reload reattaches: the same events again from the start, or from the last one seen
    again = events_of(client, 1)
    assert [e["n"] for e in again] == [e["n"] for e in events]
    with client.stream("GET", "/api/jobs/1/events", headers={"Last-Event-ID": str(len(events) - 1)}) as s:
        tail = [json.loads(line[5:]) for line in s.iter_lines() if line.startswith("data:") and line != "data: {}"]
    assert [e["type"] for e in tail] == ["done"]


def test_the_form_offers_the_automatic_default_first_and_it_trains(client, root):
    info = client.get("/api/info").json()
    assert info["models"][0] == info["default_model"] == "auto" and "mnist-cnn" in info["models"]
    assert info["auto_time"] > 0
    grey = make_folder(root / "grey")
    for path in grey.rglob("*.png"):  # small grey images: planned as a fast net from scratch
        Image.open(path).convert("L").save(path)
    job = client.post("/api/jobs", json={"source": {"kind": "folder", "path": "grey"}, "model": "auto", "epochs": 1,
                                         "time_budget": 60}).json()
    assert job["settings"]["model"] == "auto" and job["settings"]["epochs"] == 1
    assert wait_state(client, job["id"], ("done", "error", "stopped"))["state"] == "done"
    run = root / "runs" / job["run"]
    saved = json.loads((run / "config.json").read_text())
    record = json.loads((run / "auto.json").read_text())
    chosen = next(c for c in record["candidates"] if c["chosen"])
    assert saved["model"]["name"] == chosen["model"] and record["budget_s"] == 60  # raced within the budget
    assert record["line"].startswith("cnnkit: auto:") and saved["train"]["epochs"] == 1  # the epochs given
    # the page hears the race's phases, and reads what it chose with the candidates' table
    phases = {e["name"] for e in events_of(client, job["id"]) if e["type"] == "phase"}
    assert {"preparing data", "report"} <= phases and any(p.startswith("candidate ") for p in phases), phases
    shown = client.get(f"/api/runs/{job['run']}").json()["auto"]
    assert shown["line"] == record["line"].removeprefix("cnnkit: auto: ") and shown["notes"] == record["notes"]
    assert [c["name"] for c in shown["candidates"]] == [c["name"] for c in record["candidates"]]
    assert {"score", "cv", "seconds", "stopped", "chosen"} <= set(shown["candidates"][0])


def test_a_race_stopped_in_a_candidate_says_so_and_leaves_no_run(client, root):
    # a candidate of the automatic default trains in RUN/candidates/<name>; a race does not resume,
    # so a stop there (even after the candidate's first whole epoch) removes the whole run folder
    grey = make_folder(root / "grey")
    for path in grey.rglob("*.png"):  # small grey images: the race starts with nets from scratch
        Image.open(path).convert("L").save(path)
    job = client.post("/api/jobs", json={"source": {"kind": "folder", "path": "grey"}, "model": "auto",
                                         "time_budget": 3600}).json()  # measured costs fit even on a busy machine
    run = root / "runs" / job["run"]
    end = time.monotonic() + 300  # a busy machine: importing and measuring come first
    while not any((run / "candidates").glob("*/train_state.pt")) and time.monotonic() < end:
        time.sleep(0.02)
    assert any((run / "candidates").glob("*/train_state.pt")), "no candidate finished an epoch"
    client.post(f"/api/jobs/{job['id']}/stop")
    stopped = wait_state(client, job["id"], ("stopped", "done", "error"), timeout=300)
    assert stopped["state"] == "stopped" and "nothing to resume" in stopped["message"], stopped
    last = events_of(client, job["id"])[-1]
    assert last["type"] == "stopped" and last["resumable"] is False
    assert not run.exists()  # its candidates/ subfolder with it
    assert job["run"] not in [r["name"] for r in client.get("/api/runs").json()]
    assert client.post(f"/api/runs/{job['run']}/resume", json={}).status_code == 404


def test_bad_settings_get_one_clear_422_and_queue_nothing(client):
    cases = [({"epochs": 0}, "train.epochs"), ({"model": "no-such-net"}, "unknown"),
             ({"augment": "wild"}, "augment"), ({"epochs": "two"}, "epochs"), ({"time_budget": -5}, "time_budget"),
             ({"model": "os:system"}, "unknown")]
    for settings, word in cases:
        r = client.post("/api/jobs", json={"source": FOLDER, **settings})
        assert r.status_code == 422, (settings, r.text)
        assert word in r.json()["detail"] and "Traceback" not in r.text
    assert client.post("/api/jobs", json={"source": {"kind": "folder", "path": "../"}}).status_code == 400
    broken = client.post("/api/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400
    assert client.get("/api/jobs").json() == []


def test_jobs_wait_in_a_queue_and_stop_cancels_or_stops(client):
    first = client.post("/api/jobs", json={"source": FOLDER, "model": "mlp", "epochs": 500}).json()
    second = client.post("/api/jobs", json={"source": FOLDER, "model": "mlp", "epochs": 1}).json()
    third = client.post("/api/jobs", json={"source": FOLDER, "model": "mlp", "epochs": 1}).json()
    assert second["position"] >= 1 and third["position"] == second["position"] + 1
    assert [j["id"] for j in client.get("/api/jobs").json()] == [first["id"], second["id"], third["id"]]
    assert client.post(f"/api/jobs/{third['id']}/stop").json()["state"] == "cancelled"
    wait_state(client, first["id"], ("running",))
    assert client.get(f"/api/jobs/{second['id']}").json()["position"] == 1  # next in line
    client.post(f"/api/jobs/{first['id']}/stop")
    assert wait_state(client, first["id"], ("stopped",))["state"] == "stopped"
    assert wait_state(client, second["id"], ("done",))["state"] == "done"
    first_end = next(e["t"] for e in events_of(client, first["id"]) if e["type"] == "stopped")
    second_start = next(e["t"] for e in events_of(client, second["id"]) if e["type"] == "running")
    assert second_start >= first_end  # one training at a time, in order
    assert [e["type"] for e in events_of(client, third["id"])] == ["queued", "cancelled"]


def test_a_stopped_run_resumes_to_its_epoch_count(client, root):
    job = client.post("/api/jobs", json={"source": FOLDER, "model": "mlp", "epochs": 40, "time_budget": 600}).json()
    end = time.monotonic() + 60
    while not (root / "runs" / job["run"] / "train_state.pt").exists() and time.monotonic() < end:
        time.sleep(0.02)
    client.post(f"/api/jobs/{job['id']}/stop")
    wait_state(client, job["id"], ("stopped", "done"))
    listed = next(r for r in client.get("/api/runs").json() if r["name"] == job["run"])
    assert listed["state"] == "stopped" and listed["resumable"] and listed["epochs"] < 40
    resumed = client.post(f"/api/runs/{job['run']}/resume", json={}).json()
    assert resumed["kind"] == "resume"
    # the resumed job shows the run's own settings: its budget, model and epochs
    assert resumed["settings"] == {"data": "shapes", "model": "mlp", "epochs": 40, "augment": "none",
                                   "time_budget": 600, "resume": True}
    assert wait_state(client, resumed["id"], ("done", "error", "stopped"))["state"] == "done"
    history = json.loads((root / "runs" / job["run"] / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 41))
    assert client.post(f"/api/runs/{job['run']}/resume", json={}).status_code == 200  # finished: nothing to redo
    assert client.post("/api/runs/nope/resume", json={}).status_code == 404


# ------------------------------------------------------------------ review, try, ship


def test_runs_are_listed_with_their_numbers(trained):
    client, root, run, _ = trained
    listed = next(r for r in client.get("/api/runs").json() if r["name"] == run)
    assert listed["model"] == "mnist-cnn" and listed["data"] == "shapes"
    assert listed["epochs"] == 2 and listed["epochs_planned"] == 2 and listed["state"] == "done"
    assert 0 <= listed["accuracy"] <= 1 and listed["date"]
    details = client.get(f"/api/runs/{run}").json()
    assert [h["epoch"] for h in details["history"]] == [1, 2]
    for bad in ("..", "../..", "%2e%2e", "shapes"):
        assert client.get(f"/api/runs/{bad}/evaluation").status_code in (400, 403, 404), bad


def test_confusion_cells_open_their_images_and_grad_cam(trained):
    client, root, run, _ = trained
    ev = client.get(f"/api/runs/{run}/evaluation").json()
    cm = np.array(ev["confusion_matrix"])
    assert cm.sum() == ev["n"] and ev["classes"] == ["bright", "dark"]
    seen = []
    for t in range(2):
        for p in range(2):
            cell = client.get(f"/api/runs/{run}/cell", params={"true": t, "pred": p}).json()
            assert cell["count"] == cm[t, p] == len(cell["images"])
            assert all(i["true"] == ev["classes"][t] and i["pred"] == ev["classes"][p] for i in cell["images"])
            seen += [i["index"] for i in cell["images"]]
    assert sorted(seen) == list(range(ev["n"]))
    thumb = Image.open(io.BytesIO(client.get(f"/api/runs/{run}/images/{seen[0]}.png").content))
    assert thumb.size == (16, 16)
    cam = client.get(f"/api/runs/{run}/gradcam/{seen[0]}.png")
    assert cam.status_code == 200 and cam.headers["x-cnnkit-method"] == "Grad-CAM"
    assert Image.open(io.BytesIO(cam.content)).size == (16, 16)
    assert client.get(f"/api/runs/{run}/images/{ev['n']}.png").status_code == 404
    assert client.get(f"/api/runs/{run}/cell", params={"true": 5, "pred": 0}).status_code == 404
    wrong = client.get(f"/api/runs/{run}/most-wrong", params={"n": 3}).json()
    assert len(wrong) == min(3, ev["n"]) and wrong == sorted(wrong, key=lambda w: -w["loss"])


def test_predict_matches_the_library_and_downloads_are_the_run_files(trained, tmp_path):
    from cnnkit.inference import Predictor
    from cnnkit.serve.export import read_export_metadata

    client, root, run, _ = trained
    image = next((root / "shapes" / "dark").iterdir())
    expected = Predictor(root / "runs" / run).predict_files([image], top_k=2)[0].top
    r = client.post(f"/api/runs/{run}/predict", params={"top_k": 2},
                    files={"file": (image.name, image.read_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(t["class"], pytest.approx(t["probability"], abs=1e-5)) for t in body["top"]] == \
        [(c, pytest.approx(p, abs=1e-5)) for c, p in expected]
    assert body["gradcam"]["png"].startswith("data:image/png;base64,") and body["gradcam"]["class"] == expected[0][0]
    bad = client.post(f"/api/runs/{run}/predict", files={"file": ("notes.png", b"plain text", "image/png")})
    assert bad.status_code == 400 and "not an image" in bad.json()["detail"]
    huge = client.post(f"/api/runs/{run}/predict", files={"file": ("big.png", b"\0" * (11 * 1024 * 1024))})
    assert huge.status_code == 413
    buf = io.BytesIO()
    Image.new("1", (5000, 5000)).save(buf, "PNG")  # a few KB declaring 25 MP, over the pixel cap
    bomb = client.post(f"/api/runs/{run}/predict", files={"file": ("bomb.png", buf.getvalue(), "image/png")})
    assert bomb.status_code == 413 and bomb.json()["detail"] == "bomb.png: too large: 25 MP; the limit is 16.8 MP"
    buf = io.BytesIO()
    Image.new("RGB", (5000, 5000)).save(buf, "JPEG", quality=10)  # a JPEG could be decoded smaller: the same rule
    bomb = client.post(f"/api/runs/{run}/predict", files={"file": ("bomb.jpg", buf.getvalue(), "image/jpeg")})
    assert bomb.status_code == 413 and bomb.json()["detail"] == "bomb.jpg: too large: 25 MP; the limit is 16.8 MP"
    assert client.post(f"/api/runs/{run}/predict").status_code == 400

    ckpt = client.get(f"/api/runs/{run}/download/checkpoint")
    assert ckpt.content == (root / "runs" / run / "best.safetensors").read_bytes()
    onnx = client.get(f"/api/runs/{run}/download/onnx")
    assert onnx.status_code == 200
    (tmp_path / "model.onnx").write_bytes(onnx.content)
    assert read_export_metadata(tmp_path / "model.onnx")["preprocess"]["classes"] == ["bright", "dark"]


def test_the_page_is_offline_and_the_api_has_no_cdn_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and "cnnkit studio" in page.text
    for name in ("studio.js", "studio.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text
    assert "https://" not in page.text and "http://" not in page.text
    for path in ("/docs", "/redoc", "/openapi.json", "/static/../app.py", "/static/secret.txt"):
        assert client.get(path).status_code == 404, path


def test_cli_names_a_missing_root(tmp_path, capsys):
    from cnnkit.cli import main

    assert main(["studio", "--root", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_a_time_budget_ends_training_at_the_first_epoch_end_past_it(client, root):
    job = client.post("/api/jobs", json={"source": FOLDER, "model": "mlp", "epochs": 50, "time_budget": 0.001}).json()
    assert job["settings"]["time_budget"] == 0.001
    assert wait_state(client, job["id"], ("done", "error", "stopped"))["state"] == "done"
    history = json.loads((root / "runs" / job["run"] / "history.json").read_text())
    assert len(history) == 1  # the library's stop Signal at the first epoch end; the run is then finished
    assert (root / "runs" / job["run"] / "metrics.json").is_file()
    saved = json.loads((root / "runs" / job["run"] / "config.json").read_text())
    assert saved["train"]["time"] == 0.001  # the run's own --time, kept by the library's TimeBudget
