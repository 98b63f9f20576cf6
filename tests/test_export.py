"""Export to ONNX / TorchScript with a parity check, predicting from an ONNX file, and safe checkpoint loading."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cnnkit.cli import main
from cnnkit.config import ModelConfig, Preprocess
from cnnkit.errors import CheckpointError, ConfigError
from cnnkit.inference import Predictor, load_predictor, predict
from cnnkit.inference.checkpoint import load_checkpoint, save_checkpoint
from cnnkit.inference.onnx_backend import OnnxPredictor
from cnnkit.models import MODELS, build_model
from cnnkit.serve.export import ExportError, export_model, read_export_metadata, sample_inputs


def make_checkpoint(path: Path, name: str = "simple-cnn-same", classes: tuple[str, ...] = ("cat", "dog", "owl"),
                    channels: int = 3, size: tuple[int, int] = (16, 16), seed: int = 0) -> Path:
    """A freshly built model with a sharpened head, so its top classes are decisive (no near ties)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(name=name, num_classes=len(classes), in_channels=channels, image_size=size)
    model = build_model(cfg)
    with torch.no_grad():
        for m in model.head.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(20.0)
    pre = Preprocess(classes=classes, image_size=size, channels=channels, mean=(0.4,) * channels,
                     std=(0.3,) * channels, model=name)
    save_checkpoint(path, model, pre, cfg, info={"epoch": 1})
    return path


@pytest.fixture
def ckpt(tmp_path) -> Path:
    return make_checkpoint(tmp_path / "best.safetensors")


@pytest.fixture
def images(tmp_path) -> list[Path]:
    rng = np.random.default_rng(0)
    out = []
    for i, shape in enumerate([(20, 24, 3), (16, 16, 3), (33, 17)]):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(p)
        out.append(p)
    return out


def test_onnx_export_matches_pytorch_and_carries_metadata(ckpt, tmp_path):
    result = export_model(ckpt, "onnx", tmp_path / "m.onnx")
    assert result.path == tmp_path / "m.onnx" and result.path.is_file()
    assert 0.0 <= result.max_abs_diff <= 1e-4

    proto = onnx.load(str(result.path))
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["cnnkit"])
    assert meta["preprocess"]["classes"] == ["cat", "dog", "owl"]
    assert meta["preprocess"]["image_size"] == [16, 16] and meta["preprocess"]["channels"] == 3
    assert meta["preprocess"]["mean"] == [0.4] * 3 and meta["preprocess"]["std"] == [0.3] * 3
    assert meta["preprocess"]["model"] == "simple-cnn-same" and meta["model"]["name"] == "simple-cnn-same"

    # dynamic batch axis + normalisation inside the graph: raw [0, 1] input of any batch size
    x = sample_inputs(load_checkpoint(ckpt).preprocess, n=7, seed=5)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    logits, probs = session.run(["logits", "probs"], {"image": x.numpy()})
    model = load_checkpoint(ckpt).model
    with torch.no_grad():
        ref = model((x - 0.4) / 0.3)
    np.testing.assert_allclose(logits, ref.numpy(), atol=1e-4)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert probs.shape == (7, 3)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_carries_metadata_in_extra_files(ckpt, tmp_path):
    result = export_model(ckpt, "torchscript")
    assert result.path == tmp_path / "best.pt"  # default: beside the checkpoint
    assert result.max_abs_diff <= 1e-4
    extra = {"cnnkit.json": ""}
    module = torch.jit.load(str(result.path), _extra_files=extra)
    meta = json.loads(extra["cnnkit.json"])
    assert meta["preprocess"]["classes"] == ["cat", "dog", "owl"] and meta["model"]["name"] == "simple-cnn-same"
    assert read_export_metadata(result.path) == meta
    x = torch.rand(3, 3, 16, 16)
    logits, probs = module(x)
    assert logits.shape == (3, 3) and torch.allclose(probs.sum(1), torch.ones(3))


def test_binary_grey_model_exports_two_probabilities(tmp_path):
    ck = make_checkpoint(tmp_path / "bin.safetensors", "lenet5", ("no", "yes"), channels=1, size=(28, 28))
    result = export_model(ck, "onnx")
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    logits, probs = session.run(None, {"image": np.random.default_rng(0).random((2, 1, 28, 28), np.float32)})
    assert logits.shape == (2, 1) and probs.shape == (2, 2)  # one sigmoid logit, two class probabilities


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_zoo_model_exports_to_onnx(tmp_path, name):
    ck = make_checkpoint(tmp_path / f"{name}.safetensors", name, ("a", "b", "c", "d"), size=(32, 32))
    assert export_model(ck, "onnx").max_abs_diff <= 1e-4


def test_parity_failure_is_loud_and_writes_nothing(ckpt, tmp_path):
    out = tmp_path / "never.onnx"
    with pytest.raises(ExportError,
                       match=r"does not match PyTorch: max abs difference of the probabilities .* > tolerance"):
        export_model(ckpt, "onnx", out, tolerance=-1.0)  # no difference can be below a negative tolerance
    assert not out.exists() and not list(tmp_path.glob(".never.onnx*"))


def test_unknown_format_is_an_error(ckpt):
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export_model(ckpt, "tflite")


def test_predict_on_onnx_export_matches_checkpoint(ckpt, tmp_path, images):
    onnx_path = export_model(ckpt, "onnx", tmp_path / "m.onnx").path
    predictor = load_predictor(onnx_path)
    assert isinstance(predictor, OnnxPredictor) and isinstance(load_predictor(ckpt), Predictor)
    assert predictor.classes == ["cat", "dog", "owl"] and predictor.preprocess.image_size == (16, 16)
    from_onnx = predict(onnx_path, images, top_k=3)
    from_ckpt = predict(ckpt, images, top_k=3)
    assert len(from_onnx) == len(from_ckpt) == 3
    for a, b in zip(from_onnx, from_ckpt):
        assert [c for c, _ in a.top] == [c for c, _ in b.top]
        np.testing.assert_allclose([p for _, p in a.top], [p for _, p in b.top], atol=1e-5)


def test_cli_export_prints_parity_and_predict_accepts_onnx(ckpt, tmp_path, images, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "max abs difference" in text and str(out) in text and out.is_file()

    assert main(["predict", str(out), str(images[0]), "--format", "json", "--top-k", "2"]) == 0
    via_onnx = json.loads(capsys.readouterr().out)
    assert main(["predict", str(ckpt), str(images[0]), "--format", "json", "--top-k", "2"]) == 0
    via_ckpt = json.loads(capsys.readouterr().out)
    assert [t["class"] for t in via_onnx[0]["top"]] == [t["class"] for t in via_ckpt[0]["top"]]
    assert len(via_onnx[0]["top"]) == 2


def test_predict_top_k_below_one_is_a_clear_error(ckpt, images, capsys):
    for k in ("0", "-1"):  # 0 printed empty rows; -1 silently meant "all but one class"
        assert main(["predict", str(ckpt), str(images[0]), "--top-k", k]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cnnkit: error:") and "--top-k" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match="at least 1"):
        predict(ckpt, images, top_k=0)


def test_predict_error_line_names_the_file_once(ckpt, tmp_path, images, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    assert main(["predict", str(ckpt), str(bad), str(images[0])]) == 0
    line = next(out for out in capsys.readouterr().out.splitlines() if "notes.png" in out)
    assert line.count("notes.png") == 1 and line.startswith(str(bad)) and "not an image" in line
    assert predict(ckpt, [bad])[0].error.startswith("not an image")


def test_export_file_name_must_match_the_format(ckpt, tmp_path):
    # predict and serve pick the backend by the .onnx suffix: a TorchScript file named .onnx
    # (or an ONNX file named otherwise) would be unusable with a misleading error later
    with pytest.raises(ExportError, match=r"m\.onnx.*torchscript"):
        export_model(ckpt, "torchscript", tmp_path / "m.onnx")
    with pytest.raises(ExportError, match=r"m\.pt.*\.onnx"):
        export_model(ckpt, "onnx", tmp_path / "m.pt")
    assert not list(tmp_path.glob("m.*"))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_predict_on_a_torchscript_export_says_what_to_use(ckpt, tmp_path, images, capsys):
    pt = export_model(ckpt, "torchscript", tmp_path / "m.pt").path
    with pytest.raises(CheckpointError, match=r"m\.pt: a TorchScript export.*\.onnx"):
        predict(pt, images)
    assert main(["predict", str(pt), str(images[0])]) == 2
    assert "TorchScript" in capsys.readouterr().err


def test_cli_export_failure_is_one_clear_line(ckpt, tmp_path, capsys):
    assert main(["export", str(ckpt), "--out", str(tmp_path / "x.onnx"), "--tolerance", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnkit: error:") and "does not match PyTorch" in err and "Traceback" not in err


def test_onnx_file_without_cnnkit_metadata_is_rejected(tmp_path):
    plain = tmp_path / "plain.onnx"
    x = onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, [1, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["image"], ["probs"])], "plain", [x], [y])
    onnx.save(onnx.helper.make_model(graph), str(plain))
    with pytest.raises(CheckpointError, match="not a cnnkit export"):
        OnnxPredictor(plain)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a protobuf at all" * 10)
    with pytest.raises(CheckpointError, match="garbage.onnx"):
        load_predictor(garbage)


# ------------------------------------------------------------------ checkpoints never unpickle


class _Plant:
    """Unpickling this creates ``marker``: proof that a loader executed pickle code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_renamed_to_safetensors_is_rejected_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(pickle.dumps({"weights": _Plant(marker)}))
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError):
        Predictor(bad)
    assert not marker.exists()

    torch_pickle = tmp_path / "torch.safetensors"  # torch.save's zip-of-pickles format
    torch.save({"w": torch.zeros(3)}, torch_pickle)
    with pytest.raises(CheckpointError, match="torch.safetensors: not a readable safetensors checkpoint"):
        load_checkpoint(torch_pickle)


def test_foreign_safetensors_file_is_rejected_clearly(tmp_path):
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2, 2)}, str(other), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a cnnkit checkpoint"):
        load_checkpoint(other)


def test_explaining_an_onnx_export_asks_for_the_checkpoint(ckpt, tmp_path, images):
    from cnnkit.commands.explain import gradcam_figure

    onnx_path = export_model(ckpt, "onnx", tmp_path / "m.onnx").path
    with pytest.raises(CheckpointError, match="Grad-CAM needs a PyTorch checkpoint.*onnxruntime"):
        gradcam_figure(onnx_path, images[0])
