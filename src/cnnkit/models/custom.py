"""Custom networks in plain PyTorch, named by import path: ``--model mynets:small_net``.

A builder is any importable function ``builder(in_channels, num_classes, image_size, dropout=None)``
returning an ``nn.Module`` that maps (N, in_channels, H, W) images to logits: (N, 1) for two classes
(sigmoid + binary cross-entropy) or (N, 2) (softmax), (N, num_classes) otherwise
(``cnnkit.models.num_outputs`` says which).  The path is saved in the run's config, so a checkpoint
loads wherever the module imports, as a Keras model file carries its architecture.

Importing a module runs its code, so *loading* never imports one unless asked: a checkpoint or
run config naming an import path is refused (:func:`check_trusted`) outside
:func:`trusted_code` (``--trust-code``, or ``trust_code=True`` where a loader takes it).
Training a builder named by its author (``--model mynets:tiny``, a config built in Python)
imports it as asked, and the run's own report may load it again.

A plain module gets the interface of every cnnkit model (:mod:`cnnkit.models.base`), its last
convolution as the Grad-CAM layer:

* an ``nn.Sequential`` is cut where its dense part starts (the first layer from which every
  input is (N, D)): ``features`` the layers before, ``head`` the layers from there on;
* any other module is a :class:`WrappedNet`: ``head`` is its last ``nn.Linear``, ``features``
  that layer's input;
* a net with no Linear giving its outputs is all trunk (``head`` an identity, no classifier to
  reset).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections import OrderedDict
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from cnnkit.config import ModelConfig
from cnnkit.errors import CheckpointError, ConfigError
from cnnkit.models.base import CNNKitModel, last_linear, num_outputs, replace_module


def is_import_path(name: str) -> bool:
    module, sep, attr = name.partition(":")
    return bool(sep and module and attr)


# which import paths loading may import: True = any (--trust-code), else the paths named
_TRUSTED: ContextVar[bool | frozenset[str]] = ContextVar("cnnkit_trusted_code", default=frozenset())


@contextlib.contextmanager
def trusted_code(*paths: str, trust: bool = True) -> Iterator[None]:
    """Within this block, loading may import the builders ``paths`` (none given: any builder).

    ``trust=False`` changes nothing (so a flag can be passed straight through).  Blocks nest;
    leaving one restores what was trusted before.
    """
    if not trust:
        yield
        return
    now = _TRUSTED.get()
    token = _TRUSTED.set(True if not paths or now is True else now | frozenset(paths))
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def is_trusted(path: str, trust: bool | None = None) -> bool:
    """May loading import ``path``?  ``trust`` True/False decides; None asks :func:`trusted_code`."""
    if trust is not None:
        return trust
    now = _TRUSTED.get()
    return now is True or path in now


def check_trusted(name: str, where: str | Path, trust: bool | None = None) -> None:
    """Refuse to load a model named by import path (``module:function``) unless trusted (see :func:`is_trusted`)."""
    if not is_import_path(name) or is_trusted(name, trust):
        return
    raise CheckpointError(f"{where}: model {name!r} is code: loading it would import and run module "
                          f"{name.partition(':')[0]!r}; if you trust where this came from, pass --trust-code "
                          f"(Python: trust_code=True)")


def import_builder(path: str) -> Callable[..., nn.Module]:
    """``"package.module:function"`` -> the function; the working directory is searched too (as uvicorn does)."""
    module_name, _, attr = path.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # `cnnkit train --model mynets:net` run beside mynets.py
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--model {path}: cannot import module {module_name!r} ({exc}); run from the folder "
                          f"that holds it, or install it") from None
    builder = getattr(module, attr, None)
    if not callable(builder):
        raise ConfigError(f"--model {path}: module {module_name!r} has no function {attr!r}")
    return builder


def _last_conv(module: nn.Module) -> nn.Module | None:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None


class _InputOf(nn.Module):
    """``features`` of an opaque net: run it, return the input its classifier Linear received (N, D).

    A forward pre-hook, added for the call and removed after it, reads the input; the user's
    module itself is left as it is.
    """

    def __init__(self, net: nn.Module, classifier: str):
        super().__init__()
        self.net = net
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seen: list[torch.Tensor] = []
        classifier = self.net.get_submodule(self.classifier)
        handle = classifier.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        try:
            self.net(x)
        finally:
            handle.remove()
        if not seen:
            raise RuntimeError(f"the classifier layer {self.classifier!r} was not called by the network's forward")
        return seen[-1]


class WrappedNet(CNNKitModel):
    """A plain ``nn.Module`` through the interface: its last ``nn.Linear`` is the head.

    cnnkit cannot run part of a forward it did not write, so for such a net ``features`` is the
    input of that Linear (read with a hook) and ``head`` is the Linear; when the net's dense part
    is that one layer (global pooling -> Linear, the usual case) this is the split of every model.
    ``forward`` is the net's own.  The weights are saved under ``net.``.
    """

    def __init__(self, net: nn.Module, classifier: str, gradcam_layer: nn.Module | None):
        nn.Module.__init__(self)
        self.net = net
        self._classifier = classifier
        self._setup(gradcam_layer, None, None, None)

    @property
    def features(self) -> nn.Module:  # a view, not a submodule: the weights stay registered once, under net.
        return _InputOf(self.net, self._classifier)

    @property
    def head(self) -> nn.Linear:
        return self.net.get_submodule(self._classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def reset_head(self, num_classes: int, binary: str | None = None) -> None:
        old = self.head
        width = num_outputs(num_classes, binary or self.binary_output or "sigmoid")
        replace_module(self.net, self._classifier, nn.Linear(old.in_features, width, device=old.weight.device,
                                                             dtype=old.weight.dtype))


def _split_sequential(net: nn.Sequential, x: torch.Tensor) -> CNNKitModel | None:
    """A Sequential cut where its dense part starts: the first layer from which every input is (N, D).

    None when no Linear follows that point (no dense part to call a head).
    """
    children = list(net.named_children())
    flat_from = len(children)
    for i, (_, layer) in enumerate(children):
        if x.dim() != 2:
            flat_from = len(children)
        elif flat_from == len(children):
            flat_from = i
        x = layer(x)
    head = children[flat_from:]
    if not any(isinstance(m, nn.Linear) for _, layer in head for m in layer.modules()):
        return None
    features = nn.Sequential(OrderedDict(children[:flat_from]))
    return CNNKitModel(features, nn.Sequential(OrderedDict(head)), gradcam_layer=_last_conv(features))


def wrap(net: nn.Module, probe: torch.Tensor) -> CNNKitModel:
    """A plain network as a :class:`CNNKitModel` (``probe``: one input image, for shapes; eval mode)."""
    if isinstance(net, CNNKitModel):
        return net
    with torch.no_grad():
        if isinstance(net, nn.Sequential):
            model = _split_sequential(net, probe)
            if model is not None:
                return model
        found = last_linear(net)
        if found is not None and found[0]:
            model = WrappedNet(net, found[0], gradcam_layer=_last_conv(net))
            out = net(probe)
            if isinstance(out, torch.Tensor) and torch.equal(model.head(model.features(probe)), out):
                return model
        # no Linear, or one that does not give the outputs: the whole net is the trunk, no head to replace
        out = net(probe)
        width = out.shape[1] if isinstance(out, torch.Tensor) and out.dim() == 2 else None
        return CNNKitModel(net, nn.Identity(), gradcam_layer=_last_conv(net), num_features=width)


def build_custom(cfg: ModelConfig) -> CNNKitModel:
    """Build, wrap and check a custom network: one forward pass on a zero image checks its output width.

    For two classes a network's own two outputs mean softmax (its definition fixes it); one
    output follows ``cfg.binary_output`` (``"softmax"`` replaces the classifier by a two-logit one).
    """
    builder = import_builder(cfg.name)
    try:
        net = builder(cfg.in_channels, cfg.num_classes, tuple(cfg.image_size), dropout=cfg.dropout)
    except Exception as exc:  # noqa: BLE001 - user code: report it as a setting that does not work
        raise ConfigError(f"--model {cfg.name}: the builder failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"--model {cfg.name}: the builder returned {type(net).__name__}, not a torch.nn.Module")
    h, w = cfg.image_size
    probe = torch.zeros(1, cfg.in_channels, h, w)
    was_training = net.training
    net.eval()  # batch norm cannot run on one image in training mode
    try:
        model = wrap(net, probe)
        width = _output_width(model, probe)
        if cfg.num_classes == 2 and width == (2,) and model.binary_output is None:
            model.binary_output = "softmax"  # the net's own definition: two softmax logits
        model.binary_output = model.binary_output or cfg.binary_output
        want = num_outputs(cfg.num_classes, model.binary_output)
        if cfg.num_classes == 2 and width == (1,) and want == 2 and last_linear(model.head) is not None:
            model.reset_head(2, "softmax")
            width = _output_width(model, probe)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"--model {cfg.name}: a ({cfg.in_channels}, {h}, {w}) image does not go through the "
                          f"network: {type(exc).__name__}: {exc}") from None
    finally:
        net.train(was_training)
    model.train(was_training)
    if width != (want,):
        raise ConfigError(f"--model {cfg.name}: the network gives outputs of shape {width} per image; "
                          f"{cfg.num_classes} classes need ({want},) logits (cnnkit.models.num_outputs)"
                          + (", or (2,) for two softmax logits" if cfg.num_classes == 2 and want == 1 else ""))
    return model


def _output_width(model: nn.Module, probe: torch.Tensor) -> tuple[int, ...]:
    with torch.no_grad():
        out = model(probe)
    return tuple(out.shape)[1:] if isinstance(out, torch.Tensor) else ()
