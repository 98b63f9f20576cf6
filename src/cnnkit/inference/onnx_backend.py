"""Predict with an exported ``.onnx`` file on ONNX Runtime: no PyTorch model, no checkpoint.

The export carries its classes and preprocessing (see :mod:`cnnkit.inference.exported`), so
this behaves exactly like :class:`cnnkit.inference.Predictor` on the checkpoint it came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnkit.config import Preprocess
from cnnkit.errors import CheckpointError, CnnkitError
from cnnkit.inference.calibrated import min_confidence_of, temperature_of
from cnnkit.inference.exported import read_export_metadata
from cnnkit.inference.metadata import check_preprocess
from cnnkit.inference.predictor import BasePredictor, warm_up

INPUT, OUTPUT = "image", "probs"  # the names cnnkit's exports give the graph's input and its probabilities


class OnnxPredictor(BasePredictor):
    """An ONNX export -> class probabilities, on the CPU execution provider."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        try:
            meta = read_export_metadata(self.path)
        except CnnkitError as exc:  # one error type for "this model file cannot be used"
            raise CheckpointError(str(exc)) from None
        self.preprocess: Preprocess = check_preprocess(meta.get("preprocess"), self.path)
        self.classes = list(self.preprocess.classes)
        # the temperature is inside the graph already: kept here only to describe the model
        self.temperature = temperature_of(meta)
        self.suggested_min_confidence = min_confidence_of(meta)
        opts = ort.SessionOptions()
        opts.log_severity_level = 4  # its own log lines would repeat what the one error line says
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            first = str(exc).splitlines()[0]
            raise CheckpointError(f"{self.path}: ONNX Runtime cannot load this model ({first})") from None
        check_graph(self.session, self.preprocess, self.path)
        warm_up(self)  # what the static shapes cannot say (symbolic sizes, a graph that fails to run)

    def probs(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 (N,H,W,C) -> (N,K) probabilities; the graph normalises its [0, 1] NCHW input itself."""
        out = []
        for i in range(0, len(images), batch_size):
            x = np.ascontiguousarray(images[i:i + batch_size].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
            out.append(self.session.run([OUTPUT], {INPUT: x})[0])
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)


def check_graph(session, pre: Preprocess, path: Path) -> None:
    """The graph's input and outputs as a cnnkit export has them, with the size, channels and class
    count its metadata gives (symbolic dimensions are left to the warm-up inference)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    names = [i.name for i in inputs]
    if names != [INPUT]:
        raise CheckpointError(f"{path}: the graph's inputs are {names}, but a cnnkit export takes one input "
                              f"{INPUT!r} (float32 N x C x H x W)")
    out = {o.name: o for o in outputs}
    if OUTPUT not in out:
        raise CheckpointError(f"{path}: the graph's outputs are {list(out)}: none is {OUTPUT!r}, the "
                              f"probabilities a cnnkit export gives")
    shape = inputs[0].shape
    if inputs[0].type != "tensor(float)" or len(shape) != 4:
        raise CheckpointError(f"{path}: the graph's input {INPUT!r} is {inputs[0].type} {shape}; a cnnkit export "
                              f"takes float32 N x C x H x W")
    c, h, w = shape[1:]
    if isinstance(c, int) and c != pre.channels:
        raise CheckpointError(f"{path}: its metadata says {pre.channels} channel(s) but the graph's input "
                              f"{INPUT!r} takes {c}")
    size = tuple(pre.image_size)
    if isinstance(h, int) and isinstance(w, int) and (h, w) != size:
        raise CheckpointError(f"{path}: its metadata says {size[0]}x{size[1]} images but the graph's input "
                              f"{INPUT!r} takes {h}x{w}")
    k = out[OUTPUT].shape[-1] if out[OUTPUT].shape else None
    if isinstance(k, int) and k != len(pre.classes):
        raise CheckpointError(f"{path}: its metadata names {len(pre.classes)} classes but the graph's output "
                              f"{OUTPUT!r} gives {k} per image")
