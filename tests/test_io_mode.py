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


def test_finite_json_writes_non_finite_floats_as_null():
    import json

    import numpy as np

    from cnnkit.io import finite_json

    data = {"loss": float("nan"), "lrs": (1e-3, float("inf")), "acc": np.float32(0.5), "n": np.int64(3)}
    assert finite_json(data) == {"loss": None, "lrs": [1e-3, None], "acc": 0.5, "n": 3}
    json.dumps(finite_json(data), allow_nan=False)  # strict JSON accepts it
