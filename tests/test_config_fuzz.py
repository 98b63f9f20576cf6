"""Fuzzing what a run reads back: ``--config`` files and run folders whose data changed.

Config files: sections and settings with values of every JSON type, misspelt and unknown keys,
sections that are not objects.  Each file must load into a checked RunConfig holding exactly the
values written, or be one ConfigError line naming the file - and a file with any key that is not
a setting never loads.

Run folders: a committed data listing, then the data folder changed at random (files added,
removed or touched; classes renamed or added; or nothing).  ``--resume`` must refuse exactly
when something changed, name the classes when they changed (even with ``--allow-data-change``),
and otherwise count the files that changed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnkit.config import RunConfig, load_run_config
from cnnkit.data import DataSplits, ImageSet
from cnnkit.data.folders import list_images
from cnnkit.errors import ConfigError, DataError
from cnnkit.settings import coerce, walk
from cnnkit.train.commit import commit
from cnnkit.train.data_listing import (
    DATA_LISTING,
    compare,
    data_listing,
    listing_bytes,
    read_listing,
)
from cnnkit.train.resume import check_data

SETTINGS = {s.key: s for s in walk(RunConfig) if "." in s.key}  # the sections' settings (not the bookkeeping `given`)
SECTIONS = sorted({k.split(".")[0] for k in SETTINGS})

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                          max_leaves=6)


def good_value(key: str):
    """Values the setting takes: its default, or one of its choices."""
    s = SETTINGS[key]
    options = [s.default, *(s.spec.choices or ())]
    return st.sampled_from([list(v) if isinstance(v, tuple) else v for v in options])


@st.composite
def config_files(draw):
    """(the JSON object, the dotted keys in it that are not settings)"""
    keys = draw(st.lists(st.sampled_from(sorted(SETTINGS)), max_size=6, unique=True))
    data: dict = {}
    for key in keys:
        section, name = key.split(".", 1)
        data.setdefault(section, {})[name] = draw(st.one_of(good_value(key), good_value(key), good_value(key),
                                                                  json_value))  # mostly values it takes
    unknown = []
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        kind = draw(st.sampled_from(["typo", "new field", "new section"]))
        if kind == "typo" and keys:
            key = draw(st.sampled_from(keys))
            section, name = key.split(".", 1)
            wrong = name[:-1] if len(name) > 1 else name + "x"
            data.setdefault(section, {})[wrong] = 1
            unknown.append(f"{section}.{wrong}")
        elif kind == "new field":
            section = draw(st.sampled_from(SECTIONS))
            name = draw(st.from_regex(r"zz_[a-z]{1,6}", fullmatch=True))
            if isinstance(data.get(section, {}), dict):
                data.setdefault(section, {})[name] = draw(json_leaf)
                unknown.append(f"{section}.{name}")
        else:
            name = draw(st.from_regex(r"zz[a-z]{1,6}", fullmatch=True))
            data[name] = {"x": 1}
            unknown.append(f"{name}.x")
    if draw(st.integers(0, 5)) == 0:  # a section that is not an object
        data[draw(st.sampled_from(SECTIONS))] = draw(st.one_of(json_leaf, st.lists(json_leaf, max_size=2)))
        unknown.append("(section)")
    return data, unknown


def _get(cfg, key):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def check_config_file(data, unknown):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cfg.json"
        path.write_text(json.dumps(data))
        try:
            cfg = load_run_config(path)
        except ConfigError as exc:
            text = str(exc)
            assert text.startswith(f"{path}: ") and "\n" not in text, text
            return
    assert not unknown, f"loaded although {unknown} are not settings"
    for section, values in data.items():
        for name, value in values.items():
            key = f"{section}.{name}"
            assert _get(cfg, key) == coerce(SETTINGS[key], value), (key, value, _get(cfg, key))
    return cfg


@settings(max_examples=60, deadline=None, database=None)
@given(case=config_files())
def test_a_config_file_loads_as_written_or_is_one_line(case):
    check_config_file(*case)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, database=None)
@given(case=config_files())
def test_a_config_file_loads_as_written_or_is_one_line_long(case):
    check_config_file(*case)


# ----------------------------------------------------------------------------- run folders, changed data

CLASSES = ("cat", "dog", "fox")
MUTATIONS = ("add", "remove", "touch", "rename class", "add class", "nothing")


def make_tree(root: Path, per_class: int = 4) -> None:
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            (root / c / f"{i}.png").write_bytes(bytes([i]) * (10 + i))


def listing_of(root: Path) -> dict:
    found = list_images(root)
    labels = np.array([f.label for f in found.files], np.int64)
    images = np.zeros((len(labels), 1, 1, 1), np.uint8)
    return data_listing(DataSplits(ImageSet(images, labels, found.classes, tuple(f.path for f in found.files))))


def mutate(root: Path, kind: str, n: int) -> int:
    """Change the tree; returns how many files changed (added, removed or touched)."""
    if kind == "add":
        for i in range(n):
            (root / "cat" / f"new{i}.png").write_bytes(b"new")
        return n
    if kind == "remove":
        for i in range(n):
            (root / "dog" / f"{i}.png").unlink()
        return n
    if kind == "touch":
        for i in range(n):
            p = root / "fox" / f"{i}.png"
            os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
        return n
    if kind == "rename class":
        (root / "dog").rename(root / "wolf")
    elif kind == "add class":
        shutil.copytree(root / "fox", root / "hen")
    return 0


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3, unique=True), n=st.integers(1, 3),
       allow=st.booleans())
def test_resume_refuses_exactly_the_data_changes(kinds, n, allow):
    with tempfile.TemporaryDirectory() as tmp:
        root, run = Path(tmp) / "data", Path(tmp) / "run"
        make_tree(root)
        run.mkdir()
        before = listing_of(root)
        commit(run, 1, {DATA_LISTING: listing_bytes(before)})
        changed = sum(mutate(root, k, n) for k in kinds if k in ("add", "remove", "touch"))
        classes = any(k in ("rename class", "add class") for k in kinds)
        for k in kinds:
            if k in ("rename class", "add class"):
                mutate(root, k, n)
        after = listing_of(root)
        change = compare(before, after)
        assert bool(change) == (classes or changed > 0)
        assert change.classes_changed == classes
        if not classes:
            assert change.files == changed
        if not change:
            assert check_data(run, after, allow) is None
            return
        if classes or not allow:
            with pytest.raises(DataError) as info:
                check_data(run, after, allow)
            text = str(info.value)
            assert "\n" not in text and str(run) in text
            if classes:
                assert "classes changed" in text
            else:
                assert "--allow-data-change" in text
            assert read_listing(run) == before  # nothing committed on a refusal
        else:
            note = check_data(run, after, allow)
            assert f"{changed} file" in note
            assert read_listing(run) == after and check_data(run, after, False) is None
