"""Export a checkpoint to ONNX or TorchScript, checked against PyTorch before it is kept.

The exported graph includes the normalisation and the probability layer, so a user only has
to decode and resize an image:

* input ``image``: float32 (N, C, H, W), pixel values / 255 (i.e. in [0, 1]), RGB or grey as
  ``channels`` says, at ``image_size`` (H, W); the batch axis is dynamic.
* outputs ``logits``: float32 (N, 1) for two classes (one sigmoid logit), else (N, K), already
  divided by the checkpoint's calibration temperature; ``probs``: float32 (N, K) calibrated
  class probabilities (K = len(classes), also 2 for binary), the same that ``cnnkit predict`` gives.

The file carries everything needed to use it (classes, image size, channels, mean/std, model
name, the full ModelConfig and the calibration: temperature and suggested threshold) as JSON: in ONNX
``metadata_props`` under the key ``cnnkit``, in TorchScript as the extra file ``cnnkit.json``.  See
:func:`export_metadata`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnkit.config import ModelConfig, Preprocess, to_dict
from cnnkit.inference.calibrated import KEY as CALIBRATION
from cnnkit.inference.calibrated import min_confidence_of, temperature_of
from cnnkit.inference.checkpoint import Checkpoint, load_checkpoint
from cnnkit.inference.exported import INPUT_DOC, META_FORMAT, META_KEY, ExportError, read_export_metadata
from cnnkit.inference.exported import quiet_deprecations as _quiet_deprecations
from cnnkit.io import atomic_path, check_writable_file, remove_orphaned_temps
from cnnkit.models.base import logits_to_probs

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
OPSET = 17

__all__ = ["ExportError", "ExportResult", "export_model", "read_export_metadata", "sample_inputs"]


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float  # probabilities, on the sample inputs
    logits_max_abs_diff: float
    logits_scale: float  # max |logit| of the reference; logits are checked against tolerance * max(1, scale)
    tolerance: float


class ExportWrapper(nn.Module):
    """[0, 1] float (N, C, H, W) -> (logits / T, probs): the checkpoint's model plus its preprocessing
    and calibration."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], temperature: float = 1.0):
        super().__init__()
        self.model = model
        self.temperature = float(temperature)  # a constant of the graph
        # buffers, so they are saved as constants of the graph
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model((image - self.mean) / self.std).float()
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return logits, logits_to_probs(logits)


def export_metadata(pre: Preprocess, model_cfg: ModelConfig, info: dict | None = None) -> dict:
    """What an exported file carries so that serving it needs nothing else."""
    return {
        "format": META_FORMAT,
        "input": INPUT_DOC,
        "preprocess": to_dict(pre),
        "model": to_dict(model_cfg),
        CALIBRATION: {"temperature": temperature_of(info), "min_confidence": min_confidence_of(info)},
    }


def default_out(checkpoint: str | Path, fmt: str) -> Path:
    """``run/best.safetensors`` -> ``run/best.onnx`` (a run folder is resolved to its checkpoint first)."""
    return Path(checkpoint).with_suffix(SUFFIX[fmt])


def sample_inputs(pre: Preprocess, n: int = 4, seed: int = 0) -> torch.Tensor:
    """Deterministic [0, 1] inputs (N, C, H, W): noise plus the two extremes (all black, all white)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, pre.channels, *pre.image_size), generator=g)
    x[0] = 0.0
    x[-1] = 1.0
    return x


def _write_onnx(wrapper: nn.Module, x: torch.Tensor, meta: dict, path: Path) -> None:
    """Legacy (TorchScript-based) exporter: the dynamo one needs onnxscript, which is not a dependency."""
    import onnx

    with _quiet_deprecations():
        torch.onnx.export(wrapper, (x,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["image"], output_names=["logits", "probs"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}, "probs": {0: "batch"}})
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    proto.doc_string = f"cnnkit {meta['preprocess']['model']}: input 'image' {INPUT_DOC}"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _run_onnx(path: Path, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, probs = session.run(["logits", "probs"], {"image": x.numpy()})
    return logits, probs


def _write_torchscript(wrapper: nn.Module, x: torch.Tensor, meta: dict, path: Path) -> None:
    with _quiet_deprecations():
        traced = torch.jit.trace(wrapper, (x,), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={f"{META_KEY}.json": json.dumps(meta)})


def _run_torchscript(path: Path, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    with _quiet_deprecations(), torch.no_grad():
        logits, probs = torch.jit.load(str(path), map_location="cpu")(x)
    return logits.numpy(), probs.numpy()


def max_abs_diff(ref: torch.Tensor, got: np.ndarray) -> float:
    return float(np.max(np.abs(ref.numpy() - np.asarray(got)))) if ref.numel() else 0.0


def export_model(checkpoint: str | Path | Checkpoint, fmt: str = "onnx", out: str | Path | None = None,
                 tolerance: float = 1e-4) -> ExportResult:
    """Export ``checkpoint`` to ``fmt`` at ``out`` and verify it against PyTorch.

    The parity check runs the export (ONNX Runtime or the TorchScript interpreter) and the
    PyTorch model on :func:`sample_inputs` with a batch size other than the one traced (so the
    dynamic batch axis is exercised) and fails with ExportError if the largest absolute
    difference of the probabilities exceeds ``tolerance``, or that of the logits exceeds
    ``tolerance * max(1, max |logit|)`` (float32 keeps ~7 significant digits, so a logit of 300
    cannot agree to 1e-4 absolutely); ``out`` is then left as it was.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint, "cpu")
    pre = ckpt.preprocess
    out = Path(out) if out is not None else default_out(ckpt.path, fmt)
    # predict and serve choose ONNX Runtime by the .onnx suffix: any other pairing gives a file
    # that cnnkit itself cannot load later
    if (out.suffix.lower() == ".onnx") != (fmt == "onnx"):
        need = "end in .onnx" if fmt == "onnx" else "not end in .onnx (e.g. .pt)"
        raise ExportError(f"{out}: the file name of a {fmt} export must {need}")
    check_writable_file(out, " (--out another file)")  # before the export and its parity check
    remove_orphaned_temps(out.parent)  # what exports killed mid-write left (as large as the model each)
    wrapper = ExportWrapper(ckpt.model.cpu().float().eval(), tuple(pre.mean), tuple(pre.std),
                            temperature_of(ckpt.info)).eval()
    meta = export_metadata(pre, ckpt.model_config, ckpt.info)
    trace_x, check_x = sample_inputs(pre, 2, seed=1), sample_inputs(pre, 5, seed=2)
    with torch.no_grad():
        ref = wrapper(check_x)
    write, run = (_write_onnx, _run_onnx) if fmt == "onnx" else (_write_torchscript, _run_torchscript)
    with atomic_path(out) as tmp:
        try:
            write(wrapper, trace_x, meta, tmp)
            got = run(tmp, check_x)
        except Exception as exc:  # noqa: BLE001 - exporter failures come in many types; name the model
            raise ExportError(f"{ckpt.path}: cannot export model {pre.model or ckpt.model_config.name!r} to {fmt} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        diff, logit_diff = max_abs_diff(ref[1], got[1]), max_abs_diff(ref[0], got[0])
        scale = float(ref[0].abs().max()) if ref[0].numel() else 0.0
        if not diff <= tolerance:  # `not <=` also catches NaN
            raise ExportError(f"{fmt} export of {ckpt.path} does not match PyTorch: max abs difference of the "
                              f"probabilities {diff:.3g} > tolerance {tolerance:g}; nothing written to {out}")
        if not logit_diff <= tolerance * max(1.0, scale):
            raise ExportError(f"{fmt} export of {ckpt.path} does not match PyTorch: max abs difference of the "
                              f"logits {logit_diff:.3g} > tolerance {tolerance:g} x max(1, max |logit| {scale:.3g}); "
                              f"nothing written to {out}")
    return ExportResult(out, fmt, diff, logit_diff, scale, tolerance)
