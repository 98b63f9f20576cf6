"""Loading is safe: no code runs unless asked (--trust-code), and hostile metadata is one clear error."""

from __future__ import annotations

import json
import sys
import uuid

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from cnnkit import cli
from cnnkit.config import DataConfig, ModelConfig, Preprocess, RunConfig, save_json
from cnnkit.errors import CheckpointError
from cnnkit.inference.checkpoint import load_checkpoint, save_checkpoint
from cnnkit.inference.metadata import check_model_fits, validate_metadata
from cnnkit.models import build_model
from cnnkit.models.custom import is_trusted, trusted_code
from cnnkit.train.resume import resumed_config

CLASSES = ("a", "b", "c")
SIZE = (16, 16)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A real lenet5 checkpoint: (weights, metadata) to craft hostile copies from."""
    path = tmp_path_factory.mktemp("good") / "good.safetensors"
    cfg = ModelConfig(name="lenet5", num_classes=3, in_channels=3, image_size=SIZE)
    run = RunConfig(data=DataConfig(source="shapes"), model=cfg)
    save_checkpoint(path, build_model(cfg), Preprocess(CLASSES, SIZE, 3, (0.5,) * 3, (0.25,) * 3, "lenet5"), cfg, run)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata())
    return load_file(str(path)), meta


def _edit(meta: dict[str, str], key: str, **changes) -> dict[str, str]:
    data = json.loads(meta[key])
    for k, v in changes.items():
        if v is _DROP:
            data.pop(k)
        else:
            data[k] = v
    return {**meta, key: json.dumps(data)}


_DROP = object()

# (case, metadata edit, the field the one error line must name)
HOSTILE = [
    ("newer format", lambda m: {**m, "format": "cnnkit-9"}, "format="),
    ("preprocess not JSON", lambda m: {**m, "preprocess": "{classes: ["}, "preprocess: not valid JSON"),
    ("preprocess a list", lambda m: {**m, "preprocess": "[1, 2]"}, "preprocess: must be a JSON object"),
    ("no preprocess", lambda m: {k: v for k, v in m.items() if k != "preprocess"}, "preprocess: missing"),
    ("no classes", lambda m: _edit(m, "preprocess", classes=_DROP), "preprocess.classes: missing"),
    ("duplicate classes", lambda m: _edit(m, "preprocess", classes=["a", "a", "c"]), "preprocess.classes="),
    ("empty class name", lambda m: _edit(m, "preprocess", classes=["a", "", "c"]), "preprocess.classes="),
    ("numbers as classes", lambda m: _edit(m, "preprocess", classes=[1, 2, 3]), "preprocess.classes="),
    ("too few classes", lambda m: _edit(m, "preprocess", classes=["a", "b"]), "model.num_classes="),
    ("image size 0", lambda m: _edit(m, "preprocess", image_size=[0, 0]), "preprocess.image_size="),
    ("image size abc", lambda m: _edit(m, "preprocess", image_size="abc"), "preprocess.image_size="),
    ("image size 30000", lambda m: _edit(m, "preprocess", image_size=[30000, 30000]), "preprocess.image_size="),
    ("channels 2", lambda m: _edit(m, "preprocess", channels=2), "preprocess.channels="),
    ("1 channel, 3-value mean", lambda m: _edit(m, "preprocess", channels=1), "preprocess.mean="),
    ("std 0", lambda m: _edit(m, "preprocess", std=[0, 0, 0]), "preprocess.std="),
    ("std NaN", lambda m: _edit(m, "preprocess", std=[float("nan")] * 3), "preprocess.std="),
    ("mean inf", lambda m: _edit(m, "preprocess", mean=[float("inf")] * 3), "preprocess.mean="),
    ("no model", lambda m: {k: v for k, v in m.items() if k != "model"}, "model: missing"),
    ("no model name", lambda m: _edit(m, "model", name=_DROP), "model.name: missing"),
    ("unknown model", lambda m: _edit(m, "model", name="no-such-net"), "model.name='no-such-net'"),
    ("classes as text", lambda m: _edit(m, "model", num_classes="three"), "model.num_classes="),
    ("model channels differ", lambda m: _edit(m, "model", in_channels=1), "model.in_channels="),
    ("model size huge", lambda m: _edit(m, "model", image_size=[30000, 30000]), "model.image_size="),
    ("binary output tanh", lambda m: _edit(m, "model", binary_output="tanh"), "model.binary_output="),
    ("run not JSON", lambda m: {**m, "run": "{"}, "run: not valid JSON"),
    ("run lr as text", lambda m: _edit(m, "run", optim={"lr": "fast"}), "run.optim.lr="),
    ("info a list", lambda m: {**m, "info": "[]"}, "info: must be a JSON object"),
]


@pytest.mark.parametrize("case,edit,field", HOSTILE, ids=[c for c, _, _ in HOSTILE])
def test_hostile_metadata_is_one_checkpoint_error_naming_the_field(good, tmp_path, case, edit, field):
    tensors, meta = good
    path = tmp_path / "hostile.safetensors"
    save_file(tensors, str(path), metadata=edit(meta))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert field in message and message.startswith(str(path)) and "\n" not in message


def test_the_untouched_metadata_loads(good, tmp_path):
    tensors, meta = good
    path = tmp_path / "same.safetensors"
    save_file(tensors, str(path), metadata=meta)
    ck = load_checkpoint(path)
    assert ck.preprocess.classes == CLASSES and ck.preprocess.image_size == SIZE
    assert ck.run_config.data.source == "shapes"


def test_hostile_metadata_on_the_command_line_is_one_line(good, tmp_path, capsys):
    tensors, meta = good
    path = tmp_path / "std0.safetensors"
    save_file(tensors, str(path), metadata=_edit(meta, "preprocess", std=[0, 0, 0]))
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "x.png")
    assert cli.main(["predict", str(path), str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "preprocess.std=[0, 0, 0]" in err and "Traceback" not in err


def test_a_model_that_does_not_fit_its_metadata_is_named(good):
    _, meta = good
    md = validate_metadata(meta, "x.safetensors")
    wrong_width = build_model(ModelConfig(name="lenet5", num_classes=4, in_channels=3, image_size=SIZE))
    with pytest.raises(CheckpointError, match=r"preprocess.classes=.*3 classes, but the model gives 4 logits"):
        check_model_fits(wrong_width, md, "x.safetensors")
    grey = build_model(ModelConfig(name="lenet5", num_classes=3, in_channels=1, image_size=SIZE))
    with pytest.raises(CheckpointError, match=r"preprocess.channels=3: the model's first convolution takes 1"):
        check_model_fits(grey, md, "x.safetensors")
    check_model_fits(build_model(md.model), md, "x.safetensors")  # the right model passes


# ----------------------------------------------------------------------------- no code runs unless asked

HOSTILE_MODULE = '''
import pathlib
pathlib.Path(__file__).with_name("RAN").write_text("module code ran")

from torch import nn


def net(in_channels, num_classes, image_size, dropout=None):
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, num_classes))
'''


@pytest.fixture
def shipped_code(tmp_path, monkeypatch):
    """A run folder that ships its own importable module, and a checkpoint naming it (``mod:net``)."""
    name = f"shipped_{uuid.uuid4().hex[:8]}"
    run = tmp_path / "run"
    run.mkdir()
    (run / f"{name}.py").write_text(HOSTILE_MODULE)
    monkeypatch.syspath_prepend(str(run))  # importable, as it is from a shell in that folder
    # the checkpoint is written as its author's training would: the module imported there, then forgotten here
    cfg = ModelConfig(name=f"{name}:net", num_classes=3, in_channels=3, image_size=SIZE)
    with trusted_code():
        model = build_model(cfg)
    sys.modules.pop(name, None)
    (run / "RAN").unlink()
    save_checkpoint(run / "best.safetensors", model, Preprocess(CLASSES, SIZE, 3, (0.5,) * 3, (0.25,) * 3), cfg,
                    RunConfig(data=DataConfig(source="shapes"), model=cfg))
    save_json(RunConfig(data=DataConfig(source="shapes"), model=cfg), run / "config.json")
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "x.png")
    yield run, cfg.name
    sys.modules.pop(name, None)


@pytest.mark.parametrize("argv", [
    ["predict", "{run}", "{img}"], ["evaluate", "{run}"], ["export", "{run}"], ["explain", "filters", "{run}"],
    ["explain", "gradcam", "{run}", "{img}"], ["serve", "{run}", "--port", "0"],
    ["train", "--resume", "{run}"], ["train", "--config", "{run}/config.json"],
], ids=lambda a: " ".join(a[:2]))
def test_loading_a_run_folder_runs_none_of_its_code(shipped_code, tmp_path, capsys, argv):
    run, name = shipped_code
    argv = [a.format(run=run, img=tmp_path / "x.png") for a in argv]
    path_before = list(sys.path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert not (run / "RAN").exists()  # the shipped module was never imported
    assert f"model {name!r} is code" in err and "--trust-code" in err and err.count("\n") == 1
    assert sys.path == path_before  # nor the working directory put on the import path


def test_a_report_without_trust_leaves_the_model_out(shipped_code, caplog):
    run, name = shipped_code
    assert cli.main(["report", str(run)]) == 0  # a report's sections fail alone: curves and metrics stay
    assert not (run / "RAN").exists()
    assert f"model {name!r} is code" in caplog.text and "--trust-code" in caplog.text


def test_trust_code_loads_it(shipped_code, tmp_path, capsys):
    run, name = shipped_code
    assert cli.main(["predict", str(run), str(tmp_path / "x.png"), "--trust-code"]) == 0
    assert (run / "RAN").exists() and "x.png" in capsys.readouterr().out
    sys.modules.pop(name.partition(":")[0], None)
    assert load_checkpoint(run, trust_code=True).model_config.name == name  # the Python API's way
    with trusted_code():
        assert resumed_config(run).model.name == name


def test_the_standard_library_is_code_too(good, tmp_path, capsys):
    tensors, meta = good
    path = tmp_path / "this.safetensors"
    save_file(tensors, str(path), metadata=_edit(meta, "model", name="this:x"))
    with pytest.raises(CheckpointError, match=r"model 'this:x' is code: loading it would import and run module 'this'"):
        load_checkpoint(path)
    assert "Beautiful is better" not in capsys.readouterr().out


def test_trusted_code_scopes():
    assert not is_trusted("a:b")
    with trusted_code("a:b"):
        assert is_trusted("a:b") and not is_trusted("c:d")
        with trusted_code():
            assert is_trusted("c:d")
        assert not is_trusted("c:d")
    with trusted_code(trust=False):
        assert not is_trusted("a:b")
    assert is_trusted("a:b", trust=True) and not is_trusted("a:b")


def test_the_author_trains_a_named_builder_and_uses_it_with_trust_code(tmp_path, image_folder, monkeypatch, capsys,
                                                                       caplog):
    name = f"mine_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(HOSTILE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    assert cli.main(["train", str(image_folder), "--model", f"{name}:net", "--epochs", "1", "--batch-size", "8",
                     "--quiet", "--out", str(out), "--no-fast"]) == 0
    # the run's own report loads the builder the run just imported (Grad-CAM, filters)
    assert (out / "report.html").is_file() and "no checkpoint" not in caplog.text
    assert cli.main(["predict", str(out), str(image_folder), "--trust-code"]) == 0
    assert "bright" in capsys.readouterr().out


def test_an_onnx_export_with_a_huge_image_size_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from cnnkit.inference.exported import META_FORMAT, META_KEY
    from cnnkit.inference.load import load_predictor

    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["probs"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 3])])
    proto = helper.make_model(graph)
    pre = {"classes": list(CLASSES), "image_size": [30000, 30000], "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3}
    helper.set_model_props(proto, {META_KEY: json.dumps({"format": META_FORMAT, "preprocess": pre})})
    onnx.save(proto, str(tmp_path / "huge.onnx"))
    with pytest.raises(CheckpointError, match=r"huge.onnx: preprocess.image_size=\[30000, 30000\]"):
        load_predictor(tmp_path / "huge.onnx")
