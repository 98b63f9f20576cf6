"""Checkpoints: safetensors weights with everything needed to predict in the file's metadata.

``*.safetensors`` holds the model weights and, as JSON metadata, the model config and the
preprocessing (classes, image size, channels, mean/std).  Loading never unpickles anything, checks
every metadata field first (:mod:`cnnkit.inference.metadata`), and never imports code: a model
named by import path (``mynets:tiny``) loads only with ``trust_code=True`` (``--trust-code``).
``train_state.pt`` (optimizer, scheduler, history, callbacks) is only for ``--resume`` and is read
with ``torch.load(weights_only=True)``, which accepts tensors and plain containers only.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from cnnkit.config import ModelConfig, Preprocess, RunConfig, to_dict
from cnnkit.errors import CheckpointError, ConfigError
from cnnkit.inference.metadata import check_format, check_model_fits, validate_metadata
from cnnkit.io import atomic_write_bytes
from cnnkit.run_folder import BEST, LAST, STATE  # noqa: F401 - the run folder's checkpoint files, still importable here


@dataclass
class Checkpoint:
    model: torch.nn.Module
    preprocess: Preprocess
    model_config: ModelConfig
    run_config: RunConfig | None
    info: dict[str, Any]
    path: Path


def save_checkpoint(path: str | Path, model: torch.nn.Module, preprocess: Preprocess, model_cfg: ModelConfig,
                    run_cfg: RunConfig | None = None, info: dict[str, Any] | None = None) -> None:
    """Write weights + metadata atomically."""
    atomic_write_bytes(path, checkpoint_bytes(model, preprocess, model_cfg, run_cfg, info))


def checkpoint_bytes(model: torch.nn.Module, preprocess: Preprocess, model_cfg: ModelConfig,
                     run_cfg: RunConfig | None = None, info: dict[str, Any] | None = None) -> bytes:
    """The safetensors file :func:`save_checkpoint` writes, as bytes (a training run commits several at once)."""
    module = getattr(model, "module", model)  # unwrap DDP
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    meta = {
        "format": "cnnkit-1",
        "preprocess": json.dumps(to_dict(preprocess)),
        "model": json.dumps(to_dict(model_cfg)),
        "run": json.dumps(to_dict(run_cfg)) if run_cfg is not None else "",
        "info": json.dumps(info or {}),
    }
    return save(tensors, metadata=meta)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder -> its best (else last) checkpoint; a file -> itself."""
    p = Path(path)
    if p.is_dir():
        for name in (BEST, LAST):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"{p}: no {BEST} or {LAST} in this run folder")
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file or run folder")
    return p


def read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    check_format(meta, path)
    return meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", trust_code: bool | None = None) -> Checkpoint:
    """Rebuild the model from the checkpoint alone, after checking its metadata.

    ``trust_code``: a model named by import path imports (runs) that module, so it is refused
    unless True; None (the default) trusts what an enclosing ``cnnkit.trusted_code()`` block trusts.
    """
    from cnnkit.models import build_model
    from cnnkit.models.custom import check_trusted

    path = resolve_checkpoint(path)
    md = validate_metadata(read_metadata(path), path)
    check_trusted(md.model.name, path, trust_code)
    # the backbone's pretrained weights are inside this file: never fetch them again
    try:
        model = build_model(_offline(md.model))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: cannot build its model from model.name={md.model.name!r} ({exc})") from None
    load_weights_into(model, path, md.model.name)
    check_model_fits(model, md, path)
    model.to(device).eval()
    return Checkpoint(model, md.preprocess, md.model, md.run, md.info, path)


def load_weights_into(model: torch.nn.Module, path: str | Path, name: str = "") -> None:
    """Copy a checkpoint's weights into an existing ``model`` (onto its device); no second model is built."""
    module = getattr(model, "module", model)  # unwrap DDP
    try:
        module.load_state_dict(load_file(str(path), device="cpu"))
    except (SafetensorError, RuntimeError) as exc:
        # torch's first line is only "Error(s) in loading state_dict for X:"; the next names the tensor
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise CheckpointError(f"{path}: weights do not fit model {name!r} ({' '.join(lines[:2])})") from None


def _offline(cfg: ModelConfig) -> ModelConfig:
    import dataclasses

    return dataclasses.replace(cfg, pretrained=False, weights=None)


def save_train_state(path: str | Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(path, train_state_bytes(state))


def train_state_bytes(state: dict[str, Any]) -> bytes:
    """``train_state.pt`` as bytes: tensors and plain containers, readable with ``weights_only=True``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def load_train_state(path: str | Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no training state to resume from") from None
    except Exception as exc:  # torch raises several unrelated types for corrupt files
        raise CheckpointError(f"{path}: cannot read training state ({type(exc).__name__}: {exc})") from None
