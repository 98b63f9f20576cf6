"""`predict` streams: bounded look-ahead, batched, in order, written as the results come."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.cli import main
from cnnkit.errors import ConfigError
from cnnkit.inference import Predictor
from cnnkit.inference.predictor import prefetch
from cnnkit.serve.predict import format_predictions, write_predictions
from test_serve import make_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("stream") / "best.safetensors")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    """40 small PNGs with two unreadable files among them (positions 3 and 17)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    out = []
    for i in range(40):
        f = folder / f"{i:02d}.png"
        if i in (3, 17):
            f.write_text("not a picture")
        else:
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(f)
        out.append(f)
    return out


def test_stream_keeps_order_and_matches_one_big_batch(ckpt, files):
    p = Predictor(ckpt)
    streamed = list(p.iter_predictions(files, top_k=2, batch_size=5, workers=2))
    assert [s.file for s in streamed] == [str(f) for f in files]
    assert [i for i, s in enumerate(streamed) if s.error] == [3, 17]
    assert all(s.error.startswith("not an image") for s in streamed if s.error)
    good = [f for i, f in enumerate(files) if i not in (3, 17)]
    whole = p.top_k(p.probs(np.stack([p.read(f) for f in good]), batch_size=64), 2)
    got = [s.top for s in streamed if not s.error]
    assert [[c for c, _ in t] for t in got] == [[c for c, _ in t] for t in whole]
    diff = np.abs(np.array([[q for _, q in t] for t in got]) - np.array([[q for _, q in t] for t in whole]))
    assert diff.max() < 1e-4, diff.max()  # batch sizes differ: float sums in another order


def test_the_first_results_come_before_the_last_file_is_read(ckpt, files):
    consumed = []

    def names():
        for f in files:
            consumed.append(f)
            yield f

    stream = Predictor(ckpt).iter_predictions(names(), top_k=1, batch_size=4, workers=1)
    first = next(stream)
    assert first.file == str(files[0]) and len(consumed) < len(files) / 2, len(consumed)
    stream.close()  # stopping early stops the background reading


def test_prefetch_hands_on_errors_and_stops_with_its_consumer():
    def failing():
        yield 1
        raise OSError("disk went away")

    it = prefetch(failing(), 2)
    assert next(it) == 1
    with pytest.raises(OSError, match="disk went away"):
        next(it)
    pulled = []

    def endless():
        while True:
            pulled.append(1)
            yield len(pulled)

    it = prefetch(endless(), 3)
    assert next(it) == 1
    it.close()
    assert len(pulled) <= 6


def test_bad_batch_size_is_a_clear_error(ckpt, files, capsys):
    with pytest.raises(ConfigError, match="batch size"):
        Predictor(ckpt).iter_predictions(files, batch_size=0)
    assert main(["predict", str(ckpt), str(files[0]), "--batch-size", "0"]) == 2
    assert "batch size" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "table"])
def test_cli_formats_stream_the_same_rows(ckpt, files, tmp_path, capsys, fmt):
    folder = files[0].parent
    out = tmp_path / f"pred.{fmt}"
    assert main(["predict", str(ckpt), str(folder), "--format", fmt, "--top-k", "2", "--batch-size", "7",
                 "-o", str(out)]) == 0
    assert "wrote 40 predictions" in capsys.readouterr().out
    text = out.read_text()
    if fmt == "json":
        rows = json.loads(text)
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines()]
    else:
        rows = None
    if rows is not None:
        assert len(rows) == 40 and [r["file"] for r in rows] == [str(f) for f in files]
        assert "error" in rows[3] and all(len(r["top"]) == 2 for i, r in enumerate(rows) if i not in (3, 17))
    elif fmt == "csv":
        lines = text.splitlines()
        assert lines[0] == "file,class1,prob1,class2,prob2,error" and len(lines) == 41
    else:
        assert len(text.splitlines()) == 40 and "not an image" in text.splitlines()[3]


def test_json_of_nothing_is_an_empty_array():
    import io

    buf = io.StringIO()
    assert write_predictions([], buf, "json").written == 0
    assert json.loads(buf.getvalue()) == [] and json.loads(format_predictions([], "json")) == []
