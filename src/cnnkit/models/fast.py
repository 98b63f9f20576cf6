"""A small modern net for fast CPU training (airbench-style: conv-pool-BN-GELU blocks, global max pool).

Three blocks of two 3x3 convolutions, the first of each followed by 2x2 max pooling, batch norm
after every convolution and GELU activations; a global max pool feeds one linear layer.  At widths
32-64-128 it trains several times faster per epoch than ``cifar-cnn`` on a CPU while reaching higher
accuracy, because every convolution after the stem runs at a quarter of the previous resolution.
"""

from __future__ import annotations

from torch import nn

from cnnkit.models.base import CNNKitModel, num_outputs


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU()]


def _block(cin: int, cout: int) -> nn.Sequential:
    # conv -> pool -> BN -> GELU -> conv -> BN -> GELU: (N,cin,H,W) -> (N,cout,H/2,W/2)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(cout),
                         nn.GELU(), *_conv_bn(cout, cout))


def fast_cnn(in_channels: int, num_classes: int, image_size: tuple[int, int], dropout: float | None = None,
             widths: tuple[int, int, int] = (32, 64, 128)) -> CNNKitModel:
    """Fast modern CNN: stem + 3 conv-pool-BN-GELU blocks (32-64-128) + global max pool + linear."""
    if min(image_size) < 8:
        raise ValueError(f"model 'fast-cnn' needs images of at least 8x8, got {image_size[0]}x{image_size[1]}")
    stem = nn.Sequential(*_conv_bn(in_channels, widths[0]))
    blocks = [_block(widths[0], widths[0]), _block(widths[0], widths[1]), _block(widths[1], widths[2])]
    features = nn.Sequential(stem, *blocks, nn.AdaptiveMaxPool2d(1), nn.Flatten())
    p = 0.0 if dropout is None else dropout
    head = nn.Sequential(nn.Dropout(p), nn.Linear(widths[2], num_outputs(num_classes)))
    return CNNKitModel(features, head, gradcam_layer=blocks[-1][-1])


def fast_cnn_small(in_channels: int, num_classes: int, image_size: tuple[int, int],
                   dropout: float | None = None) -> CNNKitModel:
    """The same net at widths 16-32-64 (a quarter of the compute): enough for MNIST-like 28x28 digits."""
    return fast_cnn(in_channels, num_classes, image_size, dropout, widths=(16, 32, 64))


def fast_cnn_wide(in_channels: int, num_classes: int, image_size: tuple[int, int],
                  dropout: float | None = None) -> CNNKitModel:
    """The same net at widths 64-128-256 (airbench's proportions): for GPUs and longer CPU runs."""
    return fast_cnn(in_channels, num_classes, image_size, dropout, widths=(64, 128, 256))
