"""Bottleneck features: run the frozen backbone once, cache its outputs, train the head on them.

This is the recipe of Keras' "bottleneck features" tutorial (VGG16 on cats vs dogs): with the
backbone frozen and no augmentation, every epoch would recompute the same features, so they are
computed once - ``model.features(images)``, (N, D) float32 - written to disk and reused by later
runs.  The head then trains through the ordinary :func:`cnnkit.train.loop.fit` with a
:class:`~cnnkit.data.loader.BatchLoader` over the cached rows and :class:`IdentityInputs` (the features need no
scaling or normalising); an epoch costs a few matrix products instead of a backbone pass.
The head is a submodule of the full model, so the checkpoints written during ``fit`` are the
full model (backbone + trained head) and predict/serve/explain use them as any other.

Cache layout under the cache root (``DataConfig.cache_dir``, else ``$CNNKIT_CACHE_DIR``, else
``~/.cache/cnnkit``)::

    features/<backbone>-<key>.npy    (N, D) float32, written atomically

``<key>`` hashes everything the features depend on: the backbone's weights (so ``--weights``,
``--cut`` and pretrained weights give different entries), the image bytes and shape (so another
dataset, split or image size does too), the input normalisation and the autocast dtype.
Labels are not part of it: features do not depend on them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cnnkit.data.loader import BatchLoader
from cnnkit.data.types import DataSplits, ImageSet
from cnnkit.errors import ConfigError
from cnnkit.io import atomic_path
from cnnkit.phases import phase
from cnnkit.runtime import autocast

log = logging.getLogger("cnnkit")

FEATURES_VERSION = 1
EXTRACT_BATCH = 64  # images per backbone pass: bounds activation memory at 224-299 px
ONNX_MIN_IMAGES = 256  # fewer images than this: the ONNX export (seconds) costs more than it saves


class IdentityInputs:
    """``fit``'s inputs object for ready-made features: no scaling, no normalising."""

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x


def onnx_runner(features: nn.Module, shape: tuple[int, int, int]) -> Callable[[torch.Tensor], np.ndarray] | None:
    """``features`` as an ONNX Runtime session for (N, C, H, W) float32 CPU batches; None without onnxruntime.

    On a CPU, ONNX Runtime runs the depthwise convolutions of mobile backbones (EfficientNet-Lite,
    MobileNet) about 2x faster than eager PyTorch (benchmarks/README.md), and a frozen backbone's
    single pass over the data is exactly what it is for.  Any export failure falls back to PyTorch.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    import io
    import warnings

    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():  # the exporter's deprecation and tracer notes are not the user's business
            warnings.simplefilter("ignore")
            torch.onnx.export(features, (torch.zeros(2, *shape),), buf, dynamo=False, input_names=["x"],
                              output_names=["f"], dynamic_axes={"x": {0: "n"}, "f": {0: "n"}})
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - an operator the exporter lacks: PyTorch computes them instead
        log.info("features: ONNX Runtime not used (%s: %s)", type(exc).__name__, exc)
        return None
    return lambda x: session.run(None, {"x": x.contiguous().numpy()})[0]


@torch.no_grad()
def compute_features(model: nn.Module, images: ImageSet, inputs: Any, device: torch.device,
                     amp: torch.dtype | None = None, batch_size: int = EXTRACT_BATCH,
                     engine: str = "auto") -> np.ndarray:
    """``model.features`` of every image, in order: (N, D) float32 (eval mode: BatchNorm running stats).

    ``engine`` "auto" runs them in ONNX Runtime on a CPU without autocast (when installed and there
    are at least :data:`ONNX_MIN_IMAGES` images), else PyTorch; "onnxruntime" whenever it can;
    "torch" always PyTorch.
    """
    return _compute(model, images, inputs, device, amp, batch_size, engine)[0]


def _compute(model: Any, images: ImageSet, inputs: Any, device: torch.device, amp: torch.dtype | None,
             batch_size: int, engine: str, runners: dict | None = None,
             step: Callable[[int], None] | None = None) -> tuple[np.ndarray, str]:
    """(features, engine); ``runners`` keeps ONNX sessions by backbone and input shape across calls
    (train, then val); ``step(n)`` hears each batch of n images done."""
    model.eval()
    run = None
    if engine != "torch" and device.type == "cpu" and amp is None and len(images):
        shape = (getattr(model, "backbone", "model"), images.channels, *images.image_size)
        runners = {} if runners is None else runners
        if shape not in runners and (engine == "onnxruntime" or len(images) >= ONNX_MIN_IMAGES):
            with phase("backbone export to ONNX"):  # seconds, before the first image goes through
                runners[shape] = onnx_runner(model.features, shape[1:])
        run = runners.get(shape)
    out = []
    for xb, _ in BatchLoader(images, batch_size, device).batches(0):
        x = inputs(xb)  # (B, C, H, W) float32, scaled and normalised
        if run is not None:
            out.append(run(x).reshape(len(x), -1))
        else:
            with autocast(device, amp):
                f = model.features(x)
            out.append(f.float().flatten(1).cpu().numpy())
        if step is not None:
            step(len(x))
    feats = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    return feats, "onnxruntime" if run is not None else "torch"


def _update_tensor(h: "hashlib._Hash", t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)  # raw bytes (any dtype, 0-d included)


def features_key(model: nn.Module, images: ImageSet, amp: torch.dtype | None, norm: Any = None) -> str:
    """Content hash of (backbone weights and structure, images, normalisation, autocast dtype)."""
    return _part_key(getattr(model, "backbone", type(model).__name__), model.features, images, amp, norm)


def _part_key(name: str, features: nn.Module, images: ImageSet, amp: torch.dtype | None, norm: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"v{FEATURES_VERSION}|{name}|{amp}|{norm}".encode())
    h.update(repr(features).encode())  # the layers kept (--cut) and the pooling
    for key, t in features.state_dict().items():
        h.update(key.encode())
        _update_tensor(h, t)
    arr = np.ascontiguousarray(images.images)
    h.update(f"{arr.shape}".encode())
    step = 1 << 26  # hash in 64 MiB slices: no second copy of a large memmap in memory
    flat = arr.reshape(-1)
    for i in range(0, flat.size, step):
        h.update(flat[i:i + step].data)
    return h.hexdigest()


class _Part(nn.Module):
    """One backbone's ``features`` seen as a model of its own (what the cache keys and computes)."""

    def __init__(self, name: str, features: nn.Module):
        super().__init__()
        self.backbone, self.features = name, features


def feature_parts(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, features module) of each backbone whose features ``model.features`` concatenates:
    one for a single backbone, several for a :class:`~cnnkit.models.concat.ConcatModel`."""
    parts = getattr(model, "feature_parts", None)
    return list(parts) if parts else [(getattr(model, "backbone", "model"), model.features)]


def cached_features(model: nn.Module, images: ImageSet, inputs: Any, device: torch.device,
                    amp: torch.dtype | None, cache_dir: str | Path, runners: dict | None = None
                    ) -> tuple[np.ndarray, dict]:
    """Features of ``images`` from the cache, else computed and cached; returns (features, info).

    A model of several backbones (``feature_parts``) caches each one's features under its own key
    and returns them side by side, so that a concatenation reuses the single backbones' entries.
    ``info["seconds"]`` is the whole call; ``info["pass_seconds"]`` the backbone passes alone (what
    another pass over as many images would cost again; no ONNX export, no hashing).
    """
    parts = feature_parts(model)
    if len(parts) == 1:
        return _cached_part(model, images, inputs, device, amp, cache_dir, runners)
    norm = getattr(model, "input_norm", None)
    runners = {} if runners is None else runners
    found = [_cached_part(_PartView(_Part(name, f), norm), images, inputs, device, amp, cache_dir, runners)
             for name, f in parts]
    feats = np.concatenate([f for f, _ in found], axis=1)
    infos = [i for _, i in found]
    return feats, {"path": [i["path"] for i in infos], "reused": all(i["reused"] for i in infos),
                   "seconds": round(sum(i["seconds"] for i in infos), 3), "shape": list(feats.shape),
                   "engine": ",".join(dict.fromkeys(i["engine"] for i in infos)),
                   "pass_seconds": round(sum(i["pass_seconds"] for i in infos), 3)}


class _PartView:
    """A part with its model's input normalisation, as :func:`_cached_part` reads a model."""

    def __init__(self, part: _Part, norm: Any):
        self.part, self.input_norm = part, norm
        self.backbone, self.features = part.backbone, part.features

    def eval(self) -> None:
        self.part.eval()


def _cached_part(model: Any, images: ImageSet, inputs: Any, device: torch.device, amp: torch.dtype | None,
                 cache_dir: str | Path, runners: dict | None = None) -> tuple[np.ndarray, dict]:
    t0 = time.perf_counter()
    name = getattr(model, "backbone", "model")
    key = _part_key(getattr(model, "backbone", type(model).__name__), model.features, images, amp, model.input_norm)
    path = Path(cache_dir) / "features" / f"{name}-{key}.npy"
    feats = None
    if path.is_file():
        try:
            feats = np.load(path)
        except (OSError, ValueError) as exc:  # a damaged entry is rebuilt, not fatal
            log.warning("features cache %s unreadable (%s): recomputing", path, exc)
        if feats is not None and feats.shape[0] != len(images):
            log.warning("features cache %s has %d rows for %d images: recomputing", path, feats.shape[0], len(images))
            feats = None
    reused = feats is not None
    engine, pass_seconds = "cache", 0.0
    if feats is None:
        shape = (name, images.channels, *images.image_size)  # one ONNX session per backbone and input shape
        if (runners is not None and device.type == "cpu" and amp is None and shape not in runners
                and len(images) >= ONNX_MIN_IMAGES):
            with phase("backbone export to ONNX"):  # seconds, before the first image goes through
                runners[shape] = onnx_runner(model.features, shape[1:])  # the export, before the clock starts
        t1 = time.perf_counter()
        with phase(f"feature pass ({name})", total=len(images), unit="images") as step:
            feats, engine = _compute(model, images, inputs, device, amp, EXTRACT_BATCH, "auto", runners, step)
        pass_seconds = time.perf_counter() - t1
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, feats)
    seconds = time.perf_counter() - t0
    log.info("features: %s %d x %d in %.1fs (%s)", "reused" if reused else "computed", *feats.shape, seconds, path)
    return feats, {"path": str(path), "reused": reused, "seconds": round(seconds, 3), "shape": list(feats.shape),
                   "engine": engine, "pass_seconds": round(pass_seconds, 3)}


def store_features(model: nn.Module, images: ImageSet, amp: torch.dtype | None, cache_dir: str | Path,
                   parts: list[np.ndarray]) -> None:
    """Put ``parts`` (one (N, D_i) array per backbone of ``model``, rows in the order of ``images``) into the
    cache under ``images``' own keys, so that training on ``images`` reads them instead of a pass: the
    automatic default's chosen head on every training image, whose features it already has split in two."""
    norm = getattr(model, "input_norm", None)
    for (name, features), feats in zip(feature_parts(model), parts):
        if len(feats) != len(images):
            raise ValueError(f"{name}: {len(feats)} feature rows for {len(images)} images")
        path = Path(cache_dir) / "features" / f"{name}-{_part_key(name, features, images, amp, norm)}.npy"
        if path.is_file():
            continue
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(feats, dtype=np.float32))


@dataclass
class FeatureSetup:
    """What ``fit`` gets in features mode instead of the image model and loaders."""

    head: nn.Module
    inputs: IdentityInputs
    train: BatchLoader
    val: BatchLoader | None
    info: dict[str, Any] = field(default_factory=dict)


def feature_training(model: nn.Module, splits: DataSplits, inputs: Any, device: torch.device,
                     amp: torch.dtype | None, cache_dir: str | Path, batch_size: int, eval_batch_size: int,
                     seed: int, augment: Any = None, world: int = 1) -> FeatureSetup:
    """Cached train/val features and loaders over them, for training ``model.head`` with ``fit``."""
    if augment is not None:
        raise ConfigError("--transfer features trains on bottleneck features computed once, so it cannot "
                          "augment images: drop the augmentation flags, or use --transfer head")
    if world > 1:
        raise ConfigError("--transfer features runs in one process (the head trains in seconds): "
                          "start it without torchrun")
    info: dict[str, Any] = {"backbone": getattr(model, "backbone", ""), "splits": {}}
    runners: dict = {}  # one ONNX export serves both splits
    train_feats, info["splits"]["train"] = cached_features(model, splits.train, inputs, device, amp, cache_dir, runners)
    train = BatchLoader((train_feats, splits.train.labels), batch_size, device, shuffle=True, seed=seed)
    val = None
    if splits.val is not None and len(splits.val):
        val_feats, info["splits"]["val"] = cached_features(model, splits.val, inputs, device, amp, cache_dir, runners)
        val = BatchLoader((val_feats, splits.val.labels), eval_batch_size, device)
    info["seconds"] = round(sum(s["seconds"] for s in info["splits"].values()), 3)
    return FeatureSetup(model.head, IdentityInputs(), train, val, info)


@torch.no_grad()
def logits_from_features(model: nn.Module, images: ImageSet, inputs: Any, device: torch.device,
                         amp: torch.dtype | None, cache_dir: str | Path, batch_size: int = 1024) -> np.ndarray:
    """(N, 1|K) float32 logits of ``images`` through ``model.head`` on their cached features.

    The final evaluation (and calibration) of a features-mode run: the backbone is frozen, so the
    features of the validation images computed for training are exactly what the saved model would
    compute again; only a split never seen (a test split) runs the backbone, once, and is cached too.
    """
    feats, _ = cached_features(model, images, inputs, device, amp, cache_dir)  # (N, D) float32
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(feats), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(feats[start:start + batch_size])).to(device)
            with autocast(device, amp):
                out.append(model.head(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def probs_from_features(model: nn.Module, images: ImageSet, inputs: Any, device: torch.device,
                        amp: torch.dtype | None, cache_dir: str | Path, batch_size: int = 1024) -> np.ndarray:
    """(N, K) class probabilities of ``images`` through ``model.head`` on their cached features."""
    from cnnkit.models.base import logits_to_probs

    logits = logits_from_features(model, images, inputs, device, amp, cache_dir, batch_size)
    return logits_to_probs(torch.from_numpy(logits)).numpy() if len(logits) else logits


def features_cache_dir(cache_dir: str | None) -> Path:
    """The features cache lives beside the decoded-image cache."""
    from cnnkit.data.cache import cache_root

    return cache_root(cache_dir)
