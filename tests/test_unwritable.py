"""Places cnnkit cannot write, and input nested too deeply: one line each, never a traceback, and the
writability is checked before the work starts."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from cnnkit.cli import main

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions and paths")


@contextlib.contextmanager
def read_only(folder):
    """``folder`` read-only for this process: its mode without write bits, or (root ignores modes) a
    read-only bind mount of it; skipped where neither is possible."""
    folder = str(folder)
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        try:
            yield
        finally:
            os.chmod(folder, 0o755)
        return
    done = subprocess.run(["mount", "--bind", folder, folder], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("running as root without mount: a read-only folder cannot be made")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", folder], capture_output=True, check=False).returncode != 0:
            pytest.skip("running as root, and a read-only bind mount is refused")
        yield
    finally:
        subprocess.run(["umount", folder], capture_output=True, check=False)


def one_error_line(capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnkit: error:"), err
    assert all(w in err[0] for w in words), err
    return err[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ):
    from conftest import make_shapes

    base = tmp_path_factory.mktemp("unwritable")
    data = make_shapes(8, size=16, seed=2)
    for i, (img, label) in enumerate(zip(data.images, data.labels)):
        (base / "data" / data.classes[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(base / "data" / data.classes[label] / f"{i}.png")
    assert main(["train", str(base / "data"), "--model", "lenet5", "--epochs", "1", "--batch-size", "8",
                 "--val-split", "0.25", "--out", str(base / "run"), "--cache-dir", str(base / "cache"),
                 "--quiet", "--no-report"]) == 0
    return base


@pytest.fixture
def run(trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained / "run", out)
    return out


@pytest.fixture
def image(trained):
    return str(next((trained / "data" / "bright").iterdir()))


@pytest.mark.parametrize("command", [
    lambda run, img: ["evaluate", str(run)],
    lambda run, img: ["report", str(run)],
    lambda run, img: ["export", str(run)],
    lambda run, img: ["explain", "gradcam", str(run), img, "--out", str(run / "cam.png")],
    lambda run, img: ["predict", str(run), img, "-o", str(run / "pred.csv")],
], ids=["evaluate", "report", "export", "explain", "predict"])
def test_a_read_only_run_folder_is_one_line(run, image, capsys, command):
    with read_only(run):
        assert main(command(run, image)) == 2
    one_error_line(capsys, str(run))


def test_a_read_only_cache_on_a_cache_miss_is_one_line(trained, tmp_path, capsys):
    cache = tmp_path / "cache"
    (cache / "decoded").mkdir(parents=True)
    with read_only(cache / "decoded"):
        assert main(["train", str(trained / "data"), "--model", "lenet5", "--epochs", "1", "--quiet",
                     "--out", str(tmp_path / "run"), "--cache-dir", str(cache)]) == 2
    one_error_line(capsys, str(cache / "decoded"), "--cache-dir")


def special(tmp_path, target):
    """The path a case names: a FIFO stands for /dev/null (a file that is not a regular one: the
    tests never touch the real /dev/null, which a root process could replace)."""
    if target == "special":
        os.mkfifo(tmp_path / "fifo")
        return str(tmp_path / "fifo")
    if target == "folder":
        return str(tmp_path)
    return target


@pytest.mark.parametrize("out", ["file", "special", "/proc/x"])
def test_train_out_that_cannot_be_a_run_folder_is_one_line_before_training(trained, tmp_path, capsys, out):
    if out == "file":
        out = tmp_path / "notes.txt"
        out.write_text("mine")
    else:
        out = special(tmp_path, out)
    assert main(["train", str(trained / "data"), "--model", "lenet5", "--epochs", "1", "--quiet",
                 "--out", str(out), "--cache-dir", str(trained / "cache")]) == 2
    one_error_line(capsys, str(out))
    if isinstance(out, os.PathLike):
        assert out.read_text() == "mine"


@pytest.mark.parametrize("target", ["special", "/proc/x", "folder"])
def test_output_files_that_cannot_be_written_are_one_line(run, image, tmp_path, capsys, target):
    target = special(tmp_path, target)
    assert main(["predict", str(run), image, "-o", target]) == 2
    one_error_line(capsys, target)
    picture = target + ".png" if target == "/proc/x" else target
    assert main(["explain", "gradcam", str(run), image, "--out", picture]) == 2
    one_error_line(capsys, picture)
    if target != str(tmp_path):  # a folder is what evaluate --out takes
        assert main(["evaluate", str(run), "--out", target]) == 2
        one_error_line(capsys, target)


def test_a_deeply_nested_config_is_one_line(tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["train", "--config", str(path), "--quiet"]) == 2
    one_error_line(capsys, str(path))
    path.write_text('{"train": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert main(["train", "--config", str(path), "--quiet"]) == 2
    one_error_line(capsys, str(path))


def test_deeply_nested_safetensors_metadata_is_one_line(run, image, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import save_file

    src = run / "best.safetensors"
    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable
    meta["run"] = "[" * 100_000 + "]" * 100_000
    bad = tmp_path / "deep.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    assert main(["predict", str(bad), image]) == 2
    one_error_line(capsys, str(bad))
    meta["run"] = json.dumps({"train": {"epochs": 1}})
    meta["info"] = "{" + '"a":' * 50_000 + "1" + "}" * 50_000
    save_file(tensors, str(bad), metadata=meta)
    assert main(["predict", str(bad), image]) == 2
    one_error_line(capsys, str(bad))
