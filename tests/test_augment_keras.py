"""Keras' documented meaning of each geometric setting, checked where one marked pixel lands.

A 21x21 image (centre (10, 10)) with one bright pixel; every expected position is worked out by
hand in the comments, on the displayed image: rows grow downwards, columns to the right.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from cnnkit.augment import AugmentParams, BatchAugment, apply_params, resolve, sample_params
from cnnkit.cli import build_parser, run_config_from_args
from cnnkit.config import AugmentConfig, RunConfig, from_dict, load_run_config, to_dict
from cnnkit.errors import ConfigError

SIZE = 21


def marked(row: int = 5, col: int = 15, n: int = 1) -> torch.Tensor:
    """(n, 1, 21, 21) zeros with a single 1.0 at (row, col)."""
    x = torch.zeros(n, 1, SIZE, SIZE)
    x[..., row, col] = 1.0
    return x


def where(img: torch.Tensor) -> tuple[int, int]:
    """(row, col) of the brightest pixel of a (H, W) image."""
    i = int(img.argmax())
    return i // img.shape[-1], i % img.shape[-1]


def lands(x: torch.Tensor, cfg: AugmentConfig, **kw: float) -> torch.Tensor:
    """x transformed by the given per-image parameters (n = 1) under a resampling config."""
    p = dataclasses.replace(AugmentParams.identity(1), **{k: torch.tensor([float(v)]) for k, v in kw.items()})
    return apply_params(x, p, resolve(cfg))[0, 0]


GEOM = AugmentConfig(rotation_range=90.0, fill_mode="constant")


def assert_lands(img: torch.Tensor, at: tuple[int, int]) -> None:
    """The output pixel ``at`` samples exactly the marked pixel (bilinear neighbours may share it)."""
    assert float(img[at]) == pytest.approx(1.0, abs=1e-5) and where(img) == at


def assert_single_pixel(img: torch.Tensor, at: tuple[int, int]) -> None:
    """The pixel moved whole: 1 at ``at``, 0 everywhere else."""
    want = torch.zeros_like(img)
    want[at] = 1.0
    torch.testing.assert_close(img, want, atol=1e-5, rtol=0)


def test_rotation_90_is_counter_clockwise():
    # (row 5, col 15) is 5 up and 5 right of the centre; turned a quarter counter-clockwise it is
    # 5 up and 5 left: (row 5, col 5).  np.rot90 / torch.rot90(k=1) turn the same way.
    assert_single_pixel(lands(marked(), GEOM, angle=90.0), (5, 5))
    # -90 turns clockwise: 5 right and 5 down, (row 15, col 15)
    assert_single_pixel(lands(marked(), GEOM, angle=-90.0), (15, 15))
    x = torch.rand(1, 1, SIZE, SIZE)
    torch.testing.assert_close(lands(x, GEOM, angle=90.0), torch.rot90(x, 1, dims=(-2, -1))[0, 0], atol=1e-5, rtol=0)


def test_small_positive_rotation_lifts_a_pixel_right_of_the_centre():
    # 8 px right of the centre on the middle row, +30 deg counter-clockwise: up by 8 sin 30 = 4 rows
    # and right by 8 cos 30 = 6.93 columns: nearest pixel (row 6, col 17)
    assert where(lands(marked(10, 18), GEOM, angle=30.0)) == (6, 17)


def test_shear_is_horizontal_counter_clockwise():
    # Keras' shear matrix on (x, y): x_in = x - sin(s) y, y_in = cos(s) y.  With sin s = 0.6,
    # cos s = 0.8 (s = 36.87 deg) the pixel at (row 6, col 15) = (x 5, y -4) lands where
    # y = -4 / 0.8 = -5 and x = 5 + 0.6 * -5 = 2: (row 5, col 12) - up-left, rows above the
    # centre slide left, a vertical line tilts counter-clockwise
    s = math.degrees(math.atan2(0.6, 0.8))
    assert_lands(lands(marked(6, 15), AugmentConfig(shear_range=45.0, fill_mode="constant"), shear=s), (5, 12))
    # the centre row does not move at all: shear never moves content vertically there
    assert_lands(lands(marked(10, 3), AugmentConfig(shear_range=45.0, fill_mode="constant"), shear=s), (10, 3))


def test_shift_by_three_pixels_moves_right_and_down():
    cfg = AugmentConfig(width_shift_range=3, fill_mode="constant")
    assert_single_pixel(lands(marked(), cfg, shift_x=3 / SIZE), (5, 18))  # width shift: horizontal
    assert_single_pixel(lands(marked(), cfg, shift_y=3 / SIZE), (8, 15))  # height shift: vertical


def test_zoom_in_and_out_about_the_centre():
    cfg = AugmentConfig(zoom_range=0.9, fill_mode="constant")
    # Keras' zoom z multiplies the sampling position: z = 0.5 doubles distances from the centre,
    # (x 5, y -5) -> (x 10, y -10): (row 0, col 20)
    assert_lands(lands(marked(), cfg, zoom_x=0.5, zoom_y=0.5), (0, 20))
    # z = 2 halves them: (row 6, col 14) = (x 4, y -4) -> (x 2, y -2): (row 8, col 12)
    assert_single_pixel(lands(marked(6, 14), cfg, zoom_x=2.0, zoom_y=2.0), (8, 12))
    # only zoom_x: columns stretch, the row stays
    assert_lands(lands(marked(), cfg, zoom_x=0.5), (5, 20))


def test_flips():
    cfg = AugmentConfig(horizontal_flip=True, vertical_flip=True)
    assert_single_pixel(lands(marked(), cfg, flip_h=1.0), (5, 5))
    assert_single_pixel(lands(marked(), cfg, flip_v=1.0), (15, 15))
    assert_single_pixel(lands(marked(), GEOM, flip_h=1.0, flip_v=1.0), (15, 5))  # the resampling path too


# ------------------------------------------------------------------ 'constant' fill: hard edges


def test_constant_fill_is_exactly_the_fill_or_the_image_no_ring():
    ones = torch.ones(1, 1, SIZE, SIZE)
    # a 3.5 px shift right: output column c samples input column c - 3.5, whose nearest pixel is
    # inside from c = 3 on; columns 0-2 are the fill, column 3 on is the image (no 0.5 blend)
    cfg = AugmentConfig(width_shift_range=4.0, fill_mode="constant", fill_value=0.25)
    out = lands(ones, cfg, shift_x=3.5 / SIZE)
    assert torch.equal(out[:, :3], torch.full((SIZE, 3), 0.25))
    torch.testing.assert_close(out[:, 3:], torch.ones(SIZE, SIZE - 3), atol=1e-6, rtol=0)
    # any rotation: every pixel is the fill (exactly) or the image, and both occur
    for angle in (30.0, -17.0):
        rot = lands(ones, AugmentConfig(rotation_range=45.0, fill_mode="constant", fill_value=0.25), angle=angle)
        fill, image = rot == 0.25, (rot - 1.0).abs() < 1e-6
        assert bool((fill | image).all()) and int(fill.sum()) > 0 and int(image.sum()) > 0
    # fill 0 (the default) too
    zero = lands(ones, AugmentConfig(rotation_range=45.0, fill_mode="constant"), angle=30.0)
    assert bool(((zero == 0.0) | ((zero - 1.0).abs() < 1e-6)).all())


# ------------------------------------------------------------------ Keras' shift ranges


def draws(cfg: AugmentConfig, n: int = 4000, size: tuple[int, int] = (SIZE, SIZE)) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampled width and height shifts in pixels."""
    p = sample_params(resolve(cfg), n, size, torch.Generator().manual_seed(0))
    return (p.shift_x * size[1]).double(), (p.shift_y * size[0]).double()


def test_int_range_is_whole_pixels_list_range_is_choices():
    dx, dy = draws(AugmentConfig(width_shift_range=3, height_shift_range=(2, 4)))
    # Keras: an int n draws choice(n) * choice([-1, 1]): whole pixels -2..2
    assert set(dx.round().tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0}
    torch.testing.assert_close(dx, dx.round(), atol=1e-4, rtol=0)
    # a list: one of its entries with a random sign
    assert set(dy.round().tolist()) == {-4.0, -2.0, 2.0, 4.0}
    # a float >= 1 is pixels, uniform; a float < 1 stays a fraction of the size
    px, frac = draws(AugmentConfig(width_shift_range=2.5, height_shift_range=0.2), size=(40, 21))
    assert float(px.abs().max()) <= 2.5 and float(px.abs().max()) > 2.3 and len(set(px.tolist())) > 100
    assert float(frac.abs().max()) <= 0.2 * 40 and float(frac.abs().max()) > 7.5
    # an int 0 is off, as 0.0 is
    dx0, dy0 = draws(AugmentConfig(width_shift_range=0, height_shift_range=2))
    assert float(dx0.abs().max()) == 0.0 and set(dy0.round().tolist()) == {-1.0, 0.0, 1.0}
    # a list of fractions (every entry < 1) is fractions of the size
    _, f = draws(AugmentConfig(height_shift_range=(0.25,)), size=(40, 21))
    assert set(f.round().tolist()) == {-10.0, 10.0}


def test_a_three_pixel_choice_moves_the_pixel_sideways_only():
    # width_shift_range=[3]: each image moves exactly 3 px left or right, never up or down
    x = marked(n=64)
    aug = BatchAugment(AugmentConfig(width_shift_range=(3,), fill_mode="constant"), 2)
    out, _ = aug(x, torch.zeros(64, dtype=torch.long), torch.Generator().manual_seed(1))
    spots = {where(img[0]) for img in out}
    assert spots == {(5, 12), (5, 18)}


def test_pixel_and_list_ranges_from_the_command_line_and_config_files(tmp_path):
    a = build_parser().parse_args(["train", "digits", "--width-shift", "3", "--height-shift", "2,4"])
    aug = run_config_from_args(a).augment
    assert aug.width_shift_range == 3 and isinstance(aug.width_shift_range, int)
    assert aug.height_shift_range == (2, 4)
    shared = run_config_from_args(build_parser().parse_args(["train", "digits", "--shift", "0.2"])).augment
    assert (shared.width_shift_range, shared.height_shift_range) == (0.2, 0.2)
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"augment": {"width_shift_range": [1, 3], "height_shift_range": 5}}))
    loaded = load_run_config(path).augment
    assert (loaded.width_shift_range, loaded.height_shift_range) == ((1, 3), 5)
    # a checkpoint's metadata round trip (JSON lists back to tuples)
    cfg = RunConfig(augment=AugmentConfig(width_shift_range=(2, 4)))
    assert from_dict(RunConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg


@pytest.mark.parametrize("value", [-0.1, -3, "abc", (), (1, "x"), float("nan"), True])
def test_unusable_shift_ranges_name_the_setting(value, tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"augment": {"width_shift_range": list(value) if isinstance(value, tuple) else value}},
                               allow_nan=True))
    with pytest.raises(ConfigError, match="width_shift_range"):
        load_run_config(path)
