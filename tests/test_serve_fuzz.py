"""Fuzzing the upload endpoints: whatever arrives, the answer is 200 or a 4xx/503 with a JSON reason."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import cnnkit
from cnnkit.serve.app import create_app
from test_serve import make_checkpoint

SRC_DIR = str(Path(cnnkit.__file__).resolve().parent.parent)


def _seed_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for fmt, mode in (("PNG", "RGB"), ("JPEG", "RGB"), ("PNG", "RGBA"), ("GIF", "P"), ("BMP", "L"), ("WEBP", "RGB"),
                      ("TIFF", "RGB")):
        im = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).convert(mode)
        buf = io.BytesIO()
        im.save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seed_images()


@st.composite
def image_bytes(draw) -> bytes:
    """Random bytes, or a real image cut, spliced or with bytes overwritten."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=2048))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(("flip", "cut", "insert")))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
    return bytes(data)


CONTENT_TYPES = st.one_of(st.sampled_from(["image/png", "image/jpeg", "application/octet-stream", "text/plain",
                                           "multipart/form-data", "", "image/*"]),
                          st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20))
NAMES = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF, blacklist_categories=("Cs",)), max_size=20)
QUERY = st.one_of(st.just(""), st.sampled_from(["?top_k=0", "?top_k=2", "?top_k=x", "?class=cat", "?class=%00",
                                                "?top_k=99999999999999999999"]))


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    ck = make_checkpoint(tmp_path_factory.mktemp("fuzz") / "best.safetensors")
    return TestClient(create_app(ck, max_upload_bytes=4096), raise_server_exceptions=False)


def check(r) -> None:
    assert r.status_code == 200 or 400 <= r.status_code < 500 or r.status_code == 503, (r.status_code, r.text)
    assert "Traceback" not in r.text and SRC_DIR not in r.text and "site-packages" not in r.text, r.text
    if r.status_code != 200:
        detail = r.json()["detail"]
        assert isinstance(detail, str) and detail, r.text


def fuzz_once(client: TestClient, endpoint: str, data: bytes, ctype: str, field: str, filename: str,
              extra: dict[str, str], query: str) -> None:
    try:
        r = client.post(f"/{endpoint}{query}", files={field: (filename, data, ctype)}, data=extra)
    except UnicodeEncodeError:  # the client itself cannot send a header in that text: nothing reached the server
        return
    check(r)


FUZZ_ARGS = dict(endpoint=st.sampled_from(["predict", "gradcam"]), data=image_bytes(), ctype=CONTENT_TYPES,
                 field=st.one_of(st.just("file"), NAMES), filename=NAMES,
                 extra=st.dictionaries(NAMES, st.text(max_size=20), max_size=3), query=QUERY)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(**FUZZ_ARGS)
def test_fuzzed_uploads_never_break_the_server(client, endpoint, data, ctype, field, filename, extra, query):
    fuzz_once(client, endpoint, data, ctype, field, filename, extra, query)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(**FUZZ_ARGS)
def test_fuzzed_uploads_never_break_the_server_long(client, endpoint, data, ctype, field, filename, extra, query):
    fuzz_once(client, endpoint, data, ctype, field, filename, extra, query)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=512), ctype=CONTENT_TYPES)
def test_raw_bodies_never_break_the_server(client, body, ctype):
    try:
        r = client.post("/predict", content=body, headers={"content-type": ctype})
    except UnicodeEncodeError:
        return
    check(r)
