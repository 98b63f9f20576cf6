"""Each augmentation is one object: its settings, flags, checks, random columns and its effect.

:data:`TRANSFORMS` is the ordered list :class:`~cnnkit.augment.BatchAugment` walks, and
:class:`AugmentConfig` is assembled from it (:func:`augment_config`), so a transform's settings
are ``AugmentConfig`` fields and its flags are ``cnnkit train``/``augment-preview`` flags.

One uniform draw ``(N, total columns)`` per batch feeds every per-image parameter; each transform
owns the next ``len(columns)`` of them in list order, so switching one transform on or off never
changes the draws of another.  Geometric transforms each give one output->input matrix per image;
the matrices are multiplied in ``order`` and applied in ONE resample per batch.  Then the other
transforms run in list order; mixing transforms (mixup/CutMix) come last and soft-label targets.

Adding a transform: one subclass of :class:`Transform` (or :class:`Geometric`/:class:`Mixing`)
appended to :data:`TRANSFORMS`.  (A transform with columns widens the draw, so a given seed then
draws other numbers for every transform: results of older runs are reproduced only by the list
they ran with.)  A config class for another list - e.g. in a test or a plug-in - is
``augment_config((*TRANSFORMS, Mine()))``.

This module imports neither torch nor numpy at import time (``cnnkit --help`` stays fast); the
methods that compute import them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Mapping, Sequence

from cnnkit.augment.presets import FILL_MODES, PRESETS, TTA_MODES
from cnnkit.settings import SharedFlag, setting

Columns = Mapping[str, Any]  # column name -> (N,) float64 numpy array, uniform in [0, 1)
_RRC_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))  # torchvision RandomResizedCrop's default ratio


def _sym(u: Any, r: float) -> Any:
    """Uniform in [-r, r] from uniform u in [0, 1)."""
    return (2.0 * u - 1.0) * r


def _mat(a: Any, b: Any, c: Any, d: Any, tx: Any = 0.0, ty: Any = 0.0) -> Any:
    """(N, 3, 3) homogeneous matrices [[a, b, tx], [c, d, ty], [0, 0, 1]] from (N,) arrays."""
    import numpy as np

    m = np.zeros((len(a), 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = a, b, tx
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = c, d, ty
    m[:, 2, 2] = 1.0
    return m


class Transform:
    """One augmentation.  Class attributes declare it; methods sample and apply it.

    settings:      AugmentConfig field name -> :func:`~cnnkit.settings.setting` (default = off)
    shared_flags:  flags that set several of its settings at once (``--shift``)
    columns:       names of its columns in the batch's one uniform draw, in order
    params:        per-image parameter (an AugmentParams field) -> the value that changes nothing
    kinds:         a setting's field type where it is not its default's (``object``: the setting's
                   ``coerce`` alone checks it, e.g. a shift range that is a number or a list)
    """

    settings: ClassVar[dict[str, Any]] = {}
    shared_flags: ClassVar[tuple[SharedFlag, ...]] = ()
    columns: ClassVar[tuple[str, ...]] = ()
    params: ClassVar[dict[str, float]] = {}
    kinds: ClassVar[dict[str, type]] = {}

    def on(self, cfg: Any) -> bool:
        """True when ``cfg`` (resolved) switches this transform on: any of its settings off its default."""
        return any(getattr(cfg, name) != f.default for name, f in self.settings.items())

    def check(self, cfg: Any, prefix: str = "") -> None:
        """Rules the settings' ranges cannot say; raise SettingError(prefix + name, ...)."""

    def sample(self, cfg: Any, u: Columns, n: int, size: tuple[int, int]) -> dict[str, Any]:
        """Per-image parameters (float64 numpy arrays of shape (n,)) from this transform's columns."""
        import numpy as np

        return {name: np.full(n, value) for name, value in self.params.items()}

    def apply(self, x: Any, p: Any, cfg: Any) -> Any:
        """x (N,C,H,W) in [0, 1] -> the transformed batch, from per-image parameters ``p``."""
        return x


class Geometric(Transform):
    """A geometric transform: an (N, 3, 3) output->input matrix per image (centred pixel coordinates).

    All geometric transforms' matrices are multiplied in ascending ``order``
    (``input = M[order 0] @ M[order 1] @ ... @ output``) into one resample per batch.  One with
    ``resamples = False`` is an exact pixel permutation: alone, it runs as :meth:`apply` instead.
    """

    order: ClassVar[int] = 0
    resamples: ClassVar[bool] = True

    def matrix(self, q: Columns, size: tuple[int, int]) -> Any:
        raise NotImplementedError


class Mixing(Transform):
    """Mixes images of a batch and returns soft targets (runs after every other transform)."""

    def mix(self, x: Any, y: Any, num_classes: int, cfg: Any, gen: Any) -> tuple[Any, Any]:
        raise NotImplementedError


# ----------------------------------------------------------------------------- geometry (Keras semantics)
# Every matrix is written on (x, y) = (col, row) about the centre, y pointing down, exactly as Keras
# writes it (Keras >= 2.4 swaps its matrices onto (col, row) before scipy resamples), see geometry.py.


class Rotation(Geometric):
    """Rotation by a uniform angle in [-r, r] degrees (Keras ``rotation_range``).

    A positive angle turns the content counter-clockwise on the displayed image (as Keras and
    ``scipy.ndimage.rotate``): 90 degrees is ``np.rot90``, the top edge goes to the left.
    """

    settings = {"rotation_range": setting(0.0, "rotation_range: degrees, uniform in [-DEG, DEG]; positive turns "
                                          "counter-clockwise", flag="--rotation", metavar="DEG", range="[0, 180]")}
    columns = ("angle",)
    params = {"angle": 0.0}
    order = 1

    def sample(self, cfg, u, n, size):
        return {"angle": _sym(u["angle"], cfg.rotation_range)}

    def matrix(self, q, size):
        import numpy as np

        theta = np.deg2rad(q["angle"])
        cos, sin = np.cos(theta), np.sin(theta)
        # Keras' rotation [[cos, -sin], [sin, cos]] on (x, y), y down: output->input, so the content
        # turns counter-clockwise on the screen
        return _mat(cos, -sin, sin, cos)


def shift_range(value: Any) -> Any:
    """A shift range as Keras accepts it -> its value; ValueError (the problem, in words) if unusable.

    A number < 1 is a fraction of the size, a float >= 1 is pixels, an int is whole pixels, a list
    or tuple is a set of choices.  Text (the command line) is read the same way: ``0.1``, ``3``,
    ``4.5``, ``2,4``.  Lists come back as tuples.
    """
    import math

    problem = ("must be a fraction of the size (< 1), pixels (a whole number, or a number >= 1) or a list of "
               "choices (e.g. 2,4)")
    if isinstance(value, str):
        text = value.strip().strip("[]()")
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            numbers = [int(p) if p.lstrip("+-").isdigit() else float(p) for p in parts]
        except ValueError:
            raise ValueError(problem) from None
        if not numbers:
            raise ValueError(problem)
        value = numbers[0] if len(numbers) == 1 and "," not in text else tuple(numbers)
    if isinstance(value, list):
        value = tuple(value)
    items = value if isinstance(value, tuple) else (value,)
    if not items or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in items):
        raise ValueError(problem)
    if not isinstance(value, tuple) and value < 0:
        raise ValueError("must be >= 0 (a range is symmetric: shifts are drawn in [-R, R])")
    return value


def _shift(u: Any, r: Any, pixels: int) -> Any:
    """(n,) shifts as fractions of a side of ``pixels`` from uniform column u, Keras' reading of range r.

    A float range: uniform in [-r, r), a fraction of the side when r < 1, else pixels.  An int
    range n: a whole number of pixels, |shift| drawn from {0, ..., n-1} and a random sign (Keras:
    ``choice(n) * choice([-1, 1])``).  A list: one of its entries with a random sign, fractions when
    every |entry| < 1, else pixels.  The sign and the choice come from the same column (its first
    half says minus, the rest of it picks the entry), so the batch's draw keeps one column per axis.
    """
    import numpy as np

    if not isinstance(r, (tuple, list)) and r == 0:
        return np.zeros_like(u)  # off (0 or 0.0): no shift on this axis
    if isinstance(r, (tuple, list)) or (isinstance(r, int) and not isinstance(r, bool)):
        choices = np.asarray(r if isinstance(r, (tuple, list)) else range(int(r)), dtype=np.float64)
        sign = np.where(u < 0.5, -1.0, 1.0)
        index = np.minimum(np.floor((2.0 * u % 1.0) * len(choices)).astype(int), len(choices) - 1)
        value = sign * choices[index]
        fraction = bool(np.max(np.abs(choices)) < 1) if isinstance(r, (tuple, list)) else False
    else:
        value = _sym(u, float(r))
        fraction = float(r) < 1
    return value if fraction else value / pixels


class Shift(Geometric):
    """Shifts the content right (``width_shift_range``) and down (``height_shift_range``), Keras' ranges.

    Each range as Keras documents it: a float < 1 a fraction of the width/height, a float >= 1 or an
    int pixels, a list a set of choices (see :func:`_shift`).  The width shift moves content
    horizontally, the height shift vertically (Keras 3's own ImageDataGenerator swaps the two).
    """

    kinds = {"width_shift_range": object, "height_shift_range": object}
    settings = {
        "width_shift_range": setting(0.0, "width_shift_range (content moves horizontally): a fraction of the "
                                     "width (< 1), pixels (a whole number, or >= 1) or a list of choices (2,4)",
                                     flag="--width-shift", metavar="R", coerce=shift_range),
        "height_shift_range": setting(0.0,
                                      "height_shift_range (content moves vertically): as --width-shift, of the height",
                                      flag="--height-shift", metavar="R", coerce=shift_range),
    }
    shared_flags = (SharedFlag("--shift", ("width_shift_range", "height_shift_range"),
                               "width and height shift range (a fraction < 1, pixels, or a list of choices)",
                               metavar="R"),)
    columns = ("shift_x", "shift_y")
    params = {"shift_x": 0.0, "shift_y": 0.0}
    order = 2

    def sample(self, cfg, u, n, size):
        h, w = size
        return {"shift_x": _shift(u["shift_x"], cfg.width_shift_range, w),
                "shift_y": _shift(u["shift_y"], cfg.height_shift_range, h)}

    def matrix(self, q, size):
        import numpy as np

        h, w = size
        one, zero = np.ones_like(q["shift_x"]), np.zeros_like(q["shift_x"])
        # content moves by +shift, so the output samples the input at -shift
        return _mat(one, zero, zero, one, -q["shift_x"] * w, -q["shift_y"] * h)


class Shear(Geometric):
    """Shear by a uniform angle in [-s, s] degrees (Keras ``shear_range``: counter-clockwise, degrees).

    Horizontal, as Keras' matrix: each row slides sideways in proportion to its distance from the
    centre row (rows above the centre go left for a positive angle), and heights scale by cos(s).
    """

    settings = {"shear_range": setting(0.0, "shear_range: degrees, Keras' horizontal shear (counter-clockwise)",
                                       flag="--shear",
                                       metavar="DEG", range="[0, 90)")}
    columns = ("shear",)
    params = {"shear": 0.0}
    order = 3

    def sample(self, cfg, u, n, size):
        return {"shear": _sym(u["shear"], cfg.shear_range)}

    def matrix(self, q, size):
        import numpy as np

        shear = np.deg2rad(q["shear"])
        one, zero = np.ones_like(shear), np.zeros_like(shear)
        # Keras' shear [[1, -sin s], [0, cos s]] on (x, y): a horizontal shear (x_in = x - sin(s) y,
        # y_in = cos(s) y), so a vertical line tilts counter-clockwise by s: its top moves left
        return _mat(one, -np.sin(shear), zero, np.cos(shear))


class Zoom(Geometric):
    """Scales in [1-z, 1+z], x and y drawn apart (Keras ``zoom_range``)."""

    settings = {"zoom_range": setting(0.0, "zoom_range: scales in [1-Z, 1+Z], x and y drawn apart", flag="--zoom",
                                      metavar="Z", range="[0, 1)")}
    columns = ("zoom_x", "zoom_y")
    params = {"zoom_x": 1.0, "zoom_y": 1.0}
    order = 4

    def sample(self, cfg, u, n, size):
        z = cfg.zoom_range
        return {"zoom_x": 1.0 + _sym(u["zoom_x"], z), "zoom_y": 1.0 + _sym(u["zoom_y"], z)}  # Keras: zx, zy apart

    def matrix(self, q, size):
        import numpy as np

        zero = np.zeros_like(q["zoom_x"])
        return _mat(q["zoom_x"], zero, zero, q["zoom_y"])


class Flip(Geometric):
    """Random horizontal and vertical flips, each with probability 1/2."""

    settings = {
        "horizontal_flip": setting(False, "random horizontal flips", flag="--hflip", negatable=True),
        "vertical_flip": setting(False, "random vertical flips", flag="--vflip", negatable=True),
    }
    columns = ("flip_h", "flip_v")
    params = {"flip_h": 0.0, "flip_v": 0.0}
    order = 5
    resamples = False

    def sample(self, cfg, u, n, size):
        import numpy as np

        zeros = np.zeros(n)
        return {"flip_h": (u["flip_h"] < 0.5) * 1.0 if cfg.horizontal_flip else zeros,
                "flip_v": (u["flip_v"] < 0.5) * 1.0 if cfg.vertical_flip else zeros}

    def matrix(self, q, size):
        import numpy as np

        zero = np.zeros_like(q["flip_h"])
        return _mat(1.0 - 2.0 * q["flip_h"], zero, zero, 1.0 - 2.0 * q["flip_v"])

    def apply(self, x, p, cfg):
        from cnnkit.augment.geometry import flip_only

        return flip_only(x, p)


class RandomResizedCrop(Geometric):
    """A random window of at least ``random_resized_crop`` of the area, resized back (torchvision's)."""

    settings = {"random_resized_crop": setting(
        0.0, "crop a random window of at least this area fraction and resize it back (0 = off)",
        metavar="MIN_AREA", range="[0, 1]")}
    columns = ("crop_area", "crop_ratio", "crop_x", "crop_y")
    params = {"crop_w": 1.0, "crop_h": 1.0, "crop_x": 0.0, "crop_y": 0.0}
    order = 0  # the window is chosen on the input image: outermost in the product

    def sample(self, cfg, u, n, size):
        import numpy as np

        h, w = size
        if cfg.random_resized_crop <= 0:
            return super().sample(cfg, u, n, size)
        # area fraction and aspect ratio as in torchvision, then clamped to fit (vectorised instead
        # of torchvision's 10 rejection-sampling attempts)
        area = cfg.random_resized_crop + (1.0 - cfg.random_resized_crop) * u["crop_area"]
        ratio = np.exp(_RRC_LOG_RATIO[0] + (_RRC_LOG_RATIO[1] - _RRC_LOG_RATIO[0]) * u["crop_ratio"])
        crop_w = np.minimum(np.sqrt(area * h * w * ratio) / w, 1.0)
        crop_h = np.minimum(np.sqrt(area * h * w / ratio) / h, 1.0)
        return {"crop_w": crop_w, "crop_h": crop_h,
                "crop_x": _sym(u["crop_x"], 1.0) * (1.0 - crop_w) / 2.0,
                "crop_y": _sym(u["crop_y"], 1.0) * (1.0 - crop_h) / 2.0}

    def matrix(self, q, size):
        import numpy as np

        h, w = size
        zero = np.zeros_like(q["crop_w"])
        return _mat(q["crop_w"], zero, zero, q["crop_h"], q["crop_x"] * w, q["crop_y"] * h)


# ----------------------------------------------------------------------------- photometric, cutout, mixing


class Brightness(Transform):
    """Brightness factor in [1-s, 1+s] (torchvision ColorJitter semantics)."""

    settings = {"brightness": setting(0.0, "brightness factor in [1-S, 1+S]", metavar="S", range="[0, 1]")}
    columns = ("brightness",)
    params = {"brightness": 1.0}

    def sample(self, cfg, u, n, size):
        import numpy as np

        return {"brightness": np.maximum(1.0 + _sym(u["brightness"], cfg.brightness), 0.0)}

    def apply(self, x, p, cfg):
        from cnnkit.augment.photometric import brightness

        return brightness(x, p.brightness)


class Contrast(Transform):
    """Contrast factor in [1-s, 1+s] about each image's mean grey (torchvision ColorJitter semantics)."""

    settings = {"contrast": setting(0.0, "contrast factor in [1-S, 1+S]", metavar="S", range="[0, 1]")}
    columns = ("contrast",)
    params = {"contrast": 1.0}

    def sample(self, cfg, u, n, size):
        import numpy as np

        return {"contrast": np.maximum(1.0 + _sym(u["contrast"], cfg.contrast), 0.0)}

    def apply(self, x, p, cfg):
        from cnnkit.augment.photometric import contrast

        return contrast(x, p.contrast)


class Cutout(Transform):
    """Erase one square per image, its side a fraction of the image size (DeVries & Taylor)."""

    settings = {"cutout": setting(0.0, "erase a square of side F x the image size (0 = off)", metavar="F",
                                  range="[0, 1]")}
    columns = ("cut_y", "cut_x")
    params = {"cut_x": 0.0, "cut_y": 0.0, "cut_w": 0.0, "cut_h": 0.0}

    def sample(self, cfg, u, n, size):
        import numpy as np

        ones = np.ones(n)
        return {"cut_x": u["cut_x"], "cut_y": u["cut_y"], "cut_w": cfg.cutout * ones, "cut_h": cfg.cutout * ones}

    def apply(self, x, p, cfg):
        from cnnkit.augment.photometric import cutout

        return cutout(x, p)


class Mix(Mixing):
    """Mixup and CutMix (one of them per batch with probability 1/2 when both are on)."""

    settings = {
        "mixup": setting(0.0, "mixup with weight ~ Beta(A, A) (0 = off)", metavar="A", range="[0, 100]"),
        "cutmix": setting(0.0, "CutMix with area ~ Beta(A, A) (0 = off)", metavar="A", range="[0, 100]"),
    }

    def mix(self, x, y, num_classes, cfg, gen):
        from cnnkit.augment.mix import mix_batch

        return mix_batch(x, y, num_classes, cfg.mixup, cfg.cutmix, gen)


TRANSFORMS: tuple[Transform, ...] = (Rotation(), Shift(), Shear(), Zoom(), Flip(), RandomResizedCrop(), Brightness(),
                                     Contrast(), Cutout(), Mix())


# ----------------------------------------------------------------------------- the config class


def _fields(transforms: Sequence[Transform]) -> list[tuple[str, type, Any]]:
    """(name, type, field) of AugmentConfig: preset, each transform's settings, fill, tta."""
    own = [("preset", str, setting("none", "preset: none | light (hflip, shifts 0.1) | standard (+ rotation 15, "
                                   "zoom 0.1) | strong (+ shear 10, brightness/contrast 0.2, cutout 0.25); the flags "
                                   "below override it", flag=("--augment", "--preset"), choices=tuple(PRESETS),
                                   metavar="PRESET"))]
    for t in transforms:
        for name, f in t.settings.items():
            # a fresh Field per class: dataclasses writes the name and type into the one it is given
            kind = t.kinds.get(name, type(f.default))
            own.append((name, kind, dataclasses.field(default=f.default, metadata=f.metadata)))
    own += [("fill_mode", str, setting("nearest", "how pixels from outside the image are filled", choices=FILL_MODES)),
            ("fill_value", float, setting(0.0, "fill for --fill-mode constant, in [0, 1]", metavar="V",
                                          range="[0, 1]")),
            ("tta", str, setting("none", "test-time augmentation for the final evaluation", choices=TTA_MODES))]
    return own


def augment_config(transforms: Sequence[Transform], name: str = "AugmentConfig") -> type:
    """A frozen config class whose fields are ``transforms``' settings (plus preset, fill, tta).

    The class keeps its list as ``transforms``; BatchAugment, presets and the CLI read it from there.
    """
    names = [n for t in transforms for n in t.settings]
    if len(set(names)) != len(names):
        raise ValueError(f"two transforms declare the same setting: {sorted(n for n in names if names.count(n) > 1)}")

    def extra_checks(self, prefix: str = "") -> None:
        for t in type(self).transforms:
            t.check(self, prefix)

    def __post_init__(self) -> None:
        # a JSON list (a config file, a checkpoint's metadata) is the tuple the field holds
        for f in dataclasses.fields(self):
            if isinstance(getattr(self, f.name), list):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))

    namespace = {
        "__post_init__": __post_init__,
        "__doc__": "Batch augmentation, Keras ImageDataGenerator names plus modern ones (one field per setting "
                   "of each transform in ``transforms``; ``preset`` supplies values left at their default).",
        "__module__": __name__,
        "transforms": tuple(transforms),
        "shared_flags": tuple(SharedFlag(s.flag, s.keys, s.help, s.metavar)
                              for t in transforms for s in t.shared_flags),
        "extra_checks": extra_checks,
    }
    return dataclasses.make_dataclass(name, _fields(transforms), frozen=True, namespace=namespace)


AugmentConfig = augment_config(TRANSFORMS)

__all__ = ["TRANSFORMS", "AugmentConfig", "Brightness", "Contrast", "Cutout", "Flip", "Geometric", "Mix", "Mixing",
           "RandomResizedCrop", "Rotation", "Shear", "Shift", "Transform", "Zoom", "augment_config", "shift_range"]
