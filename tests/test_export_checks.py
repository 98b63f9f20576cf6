"""An ONNX export is checked against its own metadata when it is loaded: inputs, outputs, size,
channels and classes, then one warm-up inference; each problem is one line naming both sides."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest

from cnnkit.cli import main
from cnnkit.errors import CheckpointError
from cnnkit.inference import load_predictor
from cnnkit.serve.app import create_app
from cnnkit.serve.export import export_model
from test_export import make_checkpoint


@pytest.fixture(scope="module")
def good_onnx(tmp_path_factory):
    base = tmp_path_factory.mktemp("onnx_checks")
    return export_model(make_checkpoint(base / "best.safetensors", name="lenet5"), "onnx", base / "m.onnx").path


def doctored(src, dst, change):
    """A copy of the export ``src`` with ``change(proto, meta)`` applied to its graph and metadata."""
    proto = onnx.load(str(src))
    prop = next(p for p in proto.metadata_props if p.key == "cnnkit")
    meta = json.loads(prop.value)
    change(proto, meta)
    prop.value = json.dumps(meta)
    onnx.save(proto, str(dst))
    return dst


def five_classes(proto, meta):
    meta["preprocess"]["classes"] = ["a", "b", "c", "d", "e"]
    meta["model"]["num_classes"] = 5


def rename_input(proto, meta):
    old = proto.graph.input[0].name
    proto.graph.input[0].name = "pixels"
    for node in proto.graph.node:
        node.input[:] = ["pixels" if i == old else i for i in node.input]


def rename_output(proto, meta):
    for out in proto.graph.output:
        if out.name == "probs":
            out.name = "scores"
    for node in proto.graph.node:
        node.output[:] = ["scores" if o == "probs" else o for o in node.output]


def one_channel(proto, meta):
    meta["preprocess"].update(channels=1, mean=[0.4], std=[0.3])
    meta["model"]["in_channels"] = 1


def bigger_size(proto, meta):
    meta["preprocess"]["image_size"] = [20, 20]
    meta["model"]["image_size"] = [20, 20]


def symbolic(proto, names):
    for value in [*proto.graph.input, *proto.graph.output]:
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if i in names:
                dim.dim_param = names[i]


def bigger_size_symbolic_graph(proto, meta):
    bigger_size(proto, meta)
    symbolic(proto, {2: "height", 3: "width"})  # only running it finds that lenet5's dense layer wants 16x16


def five_classes_symbolic_graph(proto, meta):
    five_classes(proto, meta)
    for out in proto.graph.output:
        out.type.tensor_type.shape.dim[1].dim_param = "classes"


@pytest.mark.parametrize("change,words", [
    (five_classes, ["5 classes", "3"]),
    (rename_input, ["'pixels'", "'image'"]),
    (rename_output, ["'probs'", "'scores'"]),
    (one_channel, ["1 channel", "3"]),
    (bigger_size, ["20x20", "16x16"]),
    (bigger_size_symbolic_graph, ["20x20", "cannot run"]),
    (five_classes_symbolic_graph, ["5 classes", "3"]),
])
def test_an_export_that_disagrees_with_its_metadata_is_one_line(good_onnx, tmp_path, capsys, change, words):
    bad = doctored(good_onnx, tmp_path / "bad.onnx", change)
    with pytest.raises(CheckpointError) as info:
        load_predictor(bad)
    text = str(info.value)
    assert "\n" not in text and str(bad) in text and all(w in text for w in words), text
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(img)
    assert main(["predict", str(bad), str(img)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnkit: error:"), err
    with pytest.raises(CheckpointError):  # serve never starts (never reports healthy) on it
        create_app(str(bad))


def test_serve_warms_up_a_loaded_predictor_before_it_reports_healthy(good_onnx, tmp_path):
    from cnnkit.inference.onnx_backend import OnnxPredictor

    ok = OnnxPredictor(good_onnx)
    ok.preprocess = type(ok.preprocess)(**{**ok.preprocess.__dict__, "image_size": (20, 20)})  # now it disagrees
    with pytest.raises(CheckpointError, match="cannot run"):
        create_app(ok)


def test_an_export_named_in_capitals_is_read_as_onnx(good_onnx, tmp_path, capsys):
    upper = tmp_path / "model.ONNX"
    shutil.copy(good_onnx, upper)
    predictor = load_predictor(upper)
    assert predictor.backend == "onnxruntime" and predictor.classes == ["cat", "dog", "owl"]
    from cnnkit.inference.exported import read_export_metadata

    assert read_export_metadata(upper)["preprocess"]["classes"] == ["cat", "dog", "owl"]
