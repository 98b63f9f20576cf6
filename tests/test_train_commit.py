"""Safe to resume: one commit point per epoch, a full disk keeps the previous epoch, a locked run
folder, and a diverging run that stops without saving non-finite weights."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from cnnkit.cli import main
from cnnkit.commands.train import train
from cnnkit.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from cnnkit.data import DataSplits
from cnnkit.errors import CheckpointError, ConfigError, DiskFullError
from cnnkit.inference import checkpoint as ckpt
from cnnkit.io import atomic_write_bytes
from cnnkit.train.commit import MANIFEST, commit, commit_steps, read_commit
from cnnkit.train.lock import lock_run_folder
from cnnkit.train.resume import check_commit
from conftest import make_shapes

COMMITTED = (ckpt.LAST, ckpt.STATE, "history.csv", "history.json", ckpt.BEST)


def cfg(out, epochs=2, lr=3e-3, optimizer="adam") -> RunConfig:
    return RunConfig(data=DataConfig(source="shapes"), model=ModelConfig(name="cifar-cnn-bn"),
                     optim=OptimConfig(name=optimizer, lr=lr),
                     train=TrainConfig(epochs=epochs, batch_size=16, out=str(out), progress=False, seed=1,
                                       report=False, fast=False))


def assert_consistent(run, epoch):
    """Weights, training state, history and best all belong to committed epoch ``epoch``."""
    assert read_commit(run).epoch == epoch
    assert ckpt.load_train_state(run / ckpt.STATE)["epoch"] == epoch
    assert json.loads(ckpt.read_metadata(run / ckpt.LAST)["info"])["epoch"] == epoch
    assert [r["epoch"] for r in json.loads((run / "history.json").read_text())] == list(range(1, epoch + 1))
    if (run / ckpt.BEST).exists():
        assert 1 <= json.loads(ckpt.read_metadata(run / ckpt.BEST)["info"])["epoch"] <= epoch
    assert not list(run.glob("*.new"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder committed at epoch 1, and the files another run committed at epoch 2 (trained once)."""
    base = tmp_path_factory.mktemp("trained")
    splits = DataSplits(train=make_shapes(24, seed=0), val=make_shapes(8, seed=1), test=make_shapes(8, seed=2))
    one = train(cfg(base / "one", epochs=1), splits=splits, explicit_out=True).run_dir
    two = train(cfg(base / "two", epochs=2), splits=splits, explicit_out=True).run_dir
    return one, {name: (two / name).read_bytes() for name in COMMITTED}


@pytest.fixture
def two_runs(tmp_path, trained):
    """A copy of the epoch-1 run folder of :func:`trained`, and its epoch-2 files."""
    one, epoch2 = trained
    run = tmp_path / "run"
    shutil.copytree(one, run)
    return run, epoch2


@pytest.mark.parametrize("k", range(8))  # 5 staged files, the record, then placing each
def test_a_commit_cut_short_after_any_step_leaves_one_consistent_epoch(two_runs, k):
    run, epoch2 = two_runs
    steps = commit_steps(run, 2, epoch2)
    done = [next(steps) for _ in range(k + 1)]  # ... then the process dies: the generator is dropped
    del steps
    recorded = "recorded" in done
    record = check_commit(run)  # what --resume does first
    assert record.epoch == (2 if recorded else 1)
    assert_consistent(run, record.epoch)
    if recorded:  # every file is epoch 2's, including the ones not yet placed when it died
        assert all((run / name).read_bytes() == data for name, data in epoch2.items())


def test_resume_after_a_cut_short_commit_says_where_it_continues(two_runs, shapes_splits, capsys):
    run, epoch2 = two_runs
    for step in commit_steps(run, 2, epoch2):
        if step == f"staged {ckpt.STATE}":
            break  # the weights are staged, the state is not: epoch 1 still stands
    capsys.readouterr()
    resumed = train(cfg(run, epochs=3), splits=shapes_splits, resume=run)
    assert f"resuming {run} after epoch 1 of 3 (weights, training state, history and data match {MANIFEST})" \
        in capsys.readouterr().err
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert_consistent(run, 3)


def test_a_file_changed_outside_cnnkit_is_a_clear_error(two_runs, shapes_splits):
    run, _ = two_runs
    (run / ckpt.LAST).write_bytes((run / ckpt.LAST).read_bytes()[:-8])
    with pytest.raises(CheckpointError, match=r"last\.safetensors: does not match commit\.json for epoch 1"):
        train(cfg(run, epochs=2), splits=shapes_splits, resume=run)


def test_a_full_disk_during_a_commit_keeps_the_previous_epoch_resumable(two_runs, shapes_splits):
    run, epoch2 = two_runs
    before = {name: (run / name).read_bytes() for name in COMMITTED}

    def disk_fills_at_the_state(path, data):  # what atomic_write_bytes raises on a full disk
        if path.name.startswith(ckpt.STATE):
            raise DiskFullError(path, len(data), 1000)
        atomic_write_bytes(path, data)

    with pytest.raises(DiskFullError) as info:
        commit(run, 2, epoch2, write=disk_fills_at_the_state)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{run / ckpt.STATE}: not enough disk space (needs ")
    assert f"{run} still holds epoch 1" in msg
    assert {name: (run / name).read_bytes() for name in COMMITTED} == before  # untouched
    assert_consistent(run, 1)
    with pytest.raises(ConfigError, match="already holds a run"):  # not stuck: a run to resume ...
        train(cfg(run, epochs=2), splits=shapes_splits, explicit_out=True)
    assert [r["epoch"] for r in train(cfg(run, epochs=2), splits=shapes_splits, resume=run).history] == [1, 2]


def test_a_full_disk_on_the_first_commit_leaves_a_folder_to_train_into_again(tmp_path, trained, shapes_splits):
    _, epoch2 = trained
    out = tmp_path / "fresh"
    out.mkdir()

    def full(path, data):
        raise DiskFullError(path, len(data), 0)

    with pytest.raises(DiskFullError, match=r"fresh/last\.safetensors: not enough disk space"):
        commit(out, 1, epoch2, write=full)
    assert sorted(p.name for p in out.iterdir()) == []
    assert train(cfg(out, epochs=1), splits=shapes_splits, explicit_out=True).run_dir == out


def test_a_second_training_into_a_locked_folder_is_a_config_error(tmp_path, shapes_splits):
    out = tmp_path / "run"
    with lock_run_folder(out):  # held in this process: another thread's run is kept out too
        with pytest.raises(ConfigError, match=rf"{out}: another training is writing this run folder "
                                              rf"\(pid {os.getpid()} on "):
            train(cfg(out, epochs=1), splits=shapes_splits, explicit_out=True)
    assert not (out / ckpt.LAST).exists()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from cnnkit.train.lock import lock_run_folder; "
                               f"lock = lock_run_folder(Path({str(out)!r})); print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"pid {holder.pid} on "):
            train(cfg(out, epochs=1), splits=shapes_splits, explicit_out=True)
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: flock went with it, so the folder is free again
    assert train(cfg(out, epochs=1), splits=shapes_splits, explicit_out=True).run_dir == out
    with lock_run_folder(out):  # a finished run let go of its folder
        pass


def test_default_naming_skips_a_folder_another_run_is_writing(tmp_path, shapes_splits):
    busy = tmp_path / "shapes-cifar-cnn-bn"
    with lock_run_folder(busy):
        result = train(cfg(tmp_path / "run", epochs=1), splits=shapes_splits)
    assert result.run_dir == tmp_path / "shapes-cifar-cnn-bn-2"


def test_a_diverging_run_stops_and_never_saves_non_finite_weights(tmp_path, shapes_splits):
    result = train(cfg(tmp_path / "run", epochs=4, lr=10.0, optimizer="sgd"), splits=shapes_splits,
                   explicit_out=True)
    assert result.diverged and result.stop_reason.startswith("training diverged: the ")
    run = result.run_dir
    record = read_commit(run)
    committed = record.epoch if record else 0
    assert f"in epoch {committed + 1};" in result.stop_reason and committed < 4
    for name in (ckpt.BEST, ckpt.LAST):
        if (run / name).exists():
            assert all(torch.isfinite(t).all() for t in load_file(run / name).values()), name
    if committed:
        assert_consistent(run, committed)


def test_the_cli_exits_non_zero_with_one_line_when_training_diverges(tmp_path, image_folder, capsys):
    rc = main(["train", str(image_folder), "--model", "cifar-cnn-bn", "--epochs", "3", "--batch-size", "8",
               "--optimizer", "sgd", "--lr", "10", "--out", str(tmp_path / "run"), "--quiet", "--no-fast",
               "--no-report", "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and err[0].startswith("cnnkit: error: training diverged: ") and "--lr" in err[0]


@pytest.mark.slow  # a few tiny trainings killed at random moments: ~30 s on 2 cores
def test_a_real_sigkill_at_any_moment_leaves_a_resumable_consistent_folder(tmp_path, image_folder):
    import random

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["--quiet", "--no-fast", "--no-report", "--cache-dir", str(tmp_path / "cache")]
    out = tmp_path / "run"
    args = [sys.executable, "-m", "cnnkit", "train", str(image_folder), "--model", "lenet5", "--epochs", "400",
            "--batch-size", "4", "--out", str(out), *common]
    rng = random.Random(0)
    epoch = 0
    for attempt in range(4):
        proc = subprocess.Popen(args if attempt == 0 else [*args[:4], "--resume", str(out), "--epochs", "400",
                                                           *common], env=env, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline and not ((out / MANIFEST).exists() and read_commit(out).epoch > epoch):
            time.sleep(0.05)  # until this process has committed an epoch of its own
        time.sleep(rng.uniform(0.2, 1.5))  # somewhere in an epoch, or in its commit
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        record = check_commit(out)
        assert_consistent(out, record.epoch)
        epoch = record.epoch
        weights = load_file(out / ckpt.LAST)
        assert all(torch.isfinite(t).all() for t in weights.values())
    done = subprocess.run([sys.executable, "-m", "cnnkit", "train", "--resume", str(out), "--epochs",
                           str(read_commit(out).epoch + 1), *common], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "after epoch" in done.stderr
    assert_consistent(out, read_commit(out).epoch)
    assert math.isfinite(json.loads((out / "history.json").read_text())[-1]["loss"])
