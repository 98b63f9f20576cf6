"""The decode-once cache: hits, rebuild triggers, auto size/channels, atomic writes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.config import DataConfig
from cnnkit.data import load_data
from cnnkit.data.cache import decoded
from cnnkit.data.folders import list_images


def img(path: Path, value: int = 128, size: tuple[int, int] = (12, 16), grey: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = size if grey else (*size, 3)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)
    return path


def tree(root: Path, n: int = 3, **kw) -> Path:
    for k, cls in enumerate(("a", "b")):
        for i in range(n):
            img(root / cls / f"{i}.png", value=50 + 100 * k, **kw)
    return root


def test_second_load_reads_the_cache_without_decoding(tmp_path):
    root = tree(tmp_path / "d")
    cache = str(tmp_path / "c")
    first = decoded(list_images(root), (8, 8), 3, cache)
    assert first.built and first.images.shape == (6, 8, 8, 3)
    second = decoded(list_images(root), (8, 8), 3, cache)
    assert not second.built
    assert isinstance(second.images, np.memmap)
    np.testing.assert_array_equal(np.asarray(first.images), np.asarray(second.images))
    # copy-on-write map: writable for torch.from_numpy, but the cache file never changes
    second.images[0] = 0
    third = decoded(list_images(root), (8, 8), 3, cache)
    assert int(third.images[0].max()) == 50


def test_changed_file_rebuilds(tmp_path):
    root = tree(tmp_path / "d")
    cache = str(tmp_path / "c")
    decoded(list_images(root), (8, 8), 3, cache)
    target = root / "a" / "0.png"
    img(target, value=222)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # make sure mtime differs
    again = decoded(list_images(root), (8, 8), 3, cache)
    assert again.built
    row = [f.path for f in again.files].index(str(target))
    assert int(again.images[row].mean()) == 222
    # added and removed files change the signature too
    img(root / "b" / "new.png", value=10)
    assert decoded(list_images(root), (8, 8), 3, cache).images.shape[0] == 7
    (root / "b" / "new.png").unlink()
    assert decoded(list_images(root), (8, 8), 3, cache).images.shape[0] == 6


def test_changed_size_or_channels_is_another_entry(tmp_path):
    root = tree(tmp_path / "d")
    cache = str(tmp_path / "c")
    assert decoded(list_images(root), (8, 8), 3, cache).built
    assert decoded(list_images(root), (4, 6), 3, cache).images.shape[1:] == (4, 6, 3)
    assert decoded(list_images(root), (8, 8), 1, cache).images.shape[1:] == (8, 8, 1)
    assert not decoded(list_images(root), (8, 8), 3, cache).built  # the first is still there
    names = sorted(p.name for p in (tmp_path / "c" / "decoded").iterdir())
    assert len(names) == 6 and not any(n.startswith(".") for n in names)  # no temp files left


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    root = tree(tmp_path / "d")
    cache = str(tmp_path / "c")
    decoded(list_images(root), (8, 8), 3, cache)
    npy = next((tmp_path / "c" / "decoded").glob("*.npy"))
    npy.write_bytes(b"garbage")
    again = decoded(list_images(root), (8, 8), 3, cache)
    assert again.built and again.images.shape == (6, 8, 8, 3)


def test_same_size_is_kept_and_grey_gives_one_channel(tmp_path):
    root = tree(tmp_path / "d", size=(20, 30), grey=True)
    s = load_data(DataConfig(source=str(root), cache_dir=str(tmp_path / "c"), val_split=0.0))
    assert s.train.images.shape[1:] == (20, 30, 1)


def test_mixed_sizes_become_150_with_one_warning_and_colour_is_3(tmp_path, caplog):
    root = tmp_path / "d"
    img(root / "a" / "1.png", size=(20, 30))
    img(root / "a" / "2.png", size=(40, 30), grey=True)
    img(root / "b" / "1.png", size=(25, 25))
    img(root / "b" / "2.png", size=(25, 25))
    with caplog.at_level(logging.WARNING, logger="cnnkit.data"):
        s = load_data(DataConfig(source=str(root), cache_dir=str(tmp_path / "c"), val_split=0.0))
    assert s.train.images.shape == (4, 150, 150, 3)
    size_warnings = [r for r in caplog.records if "different sizes" in r.getMessage()]
    assert len(size_warnings) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cnnkit.data"):
        load_data(DataConfig(source=str(root), cache_dir=str(tmp_path / "c"), val_split=0.0))
    assert not [r for r in caplog.records if "different sizes" in r.getMessage()]  # cached: said once


def test_explicit_size_and_channels(tmp_path):
    root = tree(tmp_path / "d", grey=True)
    s = load_data(DataConfig(source=str(root), cache_dir=str(tmp_path / "c"), val_split=0.0,
                             image_size=(5, 7), channels=3))
    assert s.train.images.shape == (6, 5, 7, 3)
    assert (s.train.images[..., 0] == s.train.images[..., 2]).all()


def test_skipped_files_are_reported_again_on_a_cache_hit(tmp_path):
    root = tree(tmp_path / "d")
    (root / "a" / "bad.png").write_bytes(b"")
    c = DataConfig(source=str(root), cache_dir=str(tmp_path / "c"), val_split=0.0, image_size=(8, 8))
    first, second = load_data(c), load_data(c)
    assert first.skipped == second.skipped and len(second.skipped) == 1
    assert len(second.train) == 6


def test_cache_dir_env_var(tmp_path, monkeypatch):
    root = tree(tmp_path / "d")
    monkeypatch.setenv("CNNKIT_CACHE_DIR", str(tmp_path / "envcache"))
    decoded(list_images(root), (8, 8), 3)
    assert list((tmp_path / "envcache" / "decoded").glob("*.npy"))


def test_unwritable_cache_is_a_clear_error(tmp_path):
    from cnnkit.errors import DataError

    root = tree(tmp_path / "d")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cache"):
        decoded(list_images(root), (8, 8), 3, str(blocker))


def test_strict_still_stops_when_the_bad_file_is_already_cached_as_skipped(tmp_path):
    # a first, lenient load caches the list of skipped files; --strict must not trust that cache quietly
    import dataclasses

    from cnnkit.errors import DataError

    root = tree(tmp_path / "d")
    (root / "a" / "bad.png").write_bytes(b"")
    c = DataConfig(source=str(root), cache_dir=str(tmp_path / "c"), val_split=0.0, image_size=(8, 8))
    assert len(load_data(c).skipped) == 1
    with pytest.raises(DataError, match="bad.png.*empty file"):
        load_data(dataclasses.replace(c, strict=True))


def test_a_killed_builds_temp_file_is_removed_but_a_live_one_is_kept(tmp_path):
    import subprocess
    import sys

    from cnnkit.io import _owner

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited
    folder = tmp_path / "c" / "decoded"
    folder.mkdir(parents=True)
    orphan = folder / f".abc.npy.{_owner(dead_pid)}.x1y2z3.tmp"
    orphan.write_bytes(b"\0" * 1024)
    live = folder / f".def.npy.{_owner()}.a1b2c3.tmp"  # this process: a write in progress
    live.write_bytes(b"\0")
    other_host = folder / f".ghi.npy.elsewhere-{dead_pid}.q1w2e3.tmp"  # another machine on a shared folder
    other_host.write_bytes(b"\0")
    decoded(list_images(tree(tmp_path / "d")), (8, 8), 3, str(tmp_path / "c"))
    assert not orphan.exists() and live.exists() and other_host.exists()
