"""Explanations checked by their numbers: Sobel vs scipy, feature maps vs a hand convolution,
Grad-CAM vs a reference implementation and on a model that can only see the left half, filter
tiles, most-wrong ordering."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from cnnkit.config import ModelConfig
from cnnkit.errors import ConfigError
from cnnkit.models import MODELS, build_model
from cnnkit.models.base import CNNKitModel
from cnnkit.visualize.filters import feature_maps, filter_weights, plot_feature_maps, plot_filters
from cnnkit.visualize.gradcam import class_map, gradcam, overlay, plot_gradcam, plot_gradcam_grid, saliency
from cnnkit.visualize.mostwrong import most_wrong, plot_most_wrong, sample_losses
from cnnkit.visualize.sobel import SOBEL_X, SOBEL_Y, plot_sobel, sobel
from conftest import make_shapes


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: OpenMP threads only add synchronisation (seconds on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def image_axes(fig) -> list:
    """Axes that show an image (colour-bar axes draw a mesh, not an image)."""
    return [ax for ax in fig.axes if ax.images]


# ------------------------------------------------------------------ Sobel


def test_sobel_equals_scipy_reference_convolution():
    rng = np.random.default_rng(0)
    img = rng.random((19, 26)).astype(np.float32)
    out = sobel(img)
    # conv2d is a correlation; replicate padding = scipy's 'nearest' border mode
    np.testing.assert_allclose(out["dx"], ndimage.correlate(img, SOBEL_X, mode="nearest"), atol=1e-5)
    np.testing.assert_allclose(out["dy"], ndimage.correlate(img, SOBEL_Y, mode="nearest"), atol=1e-5)
    # the same signs as scipy's own Sobel (axis 1 = x = columns)
    np.testing.assert_allclose(out["dx"], ndimage.sobel(img, axis=1, mode="nearest"), atol=1e-5)
    np.testing.assert_allclose(out["dy"], ndimage.sobel(img, axis=0, mode="nearest"), atol=1e-5)
    np.testing.assert_allclose(out["magnitude"], np.hypot(out["dx"], out["dy"]), atol=1e-5)


def test_sobel_hand_computed_step_edge():
    img = np.zeros((6, 8), np.uint8)
    img[:, 4:] = 255  # dark left, bright right: a vertical edge between columns 3 and 4
    out = sobel(img)
    expected = np.zeros((6, 8), np.float32)
    expected[:, 3:5] = 4.0  # (1 + 2 + 1) * (1 - 0) on both sides of the edge
    np.testing.assert_allclose(out["dx"], expected, atol=1e-6)
    np.testing.assert_allclose(out["dy"], 0.0, atol=1e-6)
    # transposed image: the edge becomes horizontal and moves to dy
    np.testing.assert_allclose(sobel(img.T)["dy"], expected.T, atol=1e-6)


def test_sobel_rgb_uses_luma_and_plot_has_panels_with_colour_bars():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (12, 15, 3)).astype(np.uint8)
    luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255
    np.testing.assert_allclose(sobel(rgb)["dx"], sobel(luma)["dx"], atol=1e-5)
    fig = plot_sobel(rgb)
    assert len(image_axes(fig)) == 4  # original, dx, dy, magnitude
    assert len(fig.axes) == 7  # + three colour bars
    assert [ax.get_title().split(":")[0] for ax in image_axes(fig)] == ["original", "dx", "dy",
                                                                        "magnitude sqrt(dx² + dy²)"]


# ------------------------------------------------------------------ filters and feature maps


def lenet(channels: int = 1, size: int = 28, classes: int = 10) -> CNNKitModel:
    torch.manual_seed(0)
    return build_model(ModelConfig(name="lenet5", num_classes=classes, in_channels=channels, image_size=(size, size)))


def tiles_of(picture: np.ndarray, n: int, cols: int, h: int, w: int, pad: int = 1) -> list[np.ndarray]:
    """Cut a mosaic back into its tiles (the inverse of cnnkit.visualize.filters.mosaic)."""
    return [picture[(k // cols) * (h + pad):(k // cols) * (h + pad) + h,
                    (k % cols) * (w + pad):(k % cols) * (w + pad) + w]
            for k in range(n)]


def test_filters_grid_has_one_tile_per_filter():
    model = lenet()
    w = filter_weights(model)
    assert w.shape == (6, 1, 5, 5)
    np.testing.assert_array_equal(w, model.features[0].weight.detach().numpy())
    fig = plot_filters(w)
    picture = image_axes(fig)[0].images[0].get_array().filled(np.nan)  # (2*6-1, 3*6-1): 2 rows of 3
    assert picture.shape == (11, 17)
    for k, tile in enumerate(tiles_of(picture, 6, 3, 5, 5)):
        np.testing.assert_array_equal(tile, w[k, 0])  # filter k, raw weights, in its cell
    assert np.isnan(picture).sum() == picture.size - 6 * 25  # nothing else but the gaps
    assert len(fig.axes) == 2  # the grid and its colour bar

    rgb = build_model(ModelConfig(name="cifar-cnn", num_classes=10, in_channels=3, image_size=(16, 16)))
    w3 = filter_weights(rgb)
    assert w3.shape == (32, 3, 3, 3)
    picture = image_axes(plot_filters(w3))[0].images[0].get_array()
    assert picture.shape == (6 * 4 - 1, 6 * 4 - 1, 3)  # 32 colour tiles, 6 a row (the last row has 2)
    tiles = tiles_of(np.asarray(picture), 32, 6, 3, 3)
    for k in (0, 31):
        f = w3[k].transpose(1, 2, 0)
        np.testing.assert_allclose(tiles[k], (f - f.min()) / (f.max() - f.min()), atol=1e-6)


def test_filters_of_dense_model_is_a_clear_error():
    mlp = build_model(ModelConfig(name="mlp", num_classes=3, in_channels=1, image_size=(8, 8)))
    with pytest.raises(ConfigError, match="no convolution"):
        filter_weights(mlp)


def test_feature_maps_have_the_layer_shape_and_values():
    model = lenet()
    x = torch.randn(1, 1, 28, 28)
    conv = model.features[0]
    maps = feature_maps(model, x, "features.0")
    assert maps.shape == (6, 28, 28)
    # the conv output before the in-place ReLU that follows it: negative values survive
    expected = F.conv2d(x, conv.weight, conv.bias, padding=2)[0].detach().numpy()
    np.testing.assert_allclose(maps, expected, atol=1e-5)
    assert maps.min() < 0
    assert feature_maps(model, x, "features.3").shape == (16, 10, 10)
    assert feature_maps(model, x[0], "features.5").shape == (16, 5, 5)  # (C,H,W) input works too
    fig = plot_feature_maps(maps, image=np.zeros((28, 28, 1), np.uint8), layer="features.0")
    assert len(image_axes(fig)) == 2  # input, then all channels in one grid
    picture = image_axes(fig)[1].images[0].get_array().filled(np.nan)
    for c, tile in enumerate(tiles_of(picture, 6, 3, 28, 28)):
        np.testing.assert_array_equal(tile, maps[c])


def test_feature_maps_errors_name_the_layers():
    model = lenet()
    with pytest.raises(ConfigError, match=r"features\.3 \(Conv2d\)"):
        feature_maps(model, torch.zeros(1, 1, 28, 28), "features.99")
    dense = feature_maps(model, torch.zeros(1, 1, 28, 28), "head.0")
    assert dense.shape == (120,)
    with pytest.raises(ConfigError, match="not a .channels, H, W. feature map"):
        plot_feature_maps(dense, layer="head.0")


def test_unknown_layer_of_a_deep_net_suggests_instead_of_listing_hundreds():
    from torch import nn

    deep = nn.Sequential(*[nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.ReLU()) for _ in range(30)])
    with pytest.raises(ConfigError) as err:
        feature_maps(deep, torch.zeros(1, 1, 8, 8), "29.O")
    msg = str(err.value)
    assert "did you mean" in msg and "29.0," in msg.split("its last")[0] and "29.0 (Conv2d)" in msg
    assert "90 layers in all" in msg
    assert " 3.0 (Conv2d)" not in msg and "18.0 (Conv2d)" in msg and "17.0" not in msg  # the last 12 convolutions


# ------------------------------------------------------------------ Grad-CAM


def reference_gradcam(model: CNNKitModel, x: torch.Tensor, target: int) -> np.ndarray:
    """Textbook Grad-CAM on an out-of-place copy of LeNet-5 (gradcam_layer = features[3])."""
    m = copy.deepcopy(model).eval()
    for mod in m.modules():
        if isinstance(mod, nn.ReLU):
            mod.inplace = False
    a = m.features[:4](x).detach().requires_grad_(True)  # (1,16,10,10) conv2 output
    logits = m.head(m.features[4:](a))
    (g,) = torch.autograd.grad(logits[0, target], a)
    cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return (cam / cam.max()).detach().numpy()


def test_gradcam_matches_reference_and_leaves_model_untouched():
    model = lenet()
    model.train()
    x = torch.randn(1, 1, 28, 28)
    for target in (0, 7):
        cam = gradcam(model, x[0], target)
        assert cam.shape == (28, 28) and cam.dtype == np.float32
        np.testing.assert_allclose(cam, reference_gradcam(model, x, target), atol=1e-5)
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())  # no gradients accumulated in the model
    batch = gradcam(model, torch.cat([x, x]), [0, 7])
    assert batch.shape == (2, 28, 28)
    np.testing.assert_allclose(batch[1], gradcam(model, x, 7)[0], atol=1e-5)
    with pytest.raises(ConfigError, match="out of range"):
        gradcam(model, x, 10)


class LeftHalf(nn.Module):
    """Zeroes the right half of the input: the model can only ever see the left half."""

    def __init__(self, size: int):
        super().__init__()
        mask = torch.zeros(1, 1, size, size)
        mask[..., : size // 2] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


def blob_images(n: int, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(n,1,size,size) noise; class 1 has a bright 4x4 blob in the left half; every image has one on the right."""
    x = rng.random((n, 1, size, size)).astype(np.float32) * 0.2
    y = rng.integers(0, 2, n)
    for i in range(n):
        r, c = rng.integers(0, size - 4), rng.integers(size // 2, size - 4)
        x[i, 0, r:r + 4, c:c + 4] = 1.0  # distractor the model cannot see
        if y[i]:
            r, c = rng.integers(0, size - 4), rng.integers(0, size // 2 - 4)
            x[i, 0, r:r + 4, c:c + 4] = 1.0
    return torch.from_numpy(x), torch.from_numpy(y)


def left_half_model(size: int, outputs: int) -> CNNKitModel:
    torch.manual_seed(0)
    relu2 = nn.ReLU()
    features = nn.Sequential(LeftHalf(size), nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.ReLU(inplace=True),
                             nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1, bias=False), relu2)  # (N,8,size/2,size/2)
    head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, outputs))
    return CNNKitModel(features, head, gradcam_layer=relu2)


@pytest.mark.parametrize("outputs", [2, 1])  # softmax over two logits, and one sigmoid logit
def test_gradcam_is_hot_where_the_model_looks(outputs):
    size = 16
    rng = np.random.default_rng(0)
    model = left_half_model(size, outputs)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    x, y = blob_images(128, size, rng)
    for _ in range(40):
        logits = model(x)
        loss = (F.cross_entropy(logits, y) if outputs == 2 else
                F.binary_cross_entropy_with_logits(logits[:, 0], y.float()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    pred = (model(x).argmax(1) if outputs == 2 else (model(x)[:, 0] > 0).long())
    assert (pred == y).float().mean() > 0.9  # it learned the left blob

    img = torch.full((1, 1, size, size), 0.1)
    img[..., 3:7, 2:6] = 1.0  # evidence for class 1 on the left
    img[..., 9:13, 10:14] = 1.0  # a blob on the right that the model cannot see
    cam = gradcam(model, img[0], 1)
    assert cam.shape == (size, size) and 0 <= cam.min() and cam.max() == pytest.approx(1.0)
    assert cam[:, : size // 2].mean() > 5 * cam[:, size // 2:].mean()
    assert cam[:, 12:].max() < 1e-6  # beyond the receptive field of the visible half: nothing
    r, c = np.unravel_index(cam.argmax(), cam.shape)
    assert 1 <= r <= 8 and 0 <= c <= 7, (r, c)  # the hottest point is at the blob
    if outputs == 1:  # class 0 of one logit = gradient of -z: the other part of the same weighted sum
        cam0 = gradcam(model, img[0], 0)
        assert cam0.shape == (size, size)
        assert not np.allclose(cam0, cam)


def test_binary_class_maps_are_positive_and_negative_parts():
    """Before upsampling, one-logit Grad-CAMs of class 0 and 1 never overlap: relu(S) vs relu(-S)."""
    torch.manual_seed(1)
    relu = nn.ReLU()
    features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), relu)  # gradcam layer at input resolution
    model = CNNKitModel(features, nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 1)), gradcam_layer=relu)
    x = torch.randn(1, 8, 8)
    cam0, cam1 = gradcam(model, x, 0), gradcam(model, x, 1)
    assert cam0.max() == pytest.approx(1.0) or cam1.max() == pytest.approx(1.0)
    assert np.abs(cam0 * cam1).max() < 1e-6


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_zoo_model_gets_a_map_at_input_resolution(name):
    torch.manual_seed(0)
    channels, size = (3, (20, 24)) if "cifar" in name or name == "simple-cnn" else (1, (28, 28))
    model = build_model(ModelConfig(name=name, num_classes=4, in_channels=channels, image_size=size))
    x = torch.randn(2, channels, *size)
    maps, method = class_map(model, x)
    assert maps.shape == (2, *size) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert method == ("gradient saliency" if name == "mlp" else "Grad-CAM")
    if name == "mlp":
        with pytest.raises(ConfigError, match="no spatial layer"):
            gradcam(model, x)


def transfer_backbones() -> list:
    from cnnkit.models import transfer

    fast = {"resnet18", "mobilenet_v3_small"}  # ~0.2 s each on a CPU; the others are bigger
    return [pytest.param(name, marks=() if name in fast else pytest.mark.slow) for name in sorted(transfer.BACKBONES)]


@pytest.mark.parametrize("name", transfer_backbones())
def test_transfer_backbones_get_a_map_through_gradcam_layer(name):
    torch.manual_seed(0)
    for classes, target in ((3, None), (2, 0)):  # K logits, and one binary logit explained for class 0
        model = build_model(ModelConfig(name=name, num_classes=classes, in_channels=3, image_size=(64, 64)))
        cam = gradcam(model, torch.randn(2, 3, 64, 64), target)
        assert cam.shape == (2, 64, 64) and np.isfinite(cam).all()
        assert cam.min() >= 0 and all(m.max() == pytest.approx(1.0) or m.max() == 0 for m in cam)


def test_saliency_marks_the_pixels_the_score_depends_on():
    """A linear model's saliency is |its weights|: zero where a weight is zero."""
    lin = nn.Linear(16, 1, bias=False)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0, 5] = 2.0
        lin.weight[0, 10] = -1.0
    model = CNNKitModel(nn.Flatten(), lin, gradcam_layer=None)
    sal = saliency(model, torch.rand(1, 4, 4), 1)
    expected = np.zeros(16, np.float32)
    expected[5], expected[10] = 1.0, 0.5
    np.testing.assert_allclose(sal.reshape(-1), expected, atol=1e-6)


def test_gradcam_plots_show_image_heat_and_colour_bar():
    img = np.zeros((16, 16, 1), np.uint8)
    cam = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    fig = plot_gradcam(img, cam, title="t")
    assert len(image_axes(fig)) == 3 and len(fig.axes) == 4
    grid = plot_gradcam_grid([img] * 3, [cam] * 3, ["a", "b", "c"])
    panels = image_axes(grid)
    assert [ax.get_title() for ax in panels] == ["a", "b", "c"]
    pair = panels[0].images[0].get_array()  # image | gap | overlay
    assert pair.shape == (16, 33, 3)
    np.testing.assert_allclose(pair[:, 17:], overlay(img, cam), atol=1e-6)


# ------------------------------------------------------------------ most-wrong


def test_most_wrong_is_ordered_by_loss():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=50)
    labels = rng.integers(0, 4, 50)
    res = most_wrong(probs, labels, n=10)
    losses = -np.log(probs[np.arange(50), labels])
    np.testing.assert_allclose(sample_losses(probs, labels), losses)
    np.testing.assert_array_equal(res["index"], np.argsort(-losses)[:10])
    assert np.all(np.diff(res["loss"]) <= 0)
    assert res["loss"][-1] >= np.sort(losses)[-10]
    np.testing.assert_array_equal(res["true"], labels[res["index"]])
    np.testing.assert_array_equal(res["pred"], probs[res["index"]].argmax(1))
    np.testing.assert_allclose(res["prob_pred"], probs[res["index"]].max(1))
    np.testing.assert_allclose(res["prob_true"], np.exp(-res["loss"]))
    assert len(most_wrong(probs, labels, n=80)["index"]) == 50


def test_most_wrong_binary_and_picture():
    data = make_shapes(3, size=8, classes=("a", "b"))  # 6 images, two classes
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.99, 0.01], [0.4, 0.6], [0.7, 0.3], [0.5, 0.5]])
    res = most_wrong(probs, data.labels, n=4)  # labels 0,0,0,1,1,1: losses .105 1.61 .01 .51 1.20 .69
    assert res["index"].tolist() == [1, 4, 5, 3]
    fig = plot_most_wrong(data, res)
    tiles = image_axes(fig)
    assert len(tiles) == 4
    assert tiles[0].get_title() == "true a\npred b 0.80"


def test_most_wrong_picture_marks_mistakes_and_keeps_its_title_inside():
    data = make_shapes(1, size=8, classes=("a", "b", "c"))  # labels 0, 1, 2
    probs = np.array([[0.2, 0.7, 0.1], [0.3, 0.6, 0.1], [0.1, 0.2, 0.7]])  # image 0 wrong, 1 and 2 right
    res = most_wrong(probs, data.labels, n=3)
    fig = plot_most_wrong(data, res)
    colours = {ax.get_title(): ax.title.get_color() for ax in image_axes(fig)}
    assert colours["true a\npred b 0.70"] not in ("black", "k")  # a mistake stands out ...
    assert colours["true b\npred b 0.60"] in ("black", "k")  # ... from a right answer with a high loss
    assert "1 misclassified" in fig._suptitle.get_text()
    # three narrow columns used to cut the two-line title off at both edges
    fig.draw_without_rendering()
    box = fig._suptitle.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width
