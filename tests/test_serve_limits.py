"""Bounded server memory and time: huge pictures, full queues, stalled bodies; HEAD, offline docs."""

from __future__ import annotations

import contextlib
import io
import select
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnkit.serve.app import create_app
from cnnkit.serve.limits import WorkGate, release_memory
from serve_helpers import serve_in_thread, serve_subprocess
from test_serve import make_checkpoint, png_bytes


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("limits") / "best.safetensors")


def big_rgba_png(side: int) -> bytes:
    """A side x side RGBA PNG of a few hundred KB (stripes on half-transparent black)."""
    arr = np.zeros((side, side, 4), np.uint8)
    arr[..., 3] = 128
    arr[::50, :, 0] = 255
    buf = io.BytesIO()
    Image.fromarray(arr, "RGBA").save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def vm(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
def test_huge_pictures_cost_bounded_memory_in_a_real_server(ckpt, tmp_path):
    with serve_subprocess([str(ckpt), "--log-level", "warning"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE) as (server, url):
        assert httpx.post(f"{url}/predict", files={"file": ("ok.png", png_bytes(1))}).status_code == 200
        base = vm(server.pid)["VmRSS"]
        bomb = big_rgba_png(7000)  # ~200 KB declaring 49 MP of RGBA (~200 MB decoded)
        large = big_rgba_png(3000)  # 9 MP: within what a small model's server decodes

        def call(data: bytes) -> tuple[int, str]:
            r = httpx.post(f"{url}/predict", files={"file": ("big.png", data)}, timeout=120)
            return r.status_code, r.text

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(call, [bomb, large] * 3))
        assert all(code == 413 and "decompression bomb" in text for code, text in answers[0::2]), answers
        assert all(code == 200 for code, _ in answers[1::2]), answers
        after = vm(server.pid)
        assert after["VmHWM"] - base < 300 * 2**20, (base, after)
        assert after["VmRSS"] - base < 100 * 2**20, (base, after)  # handed back, not held at the peak


def test_the_pixel_cap_follows_the_model_input_size(ckpt):
    from cnnkit.data.decode import decode_pixel_cap

    app = create_app(ckpt)
    assert app.state.service.max_pixels == decode_pixel_cap((16, 16)) < 50_000_000
    assert create_app(ckpt, max_pixels=1000).state.service.max_pixels == 1000


def test_work_gate_admits_workers_plus_queue():
    gate = WorkGate(workers=2, queue=1)
    assert [gate.admit() for _ in range(4)] == [True, True, True, False]
    gate.leave()
    assert gate.admit() and not gate.admit()
    with pytest.raises(ValueError):
        WorkGate(workers=0)


def test_release_memory_works_on_linux():
    assert release_memory() is (sys.platform == "linux")


@pytest.fixture()
def tight_server(ckpt):
    """uvicorn in a thread: one upload at a time, no queue, 0.5 s without body bytes -> 408; no
    minimum rate (each test of a rate says its own)."""
    app = create_app(ckpt, workers=1, queue=0, body_idle_timeout=0.5, body_timeout=2.0, body_min_rate=0)
    with serve_in_thread(app) as port:
        yield port, app


def stalled_upload(port: int) -> socket.socket:
    """A POST that declares 1000 body bytes and sends 10."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
              b"Content-Length: 1000\r\n\r\n--b\r\nConte")
    return s


def read_answer(s: socket.socket) -> str:
    """The whole HTTP answer on ``s``: its head, then as many body bytes as its content-length says
    (the server may send them in two writes)."""
    data = b""
    while b"\r\n\r\n" not in data and (chunk := s.recv(4096)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length and (chunk := s.recv(4096)):
        body += chunk
    return (head + b"\r\n\r\n" + body).decode("latin-1")


def test_a_stalled_body_never_holds_the_only_place_and_gets_408(tight_server):
    port, _ = tight_server
    url = f"http://127.0.0.1:{port}"
    stalled = stalled_upload(port)
    try:
        time.sleep(0.2)  # the stalled upload is still sending: it holds its connection, not the one worker
        r = httpx.post(f"{url}/predict", files={"file": ("a.png", png_bytes())}, timeout=10)
        assert r.status_code == 200, r.text
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        answer = read_answer(stalled)
        assert answer.startswith("HTTP/1.1 408") and "request body too slow" in answer, answer
    finally:
        stalled.close()


def test_a_full_server_is_503_with_retry_after(tight_server):
    port, app = tight_server
    gate = app.state.service.gate
    assert gate.admit()  # the one place taken (as a long inference would)
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/predict", files={"file": ("a.png", png_bytes())}, timeout=10)
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.json()["detail"]
    finally:
        gate.leave()
    assert httpx.post(f"http://127.0.0.1:{port}/predict", files={"file": ("a.png", png_bytes())},
                      timeout=10).status_code == 200


def test_a_trickling_body_is_stopped_at_the_total_timeout(tight_server):
    s = stalled_upload(tight_server[0])
    start = time.monotonic()
    while time.monotonic() - start < 5 and not select.select([s], [], [], 0.2)[0]:
        s.sendall(b"x")  # a byte every 0.2 s: never idle, never done
    answer = read_answer(s)
    s.close()
    assert answer.startswith("HTTP/1.1 408") and "not complete within 2 s" in answer, answer
    assert time.monotonic() - start < 4


def test_dripping_uploads_never_starve_good_requests(ckpt):
    # 18 connections dripping a byte at a time once held every worker and queue place: good
    # uploads got 503 for as long as the drips went on, and each drip could renew its hold
    app = create_app(ckpt, workers=1, queue=1, body_idle_timeout=0.6, body_timeout=30.0, body_min_rate=2048)
    with serve_in_thread(app) as port:
        url = f"http://127.0.0.1:{port}"
        drips = [stalled_upload(port) for _ in range(18)]
        try:
            start, answered = time.monotonic(), []
            while time.monotonic() - start < 1.5:
                for s in drips:
                    with contextlib.suppress(OSError):
                        s.sendall(b"x")
                r = httpx.post(f"{url}/predict", files={"file": ("a.png", png_bytes())}, timeout=10)
                answered.append(r.status_code)
                time.sleep(0.1)
            assert answered and set(answered) == {200}, answered
            # the drips are under the minimum rate: cut after the grace time, not after 30 s
            answers = [read_answer(s) for s in drips]
            assert all(a.startswith("HTTP/1.1 408") and "/s" in a for a in answers), answers[:2]
            assert time.monotonic() - start < 5
        finally:
            for s in drips:
                s.close()


def test_head_answers_like_get_without_a_body(ckpt):
    client = TestClient(create_app(ckpt))
    for path in ("/", "/health", "/info", "/openapi.json"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"]
        assert head.headers["content-length"] == got.headers["content-length"]
    assert client.head("/nope").status_code == 404


def test_api_docs_need_nothing_from_the_internet(ckpt):
    client = TestClient(create_app(ckpt))
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    schema = client.get("/openapi.json").json()
    assert "/predict" in schema["paths"] and "/gradcam" in schema["paths"]
    assert "cdn" not in client.get("/").text.lower()
