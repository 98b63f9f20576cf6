"""Standard datasets by name: MNIST, Fashion-MNIST, CIFAR-10, cats-vs-dogs, horses-vs-humans.

Each is looked for in the data folder (``DataConfig.data_dir``, else ``$CNNKIT_DATA_DIR``, else
``~/.cache/cnnkit/datasets``) and, only when absent there, downloaded into it from the official
address (or ``$CNNKIT_DATASET_MIRROR``) with its published checksum verified.  Files that are
already present locally are validated by their structure (IDX header and counts, archive
layout), not by checksum, because repackaged copies of the same data are common (for example,
re-gzipped MNIST files hold the official bytes but hash differently).
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cnnkit.config import DataConfig
from cnnkit.data.arrays import conform_splits
from cnnkit.data.cache import cache_root
from cnnkit.data.download import data_root, download, extract, mirrored, verify_compressed_tail
from cnnkit.data.folders import find_root, list_images, list_split_folders
from cnnkit.data.images import fill_splits, load_listing
from cnnkit.data.types import DataDescription, DataSplits, ImageSet, Source
from cnnkit.errors import DataError


@dataclass(frozen=True)
class Remote:
    """An official download: URL and its published checksum.

    ``sha256`` is used where one is published; ``md5`` only where the publisher gives nothing
    stronger (an MD5 check still catches truncated or wrong files, which is its job here).
    """

    url: str
    sha256: str | None = None
    md5: str | None = None


# MNIST: the files TensorFlow and torchvision fetch (TF's mirror of yann.lecun.com/exdb/mnist,
# which now often refuses downloads).  SHA-256 of the original 9,912,422-byte etc. .gz files.
_MNIST = "https://storage.googleapis.com/cvdf-datasets/mnist/"
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": Remote(_MNIST + "train-images-idx3-ubyte.gz",
                                         "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte.gz": Remote(_MNIST + "train-labels-idx1-ubyte.gz",
                                         "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte.gz": Remote(_MNIST + "t10k-images-idx3-ubyte.gz",
                                        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte.gz": Remote(_MNIST + "t10k-labels-idx1-ubyte.gz",
                                        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
# Fashion-MNIST: Zalando's repository (same files as their S3 bucket, over HTTPS).  SHA-256 as
# listed by TensorFlow Datasets; the MD5s are torchvision's.
_FASHION = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
FASHION_FILES = {
    "train-images-idx3-ubyte.gz": Remote(_FASHION + "train-images-idx3-ubyte.gz",
                                         "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                                         "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train-labels-idx1-ubyte.gz": Remote(_FASHION + "train-labels-idx1-ubyte.gz",
                                         "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                                         "25c81989df183df01b3e8a0aad5dffbe"),
    "t10k-images-idx3-ubyte.gz": Remote(_FASHION + "t10k-images-idx3-ubyte.gz",
                                        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                                        "bef4ecab320f06d8554ea6380940ec79"),
    "t10k-labels-idx1-ubyte.gz": Remote(_FASHION + "t10k-labels-idx1-ubyte.gz",
                                        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                                        "bb300cfdad3c16e7a12a480ee83cd310"),
}
CIFAR10_TARBALL = Remote("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                         "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                         "c58f30108f718f92721af3b95e74349a")
# Google publishes no checksum for this archive (the TF tutorials download it unchecked), so the
# download is verified by its layout after extraction instead.
CATS_DOGS_ZIP = Remote("https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip")
# horses-or-humans: SHA-256 from TensorFlow Datasets' url_checksums/horses_or_humans.txt.
HORSES_ZIPS = {
    "horse-or-human.zip": Remote("https://storage.googleapis.com/download.tensorflow.org/data/horse-or-human.zip",
                                 "e2e6f70d3d549c5dd10a57165e55af253ee66ad750403f95c0fb76bb943633a9"),
    "validation-horse-or-human.zip": Remote(
        "https://storage.googleapis.com/download.tensorflow.org/data/validation-horse-or-human.zip",
        "ae5fff2f4f5554791f05358108e2e05d9801b191f1896ea101402f0e7f6c32c0"),
}

DIGITS = tuple(str(i) for i in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def fetch(remote: Remote, dest: Path, mirror: str | None = None) -> Path:
    """Download ``remote`` to ``dest`` (verified, atomic) unless ``dest`` already exists."""
    if dest.is_file():
        return dest
    return download(mirrored(remote.url, mirror), dest, sha256=remote.sha256, md5=remote.md5)


def _candidate_dirs(root: Path, aliases: tuple[str, ...]) -> list[Path]:
    """``root/<alias>`` for each alias, or ``root`` itself when it is named like the dataset."""
    dirs = [root / a for a in aliases]
    if root.name.lower() in {a.lower().split("/")[0] for a in aliases}:
        dirs.insert(0, root)
    return dirs


def _download_dir(root: Path, aliases: tuple[str, ...]) -> Path:
    """Where a missing dataset is downloaded: ``root`` if it is named like it, else ``root/<name>``."""
    return root if root.name.lower() in {a.lower() for a in aliases} else root / aliases[0]


def _not_found(name: str, looked: list[Path], exc: DataError) -> DataError:
    where = ", ".join(str(p) for p in looked)
    return DataError(f"dataset {name!r}: not found locally (looked in {where}) and the download failed: "
                     f"{exc}. Put the files there, or set data_dir / CNNKIT_DATA_DIR to a folder "
                     f"that has them.")


# ------------------------------------------------------------------------------------- IDX


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip or raw) of unsigned bytes -> ndarray; header checked against the size."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(dims)):
        raise DataError(f"{path}: truncated IDX file ({len(data) - header} bytes of data for shape {dims})")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _idx_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / name[:-3]):  # .gz or already gunzipped
        if candidate.is_file():
            return candidate
    return None


def load_idx_dataset(name: str, files: dict[str, Remote], aliases: tuple[str, ...],
                     classes: tuple[str, ...], cfg: DataConfig, mirror: str | None = None) -> DataSplits:
    root = data_root(cfg.data_dir)
    looked = _candidate_dirs(root, aliases)
    folder = next((d for d in looked if all(_idx_file(d, f) for f in files)), None)
    if folder is None:
        folder = _download_dir(root, aliases)
        try:
            for fname, remote in files.items():
                if _idx_file(folder, fname) is None:
                    fetch(remote, folder / fname, mirror)
        except DataError as exc:
            raise _not_found(name, looked, exc) from None
    arrays = {f: read_idx(_idx_file(folder, f)) for f in files}
    sets = []
    for images_name, labels_name in (("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                                     ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")):
        x, y = arrays[images_name], arrays[labels_name]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{folder}: {images_name} {x.shape} does not match {labels_name} {y.shape}")
        if int(y.max()) >= len(classes):
            raise DataError(f"{folder}/{labels_name}: label {int(y.max())} outside 0..{len(classes) - 1}")
        sets.append(ImageSet(x[..., None], y.astype(np.int64), classes))
    return conform_splits(fill_splits(sets[0], None, sets[1], cfg), cfg.image_size, cfg.channels)


def load_mnist(cfg: DataConfig, mirror: str | None = None) -> DataSplits:
    return load_idx_dataset("mnist", MNIST_FILES, ("mnist", "MNIST/raw"), DIGITS, cfg, mirror)


def load_fashion_mnist(cfg: DataConfig, mirror: str | None = None) -> DataSplits:
    return load_idx_dataset("fashion-mnist", FASHION_FILES, ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
                            FASHION_CLASSES, cfg, mirror)


# ---------------------------------------------------------------------------------- CIFAR-10


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickle only dicts/lists/bytes and numpy arrays: a pickle cannot run code through us."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle protocol
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any failure means a damaged or foreign file
        raise DataError(f"{where}: not a CIFAR-10 pickle batch ({exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: not a CIFAR-10 pickle batch")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_batch(batch: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 batch dict -> (N,32,32,3) uint8 NHWC, (N,) int64; rows are R(1024) G B planes."""
    try:
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (KeyError, ValueError) as exc:
        raise DataError(f"{where}: not a CIFAR-10 batch ({exc})") from None
    if len(labels) != len(data) or (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"{where}: {len(data)} images but {len(labels)} labels, or labels outside 0..9")
    return np.ascontiguousarray(data.transpose(0, 2, 3, 1)), labels


_CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _read_cifar_members(read: Callable[[str], bytes], where: str) -> tuple[ImageSet, ImageSet]:
    parts = {name: _cifar_batch(_unpickle(read(name), f"{where}/{name}"), f"{where}/{name}")
             for name in _CIFAR_BATCHES}
    classes = CIFAR10_CLASSES
    try:
        meta = _unpickle(read("batches.meta"), f"{where}/batches.meta")
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta["label_names"])
        classes = names if len(names) == 10 else classes
    except (DataError, KeyError):
        pass
    x = np.concatenate([parts[n][0] for n in _CIFAR_BATCHES[:5]])
    y = np.concatenate([parts[n][1] for n in _CIFAR_BATCHES[:5]])
    return ImageSet(x, y, classes), ImageSet(parts["test_batch"][0], parts["test_batch"][1], classes)


def read_cifar10_tarball(path: Path) -> tuple[ImageSet, ImageSet]:
    """The official ``cifar-10-python.tar.gz``, read in place (pickles are small; no extraction)."""
    try:
        with tarfile.open(path) as tf:
            members = {Path(m.name).name: m for m in tf.getmembers() if m.isfile()}

            def read(name: str) -> bytes:
                if name not in members:
                    raise DataError(f"{path}: no {name} inside; not the cifar-10-python archive")
                return tf.extractfile(members[name]).read()

            sets = _read_cifar_members(read, str(path))
            verify_compressed_tail(tf)
            return sets
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: damaged archive ({exc})") from None


def read_cifar10_folder(folder: Path) -> tuple[ImageSet, ImageSet]:
    def read(name: str) -> bytes:
        p = folder / name
        if not p.is_file():
            raise DataError(f"{folder}: no {name}; not an extracted cifar-10-batches-py folder")
        return p.read_bytes()

    return _read_cifar_members(read, str(folder))


def load_cifar10(cfg: DataConfig, mirror: str | None = None) -> DataSplits:
    """Official pickles (tarball or extracted folder), else the JPEG class-folder copy, else download."""
    root = data_root(cfg.data_dir)
    looked = _candidate_dirs(root, ("cifar10", "cifar-10")) + [root]
    for d in looked:
        if (d / "cifar-10-batches-py").is_dir():
            train, test = read_cifar10_folder(d / "cifar-10-batches-py")
            return conform_splits(fill_splits(train, None, test, cfg), cfg.image_size, cfg.channels)
        if (d / "cifar-10-python.tar.gz").is_file():
            train, test = read_cifar10_tarball(d / "cifar-10-python.tar.gz")
            return conform_splits(fill_splits(train, None, test, cfg), cfg.image_size, cfg.channels)
    for d in looked:
        if (d / "cifar10-jpeg").is_dir():
            return load_listing(list_images(d / "cifar10-jpeg"), cfg)
        if (d / "cifar10-jpeg.zip").is_file():
            return load_listing(list_images(extract(d / "cifar10-jpeg.zip", cache_root(cfg.cache_dir))), cfg)
    try:
        tarball = fetch(CIFAR10_TARBALL, _download_dir(root, ("cifar10", "cifar-10")) / "cifar-10-python.tar.gz",
                        mirror)
    except DataError as exc:
        raise _not_found("cifar10", looked, exc) from None
    train, test = read_cifar10_tarball(tarball)
    return conform_splits(fill_splits(train, None, test, cfg), cfg.image_size, cfg.channels)


# ------------------------------------------------------------------------- zipped folders


def _folder_or_zip(root: Path, aliases: tuple[str, ...], folder_name: str, zip_name: str,
                   remote: Remote, cfg: DataConfig, mirror: str | None) -> Path:
    """The dataset folder: already extracted, else a local zip extracted once, else downloaded."""
    looked = [root] + [root / a for a in aliases]
    for d in looked:
        if (d / folder_name).is_dir():
            return d / folder_name
    for d in looked:
        if (d / zip_name).is_file():
            return extract(d / zip_name, cache_root(cfg.cache_dir))
    try:
        archive = fetch(remote, root / zip_name, mirror)
    except DataError as exc:
        raise _not_found(aliases[0], looked, exc) from None
    return extract(archive, cache_root(cfg.cache_dir))


def load_cats_vs_dogs(cfg: DataConfig, mirror: str | None = None) -> DataSplits:
    root = data_root(cfg.data_dir)
    folder = _folder_or_zip(root, ("cats-vs-dogs",), "cats_and_dogs_filtered", "cats_and_dogs_filtered.zip",
                            CATS_DOGS_ZIP, cfg, mirror)
    listing = list_images(folder)
    if listing.splits()[:1] != ["train"] or set(listing.classes) != {"cats", "dogs"}:
        raise DataError(f"{folder}: expected cats_and_dogs_filtered/{{train,validation}}/{{cats,dogs}}/*.jpg, "
                        f"found classes {listing.classes}")
    return load_listing(listing, cfg)


def load_horses_vs_humans(cfg: DataConfig, mirror: str | None = None) -> DataSplits:
    root = data_root(cfg.data_dir)
    folders = {}
    for split, zip_name in (("train", "horse-or-human.zip"), ("val", "validation-horse-or-human.zip")):
        folders[split] = _folder_or_zip(root, ("horses-vs-humans",), zip_name[:-4], zip_name,
                                        HORSES_ZIPS[zip_name], cfg, mirror)
    listing = list_split_folders({s: find_root(f) for s, f in folders.items()}, folders["train"])
    return load_listing(listing, cfg)


def _dataset(classes: tuple[str, ...], train: int, val: int, test: int, grey: bool, size: tuple[int, int],
             sizes_vary: bool = False) -> DataDescription:
    return DataDescription(classes, train, val, test, grey, size, sizes_vary, where="dataset")


# name -> its loader and what the official files hold (counts per split, colour, median size): the
# automatic default plans from the description without downloading or decoding anything
NAMED: dict[str, Source] = {
    "mnist": Source(load_mnist, _dataset(DIGITS, 60_000, 0, 10_000, True, (28, 28))),
    "fashion-mnist": Source(load_fashion_mnist, _dataset(FASHION_CLASSES, 60_000, 0, 10_000, True, (28, 28))),
    "cifar10": Source(load_cifar10, _dataset(CIFAR10_CLASSES, 50_000, 0, 10_000, False, (32, 32))),
    "cats-vs-dogs": Source(load_cats_vs_dogs, _dataset(("cats", "dogs"), 2_000, 1_000, 0, False, (374, 500),
                                                        sizes_vary=True)),
    "horses-vs-humans": Source(load_horses_vs_humans, _dataset(("horses", "humans"), 1_027, 256, 0, False,
                                                                (300, 300))),
}
