"""The benchmark datasets, built offline once as image-folder trees.

    python benchmarks/bench_datasets.py [--root .bench-data] [--shared ../shared/datasets]
                                        [--sheet] [--list] [NAME ...]

Each dataset is written to ``ROOT/<name>/{train,validation,test}/<class>/*.png|jpg`` (``test`` where
the dataset has one), the layout ``cnnkit train ROOT/<name>`` reads.  Every build is deterministic
(fixed seeds), runs once (a dataset whose folder is complete is skipped) and is atomic (built in a
hidden temporary folder next to it, then renamed into place; a ``.bench-dataset.json`` inside says
it is complete and what it holds).  With no NAME it builds every dataset except the big
``cifar10-full``, which is built only when named.  ``--sheet`` also writes a contact sheet of a few
images per class to ``ROOT/_sheets/<name>.png``.  Then it prints a table: name, kind, classes,
train/validation/test counts, image size, colour, total size of the image files and build seconds.

From Python (``benchmarks/`` on ``sys.path``)::

    from bench_datasets import DATASETS, build
    folder = build("signs32", Path(".bench-data"))     # -> .bench-data/signs32

``DATASETS`` maps each name to a ``Dataset(description, builder, kind, version, on_request)``;
``build`` raises ``DatasetError`` (one line naming the file) when a source is missing or the target
folder exists but was not written here.

The datasets, and the kind of data each one stands for:

* ``cats-dogs`` - cats_and_dogs_filtered (2,000 train / 1,000 validation JPEGs, 2 classes) from
  ``../shared/datasets/cats_and_dogs_filtered.zip``: **everyday colour photos of varied sizes**, few
  classes, ImageNet-like content.  Pretrained features should win here, and quickly.
* ``cifar10-5k`` - 500 + 100 images per class from CIFAR-10's train folder (train / validation,
  stratified, seed 0) and 200 per class from its test folder (test): 5,000 / 1,000 / 2,000 32x32
  colour JPEGs, 10 classes: **small, low-resolution colour photos in a modest number**, where
  upscaled ImageNet features and a from-scratch net are close.
* ``cifar10-full`` - the whole CIFAR-10 (45,000 train / 5,000 validation taken off the train folder,
  stratified, seed 0 / 10,000 test): **many small colour photos**; from-scratch training should
  beat frozen features when there is enough data and time.  Big: built only when named.
* ``mnist-5k`` / ``fashion-5k`` - 500 + 100 images per class of MNIST / Fashion-MNIST's training set
  (train / validation) and 200 per class of its test set (test), 28x28 grey PNGs from the IDX files
  in ``../shared/datasets/mnist`` and ``fashion-mnist``: **tiny grey images, handwriting and product
  silhouettes**, far from ImageNet; a small net from scratch is the reference.
* ``signs32`` - synthetic 32x32 colour "traffic signs", 10 classes (no entry, yield, priority,
  parking, turn left/right, curve left/right, speed 30/50) drawn with Pillow at 4x and downsampled,
  on crops of packaged photos, with random scale, position, rotation (+-10 degrees), colour, blur,
  brightness and noise; 1,500 / 500 / 500: **small colour images of man-made symbols where a
  horizontal flip changes the class** (two left/right mirror pairs) and where training from scratch
  beats upscaled ImageNet features.
* ``grey-textures`` - 128-200 px grey patches of scikit-image's and scikit-learn's packaged photos,
  10 classes by what the patch shows (brick, grass, gravel, moon surface, star field, stained
  tissue, retina, coins, text, everyday photo - the last three pooled from several photos), with
  small rotations, scales, flips and brightness changes; 600 / 200 / 200: **grey photographs
  (texture, microscopy, documents) at a medium size**, the kind of folder nobody tuned for.  Train,
  validation and test patches come from disjoint regions of each photo (the left 60% for train,
  the right 40% split top/bottom for validation/test), so no test patch overlaps a training one;
  a near-blank patch (sky, empty paper) is drawn again.
* ``photo-patches`` - the same recipe in colour, 160-240 px, 10 classes = 10 packaged colour photos
  (astronaut, coffee, cat, rocket, star field, tissue, retina, motorcycle, temple, flower); 400 / 200
  / 200: **a small set of larger colour photos**, the case where frozen features (and their
  concatenation across backbones) are expected to be best.
* ``digits-up`` - scikit-learn's 1,797 8x8 digits upscaled (bilinear) to 64x64 grey PNGs, split
  60/20/20 stratified (seed 0): **blurry, upscaled low-resolution images**, where the pixel grid the
  net sees is much finer than the information in it.

Photo sources need nothing but the installed scikit-image and scikit-learn; the others read the
archives in ``../shared/datasets`` (found next to the repository, or next to its main checkout
when this is a git worktree; ``--shared`` names another folder).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MARKER = ".bench-dataset.json"
SPLITS = ("train", "validation", "test")
FASHION = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle_boot")


class DatasetError(Exception):
    """A dataset cannot be built: a source archive is missing or the target folder is not ours."""


# ----------------------------------------------------------------------------- where the sources are


def _main_checkout(repo: Path) -> Path | None:
    """The main checkout of a git worktree (``repo/.git`` is a file ``gitdir: MAIN/.git/worktrees/X``)."""
    git = repo / ".git"
    if not git.is_file():
        return None
    line = git.read_text().strip()
    if not line.startswith("gitdir:"):
        return None
    gitdir = Path(line.split(":", 1)[1].strip())
    return gitdir.parents[2] if len(gitdir.parents) > 2 else None


def default_shared() -> Path:
    """``../shared/datasets`` next to the repository, else next to its main checkout."""
    candidates = [REPO / ".." / "shared" / "datasets"]
    main = _main_checkout(REPO)
    if main is not None:
        candidates.append(main / ".." / "shared" / "datasets")
    return next((c.resolve() for c in candidates if c.is_dir()), candidates[0])


def _need(path: Path) -> Path:
    if not path.exists():
        raise DatasetError(f"{path}: not found (the shared datasets folder; name another with --shared)")
    return path


# ----------------------------------------------------------------------------- helpers


def stratified(labels: np.ndarray, per_class: list[int], seed: int) -> list[np.ndarray]:
    """Disjoint index sets, one per entry of ``per_class``: that many of each class, drawn at random.

    labels: (N,) ints.  per_class[i] may be an int (the same count for each class) or a float in (0, 1]
    (that fraction of each class; the last split takes the rest).  Returns sorted index arrays.
    """
    rng = np.random.default_rng(seed)
    out: list[list[int]] = [[] for _ in per_class]
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        start = 0
        for i, n in enumerate(per_class):
            if isinstance(n, float):
                n = len(idx) - start if i == len(per_class) - 1 else round(n * len(idx))
            if start + n > len(idx):
                raise DatasetError(f"class {label}: {len(idx)} images, {sum(per_class)} asked for")
            out[i].extend(idx[start:start + n].tolist())
            start += n
    return [np.array(sorted(o), dtype=np.int64) for o in out]


def _save_arrays(images: np.ndarray, labels: np.ndarray, index: np.ndarray, classes: tuple[str, ...],
                 folder: Path) -> None:
    """images: (N, H, W) or (N, H, W, 3) uint8 -> ``folder/<class>/<i>.png`` for i in index."""
    from PIL import Image

    for cls in classes:
        (folder / cls).mkdir(parents=True, exist_ok=True)
    for i in index:
        Image.fromarray(images[i]).save(folder / classes[labels[i]] / f"{i:05d}.png", optimize=False)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip) of unsigned bytes: (N,) labels or (N, H, W) images."""
    with gzip.open(_need(path), "rb") as fh:
        data = fh.read()
    if data[:2] != b"\0\0" or data[2] != 0x08:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


# ----------------------------------------------------------------------------- archives


def build_cats_dogs(dest: Path, shared: Path) -> None:
    """cats_and_dogs_filtered/{train,validation}/{cats,dogs}/*.jpg as it is in the archive."""
    prefix = "cats_and_dogs_filtered/"
    with zipfile.ZipFile(_need(shared / "cats_and_dogs_filtered.zip")) as zf:
        for info in zf.infolist():
            rel = info.filename[len(prefix):] if info.filename.startswith(prefix) else ""
            parts = rel.split("/")
            if len(parts) != 3 or parts[0] not in SPLITS or ".." in parts or not parts[2].lower().endswith(".jpg"):
                continue  # folders, the archive's notes, anything outside split/class/file.jpg
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(zf.read(info))


def _cifar_members(zf: zipfile.ZipFile, split: str) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """Names of ``cifar10-jpeg/<split>/<class>/NNNN.jpg`` in a fixed order, their labels, the classes."""
    names = sorted(n for n in zf.namelist() if n.startswith(f"cifar10-jpeg/{split}/") and n.endswith(".jpg"))
    classes = tuple(sorted({n.split("/")[2] for n in names}))
    labels = np.array([classes.index(n.split("/")[2]) for n in names])
    return names, labels, classes


def _copy_members(zf: zipfile.ZipFile, names: list[str], index: np.ndarray, folder: Path) -> None:
    for i in index:
        _, _, cls, file = names[i].split("/")
        out = folder / cls / file
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(zf.read(names[i]))


def _build_cifar(dest: Path, shared: Path, train_val: list, test: list | None) -> None:
    with zipfile.ZipFile(_need(shared / "cifar10-jpeg.zip")) as zf:
        names, labels, _ = _cifar_members(zf, "train")
        train, val = stratified(labels, train_val, seed=0)
        _copy_members(zf, names, train, dest / "train")
        _copy_members(zf, names, val, dest / "validation")
        names, labels, _ = _cifar_members(zf, "test")
        test_index = stratified(labels, test, seed=0)[0] if test else np.arange(len(names))
        _copy_members(zf, names, test_index, dest / "test")


def build_cifar10_5k(dest: Path, shared: Path) -> None:
    _build_cifar(dest, shared, [500, 100], [200])


def build_cifar10_full(dest: Path, shared: Path) -> None:
    _build_cifar(dest, shared, [4500, 500], None)


def _build_idx(dest: Path, source: Path, classes: tuple[str, ...]) -> None:
    images, labels = read_idx(source / "train-images-idx3-ubyte.gz"), read_idx(source / "train-labels-idx1-ubyte.gz")
    train, val = stratified(labels, [500, 100], seed=0)
    _save_arrays(images, labels, train, classes, dest / "train")
    _save_arrays(images, labels, val, classes, dest / "validation")
    images, labels = read_idx(source / "t10k-images-idx3-ubyte.gz"), read_idx(source / "t10k-labels-idx1-ubyte.gz")
    (test,) = stratified(labels, [200], seed=0)
    _save_arrays(images, labels, test, classes, dest / "test")


def build_mnist_5k(dest: Path, shared: Path) -> None:
    _build_idx(dest, shared / "mnist", tuple(str(d) for d in range(10)))


def build_fashion_5k(dest: Path, shared: Path) -> None:
    _build_idx(dest, shared / "fashion-mnist", FASHION)


def build_digits_up(dest: Path, shared: Path) -> None:
    """sklearn's 8x8 digits (values 0..16) -> 64x64 grey PNGs, bilinear; 60/20/20 stratified."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = np.round(digits.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8)
    images = np.stack([np.asarray(Image.fromarray(im).resize((64, 64), Image.BILINEAR)) for im in small])
    labels = digits.target
    classes = tuple(str(d) for d in range(10))
    for split, index in zip(SPLITS, stratified(labels, [0.6, 0.2, 0.2], seed=0)):
        _save_arrays(images, labels, index, classes, dest / split)


# ----------------------------------------------------------------------------- packaged photos


def packaged_photos() -> dict:
    """name -> (H, W, 3) or (H, W) uint8: the photos that ship inside scikit-image and scikit-learn."""
    import skimage.data as sk
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    retina = sk.retina()
    side = round(retina.shape[0] * 0.68)  # the square inside the fundus disc: no black corners
    top = (retina.shape[0] - side) // 2
    return {
        "brick": sk.brick(), "grass": sk.grass(), "gravel": sk.gravel(), "moon": sk.moon(),
        "hubble": sk.hubble_deep_field(), "ihc": sk.immunohistochemistry(),
        "retina": retina[top:top + side, top:top + side], "coins": sk.coins(), "page": sk.page(),
        "text": sk.text(), "camera": sk.camera(), "astronaut": sk.astronaut(), "coffee": sk.coffee(),
        "chelsea": sk.chelsea(), "rocket": sk.rocket(), "motorcycle": sk.stereo_motorcycle()[0],
        "china": china, "flower": flower,
    }


# grey-level standard deviation under which a patch counts as blank; the flattest real textures here
# (moon surface, retina) rarely go below it: such a draw is simply drawn again
BLANK_STD = 3.0


class PatchSpec(NamedTuple):
    classes: dict  # class -> source photo names (patches cycle through them)
    per_split: tuple  # patches per class: train, validation, test
    sizes: tuple  # (smallest, largest) side of a saved patch in px
    mode: str  # "L" or "RGB"
    no_flip: tuple = ()  # classes whose patches are never mirrored (text)


GREY_TEXTURES = PatchSpec(
    classes={"brick": ["brick"], "grass": ["grass"], "gravel": ["gravel"], "moon": ["moon"], "stars": ["hubble"],
             "tissue": ["ihc"], "retina": ["retina"], "coins": ["coins"], "text": ["page", "text"],
             "photo": ["camera", "astronaut", "coffee", "chelsea", "rocket", "motorcycle", "china", "flower"]},
    per_split=(60, 20, 20), sizes=(128, 200), mode="L", no_flip=("text",))

PHOTO_PATCHES = PatchSpec(
    classes={"astronaut": ["astronaut"], "coffee": ["coffee"], "cat": ["chelsea"], "rocket": ["rocket"],
             "stars": ["hubble"], "tissue": ["ihc"], "retina": ["retina"], "motorcycle": ["motorcycle"],
             "temple": ["china"], "flower": ["flower"]},
    per_split=(40, 20, 20), sizes=(160, 240), mode="RGB")


def split_regions(image, min_side: int = 512) -> tuple:
    """A photo enlarged (if needed) so its short side is >= min_side, and three disjoint boxes on it.

    Boxes are (left, top, right, bottom): train = the first 60% along the long side, validation and
    test = the two halves of the remaining 40% (cut across the short side).
    """
    from PIL import Image

    scale = max(1.0, min_side / min(image.size))
    if scale > 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    w, h = image.size
    if w >= h:
        cut = round(0.6 * w)
        boxes = ((0, 0, cut, h), (cut, 0, w, h // 2), (cut, h // 2, w, h))
    else:
        cut = round(0.6 * h)
        boxes = ((0, 0, w, cut), (0, cut, w // 2, h), (w // 2, cut, w, h))
    return image, boxes


def _patch(image, box: tuple, out_side: int, largest_crop: int, rng: np.random.Generator, flip: bool):
    """One random patch inside ``box``: scale 0.8-1.25, rotation +-10 degrees, maybe mirrored, brightness
    and contrast +-15%; saved side ``out_side`` px (the crop is out_side / scale source px)."""
    from PIL import Image, ImageEnhance, ImageOps

    crop = min(largest_crop, round(out_side / rng.uniform(0.8, 1.25)))
    angle = rng.uniform(-10, 10)
    outer = math.ceil(crop * (abs(math.cos(math.radians(angle))) + abs(math.sin(math.radians(angle))))) + 2
    left = int(rng.integers(box[0], box[2] - outer + 1))
    top = int(rng.integers(box[1], box[3] - outer + 1))
    region = image.crop((left, top, left + outer, top + outer)).rotate(angle, Image.BILINEAR)
    margin = (outer - crop) // 2
    patch = region.crop((margin, margin, margin + crop, margin + crop)).resize((out_side, out_side), Image.BICUBIC)
    if flip and rng.random() < 0.5:
        patch = ImageOps.mirror(patch)
    patch = ImageEnhance.Brightness(patch).enhance(rng.uniform(0.85, 1.15))
    return ImageEnhance.Contrast(patch).enhance(rng.uniform(0.85, 1.15))


def _build_patches(dest: Path, spec: PatchSpec, seed: int) -> None:
    from PIL import Image

    photos = packaged_photos()
    rng = np.random.default_rng(seed)
    for c, (cls, sources) in enumerate(spec.classes.items()):
        prepared = [split_regions(Image.fromarray(photos[s]).convert(spec.mode)) for s in sources]
        # one largest crop for all three splits of a class, so their zoom levels match
        fits = min(min(b[2] - b[0], b[3] - b[1]) for _, boxes in prepared for b in boxes)
        largest_crop = math.floor((fits - 3) / 1.18)  # 1.18 >= cos + sin of 10 degrees, plus margin
        for s, (split, count) in enumerate(zip(SPLITS, spec.per_split)):
            folder = dest / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                image, boxes = prepared[i % len(prepared)]
                for _ in range(10):  # a blank patch (sky, empty paper) says nothing of its class: draw again
                    side = int(rng.integers(spec.sizes[0], spec.sizes[1] + 1))
                    patch = _patch(image, boxes[s], side, largest_crop, rng, flip=cls not in spec.no_flip)
                    if np.asarray(patch.convert("L"), np.float32).std() >= BLANK_STD:
                        break
                patch.save(folder / f"{cls}-{i:03d}.jpg", quality=90)


def build_grey_textures(dest: Path, shared: Path) -> None:
    _build_patches(dest, GREY_TEXTURES, seed=0)


def build_photo_patches(dest: Path, shared: Path) -> None:
    _build_patches(dest, PHOTO_PATCHES, seed=1)


# ----------------------------------------------------------------------------- synthetic signs

SIGN_CLASSES = ("no-entry", "yield", "priority", "parking", "turn-left", "turn-right", "curve-left",
                "curve-right", "speed-30", "speed-50")
RED, BLUE, YELLOW, WHITE, BLACK = (200, 30, 35), (25, 75, 170), (245, 195, 20), (242, 242, 238), (25, 25, 25)
CANVAS = 128  # drawn at 4x the saved 32x32

# seven-segment digits: which of the segments a (top), b (top right), c (bottom right), d (bottom),
# e (bottom left), f (top left), g (middle) are lit
SEGMENTS = {"0": "abcdef", "3": "abcdg", "5": "acdfg"}


def _jitter(colour: tuple, rng: np.random.Generator) -> tuple:
    """A paint colour as a camera might see it: +-12% overall, +-15 per channel."""
    gain = rng.uniform(0.88, 1.12)
    return tuple(int(np.clip(v * gain + rng.uniform(-15, 15), 0, 255)) for v in colour)


def _polygon(n: int, r: float, turn: float, c: float = CANVAS / 2) -> list:
    """Corners of a regular n-gon of circumradius r around the canvas centre, first corner at ``turn``."""
    return [(c + r * math.cos(turn + 2 * math.pi * k / n), c + r * math.sin(turn + 2 * math.pi * k / n))
            for k in range(n)]


def _digit(draw, ch: str, x: float, y: float, w: float, h: float, t: float, fill: tuple) -> None:
    """A seven-segment digit in the box (x, y, w, h), strokes t px wide."""
    ends = {"a": ((x, y), (x + w, y)), "b": ((x + w, y), (x + w, y + h / 2)), "c": ((x + w, y + h / 2), (x + w, y + h)),
            "d": ((x, y + h), (x + w, y + h)), "e": ((x, y + h / 2), (x, y + h)), "f": ((x, y), (x, y + h / 2)),
            "g": ((x, y + h / 2), (x + w, y + h / 2))}
    for seg in SEGMENTS[ch]:
        draw.line(ends[seg], fill=fill, width=round(t))
    for px, py in {p for seg in SEGMENTS[ch] for p in ends[seg]}:  # square the corners
        draw.rectangle((px - t / 2, py - t / 2, px + t / 2, py + t / 2), fill=fill)


def _arrow(draw, points: list, head: float, t: float, fill: tuple) -> None:
    """A polyline ending in a triangular head pointing along its last segment."""
    (x0, y0), (x1, y1) = points[-2], points[-1]
    ang = math.atan2(y1 - y0, x1 - x0)
    back = (x1 - head * 0.9 * math.cos(ang), y1 - head * 0.9 * math.sin(ang))
    draw.line([*points[:-1], back], fill=fill, width=round(t), joint="curve")
    base = (x1 - head * math.cos(ang), y1 - head * math.sin(ang))  # centre of the head's back edge
    half = (head * 0.7 * math.sin(ang), -head * 0.7 * math.cos(ang))  # half its width, across the shaft
    draw.polygon([(x1, y1), (base[0] + half[0], base[1] + half[1]), (base[0] - half[0], base[1] - half[1])],
                 fill=fill)


def draw_sign(cls: str, r: float, rng: np.random.Generator):
    """One sign of class ``cls``, circumradius r px, centred on a transparent CANVAS x CANVAS RGBA layer.

    Right-hand classes are their left-hand twin mirrored, so the pairs differ only by a flip.
    """
    from PIL import Image, ImageDraw, ImageOps

    if cls.endswith("-right"):
        return ImageOps.mirror(draw_sign(cls.replace("-right", "-left"), r, rng))
    layer = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    c = CANVAS / 2
    red, blue, yellow, white, black = (_jitter(k, rng) for k in (RED, BLUE, YELLOW, WHITE, BLACK))
    if cls == "no-entry":
        d.ellipse((c - r, c - r, c + r, c + r), fill=red)
        d.rectangle((c - 0.68 * r, c - 0.16 * r, c + 0.68 * r, c + 0.16 * r), fill=white)
    elif cls == "yield":  # inverted triangle, red border
        d.polygon(_polygon(3, r, math.pi / 2), fill=red)  # first corner straight down (y grows downwards)
        d.polygon(_polygon(3, 0.55 * r, math.pi / 2), fill=white)
    elif cls == "priority":  # white diamond, yellow inside, thin dark rim
        d.polygon(_polygon(4, r, 0), fill=black)
        d.polygon(_polygon(4, 0.92 * r, 0), fill=white)
        d.polygon(_polygon(4, 0.6 * r, 0), fill=yellow)
    elif cls == "parking":  # blue square, white P
        s, t = 0.8 * r, 0.17 * r
        d.rounded_rectangle((c - s, c - s, c + s, c + s), radius=0.15 * r, fill=blue)
        d.rectangle((c - 0.35 * r, c - 0.55 * r, c - 0.35 * r + t, c + 0.55 * r), fill=white)
        d.arc((c - 0.6 * r, c - 0.55 * r, c + 0.4 * r, c + 0.1 * r), -90, 90, fill=white, width=round(t))
        d.line((c - 0.35 * r, c - 0.55 * r + t / 2, c - 0.1 * r, c - 0.55 * r + t / 2), fill=white, width=round(t))
        d.line((c - 0.35 * r, c + 0.1 * r - t / 2, c - 0.1 * r, c + 0.1 * r - t / 2), fill=white, width=round(t))
    elif cls == "turn-left":  # blue disc, white arrow turning left
        d.ellipse((c - r, c - r, c + r, c + r), fill=blue)
        _arrow(d, [(c + 0.2 * r, c + 0.65 * r), (c + 0.2 * r, c - 0.05 * r), (c - 0.62 * r, c - 0.05 * r)],
               0.42 * r, 0.2 * r, white)
    elif cls == "curve-left":  # warning triangle, black bent arrow
        d.polygon(_polygon(3, r, -math.pi / 2), fill=red)
        d.polygon(_polygon(3, 0.62 * r, -math.pi / 2), fill=white)
        _arrow(d, [(c + 0.08 * r, c + 0.25 * r), (c + 0.08 * r, c + 0.02 * r), (c - 0.2 * r, c - 0.2 * r)],
               0.2 * r, 0.1 * r, black)
    elif cls.startswith("speed-"):  # white disc, red ring, two digits
        d.ellipse((c - r, c - r, c + r, c + r), fill=red)
        d.ellipse((c - 0.75 * r, c - 0.75 * r, c + 0.75 * r, c + 0.75 * r), fill=white)
        w, h, t = 0.3 * r, 0.7 * r, 0.13 * r
        for k, ch in enumerate(cls.split("-")[1]):
            _digit(d, ch, c - 0.43 * r + k * 0.55 * r, c - h / 2, w, h, t, black)
    else:
        raise ValueError(cls)
    return layer


def _backgrounds() -> list:
    from PIL import Image

    photos = packaged_photos()
    names = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "china", "flower", "ihc", "hubble")
    return [Image.fromarray(photos[n]).convert("RGB") for n in names]


def render_sign(cls: str, backgrounds: list, rng: np.random.Generator):
    """A 32x32 RGB picture of a sign: background crop, pole, scale, shift, rotation, blur, light, noise."""
    from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

    photo = backgrounds[int(rng.integers(len(backgrounds)))]
    side = int(rng.integers(96, min(photo.size)))
    x, y = int(rng.integers(0, photo.width - side + 1)), int(rng.integers(0, photo.height - side + 1))
    canvas = photo.crop((x, y, x + side, y + side)).resize((CANVAS, CANVAS), Image.BILINEAR)
    r = rng.uniform(38, 58)
    dx, dy = rng.uniform(-9, 9, size=2)
    if rng.random() < 0.5:  # a grey pole under the sign
        pole = ImageDraw.Draw(canvas)
        grey = int(rng.integers(90, 170))
        pole.rectangle((CANVAS / 2 + dx - 4, CANVAS / 2 + dy, CANVAS / 2 + dx + 4, CANVAS), fill=(grey,) * 3)
    sign = draw_sign(cls, r, rng).rotate(rng.uniform(-10, 10), Image.BICUBIC, translate=(dx, dy))
    canvas.paste(sign, (0, 0), sign)
    small = canvas.resize((32, 32), Image.LANCZOS).filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.7)))
    small = ImageEnhance.Brightness(small).enhance(rng.uniform(0.55, 1.35))
    small = ImageEnhance.Contrast(small).enhance(rng.uniform(0.7, 1.2))
    noisy = np.asarray(small, np.float32) + rng.normal(0, rng.uniform(0, 9), (32, 32, 3))
    return Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8))


def build_signs32(dest: Path, shared: Path) -> None:
    backgrounds = _backgrounds()
    for split, per_class, seed in zip(SPLITS, (150, 50, 50), (0, 1, 2)):
        rng = np.random.default_rng(seed)
        for cls in SIGN_CLASSES:
            folder = dest / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                render_sign(cls, backgrounds, rng).save(folder / f"{cls}-{i:03d}.png")


# ----------------------------------------------------------------------------- registry and builds


class Dataset(NamedTuple):
    description: str
    builder: Callable[[Path, Path], None]  # builder(empty folder to fill, shared datasets folder)
    kind: str
    version: int = 1  # raise when the recipe changes: a folder of another version is rebuilt
    on_request: bool = False  # built only when named (big)


DATASETS: dict[str, Dataset] = {
    "cats-dogs": Dataset("cats_and_dogs_filtered: 2,000 / 1,000 colour photos, 2 classes", build_cats_dogs,
                         "colour photos, varied sizes"),
    "cifar10-5k": Dataset("CIFAR-10 subset: 5,000 / 1,000 / 2,000 32x32 colour photos, 10 classes",
                          build_cifar10_5k, "small colour photos"),
    "cifar10-full": Dataset("CIFAR-10: 45,000 / 5,000 / 10,000 32x32 colour photos, 10 classes",
                            build_cifar10_full, "many small colour photos", on_request=True),
    "mnist-5k": Dataset("MNIST subset: 5,000 / 1,000 / 2,000 28x28 grey digits", build_mnist_5k,
                        "tiny grey handwriting"),
    "fashion-5k": Dataset("Fashion-MNIST subset: 5,000 / 1,000 / 2,000 28x28 grey products", build_fashion_5k,
                          "tiny grey product pictures"),
    "signs32": Dataset("synthetic 32x32 traffic signs, 10 classes, two left/right mirror pairs: 1,500 / 500 / 500",
                       build_signs32, "small colour symbols, flips change class"),
    "grey-textures": Dataset("grey 128-200 px patches of packaged photos, 10 classes: 600 / 200 / 200",
                             build_grey_textures, "grey photos: textures, microscopy, text"),
    "photo-patches": Dataset("colour 160-240 px patches of 10 packaged photos: 400 / 200 / 200",
                             build_photo_patches, "few larger colour photos"),
    "digits-up": Dataset("scikit-learn's 8x8 digits upscaled to 64x64 grey: 60/20/20 of 1,797", build_digits_up,
                         "upscaled low-resolution grey digits"),
}


def read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_complete(name: str, root: Path) -> bool:
    info = read_marker(Path(root) / name)
    return info is not None and info.get("name") == name and info.get("version") == DATASETS[name].version


def census(folder: Path) -> dict:
    """Counts per split, classes, image sizes and colour of a built folder (sizes/modes from a sample)."""
    from PIL import Image

    counts, classes, sizes, modes, total = {}, set(), set(), set(), 0
    for split in SPLITS:
        if not (folder / split).is_dir():
            continue
        counts[split] = 0
        for cls in sorted(p for p in (folder / split).iterdir() if p.is_dir()):
            classes.add(cls.name)
            files = sorted(cls.iterdir())
            counts[split] += len(files)
            total += sum(f.stat().st_size for f in files)
            for f in files[:: max(1, len(files) // 25)]:  # ~25 headers per class folder
                with Image.open(f) as im:
                    sizes.add(im.size)
                    modes.add(im.mode)
    widths, heights = sorted(w for w, _ in sizes), sorted(h for _, h in sizes)
    if len(sizes) == 1:
        size = "{}x{}".format(*sizes.pop())
    else:
        size = f"{widths[0]}-{widths[-1]} x {heights[0]}-{heights[-1]}"
    colour = "grey" if modes <= {"L", "1", "P"} and "P" not in modes else (
        "RGB" if modes == {"RGB"} else "/".join(sorted(modes)))
    return {"counts": counts, "classes": len(classes), "size": size, "colour": colour, "bytes": total}


def _clean_stale(root: Path, name: str) -> None:
    """Remove temporary folders of this dataset left by builds that were killed (their process is gone)."""
    for tmp in root.glob(f".tmp-{name}-*"):
        try:
            os.kill(int(tmp.name.rsplit("-", 1)[1]), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            pass  # someone else's live process


def build(name: str, root: Path, shared: Path | None = None) -> Path:
    """``root/name``, built first unless it is complete; returns the folder.  Atomic and deterministic."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}: one of {', '.join(DATASETS)}")
    root = Path(root)
    final = root / name
    if is_complete(name, root):
        return final
    if final.exists() and read_marker(final) is None:
        raise DatasetError(f"{final}: exists but was not written by this script; remove it or choose another --root")
    root.mkdir(parents=True, exist_ok=True)
    _clean_stale(root, name)
    spec = DATASETS[name]
    tmp = root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        start = time.perf_counter()
        spec.builder(tmp, shared or default_shared())
        seconds = time.perf_counter() - start
        info = {"name": name, "version": spec.version, "kind": spec.kind, "description": spec.description,
                **census(tmp), "seconds": round(seconds, 1)}
        (tmp / MARKER).write_text(json.dumps(info, indent=1) + "\n")
        _install(tmp, final, name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _install(tmp: Path, final: Path, name: str) -> None:
    """Rename the finished ``tmp`` to ``final``; an older version of ours is moved aside and removed."""
    old = None
    if final.exists():  # ours (it has a marker), another version
        old = final.with_name(f".old-{name}-{os.getpid()}")
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except OSError:
        if not is_complete(name, final.parent):  # a concurrent build that finished first is fine
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- looking at it


def contact_sheet(folder: Path, out: Path, per_class: int = 8, cell: int = 64) -> Path:
    """A PNG grid: one row per class (its name on the left), the first ``per_class`` training images."""
    from PIL import Image, ImageDraw

    classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    label_w = 110
    sheet = Image.new("RGB", (label_w + per_class * cell, len(classes) * cell), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row, cls in enumerate(classes):
        draw.text((4, row * cell + cell // 2 - 6), cls[:16], fill=(0, 0, 0))
        for col, f in enumerate(sorted((folder / "train" / cls).iterdir())[:per_class]):
            with Image.open(f) as im:
                tile = im.convert("RGB").resize((cell, cell), Image.NEAREST if im.width < cell else Image.BILINEAR)
            sheet.paste(tile, (label_w + col * cell, row * cell))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def table(root: Path, names: list[str]) -> str:
    lines = ["| name | kind | classes | train | validation | test | image size | colour | files (MB) | build s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        info = read_marker(root / name) if is_complete(name, root) else None
        if info is None:
            lines.append(f"| {name} | {DATASETS[name].kind} | not built | | | | | | | "
                         f"{'(big: built only when named)' if DATASETS[name].on_request else ''} |")
            continue
        n = {split: f"{count:,}" for split, count in info["counts"].items()}
        lines.append(f"| {name} | {info['kind']} | {info['classes']} | {n.get('train', '-')} | "
                     f"{n.get('validation', '-')} | {n.get('test', '-')} | {info['size']} | {info['colour']} | "
                     f"{info['bytes'] / 1e6:.1f} | {info['seconds']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*",
                    help=f"datasets to build (default: all but the big ones): {', '.join(DATASETS)}")
    ap.add_argument("--root", default=".bench-data", help="the cache folder the datasets are built in")
    ap.add_argument("--shared", help="the shared datasets folder (default: ../shared/datasets)")
    ap.add_argument("--sheet", action="store_true", help="also write ROOT/_sheets/<name>.png, a few images per class")
    ap.add_argument("--list", action="store_true", help="build nothing; print the table of what is there")
    args = ap.parse_args(argv)
    root, shared = Path(args.root), Path(args.shared) if args.shared else None
    names = args.names or [n for n, d in DATASETS.items() if not d.on_request]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        ap.error(f"unknown dataset {unknown[0]!r}: one of {', '.join(DATASETS)}")
    try:
        for name in [] if args.list else names:
            print(f"{name}: {'complete' if is_complete(name, root) else 'building'} ...", flush=True)
            folder = build(name, root, shared)
            if args.sheet:
                print(f"  contact sheet: {contact_sheet(folder, root / '_sheets' / f'{name}.png')}", flush=True)
    except DatasetError as exc:
        print(f"bench_datasets: error: {exc}", file=sys.stderr)
        return 2
    print(table(root, list(DATASETS) if args.list or not args.names else names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
