"""What an exported model file (ONNX or TorchScript, see :mod:`cnnkit.serve.export`) carries.

Every export holds, as JSON, its classes and preprocessing under the key ``cnnkit``: in ONNX
``metadata_props``, in TorchScript as the extra file ``cnnkit.json``.  Reading it needs no weights.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Iterator

import torch

from cnnkit.errors import CnnkitError

META_KEY = "cnnkit"  # ONNX metadata_props key / TorchScript extra file stem
META_FORMAT = "cnnkit-export-1"
INPUT_DOC = "float32 (N, C, H, W), pixel values / 255 in [0, 1]; normalisation is inside the graph"


class ExportError(CnnkitError):
    """The model could not be exported, or the export does not match PyTorch, or is not a cnnkit export."""


@contextlib.contextmanager
def quiet_deprecations() -> Iterator[None]:
    """torch 2.x marks the TorchScript-based exporters deprecated, and the legacy exporter reports its
    own optimisation limits; neither is the user's business (the parity check is)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)  # exporter internals
        yield


def read_export_metadata(path: str | Path) -> dict:
    """The cnnkit metadata of an exported ONNX or TorchScript file (no weights are loaded for ONNX)."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such exported model")
    try:
        if path.suffix.lower() == ".onnx":  # model.ONNX too: the suffix that load_predictor routes to ONNX
            import onnx

            proto = onnx.load(str(path), load_external_data=False)
            props = {p.key: p.value for p in proto.metadata_props}
            text = props.get(META_KEY, "")
        else:
            extra = {f"{META_KEY}.json": ""}
            with quiet_deprecations():
                torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            text = extra[f"{META_KEY}.json"]
            text = text.decode() if isinstance(text, bytes) else text
        meta = json.loads(text) if text else {}
    except Exception as exc:  # noqa: BLE001 - protobuf/jit errors: say which file
        raise ExportError(f"{path}: not a readable exported model ({type(exc).__name__})") from None
    if meta.get("format") != META_FORMAT:
        raise ExportError(f"{path}: not a cnnkit export (no '{META_KEY}' metadata with classes and preprocessing)")
    return meta
