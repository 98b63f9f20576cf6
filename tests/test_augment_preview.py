"""Augmentation preview grid and the augmentation command-line flags."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from cnnkit import config as C
from cnnkit.cli import build_parser, main, run_config_from_args
from cnnkit.config import AugmentConfig
from cnnkit.visualize.augment_preview import PAD, augment_preview, plot_augment_preview


def images(n: int = 5, h: int = 12, w: int = 10, c: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)


def tile(grid: np.ndarray, r: int, k: int, h: int, w: int) -> np.ndarray:
    top, left = PAD + r * (h + PAD), PAD + k * (w + PAD)
    return grid[top : top + h, left : left + w]


def test_preview_grid_has_originals_then_augmented_copies():
    imgs = images()
    grid = augment_preview(imgs, AugmentConfig(preset="strong"), n_aug=3, n_images=4, seed=1)
    assert grid.dtype == np.uint8 and grid.shape == (4 * 12 + 5 * PAD, 4 * 10 + 5 * PAD, 3)
    for r in range(4):
        np.testing.assert_array_equal(tile(grid, r, 0, 12, 10), imgs[r])
        for k in range(1, 4):
            assert not np.array_equal(tile(grid, r, k, 12, 10), imgs[r])
    assert (grid[:PAD] == 255).all() and (grid[:, :PAD] == 255).all()
    # same seed, same picture; no augmentation: every copy is the original
    np.testing.assert_array_equal(grid, augment_preview(imgs, AugmentConfig(preset="strong"), 3, 4, seed=1))
    plain = augment_preview(imgs[:2, ..., :1], AugmentConfig(), n_aug=2, n_images=4)
    assert plain.shape == (2 * 12 + 3 * PAD, 3 * 10 + 4 * PAD, 1)
    for k in range(3):
        np.testing.assert_array_equal(tile(plain, 1, k, 12, 10), imgs[1, ..., :1])


def test_plot_augment_preview_returns_a_figure():
    fig = plot_augment_preview(images(2, c=1), AugmentConfig(preset="light"), n_aug=2)
    assert isinstance(fig, Figure) and "light" in fig.axes[0].get_title()


def test_cli_writes_preview_picture_of_the_right_size(tmp_path):
    out = tmp_path / "preview.png"
    assert main(["augment-preview", "digits", "--preset", "standard", "--n-aug", "5", "--n-images", "3",
                 "--out", str(out)]) == 0
    picture = Image.open(out)
    # digits are 8x8, enlarged x12 so a tile is >= 96 px: 3 rows, 1 + 5 columns
    assert picture.size == ((6 * 8 + 7 * PAD) * 12, (3 * 8 + 4 * PAD) * 12)
    assert len(np.unique(np.asarray(picture))) > 10  # a real picture, not a blank


def test_cli_rejects_bad_settings(tmp_path, capsys):
    assert main(["augment-preview", "digits", "--zoom", "2", "--out", str(tmp_path / "x.png")]) == 2
    assert "zoom_range" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_train_flags_map_onto_augment_config():
    a = build_parser().parse_args(["train", "digits", "--augment", "standard", "--rotation", "5", "--shift", "0.2",
                                   "--height-shift", "0.05", "--hflip", "--vflip", "--fill-mode", "reflect",
                                   "--cutout", "0.3", "--mixup", "0.2", "--cutmix", "1", "--brightness", "0.1",
                                   "--contrast", "0.15", "--shear", "8", "--zoom", "0.2",
                                   "--random-resized-crop", "0.5", "--tta", "flip"])
    aug = run_config_from_args(a).augment
    assert aug == AugmentConfig(preset="standard", rotation_range=5.0, width_shift_range=0.2, height_shift_range=0.05,
                                horizontal_flip=True, vertical_flip=True, fill_mode="reflect", cutout=0.3,
                                mixup=0.2, cutmix=1.0, brightness=0.1, contrast=0.15, shear_range=8.0,
                                zoom_range=0.2, random_resized_crop=0.5, tta="flip")


def test_config_file_augment_kept_unless_a_flag_overrides(tmp_path):
    path = tmp_path / "run.json"
    C.save_json(C.RunConfig(augment=AugmentConfig(preset="strong", mixup=0.3)), path)
    a = build_parser().parse_args(["train", "digits", "--config", str(path), "--rotation", "20"])
    aug = run_config_from_args(a).augment
    assert aug == AugmentConfig(preset="strong", mixup=0.3, rotation_range=20.0)
    none = run_config_from_args(build_parser().parse_args(["train", "digits"])).augment
    assert none == AugmentConfig()


def test_flag_switching_off_what_the_preset_turns_on_is_kept():
    a = build_parser().parse_args(["train", "digits", "--augment", "standard", "--no-hflip", "--rotation", "0"])
    aug = run_config_from_args(a).augment
    from cnnkit.augment import resolve

    eff = resolve(aug)
    assert not eff.horizontal_flip and eff.rotation_range == 0.0
    assert eff.zoom_range == 0.1 and eff.width_shift_range == 0.1  # the rest of the preset stays


def test_cli_rejects_counts_that_draw_nothing(tmp_path, capsys):
    for flag in ("--n-images", "--n-aug"):  # --n-images 0 wrote a blank strip
        out = tmp_path / "x.png"
        assert main(["augment-preview", "digits", flag, "0" if flag == "--n-images" else "-1", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cnnkit: error:") and flag in err
        assert not out.exists()
