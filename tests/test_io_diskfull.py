"""A full disk is one clear DiskFullError naming the file and the space, and leaves no temp file."""

from __future__ import annotations

import errno
import shutil

import pytest

from cnnkit.data.cache import new_array
from cnnkit.errors import CnnkitError, DiskFullError
from cnnkit.io import atomic_path, ensure_free_space, is_disk_full


def test_asking_for_more_than_the_disk_has_is_one_clear_error(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(DiskFullError) as info:
        ensure_free_space(tmp_path / "big.bin", free * 2 + 1)
    msg = str(info.value)
    assert isinstance(info.value, CnnkitError) and "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'big.bin'}: not enough disk space (needs ") and "free)" in msg
    assert info.value.needed == free * 2 + 1 and info.value.free is not None
    ensure_free_space(tmp_path / "small.bin", 1)  # what fits passes


def test_a_cache_array_larger_than_the_disk_fails_before_mapping(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    n = free // (4096 * 4096 * 3) + 2  # a fake dataset of 4096x4096 RGB images that cannot fit
    path = tmp_path / "decoded" / "set.npy"
    path.parent.mkdir()
    with pytest.raises(DiskFullError, match=r"set\.npy: not enough disk space .*CNNKIT_CACHE_DIR"):
        new_array(path, (int(n), 4096, 4096, 3))
    assert list(path.parent.iterdir()) == []  # nothing was created, so nothing can SIGBUS later
    small = new_array(path, (3, 4, 5, 1))
    assert small.shape == (3, 4, 5, 1) and path.stat().st_size >= 60
    assert path.stat().st_blocks * 512 >= 60  # allocated on disk, not a sparse hole


class _FullDisk:
    """A file-like writer whose disk is full: what a real write(2) says on ENOSPC."""

    def __init__(self, code=errno.ENOSPC):
        self.code = code

    def write(self, data):
        raise OSError(self.code, "No space left on device" if self.code == errno.ENOSPC else "Disk quota exceeded")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_write_that_fills_the_disk_is_a_disk_full_error_and_leaves_no_temp(tmp_path, code):
    target = tmp_path / "ckpt.bin"
    target.write_bytes(b"previous")
    with pytest.raises(DiskFullError, match=r"ckpt\.bin: not enough disk space \(the disk is full or over quota"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            _FullDisk(code).write(b"more")
    assert target.read_bytes() == b"previous"  # left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.bin"]  # no temporary file


def test_library_wrapped_disk_full_errors_are_recognised(tmp_path):
    try:
        try:
            _FullDisk().write(b"x")
        except OSError as exc:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed") from exc
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)
    assert is_disk_full(RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })"))
    assert not is_disk_full(RuntimeError("something else")) and not is_disk_full(OSError(errno.EACCES, "denied"))
    with pytest.raises(DiskFullError):
        with atomic_path(tmp_path / "model.pt"):
            try:
                _FullDisk().write(b"x")
            except OSError as exc:
                raise RuntimeError("file write failed") from exc
    with pytest.raises(ValueError):  # other errors pass through unchanged
        with atomic_path(tmp_path / "other.bin"):
            raise ValueError("not a disk problem")
    assert list(tmp_path.iterdir()) == []
