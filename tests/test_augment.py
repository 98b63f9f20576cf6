"""Batch augmentation: geometry on synthetic images, Keras semantics, batch == per image,
seeds, mixup/cutmix targets, presets, TTA views."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from cnnkit.augment import AugmentParams, BatchAugment, apply_params, resolve, sample_params, tta_views
from cnnkit.augment.presets import PRESETS
from cnnkit.config import AugmentConfig, RunConfig, from_dict, to_dict
from cnnkit.errors import ConfigError

# a config that turns the resampling path on (values are irrelevant: params are given)
GEOM = AugmentConfig(rotation_range=1.0)


def square(size: int = 32, top: int = 12, left: int = 12, side: int = 8, channels: int = 1) -> torch.Tensor:
    """(1,C,size,size) black image with a white square."""
    x = torch.zeros(1, channels, size, size)
    x[..., top : top + side, left : left + side] = 1.0
    return x


def centroid(img: torch.Tensor) -> tuple[float, float]:
    """(row, col) centre of mass of a (H,W) image."""
    h, w = img.shape
    total = img.sum()
    rows = (img.sum(1) * torch.arange(h)).sum() / total
    cols = (img.sum(0) * torch.arange(w)).sum() / total
    return float(rows), float(cols)


def params(n: int = 1, **kw: float) -> AugmentParams:
    base = AugmentParams.identity(n)
    return dataclasses.replace(base, **{k: torch.full((n,), float(v)) for k, v in kw.items()})


# ------------------------------------------------------------------ geometry


def test_grid_equals_torch_affine_grid():
    from cnnkit.augment.geometry import affine_grid

    theta = torch.randn(5, 2, 3)
    ref = torch.nn.functional.affine_grid(theta, [5, 3, 7, 11], align_corners=False)
    torch.testing.assert_close(affine_grid(theta, (7, 11)), ref, atol=1e-6, rtol=0)


def test_identity_params_leave_image_exactly_unchanged():
    x = torch.rand(2, 3, 17, 23)
    out = apply_params(x, AugmentParams.identity(2), GEOM)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dx,dy", [(0.25, 0.0), (0.0, -0.125), (0.1875, 0.25)])
def test_shift_moves_square_by_fraction_of_size(dx, dy):
    x = square(32)
    r0, c0 = centroid(x[0, 0])
    out = apply_params(x, params(shift_x=dx, shift_y=dy), AugmentConfig(width_shift_range=0.5, fill_mode="constant"))
    r1, c1 = centroid(out[0, 0])
    assert c1 - c0 == pytest.approx(dx * 32, abs=1e-3)
    assert r1 - r0 == pytest.approx(dy * 32, abs=1e-3)
    # whole-pixel shift of a square: still exactly a square of the same area
    assert float(out.sum()) == pytest.approx(64.0, abs=1e-3)


def test_non_square_image_shift_uses_width_and_height():
    x = torch.zeros(1, 1, 20, 40)
    x[..., 8:12, 18:22] = 1.0
    out = apply_params(x, params(shift_x=0.25, shift_y=0.25),
                       AugmentConfig(width_shift_range=0.5, fill_mode="constant"))
    r, c = centroid(out[0, 0])
    assert (r, c) == pytest.approx((9.5 + 5, 19.5 + 10), abs=1e-3)


@pytest.mark.parametrize("path_cfg", [AugmentConfig(horizontal_flip=True, vertical_flip=True), GEOM])
def test_flips_are_exact_flips_on_both_paths(path_cfg):
    x = torch.rand(3, 3, 9, 14)
    p = dataclasses.replace(AugmentParams.identity(3), flip_h=torch.tensor([1.0, 0.0, 1.0]),
                            flip_v=torch.tensor([0.0, 1.0, 1.0]))
    out = apply_params(x, p, path_cfg)
    torch.testing.assert_close(out[0], x[0].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], x[1].flip(-2), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[2], x[2].flip(-1).flip(-2), atol=1e-5, rtol=0)


def test_rotation_keeps_the_centre_and_90_degrees_is_rot90():
    x = torch.rand(1, 1, 15, 15)
    out = apply_params(x, params(angle=90.0), GEOM)
    assert float(out[0, 0, 7, 7]) == pytest.approx(float(x[0, 0, 7, 7]), abs=1e-6)
    candidates = [torch.rot90(x, k, dims=(-2, -1)) for k in (1, -1)]
    assert any(torch.allclose(out, c, atol=1e-5) for c in candidates)
    # any angle: a blob at the centre stays centred
    blob = square(33, 14, 14, 5)
    for angle in (13.0, -40.0, 77.0):
        rot = apply_params(blob, params(angle=angle), AugmentConfig(rotation_range=90, fill_mode="constant"))
        assert centroid(rot[0, 0]) == pytest.approx((16.0, 16.0), abs=1e-3)


def test_rotation_moves_off_centre_blob_along_a_circle():
    x = square(41, 19, 29, 3)  # blob centre at (row 20, col 30): 10 px right of the centre
    out = apply_params(x, params(angle=30.0), AugmentConfig(rotation_range=90, fill_mode="constant"))
    r, c = centroid(out[0, 0])
    assert math.hypot(r - 20, c - 20) == pytest.approx(10.0, abs=0.05)
    assert abs(math.degrees(math.atan2(r - 20, c - 20))) == pytest.approx(30.0, abs=0.5)


def test_zoom_scales_about_the_centre_keras_semantics():
    x = square(32, 14, 14, 4)  # centred 4x4 square
    # Keras: zoom factor z multiplies the *sampling* coordinates, so z=0.5 doubles the content
    out = apply_params(x, params(zoom_x=0.5, zoom_y=0.5), AugmentConfig(zoom_range=0.5, fill_mode="constant"))
    assert centroid(out[0, 0]) == pytest.approx((15.5, 15.5), abs=1e-3)
    assert float(out.sum()) == pytest.approx(4 * 16.0, rel=0.02)
    # independent axes: zoom_x only stretches columns
    wide = apply_params(x, params(zoom_x=0.5), AugmentConfig(zoom_range=0.5, fill_mode="constant"))[0, 0]
    assert int((wide[15] > 0.5).sum()) == 8 and int((wide[:, 15] > 0.5).sum()) == 4


def test_shear_is_horizontal_keras_semantics():
    x = torch.zeros(1, 1, 41, 41)
    x[..., :, 20] = 1.0  # vertical line through the centre
    s = 20.0
    out = apply_params(x, params(shear=s), AugmentConfig(shear_range=45, fill_mode="constant"))[0, 0]
    # Keras' shear maps output (x, y) to input (x - sin(s) y, cos(s) y): the line x_in = 0 ends up
    # at column offset sin(s) * row offset - its top tilted to the left (counter-clockwise)
    for row in (5, 10, 30, 35):
        expect = 20 + math.sin(math.radians(s)) * (row - 20)
        _, c = centroid(out[row : row + 1, :])
        assert c == pytest.approx(expect, abs=0.05)


def keras_reference(img: np.ndarray, theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0) -> np.ndarray:
    """Keras' apply_affine_transform (rotation @ shift @ shear @ zoom, scipy, order 1, mode nearest)
    as Keras >= 2.4 runs it on a channels-last image: the matrices act on (x, y) = (col, row) - Keras
    swaps rows and columns of its matrix before scipy resamples (row, col) - with the centre at the
    true pixel centre (size - 1) / 2.  tx/ty here act on x/y (Keras 3 feeds its height shift into tx)."""
    t, s = math.radians(theta), math.radians(shear)
    rot = np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])
    shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    shr = np.array([[1, -math.sin(s), 0], [0, math.cos(s), 0], [0, 0, 1]])
    zoom = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    m = rot @ shift @ shr @ zoom
    h, w = img.shape
    o = np.array([[1, 0, (w - 1) / 2], [0, 1, (h - 1) / 2], [0, 0, 1]])
    r = np.array([[1, 0, -(w - 1) / 2], [0, 1, -(h - 1) / 2], [0, 0, 1]])
    m = o @ m @ r
    m[:, [0, 1]] = m[:, [1, 0]]  # Keras: the matrix onto (row, col) for scipy
    m[[0, 1]] = m[[1, 0]]
    return ndimage.affine_transform(img, m[:2, :2], m[:2, 2], order=1, mode="nearest")


def test_composed_transform_matches_keras_reference():
    rng = np.random.default_rng(0)
    img = rng.random((24, 30)).astype(np.float64)
    kw = dict(angle=12.0, shift_x=0.1, shift_y=-0.05, shear=8.0, zoom_x=1.1, zoom_y=0.9)
    out = apply_params(torch.from_numpy(img).float()[None, None], params(**kw), GEOM)[0, 0].numpy()
    # our shifts move content by +shift, Keras samples at +t: t = -shift * size (tx on x, ty on y)
    ref = keras_reference(img, theta=12.0, tx=-0.1 * 30, ty=0.05 * 24, shear=8.0, zx=1.1, zy=0.9)
    np.testing.assert_allclose(out, ref, atol=2e-5)


def test_fill_modes():
    x = square(16, 0, 0, 16) * 0.4  # uniform grey image
    x[..., :, :1] = 1.0  # bright left column
    p = params(shift_x=0.25)  # content moves right by 4 px: the left 4 columns are "outside"
    const = apply_params(x, p, AugmentConfig(width_shift_range=0.5, fill_mode="constant", fill_value=0.7))
    torch.testing.assert_close(const[..., :, :4], torch.full((1, 1, 16, 4), 0.7), atol=1e-6, rtol=0)
    nearest = apply_params(x, p, AugmentConfig(width_shift_range=0.5, fill_mode="nearest"))
    torch.testing.assert_close(nearest[..., :, :5], torch.ones(1, 1, 16, 5), atol=1e-6, rtol=0)
    reflect = apply_params(x, p, AugmentConfig(width_shift_range=0.5, fill_mode="reflect"))
    # mirror about the edge (scipy/Keras 'reflect': d c b a | a b c d): columns 3, 4 are the edge
    assert reflect[0, 0, 0, :6].tolist() == pytest.approx([0.4, 0.4, 0.4, 1.0, 1.0, 0.4], abs=1e-6)


def test_random_resized_crop_zooms_into_a_window():
    cfg = resolve(AugmentConfig(random_resized_crop=0.3))
    p = sample_params(cfg, 500, (32, 48), torch.Generator().manual_seed(0))
    area = p.crop_w * p.crop_h
    assert float(area.min()) >= 0.3 - 1e-6 and float(p.crop_w.max()) <= 1.0 and float(p.crop_h.max()) <= 1.0
    # the window stays inside the image
    assert float((p.crop_x.abs() - (1 - p.crop_w) / 2).max()) <= 1e-6
    # a window of the left half (centre at -1/4 W) stretched to full width == resizing that half
    x = torch.arange(16.0).expand(1, 1, 8, 16).contiguous()
    half = dataclasses.replace(params(), crop_w=torch.tensor([0.5]), crop_x=torch.tensor([-0.25]))
    out = apply_params(x, half, cfg)
    ref = torch.nn.functional.interpolate(x[..., :8], size=(8, 16), mode="bilinear", align_corners=False)
    # (the last column differs: sampling the whole image blends in the pixel just outside the window)
    torch.testing.assert_close(out[..., :15], ref[..., :15], atol=1e-5, rtol=0)
    assert float(out[0, 0, 0, 15]) == pytest.approx(7.25, abs=1e-5)


# ------------------------------------------------------------------ photometric


def test_brightness_and_contrast_match_torchvision():
    from torchvision.transforms.v2 import functional as TF

    x = torch.rand(2, 3, 10, 12)
    p = dataclasses.replace(params(2), brightness=torch.tensor([1.3, 0.6]), contrast=torch.tensor([0.5, 1.4]))
    out = apply_params(x, p, AugmentConfig(brightness=0.5, contrast=0.5))
    for i, (b, c) in enumerate([(1.3, 0.5), (0.6, 1.4)]):
        ref = TF.adjust_contrast(TF.adjust_brightness(x[i], b), c)
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_cutout_erases_one_box_of_the_configured_size():
    x = torch.rand(1, 3, 20, 20)
    p = dataclasses.replace(params(), cut_x=torch.tensor([0.5]), cut_y=torch.tensor([0.5]),
                            cut_w=torch.tensor([0.25]), cut_h=torch.tensor([0.25]))
    out = apply_params(x, p, AugmentConfig(cutout=0.25))
    changed = (out != x).any(1)[0]
    assert int(changed.sum()) == 25  # 5x5 box
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())) == (8, 12, 8, 12)
    torch.testing.assert_close(out[0, :, 10, 10], x[0].mean((-2, -1)))


# ------------------------------------------------------------------ batch, seeds, devices, layout

STRONG_ALL = AugmentConfig(preset="strong", vertical_flip=True, random_resized_crop=0.5, fill_mode="reflect")


def test_batch_equals_each_image_alone_with_same_params():
    cfg = resolve(STRONG_ALL)
    x = torch.rand(8, 3, 24, 20)
    p = sample_params(cfg, 8, (24, 20), torch.Generator().manual_seed(3))
    batch = apply_params(x, p, cfg)
    singles = torch.cat([apply_params(x[i : i + 1], p.select(i), cfg) for i in range(8)])
    torch.testing.assert_close(batch, singles, atol=1e-6, rtol=0)
    assert not torch.allclose(batch, x)


def test_same_seed_same_batches_and_no_global_rng():
    aug = BatchAugment(STRONG_ALL, num_classes=3)
    x, y = torch.rand(6, 3, 16, 16), torch.arange(6) % 3
    torch.manual_seed(1)
    a1, _ = aug(x, y, torch.Generator().manual_seed(7))
    torch.manual_seed(2)  # the global RNG must not matter
    a2, _ = aug(x, y, torch.Generator().manual_seed(7))
    a3, _ = aug(x, y, torch.Generator().manual_seed(8))
    torch.testing.assert_close(a1, a2, atol=0, rtol=0)
    assert not torch.allclose(a1, a3)
    # successive calls on one generator differ (it advances)
    g = torch.Generator().manual_seed(7)
    b1, _ = aug(x, y, g)
    b2, _ = aug(x, y, g)
    torch.testing.assert_close(b1, a1, atol=0, rtol=0)
    assert not torch.allclose(b1, b2)


def test_keeps_shape_dtype_layout_and_labels():
    aug = BatchAugment(AugmentConfig(preset="standard"), num_classes=10)
    x = torch.rand(4, 3, 12, 12).contiguous(memory_format=torch.channels_last)
    y = torch.tensor([1, 2, 3, 4])
    out, target = aug(x, y, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert target is y
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    for dtype in (torch.float64, torch.bfloat16):
        assert aug(torch.rand(2, 1, 8, 8, dtype=dtype), y[:2], torch.Generator())[0].dtype == dtype
    with pytest.raises(TypeError):
        aug(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), y[:2], torch.Generator())


@pytest.mark.gpu
def test_cpu_and_cuda_give_the_same_batch_for_one_seed():
    aug = BatchAugment(STRONG_ALL, num_classes=4)
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8) % 4
    cpu, _ = aug(x, y, torch.Generator().manual_seed(5))
    gpu, _ = aug(x.cuda(), y.cuda(), torch.Generator().manual_seed(5))
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


# ------------------------------------------------------------------ mixup / cutmix


@pytest.mark.parametrize("mix", [dict(mixup=0.4), dict(cutmix=1.0), dict(mixup=0.4, cutmix=1.0)])
def test_mix_targets_are_soft_labels_summing_to_one(mix):
    aug = BatchAugment(AugmentConfig(**mix), num_classes=5)
    x, y = torch.rand(16, 3, 20, 20), torch.arange(16) % 5
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        out, target = aug(x, y, g)
        assert target.shape == (16, 5) and target.dtype == torch.float32
        torch.testing.assert_close(target.sum(1), torch.ones(16))
        assert float(target.min()) >= 0.0
        # each image's own class keeps at least the weight lam of its partner-free part
        assert bool((target.gather(1, y[:, None]) > 0).all())
        assert out.shape == x.shape


def test_cutmix_weight_equals_pasted_area():
    aug = BatchAugment(AugmentConfig(cutmix=1.0), num_classes=4)
    # image i is constant i/10 and of class i, so every pixel tells where it came from
    x = (torch.arange(4.0) / 10).view(4, 1, 1, 1).expand(4, 1, 16, 16).contiguous()
    y = torch.arange(4)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        out, target = aug(x, y, g)
        for i in range(4):
            own = float((out[i] == x[i, 0, 0, 0]).float().mean())
            assert float(target[i, i]) == pytest.approx(own, abs=1e-6)
        assert float(target.diagonal().min()) < 1.0  # something was pasted


def test_binary_soft_labels_have_two_columns():
    aug = BatchAugment(AugmentConfig(mixup=0.2), num_classes=1)
    _, target = aug(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 1, 0]), torch.Generator().manual_seed(0))
    assert target.shape == (4, 2)


# ------------------------------------------------------------------ presets and config


def test_presets_resolve_and_explicit_settings_win():
    assert not BatchAugment(AugmentConfig(), 10).active
    std = resolve(AugmentConfig(preset="standard"))
    assert (std.rotation_range, std.width_shift_range, std.zoom_range, std.horizontal_flip) == (15.0, 0.1, 0.1, True)
    mine = resolve(AugmentConfig(preset="standard", rotation_range=5.0, cutout=0.5))
    assert mine.rotation_range == 5.0 and mine.cutout == 0.5 and mine.zoom_range == 0.1
    strong = resolve(AugmentConfig(preset="strong"))
    assert (strong.shear_range, strong.brightness, strong.contrast, strong.cutout) == (10.0, 0.2, 0.2, 0.25)
    light = resolve(AugmentConfig(preset="light"))
    assert light.horizontal_flip and light.height_shift_range == 0.1 and light.rotation_range == 0.0
    assert resolve(mine) == mine  # idempotent
    assert BatchAugment(AugmentConfig(preset="none", vertical_flip=True), 10).active
    assert set(PRESETS) == {"none", "light", "standard", "strong"}


@pytest.mark.parametrize(
    "bad",
    [dict(preset="heavy"), dict(fill_mode="wrap"), dict(zoom_range=1.5), dict(width_shift_range=-0.1),
     dict(rotation_range=400), dict(tta="rotate"), dict(cutout=2.0)],
)
def test_invalid_settings_raise_config_error_naming_them(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        BatchAugment(AugmentConfig(**bad), 10)


def test_augment_config_round_trips_in_run_config():
    run = RunConfig(augment=AugmentConfig(preset="strong", mixup=0.2, tta="flip"))
    assert from_dict(RunConfig, to_dict(run)).augment == run.augment


# ------------------------------------------------------------------ test-time augmentation


def test_tta_views():
    x = torch.rand(2, 3, 64, 64)
    assert len(tta_views(x, "none")) == 1
    flip = tta_views(x, "flip")
    assert flip[0] is x and torch.equal(flip[1], x.flip(-1))
    views = tta_views(x, "flip-shift")
    assert len(views) == 6 and views[0] is x
    d = 2  # 64 // 32
    torch.testing.assert_close(views[2][..., :-d, :-d], x[..., d:, d:])  # content moved up-left by d
    torch.testing.assert_close(views[4][..., d:, d:], x[..., :-d, :-d])  # and down-right by d
    torch.testing.assert_close(views[3], views[2].flip(-1))
    torch.testing.assert_close(views[5], views[4].flip(-1))
    with pytest.raises(ConfigError):
        tta_views(x, "spin")


# ------------------------------------------------------------------ the transform list


def test_one_seed_gives_the_same_draws_as_before_transforms_were_objects():
    # values recorded from the implementation before each augmentation became one Transform:
    # the one (N, 16) draw keeps its column order, so saved seeds reproduce the same batches
    cfg = resolve(STRONG_ALL)
    p = sample_params(cfg, 2, (24, 20), torch.Generator().manual_seed(3))
    want = {"angle": [-14.872094, -9.731843], "shift_y": [-0.042832, 0.069464], "zoom_y": [0.912023, 0.942952],
            "flip_v": [0.0, 1.0], "crop_w": [1.0, 0.769417], "crop_y": [0.081157, 0.023191],
            "contrast": [0.960588, 0.845918], "cut_x": [0.459405, 0.805172]}
    for name, values in want.items():
        assert getattr(p, name).tolist() == pytest.approx(values, abs=1e-6), name
    x = torch.linspace(0, 1, 2 * 3 * 6 * 5).reshape(2, 3, 6, 5)
    out, _ = BatchAugment(cfg, 2)(x, torch.tensor([0, 1]), torch.Generator().manual_seed(3))
    # (the images re-recorded when rotation and shear took Keras' (x, y) convention; the draws did not move)
    assert float(out.sum()) == pytest.approx(77.184128, abs=1e-4)
    assert float(out[1, 2, 3, 4]) == pytest.approx(0.741629, abs=1e-6)


def test_augment_config_is_assembled_from_the_transform_list():
    from cnnkit.augment import TRANSFORMS, Geometric
    from cnnkit.augment.params import AugmentParams

    names = [n for t in TRANSFORMS for n in t.settings]
    assert [f.name for f in dataclasses.fields(AugmentConfig)] == ["preset", *names, "fill_mode", "fill_value", "tta"]
    assert sum(len(t.columns) for t in TRANSFORMS) == 16
    assert [f.name for f in dataclasses.fields(AugmentParams)] == [p for t in TRANSFORMS for p in t.params]
    # matrices multiply as Crop @ Rotation @ Shift @ Shear @ Zoom @ Flip
    order = [type(t).__name__ for t in sorted((t for t in TRANSFORMS if isinstance(t, Geometric)),
                                              key=lambda t: t.order)]
    assert order == ["RandomResizedCrop", "Rotation", "Shift", "Shear", "Zoom", "Flip"]
    assert type(AugmentConfig()).transforms is TRANSFORMS
    with pytest.raises(ValueError, match="same setting"):
        from cnnkit.augment import augment_config

        augment_config((*TRANSFORMS, TRANSFORMS[0]))
