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
        raise ValueError(f"model {name!r} needs images of at least {minimum}x{minimum}, "
                         f"got {image_size[0]}x{image_size[1]}")


def _conv_block(cin: int, cout: int, bn: bool, padding: str | tuple[int, int] = "same") -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=padding, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return layers


def _valid_padding(image_size: tuple[int, int], minimum: int) -> tuple[int, int]:
    """Padding of a tutorial net's 'valid' 3x3 convolutions: 0, or 1 ('same') on a side under ``minimum``.

    Below ``minimum`` pixels the valid convolutions and poolings would shrink that side to
    nothing, where Keras stops with "Negative dimension size"; padding there keeps the net usable
    on tiny images.  At the tutorials' sizes the layers are exactly theirs.
    """
    return tuple(1 if side < minimum else 0 for side in image_size)  # type: ignore[return-value]


def mlp(in_channels: int, num_classes: int, image_size: tuple[int, int], dropout: float | None = None) -> CNNKitModel:
    """Keras ``mnist_mlp``: Dense 512 - Dropout .2 - Dense 512 - Dropout .2 - Dense (669,706 parameters at 28x28).

    Its trunk is only the Flatten: ``features`` are the pixels (N, C*H*W), the head is all three Dense layers.
    """
    p = 0.2 if dropout is None else dropout
    n_in = in_channels * image_size[0] * image_size[1]
    head = nn.Sequential(nn.Linear(n_in, 512), nn.ReLU(inplace=True), nn.Dropout(p),
                         nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(p),
                         nn.Linear(512, num_outputs(num_classes)))
    return CNNKitModel(nn.Sequential(nn.Flatten()), head, gradcam_layer=None)


def lenet5(in_channels: int, num_classes: int, image_size: tuple[int, int],
           dropout: float | None = None) -> CNNKitModel:
    """LeNet-5 (LeCun 1998): valid 5x5 convs 6-16, Dense 120-84 (61,706 parameters at 32x32x1, 10 classes).

    Sizes 32-28-14-10-5 at 32x32, with ReLU and max pooling.  A side under 32 pixels - MNIST's 28x28 - is
    padded by 2 in the first convolution, as LeNet centred the 28x28 digits in a 32x32 field, so
    28x28 inputs give the same 61,706.  Any side of 12 or more builds.
    """
    _check_size("lenet5", image_size, 12)
    pad = tuple(2 if side < 32 else 0 for side in image_size)
    conv2 = nn.Conv2d(6, 16, 5)
    features = nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # (N,6,14,14) at 32 or 28
        conv2, nn.ReLU(inplace=True), nn.MaxPool2d(2),  # (N,16,5,5)
        nn.Flatten(),  # (N,400)
    )
    n = _flat_size(features, in_channels, image_size)
    layers: list[nn.Module] = [nn.Linear(n, 120), nn.ReLU(inplace=True)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Linear(84, num_outputs(num_classes))]
    return CNNKitModel(features, nn.Sequential(*layers), gradcam_layer=features[3])


def mnist_cnn(in_channels: int, num_classes: int, image_size: tuple[int, int],
              dropout: float | None = None) -> CNNKitModel:
    """Keras ``mnist_cnn``: Conv32 - Conv64 - MaxPool - Dropout .25 - Dense 128 - Dropout .5 (1,199,882 at 28x28x1)."""
    _check_size("mnist-cnn", image_size, 6)
    p = 0.5 if dropout is None else dropout
    features = nn.Sequential(
        nn.Conv2d(in_channels, 32, 3), nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True),  # (N,64,H-4,W-4)
        nn.MaxPool2d(2), nn.Dropout(p / 2), nn.Flatten(),
    )
    n = _flat_size(features, in_channels, image_size)
    head = nn.Sequential(nn.Linear(n, 128), nn.ReLU(inplace=True), nn.Dropout(p),
                         nn.Linear(128, num_outputs(num_classes)))
    return CNNKitModel(features, head, gradcam_layer=features[3])


def simple_cnn(in_channels: int, num_classes: int, image_size: tuple[int, int],
               dropout: float | None = None) -> CNNKitModel:
    """The cats-vs-dogs tutorial net: valid convs 32-64-128 with pooling, Dense 128-512 (4,894,913 at 150x150x3).

    Conv32 - Conv64 - Conv128, each 3x3 valid + ReLU + MaxPool 2, then Flatten - Dense 128 -
    Dense 512 - Dense 1 sigmoid.

    The tutorial has no dropout; ``--dropout P`` adds one before each hidden Dense layer.  A side
    under 22 pixels is padded ('same') so tiny images still fit.
    """
    _check_size("simple-cnn", image_size, 8)
    pad = _valid_padding(image_size, 22)
    layers: list[nn.Module] = []
    cin = in_channels
    for cout in (32, 64, 128):  # 150 -> 148 -> 74 -> 72 -> 36 -> 34 -> 17
        layers += [nn.Conv2d(cin, cout, 3, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        cin = cout
    layers.append(nn.Flatten())  # (N, 128*17*17) at 150
    features = nn.Sequential(*layers)
    n = _flat_size(features, in_channels, image_size)
    drop = [nn.Dropout(dropout)] if dropout else []
    head = nn.Sequential(*drop, nn.Linear(n, 128), nn.ReLU(inplace=True), *drop, nn.Linear(128, 512),
                         nn.ReLU(inplace=True), nn.Linear(512, num_outputs(num_classes)))
    return CNNKitModel(features, head, gradcam_layer=features[7])  # the last ReLU before pooling


def simple_cnn_same(in_channels: int, num_classes: int, image_size: tuple[int, int],
                    dropout: float | None = None) -> CNNKitModel:
    """Three 'same' conv/pool blocks 32-64-128, Dropout .5, Dense 128: a lighter head than ``simple-cnn``."""
    _check_size("simple-cnn-same", image_size, 8)
    p = 0.5 if dropout is None else dropout
    layers: list[nn.Module] = []
    cin = in_channels
    for cout in (32, 64, 128):
        layers += _conv_block(cin, cout, bn=False) + [nn.MaxPool2d(2)]
        cin = cout
    layers.append(nn.Flatten())
    features = nn.Sequential(*layers)
    n = _flat_size(features, in_channels, image_size)
    head = nn.Sequential(nn.Dropout(p), nn.Linear(n, 128), nn.ReLU(inplace=True),
                         nn.Linear(128, num_outputs(num_classes)))
    return CNNKitModel(features, head, gradcam_layer=features[7])  # last ReLU before pooling


def catdog_cnn(in_channels: int, num_classes: int, image_size: tuple[int, int],
               dropout: float | None = None) -> CNNKitModel:
    """The KDnuggets cats-vs-dogs net: 'same' convs 32-32-64, Dense 64, two softmax outputs (1,355,938 at 150x150x3).

    Conv32 - Conv32 - Conv64, each 3x3 'same' + ReLU + MaxPool 2, Dropout .25, Flatten - Dense 64 -
    Dropout .5 - Dense 2 softmax.

    Its definition fixes softmax outputs, one a class: two logits for two classes, never one sigmoid.
    """
    _check_size("catdog-cnn", image_size, 8)
    p = 0.5 if dropout is None else dropout
    layers: list[nn.Module] = []
    cin = in_channels
    for cout in (32, 32, 64):  # 150 -> 75 -> 37 -> 18
        layers += _conv_block(cin, cout, bn=False) + [nn.MaxPool2d(2)]
        cin = cout
    layers += [nn.Dropout(p / 2), nn.Flatten()]  # (N, 64*18*18) at 150
    features = nn.Sequential(*layers)
    n = _flat_size(features, in_channels, image_size)
    head = nn.Sequential(nn.Linear(n, 64), nn.ReLU(inplace=True), nn.Dropout(p),
                         nn.Linear(64, num_outputs(num_classes, "softmax")))
    return CNNKitModel(features, head, gradcam_layer=features[7], binary_output="softmax")


def _valid_stack(name: str, in_channels: int, image_size: tuple[int, int], widths: tuple[int, ...],
                 minimum: int) -> tuple[nn.Sequential, int]:
    """Keras ``Conv2D(w, 3)`` (valid) + ReLU + ``MaxPooling2D(2)`` per width, then Flatten: (features, length).

    A side under ``minimum`` pixels gets 'same' convolutions, and then the poolings round up (as
    Keras' 'same' pooling), so tiny images still fit (28 -> 14 -> 7 -> 4 -> 2 -> 1 through five blocks).
    """
    _check_size(name, image_size, 8)
    pad = _valid_padding(image_size, minimum)
    small = any(pad)  # the tutorial's sizes: exactly Keras' valid convolutions and floor pooling
    layers: list[nn.Module] = []
    cin = in_channels
    for cout in widths:
        layers += [nn.Conv2d(cin, cout, 3, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=small)]
        cin = cout
    layers.append(nn.Flatten())
    features = nn.Sequential(*layers)
    return features, _flat_size(features, in_channels, image_size)


def chollet_cnn(in_channels: int, num_classes: int, image_size: tuple[int, int],
                dropout: float | None = None) -> CNNKitModel:
    """Chollet's small cats-vs-dogs convnet (Keras blog, 2016): 1,212,513 parameters at 150x150x3.

    Conv32 - Conv32 - Conv64, each 3x3 valid + ReLU + MaxPool 2 (150 -> 148 -> 74 -> 72 -> 36 ->
    34 -> 17), Flatten (18,496) - Dense 64 - Dropout .5 - Dense 1 sigmoid.  A side under 22 pixels
    is padded ('same') so tiny images still fit.
    """
    p = 0.5 if dropout is None else dropout
    features, n = _valid_stack("chollet-cnn", in_channels, image_size, (32, 32, 64), 22)
    head = nn.Sequential(nn.Linear(n, 64), nn.ReLU(inplace=True), nn.Dropout(p),
                         nn.Linear(64, num_outputs(num_classes)))
    return CNNKitModel(features, head, gradcam_layer=features[7])  # the last ReLU before pooling


def horses_cnn(in_channels: int, num_classes: int, image_size: tuple[int, int],
               dropout: float | None = None) -> CNNKitModel:
    """The TF course's horses-or-humans convnet: 1,704,097 parameters at 300x300x3.

    Five blocks Conv 16 - 32 - 64 - 64 - 64, each 3x3 valid + ReLU + MaxPool 2 (300 -> 298 -> 149 ->
    147 -> 73 -> 71 -> 35 -> 33 -> 16 -> 14 -> 7), Flatten (3,136) - Dense 512 - Dense 1 sigmoid.
    The course has no dropout; ``--dropout P`` adds one before Dense 512.  A side under 94 pixels is
    padded ('same') so smaller images still fit.
    """
    features, n = _valid_stack("horses-cnn", in_channels, image_size, (16, 32, 64, 64, 64), 94)
    drop = [nn.Dropout(dropout)] if dropout else []
    head = nn.Sequential(*drop, nn.Linear(n, 512), nn.ReLU(inplace=True), nn.Linear(512, num_outputs(num_classes)))
    return CNNKitModel(features, head, gradcam_layer=features[13])  # the last ReLU before pooling


def _cifar_cnn(name: str, in_channels: int, num_classes: int, image_size: tuple[int, int], dropout: float | None,
               bn: bool, second: str | tuple[int, int]) -> CNNKitModel:
    """Three blocks of two 3x3 convs (32,32 / 64,64 / 64,64), each block + MaxPool + Dropout, then Dense 512.

    ``second`` is the padding of each block's second convolution: 'same', or the Keras example's
    valid (0) with 'same' on a side too small for it.
    """
    _check_size(name, image_size, 8)
    p = 0.25 if dropout is None else dropout
    layers: list[nn.Module] = []
    cin = in_channels
    for cout in (32, 64, 64):
        layers += _conv_block(cin, cout, bn) + _conv_block(cout, cout, bn, padding=second)
        layers += [nn.MaxPool2d(2), nn.Dropout(p)]
        cin = cout
    layers.append(nn.Flatten())
    features = nn.Sequential(*layers)
    n = _flat_size(features, in_channels, image_size)
    head = nn.Sequential(nn.Linear(n, 512), nn.ReLU(inplace=True), nn.Dropout(2 * p),
                         nn.Linear(512, num_outputs(num_classes)))
    relus = [m for m in features if isinstance(m, nn.ReLU)]
    return CNNKitModel(features, head, gradcam_layer=relus[-1])


def cifar_cnn(in_channels: int, num_classes: int, image_size: tuple[int, int],
              dropout: float | None = None) -> CNNKitModel:
    """The Keras CIFAR-10 tutorial's ``createModel()``: 6 convs, Dense 512 (276,138 parameters at 32x32x3).

    Per block a 'same' and a valid 3x3 conv (32, 64, 64), MaxPool 2, Dropout .25; Flatten (256 at
    32x32) - Dense 512 - Dropout .5 - Dense.

    A side under 22 pixels makes the valid convolutions 'same' so tiny images still fit.
    """
    pad = _valid_padding(image_size, 22)
    return _cifar_cnn("cifar-cnn", in_channels, num_classes, image_size, dropout, bn=False, second=pad)


def cifar_cnn_same(in_channels: int, num_classes: int, image_size: tuple[int, int],
                   dropout: float | None = None) -> CNNKitModel:
    """The 6-conv CIFAR-10 net with every convolution 'same' (32,32,64,64,64,64, dropout, Dense 512)."""
    return _cifar_cnn("cifar-cnn-same", in_channels, num_classes, image_size, dropout, bn=False, second="same")


def cifar_cnn_bn(in_channels: int, num_classes: int, image_size: tuple[int, int],
                 dropout: float | None = None) -> CNNKitModel:
    """The 6-conv CIFAR-10 net, every convolution 'same', with batch norm after each."""
    return _cifar_cnn("cifar-cnn-bn", in_channels, num_classes, image_size, dropout, bn=True, second="same")


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
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N,C,H,W) -> (N, 32*(H//4)*(W//4))
        x = self.drop1(self.pool1(self.relu1(self.conv1(self.pad(x)))))  # (N,64,H/2,W/2)
        x = self.drop2(self.pool2(self.relu2(self.conv2(self.pad(x)))))  # (N,32,H/4,W/4)
        return self.flatten(x)


def fashion_functional(in_channels: int, num_classes: int, image_size: tuple[int, int],
                       dropout: float | None = None) -> CNNKitModel:
    """TF blog "Fashion-MNIST with tf.Keras": Conv64-Pool-Drop .3-Conv32-Pool-Drop .3-Dense 256-Drop .5
    (reported 90.93%).

    412,778 parameters at 28x28x1, as the tutorial's ``model.summary()`` gives.
    """
    _check_size("fashion-functional", image_size, 4)
    p = 0.5 if dropout is None else dropout
    features = _FashionFeatures(in_channels, p * 0.6)  # 0.3 with the tutorial's 0.5
    n = _flat_size(features, in_channels, image_size)
    head = nn.Sequential(nn.Linear(n, 256), nn.ReLU(inplace=True), nn.Dropout(p),
                         nn.Linear(256, num_outputs(num_classes)))
    return CNNKitModel(features, head, gradcam_layer=features.relu2)
