"""Near-duplicate pictures across splits: planted resized / re-encoded copies are found, others are not."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from rich.console import Console

from cnnkit.data.inspection import inspect_data, render_inspection
from cnnkit.data.neardup import near_pairs, phash, similarity


def picture(seed: int, side: int = 96) -> Image.Image:
    """A photo-like picture: smooth random shapes (8x8 noise upscaled) plus fine grain."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    coarse = coarse.resize((side, side), Image.Resampling.BICUBIC)
    grain = rng.integers(-8, 8, (side, side, 3))
    return Image.fromarray(np.clip(np.asarray(coarse, np.int16) + grain, 0, 255).astype(np.uint8))


def test_phash_is_stable_under_resizing_and_jpeg_but_not_across_pictures(tmp_path):
    a = picture(1)
    a.resize((61, 61), Image.Resampling.BILINEAR).save(tmp_path / "a.jpg", quality=60)
    h, h2 = phash(a), phash(Image.open(tmp_path / "a.jpg"))
    assert h is not None and bin(h ^ h2).count("1") <= 8
    others = [phash(picture(s)) for s in range(2, 40)]
    assert min(bin(h ^ o).count("1") for o in others) > 8
    assert phash(Image.new("RGB", (20, 20), (90, 90, 90))) is None  # flat: no hash, no false matches
    assert near_pairs([h, h2, others[0]], ["train", "val", "val"]) == [(0, 1, bin(h ^ h2).count("1"))]
    assert near_pairs([h, h2], ["train", "train"]) == []  # within a split is not leakage
    assert similarity(0) == 1.0 and similarity(16) == 0.75


def test_inspect_lists_planted_near_copies_across_splits(tmp_path):
    root = tmp_path / "d"
    for split, cls in (("train", "a"), ("train", "b"), ("validation", "a"), ("validation", "b")):
        (root / split / cls).mkdir(parents=True)
    for i in range(10):
        picture(i).save(root / "train" / ("a" if i % 2 else "b") / f"t{i}.png")
    for i in range(10, 16):
        picture(i).save(root / "validation" / ("a" if i % 2 else "b") / f"v{i}.png")
    picture(3).resize((64, 64), Image.Resampling.BILINEAR).save(root / "validation" / "a" / "small3.jpg", quality=70)
    ImageEnhance.Brightness(picture(4)).enhance(1.1).save(root / "validation" / "b" / "bright4.jpg", quality=85)
    shutil.copy(root / "train" / "b" / "t6.png", root / "validation" / "b" / "same6.png")  # an exact copy
    report = inspect_data(str(root))
    pairs = {(Path(p["a"]).name, Path(p["b"]).name): p for p in report["near_duplicates"]}
    assert set(pairs) == {("t3.png", "small3.jpg"), ("t4.png", "bright4.jpg")}
    p = pairs[("t3.png", "small3.jpg")]
    assert p["a_split"] == "train" and p["b_split"] == "val" and 0.9 <= p["similarity"] <= 1.0
    assert len(report["duplicates"]["across_splits"]) == 1  # the exact copy stays an exact duplicate
    assert any("near-identical" in w for w in report["warnings"])
    console = Console(record=True, width=220)
    render_inspection(report, console)
    out = console.export_text()
    assert "near duplicates across splits (pHash): 2" in out and "small3.jpg" in out
