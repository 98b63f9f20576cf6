"""Files written atomically get the mode any new file gets (the umask), not mkstemp's 0600."""

from __future__ import annotations

import os
import stat

import pytest

from cnnkit.io import atomic_write_text


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "metrics.json", "{}")
        (tmp_path / "plain.txt").write_text("x")  # what open() makes under the same umask
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
