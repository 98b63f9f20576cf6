"""The classic tutorial networks, each for any input size, channel count and class count."""

from __future__ import annotations

import torch
from torch import nn

from cnnkit.models.base import CNNKitModel, num_outputs


def _flat_size(features: nn.Module, in_channels: int, image_size: tuple[int, int]) -> int:
    """Feature length after ``features`` for one image, found by a dry run."""
    with torch.no_grad():
        out = features(torch.zeros(1, in_channels, *image_size))
    return out[0].numel()


def _check_size(name: str, image_size: tuple[int, int], minimum: int) -> None:
    if min(image_size) < minimum:
        raise ValueError(f"model {name!r} needs images of at least {minimum}x{minimum}, got {image_size[0]}x{image_size[1]}")


def _conv_block(cin: int, cout: int, bn: bool, padding: str = "same") -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=padding, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return layers


def mlp(in_channels: int, num_classes: int, image_size: tuple[int, int], dropout: float | None = None) -> CNNKitModel:
    """Keras ``mnist_mlp``: Dense 512 - Dropout - Dense 512 - Dropout - softmax (reported 98.40% on MNIST)."""
    p = 0.2 if dropout is None else dropout
    n_in = in_channels * image_size[0] * image_size[1]
    features = nn.Sequential(nn.Flatten(), nn.Linear(n_in, 512), nn.ReLU(inplace=True), nn.Dropout(p),
                             nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(p))
    return CNNKitModel(features, nn.Linear(512, num_outputs(num_classes)), gradcam_layer=None)


def lenet5(in_channels: int, num_classes: int, image_size: tuple[int, int], dropout: float | None = None) -> CNNKitModel:
    """LeCun 1998 layout (6-16 convs 5x5, 120-84 dense) with ReLU and max pooling."""
    _check_size("lenet5", image_size, 12)
    conv2 = nn.Conv2d(6, 16, 5)
    features = nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # (N,6,H/2,W/2)
        conv2, nn.ReLU(inplace=True), nn.MaxPool2d(2),  # (N,16,(H/2-4)/2,..)
        nn.Flatten(),
    )
    n = _flat_size(features, in_channels, image_size)
    p = 0.0 if dropout is None else dropout
    head = nn.Sequential(nn.Linear(n, 120), nn.ReLU(inplace=True), nn.Dropout(p),
                         nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Linear(84, num_outputs(num_classes)))
    return CNNKitModel(features, head, gradcam_layer=features[3])


def mnist_cnn(in_channels: int, num_classes: int, image_size: tuple[int, int], dropout: float | None = None) -> CNNKitModel:
    """Keras ``mnist_cnn``: Conv32 - Conv64 - MaxPool - Dropout .25 - Dense 128 - Dropout .5 (reported 99.25%)."""
    _check_size("mnist-cnn", image_size, 6)
    p = 0.5 if dropout is None else dropout
    features = nn.Sequential(
        nn.Conv2d(in_channels, 32, 3), nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True),  # (N,64,H-4,W-4)
        nn.MaxPool2d(2), nn.Dropout(p / 2), nn.Flatten(),
    )
    n = _flat_size(features, in_channels, image_size)
    head = nn.Sequential(nn.Linear(n, 128), nn.ReLU(inplace=True), nn.Dropout(p), nn.Linear(128, num_outputs(num_classes)))
    return CNNKitModel(features, head, gradcam_layer=features[3])


def simple_cnn(in_channels: int, num_classes: int, image_size: tuple[int, int], dropout: float | None = None) -> CNNKitModel:
    """Three conv/pool blocks 32-64-128 and a dense layer, as in the cats-vs-dogs tutorials."""
    _check_size("simple-cnn", image_size, 8)
    p = 0.5 if dropout is None else dropout
    layers: list[nn.Module] = []
    cin = in_channels
    for cout in (32, 64, 128):
        layers += _conv_block(cin, cout, bn=False) + [nn.MaxPool2d(2)]
        cin = cout
    layers.append(nn.Flatten())
    features = nn.Sequential(*layers)
    n = _flat_size(features, in_channels, image_size)
    head = nn.Sequential(nn.Dropout(p), nn.Linear(n, 128), nn.ReLU(inplace=True), nn.Linear(128, num_outputs(num_classes)))
    return CNNKitModel(features, head, gradcam_layer=features[7])  # last ReLU before pooling


def _cifar_cnn(in_channels: int, num_classes: int, image_size: tuple[int, int], dropout: float | None, bn: bool) -> CNNKitModel:
    _check_size("cifar-cnn", image_size, 8)
    p = 0.25 if dropout is None else dropout
    layers: list[nn.Module] = []
    cin = in_channels
    for cout in (32, 64, 64):  # three blocks of two 3x3 convs: 32,32 / 64,64 / 64,64
        layers += _conv_block(cin, cout, bn) + _conv_block(cout, cout, bn)
        layers += [nn.MaxPool2d(2), nn.Dropout(p)]
        cin = cout
    layers.append(nn.Flatten())
    features = nn.Sequential(*layers)
    n = _flat_size(features, in_channels, image_size)
    head = nn.Sequential(nn.Linear(n, 512), nn.ReLU(inplace=True), nn.Dropout(2 * p), nn.Linear(512, num_outputs(num_classes)))
    relus = [m for m in features if isinstance(m, nn.ReLU)]
    return CNNKitModel(features, head, gradcam_layer=relus[-1])


def cifar_cnn(in_channels: int, num_classes: int, image_size: tuple[int, int], dropout: float | None = None) -> CNNKitModel:
    """The 6-conv CIFAR-10 net (32,32,64,64,64,64, dropout, Dense 512)."""
    return _cifar_cnn(in_channels, num_classes, image_size, dropout, bn=False)


def cifar_cnn_bn(in_channels: int, num_classes: int, image_size: tuple[int, int], dropout: float | None = None) -> CNNKitModel:
    """The 6-conv CIFAR-10 net with batch norm after every convolution."""
    return _cifar_cnn(in_channels, num_classes, image_size, dropout, bn=True)


class _FashionFeatures(nn.Module):
    """The convolutional part of the Fashion-MNIST tf.Keras tutorial, written functional-style.

    The tutorial builds Conv2D(64, 2, same) - MaxPool 2 - Dropout .3 - Conv2D(32, 2, same) -
    MaxPool 2 - Dropout .3 - Flatten; here the layers are attributes and ``forward`` threads the
    tensor through them one call at a time, as Keras' functional API does (``x = layer(x)``).
    Keras' ``padding="same"`` for a 2x2 kernel adds one zero row/column at the bottom/right only;
    ``self.pad`` does exactly that (``nn.Conv2d(padding="same")`` would too, with a warning and a copy).
    """

    def __init__(self, in_channels: int, p: float):
        super().__init__()
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))  # (left, right, top, bottom)
        self.conv1 = nn.Conv2d(in_channels, 64, 2)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(2)
        self.drop1 = nn.Dropout(p)
        self.conv2 = nn.Conv2d(64, 32, 2)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool2 = nn.MaxPool2d(2)
        self.drop2 = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N,C,H,W) -> (N, 32*(H//4)*(W//4))
        x = self.drop1(self.pool1(self.relu1(self.conv1(self.pad(x)))))  # (N,64,H/2,W/2)
        x = self.drop2(self.pool2(self.relu2(self.conv2(self.pad(x)))))  # (N,32,H/4,W/4)
        return torch.flatten(x, 1)


def fashion_functional(in_channels: int, num_classes: int, image_size: tuple[int, int],
                       dropout: float | None = None) -> CNNKitModel:
    """TF blog "Fashion-MNIST with tf.Keras": Conv64-Pool-Drop .3-Conv32-Pool-Drop .3-Dense 256-Drop .5 (reported 90.93%)."""
    _check_size("fashion-functional", image_size, 4)
    p = 0.5 if dropout is None else dropout
    features = _FashionFeatures(in_channels, p * 0.6)  # 0.3 with the tutorial's 0.5
    n = _flat_size(features, in_channels, image_size)
    head = nn.Sequential(nn.Linear(n, 256), nn.ReLU(inplace=True), nn.Dropout(p), nn.Linear(256, num_outputs(num_classes)))
    return CNNKitModel(features, head, gradcam_layer=features.relu2)
