"""The studio serves only its own page: Host, Origin and token checks, the upload quota, links out of
the root, and bad values - each over real HTTP to uvicorn in a thread, or through TestClient."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
pytest.importorskip("uvicorn")

import httpx  # noqa: E402

from cnnkit.studio.app import create_studio_app  # noqa: E402
from serve_helpers import serve_in_thread  # noqa: E402
from test_studio import FOLDER, make_folder, page_token, png, studio_client, wait_state  # noqa: E402


@pytest.fixture
def root(tmp_path) -> Path:
    make_folder(tmp_path / "root" / "shapes")
    return tmp_path / "root"


@pytest.fixture
def live(root, tmp_path):
    """(base URL, session token, root) of a studio under uvicorn on a free port of 127.0.0.1."""
    app = create_studio_app(root, cache_dir=str(tmp_path / "cache"))
    with serve_in_thread(app) as port:
        base = f"http://127.0.0.1:{port}"
        yield base, page_token(httpx.get(base + "/").text), root


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# ------------------------------------------------------------------ Host


def test_a_wrong_host_is_refused_on_every_route(live):
    base, token, _ = live
    port = base.rsplit(":", 1)[1]
    own = {"Origin": base, "X-Cnnkit-Token": token}
    routes = [("GET", "/"), ("GET", "/api/info"), ("GET", "/api/browse"), ("GET", "/api/runs"), ("GET", "/api/jobs"),
              ("GET", "/static/studio.js"), ("GET", "/api/samples.png?kind=folder&path=shapes"),
              ("POST", "/api/inspect"), ("POST", "/api/jobs")]
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}", f"localhost.:{port}",
                 f"127.0.0.1:{port}x", ""):
        for method, path in routes:
            r = httpx.request(method, base + path, headers={**own, "Host": host}, json={"source": FOLDER})
            assert r.status_code == 421, (host, path, r.status_code)
            assert "shapes" not in r.text and "wrong Host" in r.json()["detail"]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        r = httpx.get(base + "/api/browse", headers={"Host": host})
        assert r.status_code == 200 and "shapes" in [f["name"] for f in r.json()["folders"]], host
    assert httpx.get(base + "/api/jobs").json() == []  # nothing was started by the refused posts


def test_the_port_and_a_named_host_are_part_of_the_check(root, tmp_path):
    from fastapi.testclient import TestClient

    app = create_studio_app(root, cache_dir=str(tmp_path / "cache"), host="studio.lan", port=9000)
    client = TestClient(app, base_url="http://studio.lan:9000")
    assert client.get("/api/runs").status_code == 200
    assert client.get("/api/runs", headers={"Host": "localhost:9000"}).status_code == 200
    assert client.get("/api/runs", headers={"Host": "studio.lan:9001"}).status_code == 421
    assert client.get("/api/runs", headers={"Host": "studio.lan"}).status_code == 421  # not port 80
    assert "studio.lan:9000" in client.get("/api/runs", headers={"Host": "other:9000"}).json()["detail"]


# ------------------------------------------------------------------ Origin, content type, token


def test_cross_site_posts_are_refused_and_start_nothing(live):
    base, token, root = live
    body = json.dumps({"source": FOLDER, "model": "mlp", "epochs": 1})
    text_plain = {"Content-Type": "text/plain"}
    cases = [
        ({"Origin": "http://evil.example", **text_plain}, 403),  # the auto-submitting form of the issue
        ({"Origin": "http://evil.example", "Content-Type": "application/json", "X-Cnnkit-Token": token}, 403),
        ({"Origin": "null", "Content-Type": "application/json", "X-Cnnkit-Token": token}, 403),
        ({"Origin": base.replace("127.0.0.1", "localhost"), "Content-Type": "application/json",
          "X-Cnnkit-Token": token}, 403),  # another origin on this machine
        ({"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json", "X-Cnnkit-Token": token}, 403),
        ({"Content-Type": "application/json", "X-Cnnkit-Token": token}, 403),  # neither Origin nor Sec-Fetch-Site
        ({"Origin": base, "Content-Type": "application/json"}, 403),  # no token
        ({"Origin": base, "Content-Type": "application/json", "X-Cnnkit-Token": token[:-1] + "x"}, 403),
        ({"Origin": base, "X-Cnnkit-Token": token, **text_plain}, 415),  # JSON only as application/json
        ({"Origin": base, "X-Cnnkit-Token": token}, 415),  # no Content-Type at all
    ]
    for headers, status in cases:
        r = httpx.post(base + "/api/jobs", content=body, headers=headers)
        assert r.status_code == status, (headers, r.text)
        assert "detail" in r.json()
    assert "token" in httpx.post(base + "/api/jobs", content=body, headers={"Origin": base}).json()["detail"]
    assert httpx.get(base + "/api/jobs").json() == []

    evil = {"Origin": "http://evil.example"}
    assert httpx.post(base + "/api/inspect", json={"source": FOLDER}, headers=evil).status_code == 403
    assert httpx.post(base + "/api/upload", headers=evil,
                      files={"file": ("x.zip", zipped({"a/x.png": b"1"}))}).status_code == 403
    assert not (root / "uploads").exists()

    own = {"Origin": base, "X-Cnnkit-Token": token}
    job = httpx.post(base + "/api/jobs", content=body, headers={**own, "Content-Type": "application/json"}).json()
    assert httpx.post(f"{base}/api/jobs/{job['id']}/stop", headers=evil).status_code == 403
    assert httpx.post(f"{base}/api/jobs/{job['id']}/stop", headers={"Origin": base}).status_code == 403
    # the page's own way: a fetch sends Sec-Fetch-Site: same-origin (and an Origin on POST)
    same = {"Sec-Fetch-Site": "same-origin", "X-Cnnkit-Token": token}
    assert httpx.post(f"{base}/api/jobs/{job['id']}/stop", headers=same).status_code == 200
    assert httpx.post(base + "/api/inspect", json={"source": FOLDER}, headers=own).status_code == 200


def test_the_token_is_per_process_and_only_in_the_page(root, tmp_path):
    one = studio_client(root, tmp_path / "cache")
    two = studio_client(root, tmp_path / "cache")
    assert one.headers["X-Cnnkit-Token"] != two.headers["X-Cnnkit-Token"]
    page = one.get("/")
    assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
    assert one.headers["X-Cnnkit-Token"] not in one.get("/api/info").text
    assert one.headers["X-Cnnkit-Token"] not in one.get("/static/studio.js").text
    r = two.post("/api/inspect", json={"source": FOLDER}, headers={"X-Cnnkit-Token": one.headers["X-Cnnkit-Token"]})
    assert r.status_code == 403


def test_the_favicon_is_served(live):
    base, _, _ = live
    for path in ("/favicon.ico", "/static/favicon.svg"):
        r = httpx.get(base + path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml") and b"<svg" in r.content
    assert 'rel="icon"' in httpx.get(base + "/").text


# ------------------------------------------------------------------ upload quota


def test_uploads_together_stop_at_the_quota_with_a_plain_507(root, tmp_path):
    archive = zipped({"pets/cat/a.png": b"\0" * 150_000, "pets/dog/b.png": b"\0" * 150_000})  # ~1 KB -> 300 KB
    assert len(archive) < 5_000
    with studio_client(root, tmp_path / "cache", upload_quota=700_000) as c:
        assert c.get("/api/info").json()["upload_quota_bytes"] == 700_000
        for _ in range(2):
            assert c.post("/api/upload", files={"file": ("pets.zip", archive)}).status_code == 200
        r = c.post("/api/upload", files={"file": ("pets.zip", archive)})
        assert r.status_code == 507, r.text
        detail = r.json()["detail"]
        assert "upload quota" in detail and "684 KiB" in detail and "--upload-quota" in detail, detail
        assert str(tmp_path) not in detail
    assert sorted(p.name for p in (root / "uploads").iterdir()) == ["pets", "pets-2"]  # nothing left of the third
    assert sum(f.stat().st_size for f in (root / "uploads").rglob("*") if f.is_file()) == 600_000


def test_cli_refuses_a_bad_quota(tmp_path, capsys):
    from cnnkit.cli import main

    assert main(["studio", "--root", str(tmp_path), "--upload-quota", "-1"]) == 2
    assert "--upload-quota" in capsys.readouterr().err


# ------------------------------------------------------------------ links out of the root


@pytest.fixture
def mixed(tmp_path):
    """root/mixed/{a,b}/ (10 images each) with two links out: the folder c/ and the file a/leak.png."""
    root = tmp_path / "root"
    make_folder(root / "mixed", n=10)
    os.rename(root / "mixed" / "bright", root / "mixed" / "a")
    os.rename(root / "mixed" / "dark", root / "mixed" / "b")
    outside = tmp_path / "outside"
    make_folder(outside, n=6)
    magenta = np.zeros((16, 16, 3), np.uint8)
    magenta[..., 0] = magenta[..., 2] = 255
    Image.fromarray(magenta).save(outside / "x.png")
    os.symlink(outside / "bright", root / "mixed" / "c")
    os.symlink(outside / "x.png", root / "mixed" / "a" / "leak.png")
    os.symlink(root / "mixed" / "b", root / "mixed" / "b-again")  # a link that stays inside is fine
    return root


def test_links_out_of_the_root_are_never_listed_drawn_or_trained_on(mixed, tmp_path):
    with studio_client(mixed, tmp_path / "cache") as c:
        listing = c.get("/api/browse", params={"path": "mixed"}).json()
        assert [f["name"] for f in listing["folders"]] == ["a", "b", "b-again"]
        assert listing["left_out"] == [{"name": "c", "why": "a link that leads outside the studio folder: left out"}]
        inner = c.get("/api/browse", params={"path": "mixed/a"}).json()
        assert [f["name"] for f in inner["left_out"]] == ["leak.png"]
        assert next(f for f in listing["folders"] if f["name"] == "a")["images"] == 10  # leak.png not counted
        for bad in ("mixed/c", "mixed/a/leak.png"):
            assert c.get("/api/browse", params={"path": bad}).status_code == 403

        r = c.post("/api/inspect", json={"source": {"kind": "folder", "path": "mixed"}})
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["classes"] == ["a", "b"] and report["counts"]["train"]["a"] == 10
        notes = {path: why for path, why in report["unreadable"]}
        assert "outside the studio folder" in notes["mixed/c"] and "outside" in notes["mixed/a/leak.png"]
        assert str(tmp_path) not in r.text
        assert c.get("/api/samples.png", params={"kind": "folder", "path": "mixed"}).status_code == 200

        job = c.post("/api/jobs", json={"source": {"kind": "folder", "path": "mixed"}, "model": "mlp",
                                        "epochs": 1}).json()
        assert wait_state(c, job["id"], ("done", "error", "stopped"))["state"] == "done"
        run = mixed / "runs" / job["run"]
        skipped = (run / "skipped.txt").read_text()
        assert "leak.png" in skipped and "outside the studio folder" in skipped
        ev = c.get(f"/api/runs/{job['run']}/evaluation").json()
        assert ev["classes"] == ["a", "b"]
        for i in range(ev["n"]):  # no evaluated picture is the magenta one outside
            thumb = np.asarray(Image.open(io.BytesIO(c.get(f"/api/runs/{job['run']}/images/{i}.png").content)))
            assert not (thumb[..., 0] == 255).all() or not (thumb[..., 1] == 0).all()


def test_a_run_whose_data_or_checkpoint_lies_outside_is_not_opened(trained_outside):
    client, run = trained_outside
    r = client.get(f"/api/runs/{run}/evaluation")
    assert r.status_code in (400, 403) and "outside" in r.json()["detail"]


@pytest.fixture
def trained_outside(tmp_path):
    """A run in the studio's runs folder that was trained (by the CLI) on a folder outside the root."""
    from cnnkit.commands.train import train
    from cnnkit.config import make_config

    data = make_folder(tmp_path / "elsewhere" / "shapes", n=6)
    root = tmp_path / "root"
    root.mkdir()
    cfg = make_config(data=str(data), model="mlp", epochs=1, out=str(root / "runs" / "cli-run"), progress=False,
                      cache_dir=str(tmp_path / "cache"))
    train(cfg, explicit_out=True)
    with studio_client(root, tmp_path / "cache") as c:
        yield c, "cli-run"


# ------------------------------------------------------------------ bad values


def test_every_bad_value_gets_a_4xx_naming_the_field(client_and_root):
    c, root = client_and_root

    def post(raw: str | bytes):
        return c.post("/api/jobs", content=raw, headers={"Content-Type": "application/json"})

    source = json.dumps(FOLDER)
    cases = [('"1e18"', "epochs"), ('"inf"', "epochs"), ("1e400", "epochs"), ("true", "epochs"), ("2.5", "epochs"),
             ("[1]", "epochs"), ('{"a": 1}', "epochs"), ("0", "epochs"), ("-3", "epochs")]
    for value, field in cases:
        r = post(f'{{"source": {source}, "model": "mlp", "epochs": {value}}}')
        assert 400 <= r.status_code < 500, (value, r.text)
        assert r.json()["detail"].startswith(field), (value, r.json())
    for value in ('"inf"', "1e400", "-1", "true", "0", "[5]"):
        r = post(f'{{"source": {source}, "time_budget": {value}}}')
        assert r.status_code == 422 and r.json()["detail"].startswith("time_budget"), (value, r.text)
    for field, value in (("model", '["mlp"]'), ("augment", "3"), ("batch_size", "1e400"), ("batch_size", "true")):
        r = post(f'{{"source": {source}, "{field}": {value}}}')
        assert r.status_code == 422 and r.json()["detail"].startswith(field), (field, value, r.text)
    for src in ([FOLDER], "shapes", {"kind": ["folder"], "path": "shapes"}, {"kind": "folder", "path": ["shapes"]}, 7):
        r = c.post("/api/jobs", json={"source": src})
        assert r.status_code == 422 and r.json()["detail"].startswith("source"), (src, r.text)
    r = c.post("/api/jobs", json={"source": FOLDER, "learning_rate": 1})
    assert r.status_code == 422 and "learning_rate" in r.json()["detail"]

    deep = "[" * 100_000 + "]" * 100_000
    for raw in (deep, '{"source": ' + deep + "}", '{"source": {"kind": "folder", "path": "' + "x" * 5000 + '"}}'):
        assert 400 <= post(raw).status_code < 500
    long = "a/" * 2500
    for method, path, kw in (("GET", "/api/browse", {"params": {"path": long}}),
                             ("GET", "/api/samples.png", {"params": {"kind": "folder", "path": long}}),
                             ("POST", "/api/inspect", {"json": {"source": {"kind": "folder", "path": long}}}),
                             ("GET", "/api/browse", {"params": {"path": "x" * 300}})):  # one name over 255 bytes
        r = c.request(method, path, **kw)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
        assert "Traceback" not in r.text
    assert c.get("/api/jobs").json() == []


def test_a_zip_naming_a_file_as_a_folder_is_refused_with_a_400(client_and_root):
    c, root = client_and_root
    image = png(np.zeros((8, 8, 3), np.uint8))
    for members in ({"a/b": b"x", "a/b/c.png": image}, {"a/b/c.png": image, "a/b": b"x"},
                    {"a/B.png": image, "a/b.png": image}):
        r = c.post("/api/upload", files={"file": ("clash.zip", zipped(members))})
        assert r.status_code == 400, r.text
        assert "a/b" in r.json()["detail"].lower() or "twice" in r.json()["detail"]
    assert not (root / "uploads").exists() or not any((root / "uploads").iterdir())


@pytest.fixture
def client_and_root(root, tmp_path):
    with studio_client(root, tmp_path / "cache") as c:
        yield c, root
