"""Two processes under torchrun (gloo, CPU) give the same training as one process on the same global batch."""

import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_shapes


def _folder(root):
    from PIL import Image

    data = make_shapes(16, size=16, seed=7, classes=("bright", "stripes"))  # 32 images
    for i, (img, label) in enumerate(zip(data.images, data.labels)):
        d = root / data.classes[label]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:02d}.png")
    return root


def _train(args, cwd, env, attempts=1):
    """Run a training command; torchrun's launch gets a second attempt (its rendezvous port can be
    taken between being picked and being bound), and the first failure is kept as a warning."""
    for attempt in range(attempts):
        proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode == 0:
            return proc
        if attempt + 1 < attempts:
            said = f"{proc.stdout}{proc.stderr}"
            warnings.warn(f"{args[0]} failed (rc={proc.returncode}), retrying once:\n{said}"[-4000:])
            shutil.rmtree(args[args.index("--out") + 1], ignore_errors=True)
    raise AssertionError(f"command failed (rc={proc.returncode}): {' '.join(args)}\n{proc.stdout}{proc.stderr}")


@pytest.mark.skipif(not torch.distributed.is_available() or shutil.which("torchrun") is None,
                    reason="torch.distributed / torchrun not available")
def test_ddp_matches_single_process(tmp_path):
    data = _folder(tmp_path / "data")
    common = [str(data), "--model", "lenet5", "--epochs", "2", "--batch-size", "8", "--val-split", "0.25",
              "--optimizer", "sgd", "--lr", "0.05", "--schedule", "none", "--no-fast", "--quiet",
              "--cache-dir", str(tmp_path / "cache"), "--seed", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    _train([sys.executable, "-m", "cnnkit", "train", *common, "--out", str(tmp_path / "single")], tmp_path, env)
    _train(["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "cnnkit", "train", *common,
            "--out", str(tmp_path / "ddp")], tmp_path, env, attempts=2)

    h1 = json.loads((tmp_path / "single" / "history.json").read_text())
    h2 = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert len(h1) == len(h2) == 2
    for a, b in zip(h1, h2):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-5)
        assert a["acc"] == pytest.approx(b["acc"], abs=1e-6)
    w1 = load_file(str(tmp_path / "single" / "last.safetensors"))
    w2 = load_file(str(tmp_path / "ddp" / "last.safetensors"))
    for k in w1:
        assert torch.allclose(w1[k], w2[k], atol=1e-4), k
    # only rank 0 wrote: one run folder, no numbered twin
    assert not (tmp_path / "ddp-2").exists()


@pytest.mark.skipif(not torch.distributed.is_available() or shutil.which("torchrun") is None,
                    reason="torch.distributed / torchrun not available")
def test_ddp_lr_auto_runs_the_range_test_once_and_records_the_broadcast_rate(tmp_path):
    data = _folder(tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = _train(["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "cnnkit", "train", str(data),
                   "--model", "lenet5", "--epochs", "1", "--batch-size", "8", "--val-split", "0.25", "--lr", "auto",
                   "--no-fast", "--quiet", "--cache-dir", str(tmp_path / "cache"), "--seed", "3",
                   "--out", str(tmp_path / "ddp")], tmp_path, env, attempts=2)
    lr = json.loads((tmp_path / "ddp" / "config.json").read_text())["optim"]["lr"]
    assert isinstance(lr, float) and 1e-7 <= lr <= 10  # the broadcast number, not "auto"
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "--lr auto:" in ln]
    assert len(lines) == 1 and f"{lr:.1e}" in lines[0]  # rank 0 alone ran the test and said so
    assert json.loads((tmp_path / "ddp" / "lr_find.json").read_text())["suggestion"] == pytest.approx(lr)
