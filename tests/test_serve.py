"""The web app through a real HTTP client: every endpoint and every kind of bad request."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from cnnkit.cli import main
from cnnkit.config import ModelConfig, Preprocess
from cnnkit.errors import CheckpointError, CnnkitError
from cnnkit.inference import Predictor
from cnnkit.inference.checkpoint import save_checkpoint
from cnnkit.models import build_model
from cnnkit.serve.app import MULTIPART_SLACK, create_app

CLASSES = ("cat", "dog", "owl", "fox")


def make_checkpoint(path: Path, classes: tuple[str, ...] = CLASSES, channels: int = 3, seed: int = 0) -> Path:
    """Fresh simple-cnn with a sharpened head, so top classes are decisive."""
    torch.manual_seed(seed)
    cfg = ModelConfig(name="simple-cnn", num_classes=len(classes), in_channels=channels, image_size=(16, 16))
    model = build_model(cfg)
    with torch.no_grad():
        for m in model.head.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(20.0)
    pre = Preprocess(classes=classes, image_size=(16, 16), channels=channels, mean=(0.5,) * channels,
                     std=(0.25,) * channels, model="simple-cnn")
    save_checkpoint(path, model, pre, cfg)
    return path


def png_bytes(seed: int = 0, shape: tuple[int, ...] = (24, 20, 3), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("serve") / "best.safetensors")


@pytest.fixture(scope="module")
def client(ckpt) -> TestClient:
    return TestClient(create_app(ckpt, max_upload_bytes=200_000))


def expected_top(ckpt: Path, data: bytes, tmp_path: Path, k: int = 3) -> list[tuple[str, float]]:
    f = tmp_path / "same.png"
    f.write_bytes(data)
    return Predictor(ckpt).predict_files([f], top_k=k)[0].top


def assert_still_serving(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.post("/predict", files={"file": ("ok.png", png_bytes(9))}).status_code == 200


# ------------------------------------------------------------------ endpoints


def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_info_describes_the_model(client):
    info = client.get("/info").json()
    assert info["model"] == "simple-cnn" and info["backend"] == "pytorch"
    assert info["classes"] == list(CLASSES) and info["num_classes"] == 4
    assert info["image_size"] == [16, 16] and info["channels"] == 3
    assert info["mean"] == [0.5] * 3 and info["std"] == [0.25] * 3
    assert info["max_upload_bytes"] == 200_000 and info["upload_field"] == "file"


def test_page_is_self_contained_html(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert '<input id="file" type="file"' in page and "predict?top_k=" in page and 'id="results"' in page
    # offline: no CDN, no external script, style or font
    for needle in ('src="http', "src='http", 'href="http', "@import", "//cdn"):
        assert needle not in page


def test_predict_returns_top_k_matching_the_predictor(client, ckpt, tmp_path):
    data = png_bytes(1)
    r = client.post("/predict?top_k=3", files={"file": ("cat.png", data, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["filename"] == "cat.png" and body["model"] == "simple-cnn"
    assert [t["class"] for t in body["top"]] == [c for c, _ in expected_top(ckpt, data, tmp_path)]
    probs = [t["probability"] for t in body["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    np.testing.assert_allclose(probs, [p for _, p in expected_top(ckpt, data, tmp_path)], atol=1e-6)


def test_top_k_default_and_clamped_to_the_class_count(client):
    assert len(client.post("/predict", files={"file": ("a.png", png_bytes(2))}).json()["top"]) == 3
    r = client.post("/predict?top_k=50", files={"file": ("a.png", png_bytes(2))})
    assert r.status_code == 200 and len(r.json()["top"]) == 4
    assert abs(sum(t["probability"] for t in r.json()["top"]) - 1) < 1e-5


def test_jpeg_and_greyscale_uploads_are_converted(client):
    for data in (png_bytes(3, fmt="JPEG"), png_bytes(4, shape=(30, 30))):
        r = client.post("/predict", files={"file": ("x", data)})
        assert r.status_code == 200, r.text


def test_app_from_onnx_export_and_from_a_loaded_predictor(ckpt, tmp_path):
    from cnnkit.serve.export import export_model

    onnx_path = export_model(ckpt, "onnx", tmp_path / "m.onnx").path
    data = png_bytes(5)
    answers = []
    for model in (onnx_path, Predictor(ckpt)):
        c = TestClient(create_app(model))
        assert c.get("/info").json()["classes"] == list(CLASSES)
        answers.append(c.post("/predict", files={"file": ("a.png", data)}).json()["top"])
    assert TestClient(create_app(onnx_path)).get("/info").json()["backend"] == "onnxruntime"
    assert [t["class"] for t in answers[0]] == [t["class"] for t in answers[1]]
    np.testing.assert_allclose([t["probability"] for t in answers[0]], [t["probability"] for t in answers[1]],
                               atol=1e-5)


# ------------------------------------------------------------------ bad requests


def test_no_file_is_400_naming_the_field(client):
    for kwargs in ({}, {"content": b"\x89PNG raw body", "headers": {"content-type": "image/png"}},
                   {"json": {"file": "x"}}):
        r = client.post("/predict", **kwargs)
        assert r.status_code == 400, (kwargs, r.text)
        assert "no file uploaded" in r.json()["detail"] and "'file'" in r.json()["detail"]
    assert_still_serving(client)


def test_wrong_field_name_is_422_naming_the_expected_field(client):
    r = client.post("/predict", files={"image": ("a.png", png_bytes())})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "no field 'file'" in detail and "'image'" in detail
    r = client.post("/predict", data={"file": "not an upload"})  # a text field, not a file part
    assert r.status_code == 422 and "'file' must be an uploaded image file" in r.json()["detail"]
    assert_still_serving(client)


@pytest.mark.parametrize("data, reason", [
    (b"this is plain text, not a picture", "not an image"),
    (b"", "empty file"),
    (png_bytes(6, shape=(64, 64, 3))[:300], "truncated or corrupt"),
    (png_bytes(7, shape=(64, 64, 3), fmt="JPEG")[:600], "truncated or corrupt"),
])
def test_unusable_uploads_are_400_with_the_reason(client, data, reason):
    r = client.post("/predict", files={"file": ("upload.png", data, "image/png")})
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith("upload.png: ") and reason in r.json()["detail"]
    assert_still_serving(client)


def test_too_large_is_413_whether_declared_streamed_or_just_over(client):
    limit = 200_000
    huge = b"x" * (limit + MULTIPART_SLACK + 10)
    r = client.post("/predict", files={"file": ("big.png", huge)})  # Content-Length over the limit
    assert r.status_code == 413 and "upload too large" in r.json()["detail"] and "200000 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(20):
            yield b"y" * 20_000

    r = client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=abc"})
    assert r.status_code == 413

    just_over = png_bytes(8)  # file over the limit, body within the multipart slack
    just_over += b"\0" * (limit + 1 - len(just_over))
    r = client.post("/predict", files={"file": ("a.png", just_over)})
    assert r.status_code == 413
    assert_still_serving(client)


def test_upload_limit_is_configurable(ckpt):
    small = TestClient(create_app(ckpt, max_upload_bytes=100))
    r = small.post("/predict", files={"file": ("a.png", png_bytes(1))})
    assert r.status_code == 413 and "(100 bytes)" in r.json()["detail"]
    with pytest.raises(CnnkitError, match="must be positive"):
        create_app(ckpt, max_upload_bytes=0)


def test_decompression_bombs_are_refused_before_decoding(ckpt):
    strict = TestClient(create_app(ckpt, max_pixels=1000))
    r = strict.post("/predict", files={"file": ("big.png", png_bytes(1, shape=(50, 50, 3)))})  # 2,500 pixels
    assert r.status_code == 413 and "decompression bomb" in r.json()["detail"] and "1000" in r.json()["detail"]
    assert strict.post("/predict", files={"file": ("ok.png", png_bytes(1, shape=(20, 20, 3)))}).status_code == 200


def test_bad_top_k_is_422_naming_it(client):
    for q in ("0", "-2", "many"):
        r = client.post(f"/predict?top_k={q}", files={"file": ("a.png", png_bytes())})
        assert r.status_code == 422 and r.json()["detail"].startswith("top_k:"), r.text


def test_wrong_method_and_unknown_path(client):
    assert client.get("/predict").status_code == 405
    assert client.get("/nope").status_code == 404


def test_unusable_model_files_fail_before_serving(tmp_path):
    bad = tmp_path / "best.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        create_app(bad)
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert main(["serve", str(bad), "--max-upload-mb", "0"]) == 2


def test_port_out_of_range_is_one_clear_line(ckpt, capsys):
    for port in ("70000", "-1"):  # was asyncio's OverflowError traceback, after loading the model
        assert main(["serve", str(ckpt), "--port", port]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cnnkit: error:") and "--port" in err and port in err


# ------------------------------------------------------------------ Grad-CAM


def test_gradcam_returns_a_png_overlay_of_the_upload(client, ckpt, tmp_path):
    pytest.importorskip("cnnkit.visualize.gradcam")
    assert client.get("/info").json()["gradcam"] is True
    data = png_bytes(11, shape=(60, 90, 3))
    r = client.post("/gradcam", files={"file": ("wide.png", data)})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(r.content))
    assert picture.size == (90, 60) and picture.mode == "RGB"  # the upload's own shape, not the model's 16x16
    assert r.headers["x-cnnkit-class"] == expected_top(ckpt, data, tmp_path, k=1)[0][0]
    assert r.headers["x-cnnkit-method"] == "Grad-CAM"
    assert np.asarray(picture).std() > 0

    r = client.post("/gradcam?class=owl", files={"file": ("wide.png", data)})
    assert r.status_code == 200 and r.headers["x-cnnkit-class"] == "owl"


def test_unicode_class_names_survive_json_and_headers(tmp_path):
    pytest.importorskip("cnnkit.visualize.gradcam")
    from urllib.parse import unquote

    ck = make_checkpoint(tmp_path / "u.safetensors", classes=("café", "猫"))
    c = TestClient(create_app(ck))
    top = c.post("/predict", files={"file": ("a.png", png_bytes())}).json()["top"]
    assert {t["class"] for t in top} == {"café", "猫"}
    r = c.post("/gradcam?class=猫", files={"file": ("a.png", png_bytes())})
    assert r.status_code == 200 and unquote(r.headers["x-cnnkit-class"]) == "猫"


def test_gradcam_bad_requests(client, ckpt, tmp_path):
    pytest.importorskip("cnnkit.visualize.gradcam")
    r = client.post("/gradcam?class=zebra", files={"file": ("a.png", png_bytes())})
    assert r.status_code == 422 and "'zebra' is not one of the model's classes" in r.json()["detail"]
    r = client.post("/gradcam", files={"file": ("a.png", b"no image")})
    assert r.status_code == 400 and "not an image" in r.json()["detail"]
    r = client.post("/gradcam", files={"picture": ("a.png", png_bytes())})
    assert r.status_code == 422 and "'file'" in r.json()["detail"]

    from cnnkit.serve.export import export_model

    onnx_app = TestClient(create_app(export_model(ckpt, "onnx", tmp_path / "m.onnx").path))
    assert onnx_app.get("/info").json()["gradcam"] is False
    r = onnx_app.post("/gradcam", files={"file": ("a.png", png_bytes())})
    assert r.status_code == 501 and "needs a PyTorch checkpoint" in r.json()["detail"]
    assert_still_serving(client)


# ------------------------------------------------------------------ a real server


@pytest.fixture(scope="module")
def live_url(ckpt):
    """uvicorn on 127.0.0.1 (free port) in a thread, with a 100 kB upload limit."""
    from serve_helpers import serve_in_thread

    with serve_in_thread(create_app(ckpt, max_upload_bytes=100_000)) as port:
        yield f"http://127.0.0.1:{port}"


def test_concurrent_requests_on_a_real_server_agree(live_url, ckpt, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    uploads = [png_bytes(seed) for seed in range(4)]
    want = [[c for c, _ in expected_top(ckpt, data, tmp_path)] for data in uploads]

    def call(i: int) -> tuple[int, list[str]]:
        r = httpx.post(f"{live_url}/predict", files={"file": (f"{i}.png", uploads[i % 4])}, timeout=30)
        return i, [t["class"] for t in r.json()["top"]] if r.status_code == 200 else [str(r.status_code)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(48)))
    assert all(top == want[i % 4] for i, top in results), results


def test_real_server_answers_413_and_keeps_serving(live_url):
    import httpx

    r = httpx.post(f"{live_url}/predict", files={"file": ("big.png", b"z" * 400_000)}, timeout=30)
    assert r.status_code == 413 and "upload too large" in r.json()["detail"]
    r = httpx.post(f"{live_url}/predict", files={"file": ("ok.png", png_bytes(1))}, timeout=30)
    assert r.status_code == 200
